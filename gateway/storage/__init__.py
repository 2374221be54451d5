"""Durable storage behind one interface (see `base.py`)."""

from gateway.storage.base import *  # noqa: F403
