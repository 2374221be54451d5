"""Timestamp tokens for tests: from Debian's `openssl ts` (an independent TSA implementation) with the test
PKI's TSA key, or from `signing.tsa` at any genTime a test needs."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from signing.pki import Pki
from signing.tsa import TimestampAuthority

Stamper = Callable[[bytes], bytes]


def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("the openssl CLI is not on PATH")
    return path


def openssl_stamper(pki: Pki, workdir: Path, party: str = "tsa") -> Stamper:
    """Tokens made by `openssl ts -query` / `openssl ts -reply -token_out` with the party's key and cert."""
    tool = openssl()
    tsa = pki.party(party)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "tsa.cnf"
    config.write_text(f"""[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = {workdir / 'serial'}
signer_cert = {tsa.cert_path}
signer_key = {tsa.key_path}
signer_digest = sha256
default_policy = 1.2.398.3.3.2.6.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
""")
    (workdir / "serial").write_text("01\n")

    def stamp(data: bytes) -> bytes:
        (workdir / "data").write_bytes(data)
        subprocess.run([tool, "ts", "-query", "-data", str(workdir / "data"), "-sha256", "-cert", "-out",
                        str(workdir / "req.tsq")], check=True, capture_output=True)
        subprocess.run([tool, "ts", "-reply", "-config", str(config), "-queryfile", str(workdir / "req.tsq"),
                        "-token_out", "-out", str(workdir / "token.der")], check=True, capture_output=True)
        return (workdir / "token.der").read_bytes()

    return stamp


def mock_stamper(pki: Pki, *, gen_time: datetime | None = None, party: str = "tsa",
                 over: bytes | None = None) -> Stamper:
    """Tokens of `signing.tsa` at `gen_time`; `over` stamps those bytes instead of the ones given."""
    tsa = pki.party(party)
    authority = TimestampAuthority(tsa.key_pem, tsa.cert_pem)

    def stamp(data: bytes) -> bytes:
        return authority.token(hashlib.sha256(over if over is not None else data).digest(), gen_time=gen_time)

    return stamp
