"""Everything a test database holds, as bytes: to show that a secret reached no stored row."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import psycopg


def stored_bytes(storage_url: str) -> bytes:
    """A SQLite database's file with its -wal and -shm (free pages included), or every value of every table
    of a PostgreSQL test schema."""
    if storage_url.startswith("sqlite:///"):
        db = Path(storage_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))
    return all_pg_bytes(storage_url)


def all_pg_bytes(url: str) -> bytes:
    """Every value of every table of the test's schema, as bytes."""
    out = BytesIO()
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
        assert "message_log" in tables
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        out.write(bytes(value))
                    elif isinstance(value, dict | list):
                        out.write(json.dumps(value, ensure_ascii=False).encode())
                    elif value is not None:
                        out.write(str(value).encode())
    return out.getvalue()
