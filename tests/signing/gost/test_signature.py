"""GOST R 34.10-2012 signatures: the standard's examples, the curves' own consistency, an independent
implementation (gostcrypto) both ways, and refusals."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable

import pytest
from gostcrypto import gostsignature

from signing.gost import (
    CURVES,
    TC26_256_A,
    TC26_512_A,
    Curve,
    InvalidKey,
    curve_for_oid,
    generate_private_key,
    public_key,
    sign,
    verify,
)
from signing.gost.arith import Arithmetic
from signing.gost.curves import TC26_256_B, TEST_256, TEST_512, UnknownCurve
from tests.signing.gost.conftest import le

Number = Callable[[int], int]


# GOST R 34.10-2012/2018 annex A, examples 1 (256 bits) and 2 (512 bits), as the standard prints them.
EXAMPLES = {
    "256": dict(
        curve=TEST_256,
        d="7a929ade789bb9be10ed359dd39a72c11b60961f49397eee1d19ce9891ec3b28",
        e="2dfbc1b372d89a1188c09c52e0eec61fce52032ab1022e8e67ece6672b043ee5",
        k="77105c9b20bcd3122823c8cf6fcc7b956de33814e95b7fe64fed924594dceab3",
        xq="7f2b49e270db6d90d8595bec458b50c58585ba1d4e9b788f6689dbd8e56fd80b",
        yq="26f1b489d6701dd185c8413a977b3cbbaf64d1c593d26627dffb101a87ff77da",
        r="41aa28d2f1ab148280cd9ed56feda41974053554a42767b83ad043fd39dc0493",
        s="01456c64ba4642a1653c235a98a60249bcd6d3f746b631df928014f6c5bf9c40",
    ),
    "512": dict(
        curve=TEST_512,
        d="0ba6048aadae241ba40936d47756d7c93091a0e8514669700ee7508e508b1020"
          "72e8123b2200a0563322dad2827e2714a2636b7bfd18aadfc62967821fa18dd4",
        e="3754f3cfacc9e0615c4f4a7c4d8dab531b09b6f9c170c533a71d147035b0c591"
          "7184ee536593f4414339976c647c5d5a407adedb1d560c4fc6777d2972075b8c",
        k="0359e7f4b1410feacc570456c6801496946312120b39d019d455986e364f3658"
          "86748ed7a44b3e794434006011842286212273a6d14cf70ea3af71bb1ae679f1",
        xq="115dc5bc96760c7b48598d8ab9e740d4c4a85a65be33c1815b5c320c854621dd"
           "5a515856d13314af69bc5b924c8b4ddff75c45415c1d9dd9dd33612cd530efe1",
        yq="37c7c90cd40b0f5621dc3ac1b751cfa0e2634fa0503b3d52639f5d7fb72afd61"
           "ea199441d943ffe7f0c70a2759a3cdb84c114e1f9339fdf27f35eca93677beec",
        r="2f86fa60a081091a23dd795e1e3c689ee512a3c82ee0dcc2643c78eea8fcacd3"
          "5492558486b20f1c9ec197c90699850260c93bcbcd9c5c3317e19344e173ae36",
        s="1081b394696ffe8e6585e7a9362d26b6325f56778aadbc081c0bfbe933d52ff5"
          "823ce288e8c4f362526080df7f70ce406a6eeb1f56919cb92a9853bde73e5b4a",
    ),
}


@pytest.mark.parametrize("example", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_the_standards_examples(example: dict, number: Number) -> None:
    curve, d = example["curve"], int(example["d"], 16)
    key = public_key(curve, d, number=number)
    assert key == le(example["xq"]) + le(example["yq"])
    signature = sign(curve, d, le(example["e"]), k=int(example["k"], 16), number=number)
    assert signature == le(example["r"]) + le(example["s"])
    assert verify(curve, key, le(example["e"]), signature, number=number)


def _probably_prime(n: int) -> bool:
    rng = random.Random(n)
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(32):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: c.name)
def test_each_curve_is_consistent(curve: Curve) -> None:
    """p and q prime, G on the curve and of order q, the group order m = cofactor * q within Hasse's bound."""
    arith = Arithmetic(curve, int)
    assert _probably_prime(curve.p) and _probably_prime(curve.q)
    assert arith.on_curve(curve.x, curve.y)
    assert arith.multiply(curve.q, curve.x, curve.y) is None
    assert arith.multiply(curve.q - 1, curve.x, curve.y) == (curve.x, curve.p - curve.y)
    assert abs(curve.p + 1 - curve.cofactor * curve.q) <= 2 * math.isqrt(curve.p) + 2
    assert (4 * curve.a ** 3 + 27 * curve.b ** 2) % curve.p != 0


