"""Streebog, the GOST R 34.11-2012 hash function (also GOST 34.11-2015, RFC 6986), 256 and 512 bits.

The interface is hashlib's: `Streebog(512, data)` or `Streebog(256)`, then `update`, `digest`, `hexdigest`,
`copy`; `hash_streebog(size, data)` hashes in one call. `new_streebog` and `hash_streebog` use a native
Streebog instead when there is one: OpenSSL's when the process has OpenSSL's GOST provider active (see
`_openssl`), else GNU Nettle's (libnettle 3.6 and later, a dependency of GnuTLS present on Debian and
Ubuntu systems, called through ctypes: see `_nettle`), each used only when it reproduces the pure code's
digest of the standard's example M1.

Byte order. The standard writes vectors as numbers, most significant digit first. Bytes here are those
numbers little-endian: the message bytes b0 b1 ... are the standard's number with b0 as its least
significant byte, and a digest is its number little-endian. This is the order of RFC 6986's examples
reversed, and the one KalkanCrypt's DigestValue, OpenSSL's gost engine and the `gostcrypto` package use.
So the standard's example M1 is b"012345678901234567890123456789012345678901234567890123456789012".

Speed. The 512-bit state is one Python int. L∘P∘S (the round function) is eight tables of 256 64-bit
words, one per byte position: output word i is the XOR of table k at byte i of input word k, so a round
costs 64 lookups on a tuple of the state's bytes. That is about 90 microseconds a 64-byte block in
CPython 3.11, 7 to 11 ms for 5 KB; it is the floor of pure Python here (see benchmarks/gost.py: a
16-bit-index variant is slower, its 10 MB of tables missing the caches; so is a map()-based one).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import struct
from collections.abc import Callable
from typing import Protocol

__all__ = ["Hasher", "Streebog", "new_streebog", "hash_streebog", "native_streebog", "streebog_implementation"]


class Hasher(Protocol):
    """What `new_streebog` returns: hashlib's interface."""

    digest_size: int

    def update(self, data: bytes, /) -> None: ...

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...

    def copy(self) -> Hasher: ...

# The substitution pi (the same table as Kuznyechik's, GOST R 34.12-2015).
_PI = bytes.fromhex(
    "fceedd11cf6e3116fbc4fada23c5044de977f0db932e99ba1736f1bb14cd5fc1f918655ae25cef21811c3c428b018e4f0584"
    "02aee36a8fa0060bed987fd4d31feb342c51eac848abf22a68a2fd3aceccb5700e56080c7612bf7213479cb75d8715a196"
    "29107b9ac7f391786f9d9eb2b13275193dff358a7e6d54c680c3bd0d57dff524a93ea843c9d779d6f67c22b903e00fecde"
    "7a94b0bcdce828504e330a4aa79760731e0062441ab83882649f2641ad454692275e552f8ca3a57d69d5953b0758b34086"
    "ac1df730376be488d9e789e11b83494c3ff8fe8d53aa90cad88561207167a42d2b095bcb9b25d0bee56c5259a674d2e6f4"
    "b4c0d166afc2394b63b6"
)

# The linear map l: bit 63 - i of a 64-bit word selects row i.
_A = (
    0x8E20FAA72BA0B470, 0x47107DDD9B505A38, 0xAD08B0E0C3282D1C, 0xD8045870EF14980E,
    0x6C022C38F90A4C07, 0x3601161CF205268D, 0x1B8E0B0E798C13C8, 0x83478B07B2468764,
    0xA011D380818E8F40, 0x5086E740CE47C920, 0x2843FD2067ADEA10, 0x14AFF010BDD87508,
    0x0AD97808D06CB404, 0x05E23C0468365A02, 0x8C711E02341B2D01, 0x46B60F011A83988E,
    0x90DAB52A387AE76F, 0x486DD4151C3DFDB9, 0x24B86A840E90F0D2, 0x125C354207487869,
    0x092E94218D243CBA, 0x8A174A9EC8121E5D, 0x4585254F64090FA0, 0xACCC9CA9328A8950,
    0x9D4DF05D5F661451, 0xC0A878A0A1330AA6, 0x60543C50DE970553, 0x302A1E286FC58CA7,
    0x18150F14B9EC46DD, 0x0C84890AD27623E0, 0x0642CA05693B9F70, 0x0321658CBA93C138,
    0x86275DF09CE8AAA8, 0x439DA0784E745554, 0xAFC0503C273AA42A, 0xD960281E9D1D5215,
    0xE230140FC0802984, 0x71180A8960409A42, 0xB60C05CA30204D21, 0x5B068C651810A89E,
    0x456C34887A3805B9, 0xAC361A443D1C8CD2, 0x561B0D22900E4669, 0x2B838811480723BA,
    0x9BCF4486248D9F5D, 0xC3E9224312C8C1A0, 0xEFFA11AF0964EE50, 0xF97D86D98A327728,
    0xE4FA2054A80B329C, 0x727D102A548B194E, 0x39B008152ACB8227, 0x9258048415EB419D,
    0x492C024284FBAEC0, 0xAA16012142F35760, 0x550B8E9E21F7A530, 0xA48B474F9EF5DC18,
    0x70A6A56E2440598E, 0x3853DC371220A247, 0x1CA76E95091051AD, 0x0EDD37C48A08A6D8,
    0x07E095624504536C, 0x8D70C431AC02A736, 0xC83862965601DD1B, 0x641C314B2B8EE083,
)

