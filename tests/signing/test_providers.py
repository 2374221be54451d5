"""Choosing crypto providers: by configuration (`[trust] crypto_providers`) and by entry point; the GOST
provider needs the `gost` extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from core.clock import Clock
from signing import providers
from signing.providers import GOST2015_512_SIGNATURE, ProviderUnavailable, build_registry
from signing.trust import TrustConfig
from signing.verifier import build_verifier

ROOT = Path(__file__).resolve().parents[2]


def test_by_default_every_installed_provider_is_used() -> None:
    registry = build_registry(None)
    assert registry.names == ("cryptography", "gost")
    assert registry.signature_provider(GOST2015_512_SIGNATURE).name == "gost"


def test_an_empty_list_is_rsa_and_ecdsa_only() -> None:
    registry = build_registry(())
    assert registry.names == ("cryptography",)
    with pytest.raises(Exception, match="licgate\\[gost\\]"):
        registry.signature_provider(GOST2015_512_SIGNATURE)


def test_an_unknown_provider_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown crypto provider 'nope'.*gost"):
        build_registry(("nope",))


def test_the_verifier_takes_its_registry_from_the_trust_configuration(pki) -> None:  # noqa: ANN001
    with_gost = build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="off"), Clock())
    without = build_verifier(TrustConfig(ca_dir=pki.ca_dir, revocation="off", crypto_providers=()), Clock())
    assert "gost" in with_gost.registry.names and with_gost.trust.registry is with_gost.registry
    assert without.registry.names == ("cryptography",)


class _FakeProvider:
    name = "fake"
    signature_methods = frozenset({"urn:test:fake-signature"})
    digest_methods = frozenset()

    def digest(self, method: str, data: bytes) -> bytes:
        raise AssertionError("not used")

    def verify(self, method, certificate, signature, data) -> bool:  # noqa: ANN001
        return False


def fake_provider() -> _FakeProvider:
    return _FakeProvider()


def unavailable_provider() -> _FakeProvider:
    raise ProviderUnavailable("needs the `fake` extra")


def test_a_provider_of_another_package_is_found_by_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [metadata.EntryPoint("fake", f"{__name__}:fake_provider", providers.ENTRY_POINT_GROUP),
               metadata.EntryPoint("broken", f"{__name__}:unavailable_provider", providers.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(providers.metadata, "entry_points", lambda group: entries if
                        group == providers.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(providers, "_registries", {})
    registry = build_registry(("fake",))
    assert registry.signature_provider("urn:test:fake-signature").name == "fake"
    assert build_registry(None).names == ("cryptography", "gost", "fake")  # the unavailable one is left out
    with pytest.raises(ValueError, match="'broken' is not available: needs the `fake` extra"):
        build_registry(("broken",))
    assert providers.available_providers()["broken"] == "needs the `fake` extra"


def test_without_the_gost_extra_gost_stays_algorithm_unsupported(pki) -> None:  # noqa: ANN001
    """gmpy2 hidden from a fresh interpreter: no GOST provider by default, a clear error when asked for."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["gmpy2"] = None  # as if the extra were not installed
        from core.clock import Clock
        from core.errors import AlgorithmUnsupported
        from signing.providers import build_registry, GOST2015_512_SIGNATURE
        from signing.trust import TrustConfig
        from signing.verifier import build_verifier
        assert build_registry(None).names == ("cryptography",), build_registry(None).names
        try:
            build_registry(("gost",))
        except ValueError as exc:
            print("named:", exc)
        verifier = build_verifier(TrustConfig(ca_dir={str(pki.ca_dir)!r}, revocation="off"), Clock())
        try:
            verifier.registry.signature_provider(GOST2015_512_SIGNATURE)
        except AlgorithmUnsupported as exc:
            print("verify:", exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "named: crypto provider 'gost' is not available: the `gost` extra is not installed" in done.stdout
    assert "verify: ALGORITHM_UNSUPPORTED" in done.stdout and "licgate[gost]" in done.stdout
