"""GOST R 34.10-2012 (= GOST 34.10-2015) signatures: verify, sign, key generation, in NCA's byte order.

Byte order (the package docstring says how it was established): a public key is X then Y, a signature is
r then s, each little-endian and `curve.size` bytes long; a digest is read as a little-endian integer.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from signing.gost.arith import Affine, Arithmetic, default_number
from signing.gost.curves import Curve

__all__ = ["InvalidKey", "verify", "sign", "generate_private_key", "public_key", "check_public_key"]


class InvalidKey(ValueError):
    """A public or private key that is malformed, off the curve or outside the prime-order subgroup."""


_engines: dict[tuple[str, object], Arithmetic] = {}
_engines_lock = threading.Lock()


def _engine(curve: Curve, number: Callable[[int], int] | None) -> Arithmetic:
    number = number or default_number()
    key = (curve.name, number)
    engine = _engines.get(key)
    if engine is None:
        with _engines_lock:
            engine = _engines.setdefault(key, Arithmetic(curve, number))
    return engine


@dataclass(frozen=True)
class _PreparedKey:
    """A decoded, validated public key with its table of odd multiples."""

    point: Affine
    table: list[Affine]


class _KeyCache:
    """Decoded public keys by (curve, number type, key bytes), least recently used evicted first.

    Decoding costs a subgroup check on cofactor-4 curves and the key's precomputed table everywhere, about
    as much as one verification; CA keys and repeat signers are then checked at the cost of the rest."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._keys: OrderedDict[tuple[str, object, bytes], _PreparedKey] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, engine: Arithmetic, public_key: bytes) -> _PreparedKey:
        key = (engine.curve.name, engine.number, public_key)
        with self._lock:
            prepared = self._keys.get(key)
            if prepared is not None:
                self._keys.move_to_end(key)
                return prepared
        prepared = _prepare(engine, public_key)
        with self._lock:
            self._keys[key] = prepared
            if len(self._keys) > self._size:
                self._keys.popitem(last=False)
        return prepared


_key_cache = _KeyCache()


def _prepare(engine: Arithmetic, public_key: bytes) -> _PreparedKey:
    curve = engine.curve
    n = curve.size
    if len(public_key) != 2 * n:
        raise InvalidKey(f"a {curve.bits}-bit GOST public key has {2 * n} bytes, not {len(public_key)}")
    x = int.from_bytes(public_key[:n], "little")
    y = int.from_bytes(public_key[n:], "little")
    if not engine.on_curve(x, y):
        raise InvalidKey(f"the public key is not a point of {curve.name}")
    if curve.cofactor != 1 and engine.multiply(curve.q, x, y) is not None:
        raise InvalidKey(f"the public key is not in the prime-order subgroup of {curve.name}")
    point = (engine.number(x), engine.number(y))
    return _PreparedKey(point, engine.odd_multiples(x, y, 1 << (engine.q_window - 2)))


def check_public_key(curve: Curve, public_key: bytes) -> None:
    """Raise InvalidKey unless `public_key` (X || Y, little-endian) is a valid key on `curve`."""
    _key_cache.get(_engine(curve, None), bytes(public_key))


def _digest_scalar(curve: Curve, digest: bytes) -> int:
    if len(digest) != curve.size:
        raise ValueError(f"a {curve.bits}-bit GOST signature signs a {curve.size}-byte Streebog digest, "
                         f"not {len(digest)} bytes")
    return int.from_bytes(digest, "little") % curve.q or 1


def verify(curve: Curve, public_key: bytes, digest: bytes, signature: bytes, *,
           number: Callable[[int], int] | None = None) -> bool:
    """Whether `signature` (r || s, little-endian) is a valid GOST R 34.10-2012 signature of `digest` (a
    Streebog digest of curve.size bytes, as `streebog()` returns it) by `public_key` (X || Y, little-endian).

    False for any wrong signature, including a malformed one (wrong length, r or s outside 1..q-1).
    Raises InvalidKey for a malformed public key and ValueError for a digest of the wrong size (both are
    the caller's inputs, not the signer's). `number` forces the big-number type (int or gmpy2.mpz); by
    default gmpy2.mpz when installed."""
    engine = _engine(curve, number)
    key = _key_cache.get(engine, bytes(public_key))
    e = _digest_scalar(curve, digest)
    n, q = curve.size, curve.q
    if len(signature) != 2 * n:
        return False
    r = int.from_bytes(signature[:n], "little")
    s = int.from_bytes(signature[n:], "little")
    if not (0 < r < q and 0 < s < q):
        return False
    v = pow(e, -1, q)
    point = engine.combined(s * v % q, (q - r) * v % q, key.table)
    return point is not None and int(point[0]) % q == r


def generate_private_key(curve: Curve) -> int:
    """A random private key d, 0 < d < q, from the operating system's CSPRNG."""
    return secrets.randbelow(curve.q - 1) + 1


def public_key(curve: Curve, private_key: int, *, number: Callable[[int], int] | None = None) -> bytes:
    """The public key d*G of `private_key` as X || Y, little-endian."""
    if not 0 < private_key < curve.q:
        raise InvalidKey("a GOST private key is an integer between 1 and q - 1")
    point = _engine(curve, number).combined(private_key, 0, None)
    if point is None:  # impossible for 0 < d < q; kept as a guard against a broken curve table
        raise InvalidKey("the private key gives the point at infinity")
    n = curve.size
    return int(point[0]).to_bytes(n, "little") + int(point[1]).to_bytes(n, "little")


def sign(curve: Curve, private_key: int, digest: bytes, *, k: int | None = None,
         number: Callable[[int], int] | None = None) -> bytes:
    """Sign a Streebog `digest` (curve.size bytes) with `private_key`; returns r || s, little-endian.

    k, the per-signature secret, is drawn from the operating system's CSPRNG; passing `k` is for the
    standard's test vectors only (a k used twice reveals the private key)."""
    if not 0 < private_key < curve.q:
        raise InvalidKey("a GOST private key is an integer between 1 and q - 1")
    engine = _engine(curve, number)
    e = _digest_scalar(curve, digest)
    q, n = curve.q, curve.size
    while True:
        nonce = k if k is not None else secrets.randbelow(q - 1) + 1
        point = engine.combined(nonce, 0, None)
        r = int(point[0]) % q if point is not None else 0
        s = (r * private_key + nonce * e) % q
        if r and s:
            return r.to_bytes(n, "little") + s.to_bytes(n, "little")
        if k is not None:
            raise ValueError("this k gives r = 0 or s = 0; choose another")