# The twelve round constants of the key schedule, as the standard prints them (most significant first).
_C = tuple(int(c, 16) for c in (
    "b1085bda1ecadae9ebcb2f81c0657c1f2f6a76432e45d016714eb88d7585c4fc"
    "4b7ce09192676901a2422a08a460d31505767436cc744d23dd806559f2a64507",
    "6fa3b58aa99d2f1a4fe39d460f70b5d7f3feea720a232b9861d55e0f16b50131"
    "9ab5176b12d699585cb561c2db0aa7ca55dda21bd7cbcd56e679047021b19bb7",
    "f574dcac2bce2fc70a39fc286a3d843506f15e5f529c1f8bf2ea7514b1297b7b"
    "d3e20fe490359eb1c1c93a376062db09c2b6f443867adb31991e96f50aba0ab2",
    "ef1fdfb3e81566d2f948e1a05d71e4dd488e857e335c3c7d9d721cad685e353f"
    "a9d72c82ed03d675d8b71333935203be3453eaa193e837f1220cbebc84e3d12e",
    "4bea6bacad4747999a3f410c6ca923637f151c1f1686104a359e35d7800fffbd"
    "bfcd1747253af5a3dfff00b723271a167a56a27ea9ea63f5601758fd7c6cfe57",
    "ae4faeae1d3ad3d96fa4c33b7a3039c02d66c4f95142a46c187f9ab49af08ec6"
    "cffaa6b71c9ab7b40af21f66c2bec6b6bf71c57236904f35fa68407a46647d6e",
    "f4c70e16eeaac5ec51ac86febf240954399ec6c7e6bf87c9d3473e33197a93c9"
    "0992abc52d822c3706476983284a05043517454ca23c4af38886564d3a14d493",
    "9b1f5b424d93c9a703e7aa020c6e41414eb7f8719c36de1e89b4443b4ddbc49a"
    "f4892bcb929b069069d18d2bd1a5c42f36acc2355951a8d9a47f0dd4bf02e71e",
    "378f5a541631229b944c9ad8ec165fde3a7d3a1b258942243cd955b7e00d0984"
    "800a440bdbb2ceb17b2b8a9aa6079c540e38dc92cb1f2a607261445183235adb",
    "abbedea680056f52382ae548b2e4f3f38941e71cff8a78db1fffe18a1b336103"
    "9fe76702af69334b7a1e6c303b7652f43698fad1153bb6c374b4c7fb98459ced",
    "7bcd9ed0efc889fb3002c6cd635afe94d8fa6bbbebab07612001802114846679"
    "8a1d71efea48b9caefbacd1d7d476e98dea2594ac06fd85d6bcaa4cd81f32d1b",
    "378ee767f11631bad21380b00449b17acda43c32bcdf1d77f82012d430219f9b"
    "5d80ef9d1891cc86e71da4aa88e12852faf417d5d9b21b9948bc924af11bd720",
))

_MASK512 = (1 << 512) - 1
_BLOCK = 64


def _l64(word: int) -> int:
    """The linear map l on one 64-bit word, bit by bit (used only to build the tables)."""
    out = 0
    for i in range(64):
        if word >> (63 - i) & 1:
            out ^= _A[i]
    return out


def _tables() -> tuple[list[int], ...]:
    """Table k maps a byte v to l(pi(v) placed at byte k): L∘P∘S is then 64 lookups (module docstring)."""
    return tuple([_l64(_PI[v] << (8 * k)) for v in range(256)] for k in range(8))


_T = _tables()
_bytes64 = struct.Struct("<64B").unpack
_words8 = struct.Struct("<8Q").pack


