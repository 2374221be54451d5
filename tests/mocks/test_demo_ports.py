"""`licgate demo` must not fail because another process took a port it chose: the mocks serve on sockets
bound when the ports are chosen, and the gateway (a child process) is started again on another port."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

import mocks.demo as demo


def test_the_demo_stack_moves_its_gateway_when_its_port_is_taken(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(1)
    taken = squatter.getsockname()[1]
    real_free_port = demo.free_port
    handed_out: list[int] = []

    def first_the_taken_port() -> int:
        port = taken if not handed_out else real_free_port()
        handed_out.append(port)
        return port

    monkeypatch.setattr(demo, "free_port", first_the_taken_port)
    stack = demo.Stack(tmp_path).start()
    try:
        assert handed_out[0] == taken and len(handed_out) >= 2
        assert stack.settings.urls.gateway != f"http://127.0.0.1:{taken}"
        assert httpx.get(stack.settings.urls.gateway + "/healthz", timeout=10).status_code == 200
        # The mocks were told the gateway's new address.
        assert f"{stack.settings.urls.gateway}" in (tmp_path / "mocks.toml").read_text(encoding="utf-8")
    finally:
        stack.stop()
        squatter.close()
