"""Turn every error into RFC 9457 problem+json; one handler per error family.

- ``LetheError`` subclasses: their ``status``, ``title``, ``detail`` and extras.
- ``RequestValidationError`` (bad field, wrong type, malformed JSON): 422 with an ``errors`` list,
  each naming the field (``loc``/``field``), the message and the pydantic error type.
- ``HTTPException`` (unknown route, wrong method, ...): its status.
- A database that is down or saturated (``OperationalError``, pool timeout, or any ``DBAPIError``
  on a connection SQLAlchemy has invalidated, e.g. one closed under it by a restart): 503 with
  Retry-After.
- Anything else: 500 with a fixed message; the stack trace goes to the log, never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import LetheError, Unauthorized
from app.schemas.problem import PROBLEM_MEDIA_TYPE, Problem

__all__ = ["install_problem_handlers", "media_type", "problem_response"]

log = logging.getLogger(__name__)

_TYPE_PREFIX = "urn:lethe:problem:"
_RESERVED = {"type", "title", "status", "detail", "instance"}


def _slug(title: str) -> str:
    return title.lower().replace(" ", "-")


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str | None,
    *,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A ``application/problem+json`` answer."""
    extras = {k: v for k, v in extra.items() if k not in _RESERVED}
    body = Problem(
        type=type_ or f"{_TYPE_PREFIX}{_slug(title)}",
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        **extras,
    )
    return JSONResponse(
        body.model_dump(mode="json"), status_code=status, headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _field_name(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Field, message and type of each error; never the offending input or internal context."""
    out = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            loc = loc[:1]  # the rest is a character offset, not a field
        out.append({
            "loc": [p if isinstance(p, (str, int)) else str(p) for p in loc],
            "field": _field_name(loc) or "body",
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        })
    return out


async def _lethe_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LetheError)
    if exc.status >= 500:
        log.error("internal LetheError: %s", exc.detail, exc_info=exc)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return problem_response(
        request, exc.status, exc.title, exc.detail, headers=headers, **exc.extra
    )


def media_type(content_type: str) -> str:
    """``Content-Type`` without its parameters, lower-cased (``""`` when there is none)."""
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    media = media_type(content_type)
    return media == "application/json" or media.endswith("+json")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    content_type = request.headers.get("content-type", "")
    if any(e["loc"][:1] == ["body"] for e in errors) and not _is_json(content_type):
        # FastAPI reads a body as JSON only when it is labelled so; otherwise the body arrives as
        # raw text and fails as "not a valid dictionary", which hides the real mistake.
        got = f"Content-Type {content_type[:100]!r}" if content_type else "no Content-Type"
        return problem_response(
            request, 415, "Unsupported media type",
            f"the body must be JSON sent with Content-Type: application/json; got {got}")
    if any(e["type"] == "json_invalid" for e in errors):
        detail = "the request body is not valid JSON"
    else:
        # Name each field with its reason (at most three; ``errors`` has them all).
        reasons = list(dict.fromkeys(f"{e['field'] or 'body'} ({e['msg']})" for e in errors))
        more = f" and {len(reasons) - 3} more" if len(reasons) > 3 else ""
        detail = f"invalid field(s): {'; '.join(reasons[:3])}{more}"
    return problem_response(
        request, 422, "Invalid input", detail,
        type_=f"{_TYPE_PREFIX}validation-error", errors=errors,
    )


# FastAPI's answer when the JSON decoder itself fails (e.g. RecursionError on deeply nested input)
# rather than reporting a syntax error.
_UNPARSABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        return problem_response(
            request, 422, "Invalid input",
            "the request body is not valid JSON (it could not be parsed, e.g. nested too deeply)",
            type_=f"{_TYPE_PREFIX}validation-error",
            errors=[{"loc": ["body"], "field": "body", "msg": _UNPARSABLE_BODY,
                     "type": "json_invalid"}])
    try:
        title = HTTPStatus(exc.status_code).phrase
    except ValueError:
        title = "Error"
    detail = exc.detail if isinstance(exc.detail, str) else title
    if detail == title and exc.status_code in (404, 405):  # Starlette's routing: say what missed
        allow = (exc.headers or {}).get("Allow")
        detail = (f"no route {request.method} {request.url.path}" if exc.status_code == 404 else
                  f"{request.method} is not allowed on {request.url.path}"
                  + (f"; allowed: {allow}" if allow else ""))
    return problem_response(
        request, exc.status_code, title, detail, type_="about:blank",
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database is unreachable or saturated: nothing was stored; the client may retry."""
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        request, 503, "Service unavailable",
        "the database is unavailable or busy; nothing was stored, retry later",
        headers={"Retry-After": "2"},
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A driver error that is not an ``OperationalError``: 503 if it came from a lost
    connection (SQLAlchemy marks those ``connection_invalidated``), else a 500."""
    assert isinstance(exc, DBAPIError)
    if exc.connection_invalidated:
        return await _unavailable(request, exc)
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request, 500, "Internal error",
        "the server failed to answer this request; it has been logged",
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(LetheError, _lethe_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _unavailable)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(SATimeoutError, _unavailable)
    app.add_exception_handler(Exception, _unexpected)
