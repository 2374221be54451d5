"""The JSON APIs' one way of refusing: `{"errorCode", "errorMessage", "errorData"}` with the code's HTTP
status (409 adds `allowedNextSteps`), never FastAPI's default validation body, never a stack trace."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import InternalError, LicgateError, NotFound, SchemaInvalid, StepOutOfOrder, Unauthorized
from gateway.storage import StorageError, StorageUnavailable

log = logging.getLogger("licgate.api")


def error_response(exc: LicgateError) -> JSONResponse:
    body: dict[str, Any] = {"errorCode": exc.code, "errorMessage": exc.message, "errorData": exc.data}
    headers = {}
    if isinstance(exc, StepOutOfOrder):
        body["allowedNextSteps"] = [s.value for s in exc.allowed]
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="licgate"'
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return f"{where or 'body'}: {first.get('msg', 'invalid')}"[:300]


JSON_API_PREFIXES = ("/provider/", "/ops/")


async def _no_such_route(request: Request, exc: Exception) -> Response:
    """404 and 405 of routing itself (no route matched, e.g. an id holding a slash) under the JSON APIs in
    their error shape too, not FastAPI's `{"detail": ...}`; elsewhere (the console, the docs) as before."""
    status = getattr(exc, "status_code", 500)
    if not request.url.path.startswith(JSON_API_PREFIXES) or status not in (404, 405):
        return await http_exception_handler(request, exc)  # type: ignore[arg-type]
    if status == 404:
        return error_response(NotFound(f"no such resource: {request.url.path[:200]}"))
    headers = dict(getattr(exc, "headers", None) or {})
    body = {"errorCode": "METHOD_NOT_ALLOWED", "errorMessage": f"{request.method} is not served here",
            "errorData": headers.get("Allow")}
    return JSONResponse(body, status_code=405, headers=headers)


def install(app: FastAPI) -> None:
    """Routing's own refusals in the JSON APIs' shape (`_no_such_route`)."""
    app.add_exception_handler(StarletteHTTPException, _no_such_route)


class JsonErrorRoute(APIRoute):
    """Turns every refusal of a router into the JSON error body (and nothing else into a trace)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except LicgateError as exc:
                return await self._refused(request, exc, error_response(exc))
            except RequestValidationError as exc:
                return await self._refused(request, exc, error_response(SchemaInvalid(_validation_detail(exc))))
            except StarletteHTTPException as exc:
                # FastAPI's own refusal of a body it cannot decode (not UTF-8: found by fuzzing, was a 500).
                if exc.status_code == 400:
                    return await self._refused(request, exc,
                                               error_response(SchemaInvalid(f"body: {exc.detail}"[:300])))
                raise
            except StorageUnavailable:
                return error_response(_Unavailable("storage is unreachable"))
            except StorageError as exc:
                log.warning("storage error", extra={"error": str(exc)[:200]})
                return error_response(_Unavailable("storage is busy"))
            except Exception:  # noqa: BLE001 - the last line of defence: log it, answer without a trace
                log.exception("API failure", extra={"path": request.url.path})
                return error_response(InternalError())

        return guarded

    async def _refused(self, request: Request, exc: Exception, response: JSONResponse) -> Response:
        """What a refusal is answered with (a router may keep a record of it first)."""
        return response


class LoggedRoute(JsonErrorRoute):
    """A JsonErrorRoute whose refusals are each a message-log record (`provider/<handler>`, verdict
    `HTTP <status> <errorCode>`), stored before they are answered: the request line, the caller's
    `Authorization` scheme (never its token) and the answer's body."""

    async def _refused(self, request: Request, exc: Exception, response: JSONResponse) -> Response:
        if getattr(exc, "message_logged", False):
            return response  # recorded with its body where it was refused
        from gateway import messagelog
        from gateway.services import services_of

        gw = services_of(request)
        code = json.loads(bytes(response.body)).get("errorCode", "")
        scheme = request.headers.get("authorization", "").split(" ")[0][:20]
        body = (f"{request.method} {request.url.path}\nAuthorization: {scheme or '(none)'}\n\n").encode() \
            + bytes(response.body)
        entry = messagelog.entry("in", f"provider/{self.name}", body, f"HTTP {response.status_code} {code}",
                                 gw.clock.now())
        await gw.message_log.write_async(entry)
        return response


class _Unavailable(LicgateError):
    code = "OVERLOADED"
    http_status = 503
