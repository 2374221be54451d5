"""Loads the SQL of a dialect from its `.sql` files: the named queries and the numbered migrations.

`sql/<dialect>/queries.sql` holds blocks that start with a `-- name: <query_name>` line; the block runs up
to the next such line. `sql/<dialect>/NNNN_<what>.sql` are the migrations, applied in number order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

_NAME_LINE = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def _dialect_dir(dialect: str) -> Traversable:
    return resources.files("gateway.storage").joinpath("sql", dialect)


@cache
def queries(dialect: str) -> dict[str, str]:
    """The named queries of `dialect`, by name."""
    text = _dialect_dir(dialect).joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _NAME_LINE.split(text)
    found: dict[str, str] = {}
    # parts[0] is the file's preamble; then the name and the body of each block alternate.
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise ValueError(f"{dialect}/queries.sql: query {name} is defined twice")
        sql = body.strip().rstrip(";").strip()
        if not sql:
            raise ValueError(f"{dialect}/queries.sql: query {name} is empty")
        found[name] = sql
    return found


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """The migrations of `dialect` in number order; the numbers must run 1, 2, 3, ... without gaps."""
    found = []
    for entry in _dialect_dir(dialect).iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise ValueError(f"{dialect} migrations: expected number {expected:04d}, found {migration.version:04d}")
    return tuple(found)