def test_ncas_oids_name_the_tc26_curves() -> None:
    assert curve_for_oid("1.2.398.3.10.1.1.2.2.1") is curve_for_oid("1.2.643.7.1.2.1.2.1") is TC26_512_A
    assert curve_for_oid("1.2.398.3.10.1.1.2.1.1") is curve_for_oid("1.2.643.7.1.2.1.1.1") is TC26_256_A
    assert curve_for_oid("1.2.643.2.2.35.1") is curve_for_oid("1.2.643.7.1.2.1.1.2") is TC26_256_B
    with pytest.raises(UnknownCurve):
        curve_for_oid("1.2.398.3.10.1.1.1.1.1")


@pytest.mark.parametrize("curve", [c for c in CURVES if c not in (TEST_256, TEST_512)], ids=lambda c: c.name)
def test_a_signature_of_ours_verifies_and_any_change_breaks_it(curve: Curve, number: Number) -> None:
    d = generate_private_key(curve)
    key = public_key(curve, d, number=number)
    digest = os.urandom(curve.size)
    signature = sign(curve, d, digest, number=number)
    assert verify(curve, key, digest, signature, number=number)
    assert not verify(curve, key, bytes([digest[0] ^ 1]) + digest[1:], signature, number=number)
    assert not verify(curve, key, digest, signature[:-1] + bytes([signature[-1] ^ 0x40]), number=number)
    other = public_key(curve, generate_private_key(curve), number=number)
    assert not verify(curve, other, digest, signature, number=number)


def test_int_and_gmpy2_agree(number: Number) -> None:
    d = 0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF % TC26_512_A.q
    digest = bytes(range(64))
    k = 0xFEDCBA9876543210 ** 7 % TC26_512_A.q
    assert sign(TC26_512_A, d, digest, k=k, number=number) == sign(TC26_512_A, d, digest, k=k, number=int)
    assert public_key(TC26_512_A, d, number=number) == public_key(TC26_512_A, d, number=int)


def _gostcrypto(curve: Curve) -> gostsignature.GOST34102012:
    mode = gostsignature.MODE_512 if curve.size == 64 else gostsignature.MODE_256
    params = dict(p=curve.p, a=curve.a, b=curve.b, m=curve.q * curve.cofactor, q=curve.q, x=curve.x, y=curve.y)
    return gostsignature.new(mode, params)


def _to_gostcrypto(value: bytes, halves: int = 2) -> bytearray:
    """Our little-endian halves (X||Y or r||s) as gostcrypto's big-endian ones."""
    n = len(value) // halves
    return bytearray(b"".join(value[i * n:(i + 1) * n][::-1] for i in range(halves)))


@pytest.mark.parametrize("curve", [TC26_512_A, TC26_256_A], ids=lambda c: c.name)
def test_gostcrypto_signatures_verify_here_and_ours_there(curve: Curve) -> None:
    theirs = _gostcrypto(curve)
    d = generate_private_key(curve)
    key = public_key(curve, d)
    assert _to_gostcrypto(key) == theirs.public_key_generate(bytearray(d.to_bytes(curve.size, "big")))
    digest = os.urandom(curve.size)
    their_signature = bytes(theirs.sign(bytearray(d.to_bytes(curve.size, "big")), bytearray(digest[::-1])))
    assert verify(curve, key, digest, _to_gostcrypto(their_signature))
    assert not verify(curve, key, digest, their_signature)  # their byte order as-is is not ours
    ours = sign(curve, d, digest)
    assert theirs.verify(_to_gostcrypto(key), bytearray(digest[::-1]), _to_gostcrypto(ours))
    assert not theirs.verify(_to_gostcrypto(key), bytearray(digest), _to_gostcrypto(ours))


@pytest.fixture(scope="module")
def signed() -> tuple[int, bytes, bytes, bytes]:
    d = generate_private_key(TC26_512_A)
    digest = os.urandom(64)
    return d, public_key(TC26_512_A, d), digest, sign(TC26_512_A, d, digest)


