"""Point arithmetic on a GOST R 34.10 curve, built for verification speed.

- Jacobian coordinates (x = X/Z^2, y = Y/Z^3): no inversion until the end; doubling uses the a = -3 formula
  where the curve allows it (TC26 512 A and B, the CryptoPro sets).
- u1*G + u2*Q in one pass (Straus/Shamir interleaving): one chain of doublings shared by both scalars, each
  written in width-w NAF, adding precomputed affine odd multiples (mixed additions).
- The generator's table is fixed per curve and large (window 10: 256 odd multiples, built on first use), so
  G costs about bits/11 additions; a public key's table (window 5 or 6) is built once per decoded key and
  kept with it by the key cache in `signature.py`.

Numbers are Python ints, or gmpy2.mpz when gmpy2 is installed (the `gost` extra): a 512-bit signature
check takes about 3.5 ms with gmpy2 and 8.5 ms without on this project's machine (benchmarks/gost.py).
The code is the same for both; `Arithmetic(curve, int)` forces the pure-int path (tests run both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from signing.gost.curves import Curve

try:
    import gmpy2
except ImportError:  # the `gost` extra is not installed: pure Python ints
    gmpy2 = None

__all__ = ["Arithmetic", "default_number"]

G_WINDOW = 10


def default_number() -> Callable[[int], int]:
    """The big-number type used unless one is asked for: gmpy2.mpz when installed, else int."""
    return gmpy2.mpz if gmpy2 is not None else int


def _wnaf(k: int, width: int) -> list[int]:
    """Width-`width` NAF of k >= 0: digits zero or odd, |digit| < 2^(width-1), least significant first."""
    window = 1 << width
    half, mask = window >> 1, window - 1
    digits = [0] * (k.bit_length() + 1)
    i = 0
    while k:
        zeros = (k & -k).bit_length() - 1
        k >>= zeros
        i += zeros
        digit = k & mask
        if digit >= half:
            digit -= window
        digits[i] = digit
        k -= digit
    return digits


Jacobian = tuple[int, int, int]
Affine = tuple[int, int]


class Arithmetic:
    """The group law of one curve over one big-number type."""

    def __init__(self, curve: Curve, number: Callable[[int], int] | None = None) -> None:
        number = number or default_number()
        self.curve = curve
        self.number = number
        self.p = p = number(curve.p)
        self.a = number(curve.a % curve.p)
        self.b = number(curve.b)
        self.q = number(curve.q)
        self.q_window = 6 if curve.size == 64 else 5
        if gmpy2 is not None and number is gmpy2.mpz:
            self._invert: Callable[[int], int] = lambda v: gmpy2.invert(v, p)
        else:
            self._invert = lambda v: pow(v, -1, curve.p)
        self._double = self._double_a3 if (curve.a + 3) % curve.p == 0 else self._double_any
        self._g_table: list[Affine] | None = None

    # --- the group law -------------------------------------------------------------------------------

    def on_curve(self, x: int, y: int) -> bool:
        p = self.p
        return 0 <= x < p and 0 <= y < p and (y * y - (x * x + self.a) * x - self.b) % p == 0

    def _double_a3(self, X: int, Y: int, Z: int) -> Jacobian:
        """2P for a = -3 (3M + 5S, "dbl-2001-b")."""
        p = self.p
        delta = Z * Z % p
        gamma = Y * Y % p
        beta = X * gamma % p
        alpha = 3 * (X - delta) * (X + delta) % p
        X3 = (alpha * alpha - 8 * beta) % p
        Z3 = ((Y + Z) * (Y + Z) - gamma - delta) % p
        Y3 = (alpha * (4 * beta - X3) - 8 * (gamma * gamma % p)) % p
        return X3, Y3, Z3

    def _double_any(self, X: int, Y: int, Z: int) -> Jacobian:
        """2P for any a (1M + 8S + 1*a, "dbl-2007-bl")."""
        p = self.p
        XX = X * X % p
        YY = Y * Y % p
        YYYY = YY * YY % p
        ZZ = Z * Z % p
        S = 2 * ((X + YY) * (X + YY) - XX - YYYY) % p
        M = (3 * XX + self.a * (ZZ * ZZ % p)) % p
        T = (M * M - 2 * S) % p
        Y3 = (M * (S - T) - 8 * YYYY) % p
        Z3 = ((Y + Z) * (Y + Z) - YY - ZZ) % p
        return T, Y3, Z3

    def _add_mixed(self, X1: int, Y1: int, Z1: int, x2: int, y2: int) -> Jacobian:
        """P1 + P2 with P2 affine (7M + 4S, "madd-2007-bl"), handling infinity and P1 = +-P2."""
        if not Z1:
            return x2, y2, self.number(1)
        p = self.p
        Z1Z1 = Z1 * Z1 % p
        H = (x2 * Z1Z1 - X1) % p
        r = 2 * (y2 * Z1 % p * Z1Z1 - Y1) % p
        if not H:
            return self._double(x2, y2, self.number(1)) if not r else (self.number(1), self.number(1), 0)
        HH = H * H % p
        I4 = 4 * HH
        J = H * I4 % p
        V = X1 * I4 % p
        X3 = (r * r - J - 2 * V) % p
        Y3 = (r * (V - X3) - 2 * (Y1 * J % p)) % p
        Z3 = ((Z1 + H) * (Z1 + H) - Z1Z1 - HH) % p
        return X3, Y3, Z3

    def _to_affine(self, points: Sequence[Jacobian]) -> list[Affine]:
        """Many Jacobian points (none at infinity) to affine with one inversion (Montgomery's trick)."""
        p = self.p
        prefix = [self.number(1)]
        for _, _, Z in points:
            prefix.append(prefix[-1] * Z % p)
        inverse = self._invert(prefix[-1])
        out: list[Affine] = [(0, 0)] * len(points)
        for i in range(len(points) - 1, -1, -1):
            X, Y, Z = points[i]
            z_inv = inverse * prefix[i] % p
            inverse = inverse * Z % p
            zz = z_inv * z_inv % p
            out[i] = (X * zz % p, Y * zz % p * z_inv % p)
        return out

    def odd_multiples(self, x: int, y: int, count: int) -> list[Affine]:
        """P, 3P, 5P, ..., (2*count - 1)P in affine coordinates, for P = (x, y) of order > 2*count."""
        number = self.number
        x, y = number(x), number(y)
        (tx, ty), = self._to_affine([self._double(x, y, number(1))])
        points: list[Jacobian] = [(x, y, number(1))]
        for _ in range(count - 1):
            points.append(self._add_mixed(*points[-1], tx, ty))
        return self._to_affine(points)

    # --- scalar multiplication -----------------------------------------------------------------------

    @property
    def g_table(self) -> list[Affine]:
        if self._g_table is None:
            self._g_table = self.odd_multiples(self.curve.x, self.curve.y, 1 << (G_WINDOW - 2))
        return self._g_table

    def combined(self, u1: int, u2: int, q_table: Sequence[Affine] | None) -> Affine | None:
        """u1*G + u2*Q in affine coordinates (None for the point at infinity); `q_table` holds
        `odd_multiples(Q, 2^(q_window - 2))`, and may be None when u2 is 0."""
        p = self.p
        naf_g = _wnaf(int(u1), G_WINDOW)
        naf_q = _wnaf(int(u2), self.q_window) if u2 else []
        top = max(len(naf_g), len(naf_q))
        naf_g += [0] * (top - len(naf_g))
        naf_q += [0] * (top - len(naf_q))
        g_table = self.g_table
        double, add = self._double, self._add_mixed
        X, Y, Z = self.number(1), self.number(1), self.number(0)
        for i in range(top - 1, -1, -1):
            if Z:
                X, Y, Z = double(X, Y, Z)
            digit = naf_g[i]
            if digit:
                x, y = g_table[(digit if digit > 0 else -digit) >> 1]
                X, Y, Z = add(X, Y, Z, x, y if digit > 0 else p - y)
            digit = naf_q[i]
            if digit:
                x, y = q_table[(digit if digit > 0 else -digit) >> 1]
                X, Y, Z = add(X, Y, Z, x, y if digit > 0 else p - y)
        if not Z:
            return None
        z_inv = self._invert(Z)
        zz = z_inv * z_inv % p
        return X * zz % p, Y * zz % p * z_inv % p

    def multiply(self, k: int, x: int, y: int) -> Affine | None:
        """k*P for any point P = (x, y) on the curve (used for the subgroup check of a public key)."""
        k = int(k)
        if not k:
            return None
        number, p = self.number, self.p
        X, Y, Z = number(1), number(1), number(0)
        x, y = number(x), number(y)
        for bit in bin(k)[2:]:
            if Z:
                X, Y, Z = self._double(X, Y, Z)
            if bit == "1":
                X, Y, Z = self._add_mixed(X, Y, Z, x, y)
        if not Z:
            return None
        z_inv = self._invert(Z)
        zz = z_inv * z_inv % p
        return X * zz % p, Y * zz % p * z_inv % p
