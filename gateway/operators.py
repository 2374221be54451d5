"""The people who run the gateway: password hashes, console sessions, login lockouts, CSRF tokens, and the
message-log record of every admin action.

Passwords are kept only as scrypt hashes (`licgate operator hash-password` makes them): `scrypt$N$r$p$salt$hash`
with base64 salt and hash. A console session is a random token in an HttpOnly cookie; storage keeps only its
sha256, so a copy of the database opens no session. The CSRF token of a form is an HMAC of the session token,
so it needs no storage and is worthless without the cookie. Bearer tokens of the ops API are compared in
constant time against every operator's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.clock import Clock
from gateway import messagelog
from gateway.config import Config, OperatorConfig
from gateway.storage import MessageLogEntry, Storage

log = logging.getLogger("licgate.operators")

# scrypt at N=2^15, r=8: 32 MiB and about 0.1 s per hash, the cost OWASP suggests for interactive logins.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
# Compared against when the name is unknown, so that the answer's timing does not tell names apart.
_DUMMY_HASH = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def hash_password(password: str) -> str:
    """A new salted scrypt hash of `password`, in the form the configuration takes."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                            maxmem=_SCRYPT_MAXMEM, dklen=32)
    encoded = (base64.b64encode(salt).decode(), base64.b64encode(digest).decode())
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${encoded[0]}${encoded[1]}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches a hash made by `hash_password` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=_SCRYPT_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LoginRefused(Exception):
    """A refused login; `locked_until` is set when the operator is locked out."""

    def __init__(self, locked_until: datetime | None = None) -> None:
        super().__init__("locked out" if locked_until else "wrong name or password")
        self.locked_until = locked_until


@dataclass(frozen=True, slots=True)
class Session:
    token: str  # goes into the cookie; never stored or logged
    operator: OperatorConfig
    expires_at: datetime


class Operators:
    """Authentication and the record of operators' actions (one per gateway process)."""

    def __init__(self, config: Config, storage: Storage, clock: Clock) -> None:
        self.config = config
        self.storage = storage
        self.clock = clock
        self._console = config.console

    # -- credentials ----------------------------------------------------------------------------------

    def by_token(self, token: str) -> OperatorConfig | None:
        """The operator whose ops API bearer token this is (every token is compared, in constant time)."""
        found = None
        for operator in self.config.operators:
            if operator.token and hmac.compare_digest(operator.token.encode(), token.encode()):
                found = operator
        return found

    def login(self, name: str, password: str) -> Session:
        """A new session for a right name and password; LoginRefused otherwise, or while locked out."""
        now = self.clock.now()
        operator = self.config.operator(name)
        if operator is None:
            verify_password(password, _DUMMY_HASH)
            raise LoginRefused()
        locked = self.storage.login_locked_until(operator.name, now)
        if locked is not None:
            raise LoginRefused(locked)
        if not verify_password(password, operator.password_hash):
            until = self.storage.login_failed(operator.name, now, self._console.lockout_failures,
                                              self._console.lockout_seconds)
            if until is not None:
                log.warning("operator locked out after repeated failed logins",
                            extra={"operator": operator.name, "until": until.isoformat()})
            raise LoginRefused(until)
        self.storage.login_succeeded(operator.name)
        token = secrets.token_urlsafe(32)
        expires = now + timedelta(seconds=self._console.session_seconds)
        self.storage.create_session(_token_hash(token), operator.name, now, expires)
        self.record(operator, "login", {})
        return Session(token, operator, expires)

    def session(self, token: str) -> OperatorConfig | None:
        """The operator of a live session (None once it expired, was logged out, or the operator was removed
        from the configuration)."""
        if not token or len(token) > 200:
            return None
        name = self.storage.session_operator(_token_hash(token), self.clock.now())
        return self.config.operator(name) if name else None

    def logout(self, token: str) -> None:
        self.storage.delete_session(_token_hash(token))

    def csrf_token(self, session_token: str) -> str:
        """The token every form of this session carries."""
        return hmac.new(session_token.encode(), b"licgate-csrf", hashlib.sha256).hexdigest()

    def csrf_ok(self, session_token: str, presented: str) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf_token(session_token), presented)

    # -- the record of actions --------------------------------------------------------------------------

    def action_entry(self, operator: OperatorConfig, action: str, details: dict[str, object], *,
                     application_id: str | None = None) -> MessageLogEntry:
        """The message-log record of an operator's action: who, what, on what."""
        body = json.dumps({"operator": operator.name, "role": operator.role, "action": action, **details},
                          ensure_ascii=False, sort_keys=True).encode()
        return messagelog.entry("in", f"ops/{action}", body, f"{action.upper()} by {operator.name}",
                                self.clock.now(), sender_id=f"operator:{operator.name}", application_id=application_id)

    def record(self, operator: OperatorConfig, action: str, details: dict[str, object], *,
               application_id: str | None = None) -> None:
        """Log an action that changes nothing else (a login, a download) in a transaction of its own."""
        self.storage.log_messages([self.action_entry(operator, action, details, application_id=application_id)])
