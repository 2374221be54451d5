"""The operators' web console at `/console`: server-rendered pages (Jinja2), usable without JavaScript, in
Kazakh, Russian and English (the choice kept in a cookie).

A login starts a session (`gateway.operators`): its token in a cookie that is HttpOnly, SameSite=Strict and
Secure under https. Every form carries the session's CSRF token; the login form a token of its own, the same
in a cookie and in the form (no session exists yet to derive one from). Pages are the dashboard, the search of
applications and an application's page, the message log's search (envelope download for admins), and the dead
letters (retry for admins); the same data as /ops/v1. The dashboard's counters stay current by server-sent events
(`/console/events`, read by the vendored `static/console.js`); without JavaScript the page shows them as rendered.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError

from core.domain import Channel, Status
from core.errors import LicgateError
from gateway.api.auth import SESSION_COOKIE, Caller, caller_of
from gateway.api.console_texts import LANGUAGE_NAMES, LANGUAGES, duration, reason_text, status_text, text
from gateway.api.opsapi import (
    application_detail,
    audit_report,
    message_body,
    message_out,
    outbox_out,
    retry_all,
    retry_one,
    summary,
)
from gateway.operators import LoginRefused
from gateway.services import Services, services_of
from gateway.storage import ApplicationQuery, MessageQuery, StorageError

router = APIRouter(prefix="/console", include_in_schema=False)
LANG_COOKIE = "licgate_lang"
LOGIN_COOKIE = "licgate_login"  # the login form's own CSRF token (double submit)
_ENV = Environment(loader=PackageLoader("gateway.api", "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)
_FRAME_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
                  "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def install(app: FastAPI) -> None:
    app.mount("/console/static", StaticFiles(packages=[("gateway.api", "static")]), name="console-static")
    app.include_router(router)


def language(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE, "")
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "ru"


def _https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _safe_back(value: str) -> str:
    """Only a console page to return to (no open redirect to another site)."""
    return value if value.startswith("/console") and not value.startswith("//") and "\\" not in value else "/console"


def render(request: Request, template: str, *, page: str = "", caller: Caller | None = None, status: int = 200,
           **context: Any) -> HTMLResponse:
    services = services_of(request)
    lang = language(request)
    tz = services.calendar.timezone

    def age(since: datetime | None) -> str:
        return duration(services.figures.age_seconds(since), lang) if since is not None else text("never", lang)

    html = _ENV.get_template(template).render(
        lang=lang, t=lambda key: text(key, lang), status_text=lambda s: status_text(s, lang), age=age,
        reason=lambda code, params: reason_text(code, params, lang),
        languages=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES], root=request.scope.get("root_path", ""),
        back=_here(request), caller=caller, page=page, tz=tz,
        csrf=services.operators.csrf_token(caller.session_token) if caller and caller.session_token else "",
        **context)
    return HTMLResponse(html, status_code=status, headers=_FRAME_HEADERS)


def _login_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/console/login?next={quote(_here(request), safe='')}", status_code=303)


def _signed_in(request: Request) -> Caller | None:
    caller = caller_of(request)
    return caller if caller is not None and caller.session_token is not None else None


async def _form_caller(request: Request) -> tuple[Caller | None, Response | None]:
    """For a POST of a console form: the caller, or the answer to give instead (login page, 403)."""
    caller = _signed_in(request)
    if caller is None:
        return None, _login_redirect(request)
    form = await request.form()
    if not services_of(request).operators.csrf_ok(caller.session_token or "", str(form.get("csrf", ""))):
        return None, render(request, "dead.html", page="dead_letters", caller=caller, status=403, dead=[],
                            error=text("form_expired", language(request)))
    return caller, None


# -- language, login, logout ------------------------------------------------------------------------------------


@router.get("/lang")
def choose_language(request: Request, to: str = "ru", back: str = "/console") -> RedirectResponse:
    answer = RedirectResponse(_safe_back(back), status_code=303)
    if to in LANGUAGES:
        answer.set_cookie(LANG_COOKIE, to, max_age=365 * 86400, samesite="strict", secure=_https(request))
    return answer


@router.get("/login")
def login_page(request: Request, next: str = "/console") -> HTMLResponse:  # noqa: A002 - the usual name
    token = secrets.token_urlsafe(24)
    answer = render(request, "login.html", login_csrf=token, next=_safe_back(next), name="", error="")
    answer.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=_https(request), max_age=3600)
    return answer


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    lang = language(request)
    name, password = str(form.get("name", ""))[:64], str(form.get("password", ""))[:1024]
    next_page = _safe_back(str(form.get("next", "/console")))
    expected = request.cookies.get(LOGIN_COOKIE, "")
    presented = str(form.get("csrf", ""))
    token = secrets.token_urlsafe(24)

    def again(error: str, status: int) -> HTMLResponse:
        answer = render(request, "login.html", login_csrf=token, next=next_page, name=name, error=error, status=status)
        answer.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=_https(request), max_age=3600)
        return answer

    if not expected or not hmac.compare_digest(expected, presented):
        return again(text("form_expired", lang), 403)
    try:
        session = services_of(request).operators.login(name, password)
    except LoginRefused as exc:
        return again(text("locked_out" if exc.locked_until else "login_failed", lang), 401)
    answer = RedirectResponse(next_page, status_code=303)
    answer.set_cookie(SESSION_COOKIE, session.token, httponly=True, samesite="strict", secure=_https(request),
                      max_age=int(services_of(request).config.console.session_seconds), path="/")
    answer.delete_cookie(LOGIN_COOKIE)
    return answer


@router.post("/logout")
async def logout(request: Request) -> Response:
    caller, refused = await _form_caller(request)
    if caller is None:
        return refused  # type: ignore[return-value]
    services_of(request).operators.logout(caller.session_token or "")
    answer = RedirectResponse("/console/login", status_code=303)
    answer.delete_cookie(SESSION_COOKIE, path="/")
    return answer


# -- pages ---------------------------------------------------------------------------------------------------------


@router.get("")
def dashboard(request: Request) -> Response:
    caller = _signed_in(request)
    if caller is None:
        return _login_redirect(request)
    services: Services = services_of(request)
    breaches = [found for p in services.config.providers for found in services.workflow.breaches(p.bin, limit=20)]
    return render(request, "dashboard.html", page="dashboard", caller=caller, queues=services.figures.queues(),
                  outbox=services.figures.outbox(), delivery=services.figures.delivery_health(),
                  breaches=breaches[:20], trust=services.trust_status.report(), audit=audit_report(services))


EVENTS_SECONDS = 2.0  # how often an open dashboard's counters are looked at
EVENTS_KEEPALIVE_SECONDS = 15.0  # a comment line when nothing changed (proxies close silent connections)
EVENTS_LIFETIME_SECONDS = 300.0  # one stream's life: then the browser reconnects (`retry`), signed in again
EVENTS_PER_SESSION = 4  # open streams one session may hold (a dashboard in a few tabs)
_streams: dict[str, int] = {}  # session token -> its open streams (in this process)


def live_counters(services: Services) -> dict[str, Any]:
    """What the dashboard's live counters show (the data-* cells of dashboard.html)."""
    outbox = services.figures.outbox()
    return {"queues": {q.provider_bin: q.depth for q in services.figures.queues()},
            "outbox_pending": outbox.pending, "dead_letters": outbox.dead,
            "audit_records": audit_report(services).records}


