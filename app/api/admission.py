"""Admission control: at most ``LETHE_API_MAX_IN_FLIGHT`` requests of one API process run at a
time; the rest wait their turn on the event loop (no thread, no database connection held).

Why: a request's unit of work keeps its pooled connection from its first query until its commit,
across several hops through the worker-thread pool. If more requests run than the connection pool
holds plus the thread pool has threads, every thread can end up blocked on a pool checkout while
the connection holders wait for a thread: nothing moves until the pool timeout (30 s) fails them.
Bounding the requests in flight below the pool's size rules that out, and fewer threads contending
for the GIL also answers faster (measured by ``benchmarks/intake.py``: 64 concurrent clients, 2
processes, 2 cores: see README, Benchmarks). ``/healthz`` is never queued, so a liveness probe
does not fail under load; nor is a dataset upload, which streams its body for as long as the
client takes without holding a connection (its database work is one short transaction in one
worker thread), so a slow upload does not take a slot from intake.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import paths

__all__ = ["AdmissionMiddleware"]

_NEVER_QUEUED = frozenset({"/healthz", paths.DATASET_UPLOAD})


class AdmissionMiddleware:
    """Pure ASGI middleware: an ``asyncio.Semaphore(max_in_flight)`` slot per HTTP request, held
    until its response starts (the body, e.g. a downloaded weights file, streams without one).

    Args:
        app: The ASGI app.
        max_in_flight: Requests running at once; the others wait in arrival order (asyncio's
            semaphore is FIFO).

    Raises:
        ValueError: ``max_in_flight`` < 1.
    """

    def __init__(self, app: ASGIApp, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.app = app
        self.max_in_flight = max_in_flight
        self._slots: asyncio.Semaphore | None = None  # made on the server's event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in _NEVER_QUEUED:
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
        slots = self._slots
        await slots.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        async def send_releasing(message: Message) -> None:
            # The answer is decided once its head goes out: streaming the body (a weights file
            # to a slow client) needs no connection, so it must not keep intake waiting.
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.app(scope, receive, send_releasing)
        finally:
            release()
