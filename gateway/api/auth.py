"""Who is asking, for the operators' routes: an ops API bearer token (`[[operators]] token`) or a console
session cookie. A request that changes something on the strength of a cookie must also carry the session's
CSRF token (form field `csrf` or header `X-CSRF-Token`); a bearer token cannot be sent by another site's
page, so it needs none."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from core.errors import Forbidden, Unauthorized
from gateway.config import OperatorConfig
from gateway.services import services_of

SESSION_COOKIE = "licgate_session"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Caller:
    operator: OperatorConfig
    session_token: str | None  # set when the caller came with the console's cookie


def caller_of(request: Request) -> Caller | None:
    """The operator behind `request`, or None."""
    operators = services_of(request).operators
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        operator = operators.by_token(token.strip())
        return Caller(operator, None) if operator is not None else None
    cookie = request.cookies.get(SESSION_COOKIE, "")
    operator = operators.session(cookie) if cookie else None
    return Caller(operator, cookie) if operator is not None else None


async def operator(request: Request) -> Caller:
    """A dependency: any operator (viewer or admin); 401 otherwise. Unsafe methods by cookie need CSRF."""
    caller = caller_of(request)
    if caller is None:
        raise Unauthorized("an operator's bearer token or console session is required")
    if caller.session_token is not None and request.method not in _SAFE_METHODS:
        presented = request.headers.get(CSRF_HEADER, "")
        if not presented and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            presented = str((await request.form()).get("csrf", ""))
        if not services_of(request).operators.csrf_ok(caller.session_token, presented):
            raise Forbidden("the form's CSRF token is missing or wrong; reload the page")
    return caller


async def admin(request: Request) -> Caller:
    """A dependency: an admin; 401 without credentials, 403 for a viewer."""
    caller = await operator(request)
    if not caller.operator.is_admin:
        raise Forbidden(f"operator {caller.operator.name} is a viewer; this action needs an admin")
    return caller