@router.get("/events")
async def events(request: Request) -> Response:
    """Server-sent events for the dashboard: `counters` (JSON of `live_counters`) when they change. Ends when
    the session does (logout, expiry), after EVENTS_LIFETIME_SECONDS, when the gateway begins to stop, or when
    the database cannot be read (the browser tries again). Every database read runs off the event loop."""
    unavailable = {"Cache-Control": "no-store", "Retry-After": "5"}
    try:
        caller = await asyncio.to_thread(_signed_in, request)
    except StorageError:
        return PlainTextResponse("the database cannot be read\n", status_code=503, headers=unavailable)
    if caller is None or caller.session_token is None:
        return PlainTextResponse("sign in first\n", status_code=401, headers={"Cache-Control": "no-store"})
    session = caller.session_token
    services: Services = services_of(request)
    app = request.app

    def stopping() -> bool:
        return getattr(app, "stop_budget", lambda: None)() is not None

    async def stream() -> AsyncIterator[str]:
        # Counted where it runs, so that a stream never started is never counted, and each one that ran is
        # given back by `finally` (also when the client goes away and the task is cancelled).
        if _streams.get(session, 0) >= EVENTS_PER_SESSION:
            yield "retry: 60000\n\n: too many open streams for this session\n\n"
            return
        _streams[session] = _streams.get(session, 0) + 1
        try:
            yield "retry: 3000\n\n"
            started = said = time.monotonic()
            last: dict[str, Any] | None = None
            while time.monotonic() - started < EVENTS_LIFETIME_SECONDS and not stopping():
                try:
                    if await asyncio.to_thread(_signed_in, request) is None:
                        return
                    counters = await asyncio.to_thread(live_counters, services)
                except StorageError:
                    return
                now = time.monotonic()
                if counters != last:
                    yield f"event: counters\ndata: {json.dumps(counters, separators=(',', ':'))}\n\n"
                    last, said = counters, now
                elif now - said >= EVENTS_KEEPALIVE_SECONDS:
                    yield ": still here\n\n"
                    said = now
                await asyncio.sleep(EVENTS_SECONDS)
        finally:
            left = _streams.get(session, 1) - 1
            if left > 0:
                _streams[session] = left
            else:
                _streams.pop(session, None)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/applications")
def applications(request: Request) -> Response:
    caller = _signed_in(request)
    if caller is None:
        return _login_redirect(request)
    services = services_of(request)
    params = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
    results, error, query = None, "", None
    try:
        query = ApplicationQuery(
            registration_number=params.get("registration_number"), request_number=params.get("request_number"),
            iin=_digits(params.get("iin")), bin=_digits(params.get("bin")),
            status=Status(params["status"]) if "status" in params else None,
            channel=Channel(params["channel"]) if "channel" in params else None,
            overdue=params.get("overdue") in ("1", "true", "on"), limit=200)
    except (ValueError, ValidationError):
        error = text("nothing_found", language(request))
    if query is not None and params:
        results = [summary(services, a) for a in services.storage.search_applications(query, services.clock.now())]
    return render(request, "applications.html", page="applications", caller=caller, form=query or ApplicationQuery(),
                  results=results, error=error, statuses=list(Status), channels=list(Channel))