def _lps(x: int, t0: list[int] = _T[0], t1: list[int] = _T[1], t2: list[int] = _T[2], t3: list[int] = _T[3],
         t4: list[int] = _T[4], t5: list[int] = _T[5], t6: list[int] = _T[6], t7: list[int] = _T[7],
         unpack=_bytes64, pack=_words8, from_bytes=int.from_bytes) -> int:
    """L(P(S(x))) for a 512-bit state. Written out (no loop) because this is where all the time goes."""
    b = unpack(x.to_bytes(64, "little"))
    return from_bytes(pack(
        t0[b[0]] ^ t1[b[8]] ^ t2[b[16]] ^ t3[b[24]] ^ t4[b[32]] ^ t5[b[40]] ^ t6[b[48]] ^ t7[b[56]],
        t0[b[1]] ^ t1[b[9]] ^ t2[b[17]] ^ t3[b[25]] ^ t4[b[33]] ^ t5[b[41]] ^ t6[b[49]] ^ t7[b[57]],
        t0[b[2]] ^ t1[b[10]] ^ t2[b[18]] ^ t3[b[26]] ^ t4[b[34]] ^ t5[b[42]] ^ t6[b[50]] ^ t7[b[58]],
        t0[b[3]] ^ t1[b[11]] ^ t2[b[19]] ^ t3[b[27]] ^ t4[b[35]] ^ t5[b[43]] ^ t6[b[51]] ^ t7[b[59]],
        t0[b[4]] ^ t1[b[12]] ^ t2[b[20]] ^ t3[b[28]] ^ t4[b[36]] ^ t5[b[44]] ^ t6[b[52]] ^ t7[b[60]],
        t0[b[5]] ^ t1[b[13]] ^ t2[b[21]] ^ t3[b[29]] ^ t4[b[37]] ^ t5[b[45]] ^ t6[b[53]] ^ t7[b[61]],
        t0[b[6]] ^ t1[b[14]] ^ t2[b[22]] ^ t3[b[30]] ^ t4[b[38]] ^ t5[b[46]] ^ t6[b[54]] ^ t7[b[62]],
        t0[b[7]] ^ t1[b[15]] ^ t2[b[23]] ^ t3[b[31]] ^ t4[b[39]] ^ t5[b[47]] ^ t6[b[55]] ^ t7[b[63]],
    ), "little")


def _compress(h: int, n: int, m: int, lps=_lps, constants: tuple[int, ...] = _C) -> int:
    """g_N(h, m) = E(LPS(h ^ N), m) ^ h ^ m, E being twelve rounds with the key schedule interleaved."""
    k = lps(h ^ n)
    state = m
    for c in constants:
        state = lps(state ^ k)
        k = lps(k ^ c)
    return state ^ k ^ h ^ m


class Streebog:
    """A running Streebog hash (hashlib's interface). `size` is 512 or 256 (bits of the digest)."""

    block_size = _BLOCK
    __slots__ = ("digest_size", "name", "_h", "_n", "_sigma", "_tail")

    def __init__(self, size: int = 512, data: bytes = b"") -> None:
        if size not in (256, 512):
            raise ValueError(f"Streebog has 256- and 512-bit digests, not {size}")
        self.digest_size = size // 8
        self.name = f"streebog{size}"
        # The 256-bit variant starts from the vector of bytes 0x01 (the standard's IV).
        self._h = int.from_bytes(b"\x01" * 64, "little") if size == 256 else 0
        self._n = 0
        self._sigma = 0
        self._tail = b""
        if data:
            self.update(data)

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        """Feed more bytes; a full 64-byte block is compressed at once (even a final one, as the standard
        processes every full block in its stage 2)."""
        view = memoryview(data).cast("B")
        if self._tail:
            need = _BLOCK - len(self._tail)
            if len(view) < need:
                self._tail += bytes(view)
                return
            self._block(self._tail + bytes(view[:need]))
            view = view[need:]
            self._tail = b""
        full = len(view) - len(view) % _BLOCK
        h, n, sigma = self._h, self._n, self._sigma
        from_bytes, compress = int.from_bytes, _compress
        for start in range(0, full, _BLOCK):
            m = from_bytes(view[start:start + _BLOCK], "little")
            h = compress(h, n, m)
            n = (n + 512) & _MASK512
            sigma = (sigma + m) & _MASK512
        self._h, self._n, self._sigma = h, n, sigma
        self._tail = bytes(view[full:])

    def _block(self, block: bytes) -> None:
        m = int.from_bytes(block, "little")
        self._h = _compress(self._h, self._n, m)
        self._n = (self._n + 512) & _MASK512
        self._sigma = (self._sigma + m) & _MASK512

    def digest(self) -> bytes:
        """The digest of everything fed so far (the object stays usable)."""
        tail = self._tail
        # Padding: the tail, one 0x01 byte, zeros (the standard's 0...01 || M, little-endian).
        m = int.from_bytes(tail + b"\x01", "little")
        h = _compress(self._h, self._n, m)
        n = (self._n + 8 * len(tail)) & _MASK512
        sigma = (self._sigma + m) & _MASK512
        h = _compress(h, 0, n)
        h = _compress(h, 0, sigma)
        out = h.to_bytes(64, "little")
        return out[32:] if self.digest_size == 32 else out

    def hexdigest(self) -> str:
        return self.digest().hex()

    def copy(self) -> Streebog:
        twin = Streebog.__new__(Streebog)
        twin.digest_size, twin.name = self.digest_size, self.name
        twin._h, twin._n, twin._sigma, twin._tail = self._h, self._n, self._sigma, self._tail
        return twin


