"""`core.redact`: what the message log keeps of a secret is `***`, whatever characters the secret has and
however the message carries it (markup, or XML escaped inside a string value)."""

from __future__ import annotations

import time
from xml.sax.saxutils import escape

from hypothesis import given, settings
from hypothesis import strategies as st

from core.redact import has_secret, redact


def test_a_shep_password_as_markup_and_escaped_inside_a_string_value() -> None:
    body = (b"<sender><senderId>EGOV</senderId><password>p@ss</password></sender>"
            b"<data>&lt;sender&gt;&lt;password&gt;inner&lt;/password&gt;&lt;/sender&gt;</data>")
    assert redact(body) == (b"<sender><senderId>EGOV</senderId><password>***</password></sender>"
                            b"<data>&lt;sender&gt;&lt;password&gt;***&lt;/password&gt;&lt;/sender&gt;</data>")


def test_a_password_holding_xml_special_characters_is_masked_whole() -> None:
    # As markup, "<" and "&" in the password are &lt; and &amp;; escaped once more inside a string value,
    # &amp;lt; and &amp;amp;. Neither may end the match early and leave the password's tail behind.
    assert redact(b"<password>a&amp;b&lt;c&gt;d</password>") == b"<password>***</password>"
    assert redact(b"&lt;password&gt;a&amp;amp;b&amp;lt;c&lt;/password&gt;") == b"&lt;password&gt;***&lt;/password&gt;"


def test_a_ws_security_password_with_a_prefix_and_attributes() -> None:
    body = (b'<wsse:UsernameToken><wsse:Username>u</wsse:Username><wsse:Password Type="http://docs.oasis-open.org'
            b'/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">s3cr3t</wsse:Password>')
    assert b"s3cr3t" not in redact(body) and b">***</wsse:Password>" in redact(body)


def test_bearer_tokens_and_session_cookies() -> None:
    assert redact(b"Authorization: Bearer abc.DEF-123~_+/==") == b"Authorization: Bearer ***"
    assert redact(b"cookie: licgate_session=eyJ0.x-y; other=1") == b"cookie: licgate_session=***; other=1"


def test_what_carries_no_secret_is_returned_as_it_is() -> None:
    body = b"<a><passwordHint>x</passwordHint><password></password>no token here</a>"
    assert redact(body) == body and not has_secret(body)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_any_password_in_either_form_leaves_nothing_of_itself(password: str) -> None:
    markup = escape(password)
    body = f"<s><senderId>X</senderId><password>{markup}</password></s><d>&lt;password&gt;{escape(markup)}" \
           f"&lt;/password&gt;</d>".encode()
    masked = redact(body)
    assert masked == b"<s><senderId>X</senderId><password>***</password></s><d>&lt;password&gt;***&lt;/password&gt;</d>"


def test_a_password_read_through_cdata_comments_or_an_unescaped_gt_is_masked_too() -> None:
    # The intake reads all of these as the password "secret": the log must not keep any of them.
    assert redact(b"<password><![CDATA[secret]]></password>") == b"<password>***</password>"
    assert redact(b"<password>sec<!--x-->ret</password>") == b"<password>***</password>"
    assert redact(b"<password>sec<?pi x?>ret</password>") == b"<password>***</password>"
    assert redact(b"&lt;password>secret&lt;/password>") == b"&lt;password>***&lt;/password>"


def _seconds(body: bytes) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        redact(body)
        best = min(best, time.perf_counter() - started)
    return best


def test_a_hostile_body_costs_time_linear_in_its_size() -> None:
    # Redaction runs on every inbound body before anything is authenticated, holding the GIL: a pattern that
    # scans on to the end from each unclosed candidate is quadratic (a 78 KB body once froze the process for
    # seconds). Four times the body may cost about four times the time, not sixteen.
    for unit in (b"&lt;password a", b"&lt;password&gt;x", b"<password><![CDATA[", b"<password ", b"<Password>x<!--"):
        small, large = _seconds(unit * 20_000), _seconds(unit * 80_000)
        assert large < 10 * small + 0.01, (unit, small, large)
