"""The ``Idempotency-Key`` header of creating POSTs, as a dependency (see
:mod:`app.services.idempotency` for the rules).

A creating route declares ``idem: IdempotencyDep`` *after* its scope check and ends with
``return idem.remember(status, public, response)``. Without the header nothing changes. A replay
answers the stored status, body and ``Location`` with ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from app.api.deps import CurrentKey, UnitOfWorkDep
from app.services import idempotency as service

__all__ = ["REPLAYED_HEADER", "Idempotency", "IdempotencyDep", "install_idempotency"]

REPLAYED_HEADER = "Idempotent-Replayed"
_STORED_HEADERS = ("Location",)

T = TypeVar("T", bound=BaseModel)


@dataclass
class Idempotency:
    """This request's claim on its key, or ``None`` without the header."""

    claim: service.Claim | None

    def remember(self, status_code: int, body: T, response: Response) -> T:
        """Store the answer with the claimed key (same transaction) and return ``body``."""
        if self.claim is not None:
            headers = {h: response.headers[h] for h in _STORED_HEADERS if h in response.headers}
            # Through model_dump_json, so the stored body is exactly what FastAPI sends (an
            # unbounded epsilon as the string "Infinity", as PublicModel says).
            self.claim.remember(status_code, json.loads(body.model_dump_json()), headers)
        return body


async def _raw_body(request: Request) -> bytes:
    return await request.body()  # already read (and cached) by FastAPI for the body parameter


async def _idempotency(
    uow: UnitOfWorkDep,
    key: CurrentKey,
    request: Request,
    raw_body: Annotated[bytes, Depends(_raw_body)],
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=service.MAX_KEY_CHARS,
        description="Makes a retry safe: the same key with the same body returns the stored "
                    "answer without creating anything; with another body, 409.",
    )] = None,
) -> Idempotency:
    if idempotency_key is None:
        return Idempotency(None)
    # async, so that a request without the header takes no thread hop here
    return Idempotency(await run_in_threadpool(
        service.claim, uow.session, key.id, idempotency_key, method=request.method,
        path=request.url.path, body=raw_body,
    ))


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]


async def _replay(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, service.Replay)
    return JSONResponse(exc.body, status_code=exc.status_code,
                        headers={**exc.headers, REPLAYED_HEADER: "true"})


def install_idempotency(app: FastAPI) -> None:
    """Answer :class:`~app.services.idempotency.Replay` with the stored response."""
    app.add_exception_handler(service.Replay, _replay)
