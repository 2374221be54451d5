"""The audit tests use the intake tests' PKI (one per session)."""

from tests.intake.conftest import pki  # noqa: F401 - a fixture
