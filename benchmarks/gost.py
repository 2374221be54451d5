"""Cost of GOST verification (signing/gost) next to RSA-2048 measured in the same run, and gostcrypto's.

One GOST verification = Streebog of the payload + one GOST R 34.10 signature check, with the signer's key
already decoded (the key cache) and, separately, with a key seen for the first time. The floor = SHA-256
of the same payload + one RSA-2048 PKCS#1 v1.5 verify with `cryptography` (OpenSSL). Target: GOST-512
(hash + signature, 5 KB payload) at most 15 ms on one core. gostcrypto (pure Python, the independent
implementation the tests cross-check with) is timed for comparison.

Run: `.venv/bin/python benchmarks/gost.py` (about a minute on one core; `--quick` for a few seconds).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signing.gost import (  # noqa: E402
    TC26_256_A,
    TC26_512_A,
    Curve,
    Streebog,
    generate_private_key,
    hash_streebog,
    native_streebog,
    public_key,
    sign,
    streebog_implementation,
    verify,
)
from signing.gost.arith import gmpy2  # noqa: E402

PAYLOAD = os.urandom(5 * 1024)
TARGET_MS = 15.0


def per_call(fn: Callable[[], object], seconds: float) -> float:
    """Median seconds per call over rounds lasting about `seconds` in all."""
    fn()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < 0.2:
        fn()
        calls += 1
    batch = max(1, calls // 2)
    rounds = []
    for _ in range(max(3, int(seconds / 0.2))):
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        rounds.append((time.perf_counter() - t) / batch)
    rounds.sort()
    return rounds[len(rounds) // 2]


def gost_case(curve: Curve, number: Callable[[int], int] | None,
              digest: Callable[[int, bytes], bytes]) -> tuple[Callable[[], bool], Callable[[], bool]]:
    """(warm, cold): hash + verify with a cached key, and with a new key on each call; `digest` is the
    Streebog to use (pure Python or `hash_streebog`, which is OpenSSL's when its GOST provider is active)."""
    d = generate_private_key(curve)
    key = public_key(curve, d)
    signature = sign(curve, d, hash_streebog(curve.bits, PAYLOAD))

    def warm() -> bool:
        ok = verify(curve, key, digest(curve.bits, PAYLOAD), signature, number=number)
        assert ok
        return ok

    fresh = []
    for _ in range(60):
        d = generate_private_key(curve)
        fresh.append((public_key(curve, d), sign(curve, d, hash_streebog(curve.bits, PAYLOAD))))

    def cold() -> bool:
        other_key, other_signature = fresh.pop()
        ok = verify(curve, other_key, digest(curve.bits, PAYLOAD), other_signature, number=number)
        assert ok
        return ok

    return warm, cold


def cold_time(cold: Callable[[], bool], calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        cold()
    return (time.perf_counter() - t) / calls


def gostcrypto_case(curve: Curve) -> Callable[[], bool] | None:
    try:
        from gostcrypto import gosthash, gostsignature
    except ImportError:
        return None
    mode = gostsignature.MODE_512 if curve.size == 64 else gostsignature.MODE_256
    theirs = gostsignature.new(mode, dict(p=curve.p, a=curve.a, b=curve.b, m=curve.q * curve.cofactor, q=curve.q,
                                          x=curve.x, y=curve.y))
    d = generate_private_key(curve)
    key = public_key(curve, d)
    signature = sign(curve, d, hash_streebog(curve.bits, PAYLOAD))
    n = curve.size
    their_key = bytearray(key[:n][::-1] + key[n:][::-1])
    their_signature = bytearray(signature[:n][::-1] + signature[n:][::-1])

    def check() -> bool:
        digest = bytes(gosthash.new(f"streebog{curve.bits}", data=PAYLOAD).digest())
        ok = theirs.verify(their_key, bytearray(digest[::-1]), their_signature)
        assert ok
        return ok

    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds, for a smoke run")
    args = parser.parse_args()
    seconds = 0.6 if args.quick else 3.0

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_public = rsa_key.public_key()
    rsa_signature = rsa_key.sign(PAYLOAD, padding.PKCS1v15(), hashes.SHA256())

    def floor() -> None:
        hashlib.sha256(PAYLOAD).digest()
        rsa_public.verify(rsa_signature, PAYLOAD, padding.PKCS1v15(), hashes.SHA256())

    numbers: list[tuple[str, Callable[[int], int] | None]] = [("int", int)]
    if gmpy2 is not None:
        numbers.insert(0, ("gmpy2", gmpy2.mpz))
    print(f"GOST on one core, payload {len(PAYLOAD)} bytes; gmpy2 {'installed' if gmpy2 else 'NOT installed'}; "
          f"native Streebog: {streebog_implementation()}")
    floor_s = per_call(floor, seconds)
    print(f"{'RSA-2048 verify + SHA-256 (floor)':<44} {floor_s * 1e3:9.3f} ms   1.0x")

    def row(label: str, spent: float) -> None:
        print(f"{label:<44} {spent * 1e3:9.3f} ms {spent / floor_s:6.0f}x")

    row("Streebog-512, pure Python", per_call(lambda: Streebog(512, PAYLOAD).digest(), seconds))
    row("Streebog-256, pure Python", per_call(lambda: Streebog(256, PAYLOAD).digest(), seconds))
    if native_streebog():
        row(f"Streebog-512, {streebog_implementation()}", per_call(lambda: hash_streebog(512, PAYLOAD), seconds))

    def pure(bits: int, data: bytes) -> bytes:
        return Streebog(bits, data).digest()

    results = {}
    for curve in (TC26_256_A, TC26_512_A):
        for name, number in numbers:
            warm, cold = gost_case(curve, number, pure)
            results[curve.bits, name] = spent = per_call(warm, seconds)
            row(f"GOST-{curve.bits} verify (hash + sig), {name}", spent)
            row(f"GOST-{curve.bits} verify, new key each time, {name}", cold_time(cold, 20 if args.quick else 50))
            if native_streebog():
                warm, _ = gost_case(curve, number, hash_streebog)
                row(f"GOST-{curve.bits} verify, {streebog_implementation()} Streebog, {name}", per_call(warm, seconds))
            d = generate_private_key(curve)
            digest = hash_streebog(curve.bits, PAYLOAD)
            row(f"GOST-{curve.bits} sign (signature only), {name}",
                per_call(lambda d=d, digest=digest, curve=curve, number=number: sign(curve, d, digest, number=number),
                         seconds))
    for curve in (TC26_256_A, TC26_512_A):
        theirs = gostcrypto_case(curve)
        if theirs is not None:
            row(f"gostcrypto GOST-{curve.bits} verify (hash + sig)", cold_time(theirs, 2 if args.quick else 4))

    best = results.get((512, "gmpy2"), results[512, "int"])
    verdict = "met" if best * 1e3 <= TARGET_MS else "MISSED"
    print(f"target: GOST-512 verification (hash + signature, 5 KB, pure-Python Streebog) <= {TARGET_MS:.0f} ms: "
          f"{best * 1e3:.2f} ms, {verdict}")
    print("\nwhere a GOST-512 verification spends its time (cProfile, 30 calls, top 8 by own time):")
    warm, _ = gost_case(TC26_512_A, numbers[0][1], pure)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(30):
        warm()
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(8)
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-1200:])


if __name__ == "__main__":
    main()