def _openssl(size: int) -> Callable[[bytes], Hasher] | None:
    """hashlib's Streebog when OpenSSL has the GOST provider loaded (Debian's libengine-gost-openssl, made
    active by an OPENSSL_CONF that activates `gostprov`): about 150 times faster than pure Python. Used only
    if it reproduces the standard's example M1."""
    name = f"md_gost12_{size}"
    try:
        digest = hashlib.new(name, _M1).digest()
    except ValueError:  # the usual case: OpenSSL without the GOST provider
        return None
    if digest != Streebog(size, _M1).digest():
        return None
    return functools.partial(hashlib.new, name)


class _NettleHash(ctypes.Structure):
    """Nettle's `struct nettle_hash` (nettle-meta.h)."""

    _fields_ = [("name", ctypes.c_char_p), ("context_size", ctypes.c_uint), ("digest_size", ctypes.c_uint),
                ("block_size", ctypes.c_uint), ("init", ctypes.c_void_p), ("update", ctypes.c_void_p),
                ("digest", ctypes.c_void_p)]


_INIT = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_UPDATE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
_DIGEST = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


class NettleStreebog:
    """Streebog by GNU Nettle (through ctypes, which lets go of the interpreter lock during each call)."""

    def __init__(self, meta: _NettleHash, size: int, data: bytes = b"", _context: ctypes.Array | None = None) -> None:
        self._meta = meta
        self.digest_size = size // 8
        self.name = f"streebog{size}"
        self._init, self._update, self._digest = _INIT(meta.init), _UPDATE(meta.update), _DIGEST(meta.digest)
        if _context is None:
            _context = ctypes.create_string_buffer(meta.context_size)
            self._init(_context)
        self._context = _context
        if data:
            self.update(data)

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        data = bytes(data)
        self._update(self._context, len(data), data)

    def digest(self) -> bytes:
        # Nettle's digest resets its context: it is taken from a copy, so this hash can go on (hashlib's way).
        context = ctypes.create_string_buffer(self._context.raw, self._meta.context_size)
        out = ctypes.create_string_buffer(self.digest_size)
        self._digest(context, self.digest_size, out)
        return out.raw

    def hexdigest(self) -> str:
        return self.digest().hex()

    def copy(self) -> NettleStreebog:
        context = ctypes.create_string_buffer(self._context.raw, self._meta.context_size)
        return NettleStreebog(self._meta, self.digest_size * 8, _context=context)


def _nettle(size: int) -> Callable[[bytes], Hasher] | None:
    """GNU Nettle's Streebog (libnettle >= 3.6), when the library is there and agrees on M1: about 100 times
    faster than pure Python."""
    try:
        name = ctypes.util.find_library("nettle")
        if name is None:
            return None
        meta = _NettleHash.in_dll(ctypes.CDLL(name), f"nettle_streebog{size}")
        if meta.digest_size != size // 8 or meta.block_size != 64 or not meta.context_size:
            return None
        if NettleStreebog(meta, size, _M1).digest() != Streebog(size, _M1).digest():
            return None
    except (OSError, ValueError, AttributeError):  # no libnettle, or one without Streebog
        return None
    return functools.partial(NettleStreebog, meta, size)


_M1 = b"012345678901234567890123456789012345678901234567890123456789012"
_IMPLEMENTATIONS = {size: (("openssl", _openssl(size)), ("nettle", _nettle(size))) for size in (256, 512)}
_NATIVE = {size: next((make for _, make in found if make is not None), None)
           for size, found in _IMPLEMENTATIONS.items()}


def streebog_implementation() -> str:
    """Which Streebog `new_streebog` hands out: "openssl", "nettle" or "python"."""
    return next((name for name, make in _IMPLEMENTATIONS[512] if make is not None), "python")


def native_streebog() -> bool:
    """Whether `new_streebog` hands out a native implementation (OpenSSL's or Nettle's), else `Streebog`."""
    return _NATIVE[512] is not None


def new_streebog(size: int = 512, data: bytes | bytearray | memoryview = b"") -> Hasher:
    """A running Streebog-`size` hash (hashlib's interface): OpenSSL's when it has the GOST provider, else
    Nettle's when libnettle has Streebog, else `Streebog`. All give the same bytes."""
    native = _NATIVE.get(size)
    if native is None:
        return Streebog(size, data)
    return native(bytes(data))


def hash_streebog(size: int, data: bytes | bytearray | memoryview) -> bytes:
    """The Streebog-`size` digest (size 256 or 512) of `data`, in one call."""
    return new_streebog(size, data).digest()
