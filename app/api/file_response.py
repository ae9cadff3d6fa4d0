"""A ``FileResponse`` whose byte-range errors are problem+json, like every other error of the API.

Starlette serves ``Range`` requests itself and answers a malformed header (400) or a range past
the end of the file (416) in plain text from inside the response, out of reach of the exception
handlers. This subclass checks the header first with Starlette's own parser, so the ranges it
accepts are exactly the ones Starlette then serves.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import FileResponse, Response
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from app.api.problems import problem_response

try:  # Starlette ≥ 0.39 serves ranges; older versions ignore the header, so nothing to check
    from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable
except ImportError:  # pragma: no cover - depends on the installed Starlette
    MalformedRangeHeader = RangeNotSatisfiable = None  # type: ignore[assignment,misc]

__all__ = ["ProblemFileResponse"]


class ProblemFileResponse(FileResponse):
    """``FileResponse`` for ``request`` whose 400/416 range answers are problem+json.

    Raises nothing itself: a bad ``Range`` becomes a 400 problem naming the header, a range that
    starts past the end a 416 problem with ``Content-Range: bytes */<size>`` (RFC 9110 §15.5.17).
    """

    def __init__(self, path: str | os.PathLike[str], *, request: Request, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._request = request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = await self._range_refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _range_refusal(self, scope: Scope) -> Response | None:
        if MalformedRangeHeader is None or scope.get("method", "GET").upper() not in ("GET", "HEAD"):
            return None
        headers = Headers(scope=scope)
        http_range, if_range = headers.get("range"), headers.get("if-range")
        if http_range is None:
            return None
        # Kept for Starlette, which then stats no more; its headers are what If-Range is
        # compared with.
        stat_result = self.stat_result or await anyio.to_thread.run_sync(os.stat, self.path)
        self.stat_result = stat_result
        self.set_stat_headers(stat_result)
        if if_range is not None and not self._should_use_range(if_range):
            return None  # Starlette serves the whole file then
        size = stat_result.st_size
        try:
            self._parse_range_header(http_range, size)
        except MalformedRangeHeader as exc:
            return problem_response(
                self._request, 400, "Bad request",
                f"Range header {http_range[:100]!r}: {exc.content} (expected bytes=first-last, "
                "bytes=first- or bytes=-suffix)", field="Range")
        except RangeNotSatisfiable:
            return problem_response(
                self._request, 416, "Range not satisfiable",
                f"Range header {http_range[:100]!r} starts past the end of the {size}-byte file",
                headers={"Content-Range": f"bytes */{size}"}, size=size)
        return None