def _digits(value: str | None) -> str | None:
    if value is not None and not (len(value) == 12 and value.isdigit()):
        raise ValueError("an IIN or BIN has 12 digits")
    return value


@router.get("/applications/{registration_number}")
def application(registration_number: str, request: Request) -> Response:
    caller = _signed_in(request)
    if caller is None:
        return _login_redirect(request)
    try:
        detail = application_detail(services_of(request), registration_number)
    except LicgateError:
        return render(request, "applications.html", page="applications", caller=caller, form=ApplicationQuery(),
                      results=[], error=text("not_found", language(request)), statuses=list(Status),
                      channels=list(Channel), status=404)
    return render(request, "application.html", page="applications", caller=caller, a=detail)


@router.get("/messages")
def messages(request: Request) -> Response:
    caller = _signed_in(request)
    if caller is None:
        return _login_redirect(request)
    services = services_of(request)
    params = {k: v.strip() for k, v in request.query_params.items() if v.strip()}
    error, results, older = "", [], ""
    try:
        since, until = (_local_time(params.get(k), services.calendar.timezone) for k in ("since", "until"))
        before = int(params["before_id"]) if "before_id" in params else None
        query = MessageQuery(message_id=params.get("message_id", "")[:200] or None,
                             sender_id=params.get("sender", "")[:200] or None,
                             verdict=params.get("verdict", "")[:100] or None, since=since, until=until,
                             before_id=before if before and before > 0 else None, limit=PAGE)
    except ValueError:
        query, error = MessageQuery(limit=PAGE), text("bad_time", language(request))
    if not error:
        results = [message_out(services, m) for m in services.storage.search_messages(query)]
        if len(results) == PAGE:
            rest = {k: v for k, v in params.items() if k != "before_id"}
            older = "/console/messages?" + urlencode({**rest, "before_id": results[-1].id})
    return render(request, "messages.html", page="messages", caller=caller, form=query, results=results,
                  error=error, older=older, since=params.get("since", ""), until=params.get("until", ""))


PAGE = 100  # records on a page of the message log's search


def _local_time(value: str | None, zone: tzinfo) -> datetime | None:
    """A time from the search form: the browser's `YYYY-MM-DDTHH:MM` in the gateway's zone, or ISO 8601 with an
    offset."""
    if value is None:
        return None
    at = datetime.fromisoformat(value)
    return at if at.tzinfo is not None else at.replace(tzinfo=zone)


@router.get("/messages/{entry_id}/body")
def message_download(entry_id: int, request: Request) -> Response:
    caller = _signed_in(request)
    if caller is None:
        return _login_redirect(request)
    if not caller.operator.is_admin:
        return render(request, "messages.html", page="messages", caller=caller, form=MessageQuery(), results=[],
                      error=text("admins_download", language(request)), older="", since="", until="", status=403)
    try:
        body, name = message_body(services_of(request), caller, entry_id)
    except LicgateError:
        return render(request, "messages.html", page="messages", caller=caller, form=MessageQuery(), results=[],
                      error=text("nothing_found", language(request)), older="", since="", until="", status=404)
    return Response(body, media_type="application/octet-stream",
                    headers={**_FRAME_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})


def _dead_page(request: Request, caller: Caller, *, notice: str = "", error: str = "", status: int = 200) -> Response:
    services = services_of(request)
    dead = [outbox_out(services, m) for m in services.storage.dead_letters(500)]
    return render(request, "dead.html", page="dead_letters", caller=caller, dead=dead, notice=notice, error=error,
                  status=status)


@router.get("/outbox/dead")
def dead_letters(request: Request) -> Response:
    caller = _signed_in(request)
    if caller is None:
        return _login_redirect(request)
    return _dead_page(request, caller)


@router.post("/outbox/{outbox_id}/retry")
async def retry(outbox_id: int, request: Request) -> Response:
    caller, refused = await _form_caller(request)
    if caller is None:
        return refused  # type: ignore[return-value]
    lang = language(request)
    if not caller.operator.is_admin:
        return _dead_page(request, caller, error=text("admins_only", lang), status=403)
    try:
        retried = retry_one(services_of(request), caller, outbox_id)
    except LicgateError:
        retried = False
    return _dead_page(request, caller, notice=text("retried" if retried else "retried_none", lang))


@router.post("/outbox/retry-all")
async def retry_everything(request: Request) -> Response:
    caller, refused = await _form_caller(request)
    if caller is None:
        return refused  # type: ignore[return-value]
    lang = language(request)
    if not caller.operator.is_admin:
        return _dead_page(request, caller, error=text("admins_only", lang), status=403)
    retried = retry_all(services_of(request), caller)
    return _dead_page(request, caller, notice=f"{text('retried' if retried else 'retried_none', lang)}: {len(retried)}")
