"""The documented configuration is the real one: docs/licgate.example.toml starts a gateway as it is, and
docs/configuration.md names every key that gateway/config.py accepts."""

from __future__ import annotations

import ast
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

import gateway.config
from tests.support.process import GatewayProcess

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLE = DOCS / "licgate.example.toml"
REFERENCE = DOCS / "configuration.md"


def test_the_example_config_starts_beside_a_fresh_test_pki(tmp_path: Path) -> None:
    config = tmp_path / EXAMPLE.name
    shutil.copyfile(EXAMPLE, config)
    subprocess.run([sys.executable, "-m", "gateway", "pki", "init", str(tmp_path / "pki")], check=True,
                   capture_output=True, timeout=120)

    process = GatewayProcess(config).start(timeout=60)
    try:
        health = httpx.get(process.url + "/healthz", timeout=5.0)
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        # The relative SQLite path was taken from the config file's directory, not the working directory.
        assert (tmp_path / "licgate.db").is_file()
    finally:
        process.stop()
    # Stopped by the SIGTERM (uvicorn ends by re-raising it after a graceful shutdown), not killed.
    assert process.proc is not None and process.proc.returncode in (0, -signal.SIGTERM), \
        process.log_path.read_text()[-2000:]


def _accepted_keys() -> dict[str, set[str]]:
    """Table name ("" for the top level) -> the keys gateway/config.py accepts in it, read from every
    `_no_unknown(prefix, table, allowed)` call: `allowed` is the complete key set of its table."""
    source = Path(gateway.config.__file__).read_text(encoding="utf-8")
    namespace = vars(gateway.config)
    found: dict[str, set[str]] = {}
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef):
            continue
        local = {target.id: node.value for node in ast.walk(function) if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)}
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_no_unknown":
                prefix, _, allowed = node.args
                if isinstance(prefix, ast.Name):
                    prefix = local[prefix.id]
                keys: Any = eval(compile(ast.Expression(allowed), "config.py", "eval"), namespace)
                found.setdefault(_table_name(prefix), set()).update(keys)
    return found


def _table_name(prefix: ast.expr) -> str:
    """"server." -> "server"; f"providers[{i}]." -> "providers"; "" -> "" (the top level)."""
    if isinstance(prefix, ast.JoinedStr):
        prefix = prefix.values[0]
    assert isinstance(prefix, ast.Constant) and isinstance(prefix.value, str), ast.dump(prefix)
    return prefix.value.split("[")[0].rstrip(".")


def _documented_keys() -> dict[str, set[str]]:
    """Table name -> the keys docs/configuration.md lists in that table's section (table rows "| `key` |")."""
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            heading = re.search(r"`\[\[?([a-z_]+)\]\]?`", line)
            current = sections.setdefault(heading.group(1), set()) if heading else None
        elif current is not None and (row := re.match(r"\|\s*`([A-Za-z_]+)`\s*\|", line)):
            current.add(row.group(1))
    return sections


def test_configuration_md_documents_every_key_config_py_accepts() -> None:
    accepted = _accepted_keys()
    documented = _documented_keys()
    assert len(accepted) > 10, f"found only {sorted(accepted)}: has config.py changed shape?"
    missing_tables = sorted(accepted[""] - documented.keys())
    assert not missing_tables, f"tables without a section in docs/configuration.md: {missing_tables}"
    missing = {table: sorted(keys - documented.get(table, set())) for table, keys in accepted.items() if table}
    missing = {table: keys for table, keys in missing.items() if keys}
    assert not missing, f"keys gateway/config.py accepts that docs/configuration.md does not list: {missing}"
    unknown = {table: sorted(keys - accepted[table]) for table, keys in documented.items() if table in accepted}
    unknown = {table: keys for table, keys in unknown.items() if keys}
    assert not unknown, f"keys docs/configuration.md lists that gateway/config.py does not accept: {unknown}"
