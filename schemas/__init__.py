"""WSDL and XSD files (data, not code); `path(name)` finds one."""

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent


def path(name: str) -> Path:
    return SCHEMA_DIR / name
