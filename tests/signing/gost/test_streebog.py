"""Streebog (GOST R 34.11-2012): the standard's examples, hashlib's behaviour, and an independent
implementation (gostcrypto) on many lengths."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from gostcrypto import gosthash

from signing.gost import Streebog, hash_streebog, new_streebog
from tests.signing.gost.conftest import le

# The standard's examples (GOST R 34.11-2012 annex A), messages and digests as it prints them.
M1 = "323130393837363534333231303938373635343332313039383736353433323130393837363534333231303938373635" \
     "343332313039383736353433323130"
M2 = "fbe2e5f0eee3c820fbeafaebef20fffbf0e1e0f0f520e0ed20e8ece0ebe5f0f2f120fff0eeec20f120faf2fee5e2202ce8f6f3" \
     "ede220e8e6eee1e8f0f2d1202ce8f0f2e5e220e5d1"
H512_M1 = "486f64c1917879417fef082b3381a4e211c324f074654c38823a7b76f830ad00fa1fbae42b1285c0352f227524bc9ab16254" \
          "288dd6863dccd5b9f54a1ad0541b"
H256_M1 = "00557be5e584fd52a449b16b0251d05d27f94ab76cbaa6da890b59d8ef1e159d"
H512_M2 = "28fbc9bada033b1460642bdcddb90c3fb3e56c497ccd0f62b8a2ad4935e85f037613966de4ee00531ae60f3b5a47f8dae069" \
          "15d5f2f194996fcabf2622e6881e"
H256_M2 = "508f7e553c06501d749a66fc28c6cac0b005746d97537fa85d9e40904efed29d"


@pytest.mark.parametrize(("message", "size", "digest"), [
    (M1, 512, H512_M1), (M1, 256, H256_M1), (M2, 512, H512_M2), (M2, 256, H256_M2),
], ids=["M1-512", "M1-256", "M2-512", "M2-256"])
def test_the_standards_examples(message: str, size: int, digest: str) -> None:
    assert Streebog(size, le(message)).digest() == le(digest)


def test_m1_is_the_ascii_digits_in_this_byte_order() -> None:
    assert le(M1) == b"012345678901234567890123456789012345678901234567890123456789012"


def test_m2_is_the_cp1251_text_of_the_standard() -> None:
    assert le(M2).decode("cp1251").startswith("Се ветри, Стрибожи внуци")


@pytest.mark.parametrize("size", [256, 512])
def test_agrees_with_gostcrypto_on_every_length_around_the_block_boundaries(size: int) -> None:
    rng = random.Random(size)
    for length in [*range(0, 200), 511, 512, 513, 4096, 5000]:
        data = rng.randbytes(length)
        assert Streebog(size, data).digest() == bytes(gosthash.new(f"streebog{size}", data=data).digest()), length


def test_feeding_in_pieces_gives_the_digest_of_the_whole() -> None:
    data = os.urandom(1000)
    for cut in (0, 1, 63, 64, 65, 128, 999):
        hasher = Streebog(512)
        hasher.update(data[:cut])
        hasher.update(memoryview(data)[cut:])
        assert hasher.digest() == Streebog(512, data).digest()
    small = Streebog(256)
    for byte in data[:130]:
        small.update(bytes([byte]))
    assert small.digest() == Streebog(256, data[:130]).digest()


def test_digest_leaves_the_hash_usable_and_copy_is_independent() -> None:
    hasher = Streebog(512, b"first part, ")
    twin = hasher.copy()
    first = hasher.digest()
    assert hasher.digest() == first
    hasher.update(b"second part")
    assert hasher.digest() == Streebog(512, b"first part, second part").digest()
    assert twin.digest() == first
    assert (twin.name, twin.digest_size, Streebog(256).digest_size, twin.block_size) == ("streebog512", 64, 32, 64)
    assert twin.hexdigest() == first.hex()


def test_only_256_and_512_bits_exist() -> None:
    with pytest.raises(ValueError, match="256- and 512-bit"):
        Streebog(384)


def _openssl_modules_dir() -> Path:
    out = subprocess.run(["openssl", "version", "-m"], capture_output=True, text=True, check=True).stdout
    return Path(out.split('"')[1])


def test_openssl_gost_provider_when_active_gives_the_same_digests(tmp_path: Path) -> None:
    """With OpenSSL's GOST provider active, new_streebog is OpenSSL's and agrees with the pure code; without
    the provider (libengine-gost-openssl absent), the pure code is used."""
    config = tmp_path / "openssl.cnf"
    config.write_text("openssl_conf = init\n[init]\nproviders = providers\n[providers]\ndefault = on\n"
                      "gostprov = on\n[on]\nactivate = 1\n")
    script = ("import sys; from signing.gost import streebog as s\n"
              "data = bytes(range(256)) * 20\n"
              "assert s.hash_streebog(512, data) == s.Streebog(512, data).digest()\n"
              "assert s.hash_streebog(256, data) == s.Streebog(256, data).digest()\n"
              "print(s.streebog_implementation(), type(s.new_streebog(512)).__module__)\n")
    env = {**os.environ, "OPENSSL_CONF": str(config)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            cwd=Path(__file__).resolve().parents[3], timeout=60)
    assert result.returncode == 0, result.stderr
    implementation, module = result.stdout.split()
    provider_installed = (_openssl_modules_dir() / "gostprov.so").exists()
    assert (implementation == "openssl") == provider_installed
    assert (module != "signing.gost.streebog") == provider_installed


def test_new_streebog_and_hash_streebog_give_the_pure_hashs_bytes() -> None:
    hasher = new_streebog(256, b"abc")
    hasher.update(b"def")
    assert hasher.digest() == hash_streebog(256, b"abcdef") == Streebog(256, b"abcdef").digest()


def test_nettles_streebog_when_present_agrees_with_the_pure_code_everywhere() -> None:
    """GNU Nettle's Streebog (libnettle, through ctypes) is what new_streebog hands out here unless OpenSSL's
    GOST provider is active: the same digests as the pure code on every length around the block boundaries,
    in pieces, and with digest() leaving it usable and copy() independent."""
    from signing.gost import streebog

    for size in (256, 512):
        make = streebog._nettle(size)
        if make is None:
            pytest.skip("libnettle with Streebog (nettle >= 3.6) is not installed: the pure code is used")
        rng = random.Random(size + 1)
        for length in [*range(0, 140), 511, 512, 513, 4096, 70_000]:
            data = rng.randbytes(length)
            assert make(data).digest() == Streebog(size, data).digest(), (size, length)
        running = make(b"")
        for piece in (b"a" * 63, b"b", b"c" * 130):
            running.update(piece)
        twin = running.copy()
        assert running.digest() == running.digest() == Streebog(size, b"a" * 63 + b"b" + b"c" * 130).digest()
        twin.update(b"more")
        assert twin.digest() == Streebog(size, b"a" * 63 + b"b" + b"c" * 130 + b"more").digest()
        assert running.hexdigest() == running.digest().hex()
    assert streebog.streebog_implementation() in ("openssl", "nettle")