def _with(signature: bytes, r: int | None = None, s: int | None = None) -> bytes:
    r = int.from_bytes(signature[:64], "little") if r is None else r
    s = int.from_bytes(signature[64:], "little") if s is None else s
    return r.to_bytes(64, "little") + s.to_bytes(64, "little")


@pytest.mark.parametrize(("field", "value"), [
    ("r", 0), ("s", 0), ("r", TC26_512_A.q), ("s", TC26_512_A.q), ("r", 2 ** 512 - 1), ("s", 2 ** 512 - 1),
], ids=["r=0", "s=0", "r=q", "s=q", "r=max", "s=max"])
def test_r_or_s_outside_1_to_q_minus_1_is_invalid(signed: tuple, field: str, value: int, number: Number) -> None:
    _, key, digest, signature = signed
    assert verify(TC26_512_A, key, digest, signature, number=number)
    assert not verify(TC26_512_A, key, digest, _with(signature, **{field: value}), number=number)


def test_r_plus_q_is_not_r() -> None:
    """A signature whose r is replaced by r + q (same residue) must not pass: r is compared, not r mod q.
    Checked on the 256-bit curve, where q < 2^255 leaves room for r + q in 32 bytes."""
    curve = TC26_256_A
    d = generate_private_key(curve)
    digest = os.urandom(32)
    signature = sign(curve, d, digest)
    r = int.from_bytes(signature[:32], "little")
    assert not verify(curve, public_key(curve, d), digest, (r + curve.q).to_bytes(32, "little") + signature[32:])


def test_a_signature_of_the_wrong_length_is_invalid(signed: tuple) -> None:
    _, key, digest, signature = signed
    assert not verify(TC26_512_A, key, digest, signature[:64])
    assert not verify(TC26_512_A, key, digest, signature + b"\x00")


def test_the_wrong_curve_refuses_the_key_or_the_signature(signed: tuple) -> None:
    _, key, digest, signature = signed
    with pytest.raises(InvalidKey):  # a 512-bit key is not a point of another 512-bit curve
        verify(curve_for_oid("1.2.643.7.1.2.1.2.2"), key, digest, signature)
    with pytest.raises(InvalidKey, match="64 bytes"):
        verify(TC26_256_A, key, digest[:32], signature[:64])


def test_a_digest_of_the_wrong_size_is_a_caller_error(signed: tuple) -> None:
    _, key, digest, signature = signed
    with pytest.raises(ValueError, match="64-byte Streebog digest"):
        verify(TC26_512_A, key, digest[:32], signature)


def test_a_point_off_the_curve_is_not_a_key(signed: tuple, number: Number) -> None:
    _, key, digest, signature = signed
    bad = key[:64] + bytes([key[64] ^ 1]) + key[65:]
    with pytest.raises(InvalidKey, match="not a point"):
        verify(TC26_512_A, bad, digest, signature, number=number)
    with pytest.raises(InvalidKey, match="not a point"):  # a coordinate >= p
        verify(TC26_512_A, (TC26_512_A.p + 1).to_bytes(64, "little") + key[64:], digest, signature, number=number)


def test_a_point_outside_the_prime_order_subgroup_is_not_a_key(number: Number) -> None:
    """TC26 256 paramSetA has cofactor 4: a point on the curve need not be of order q."""
    curve = TC26_256_A
    arith = Arithmetic(curve, int)
    rng = random.Random(4)
    while True:  # p = 3 (mod 4): a square root is a power
        x = rng.randrange(curve.p)
        rhs = (x ** 3 + curve.a * x + curve.b) % curve.p
        y = pow(rhs, (curve.p + 1) // 4, curve.p)
        if y * y % curve.p == rhs and arith.multiply(curve.q, x, y) is not None:
            break
    key = x.to_bytes(32, "little") + y.to_bytes(32, "little")
    with pytest.raises(InvalidKey, match="subgroup"):
        verify(curve, key, bytes(32), bytes(64), number=number)


def test_private_keys_outside_1_to_q_minus_1_are_refused() -> None:
    for d in (0, TC26_512_A.q, -1):
        with pytest.raises(InvalidKey):
            sign(TC26_512_A, d, bytes(64))
        with pytest.raises(InvalidKey):
            public_key(TC26_512_A, d)
