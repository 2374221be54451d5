"""The fuzz tests share the intake tests' session PKI and gateway fixture."""

from tests.intake.conftest import gateway, pki, sqlite_url  # noqa: F401
