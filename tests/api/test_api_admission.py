"""Admission control: at most ``max_in_flight`` requests run at once, the rest wait in arrival
order and all complete; ``/healthz`` and dataset uploads never wait; the app wires it from the
setting."""

from __future__ import annotations

import asyncio

import pytest

from app.api import paths
from app.api.admission import AdmissionMiddleware
from app.api.main import create_app
from app.settings import Settings


class _Slow:
    """An ASGI app that records how many requests run at once and in which order they start."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.started: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        self.running += 1
        self.most = max(self.most, self.running)
        self.started.append(scope["path"])
        if scope["path"] != "/healthz":
            await self.release.wait()
        self.running -= 1


def _http(path: str) -> dict[str, object]:
    return {"type": "http", "path": path, "method": "GET"}


async def _nothing() -> dict[str, object]:
    return {"type": "http.request"}


async def _ignore(_message: object) -> None:
    return None


def test_at_most_max_in_flight_run_and_the_rest_wait_in_order() -> None:
    async def scenario() -> _Slow:
        inner = _Slow()
        app = AdmissionMiddleware(inner, max_in_flight=2)
        tasks = [asyncio.create_task(app(_http(f"/r{i}"), _nothing, _ignore)) for i in range(5)]
        await asyncio.sleep(0.05)
        assert (inner.running, inner.started) == (2, ["/r0", "/r1"])
        # a liveness probe is answered while the slots are full
        await asyncio.wait_for(app(_http("/healthz"), _nothing, _ignore), timeout=1)
        inner.release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        return inner

    inner = asyncio.run(scenario())
    assert inner.most == 2 + 1  # the two requests and the probe
    assert inner.started == ["/r0", "/r1", "/healthz", "/r2", "/r3", "/r4"]


def test_a_dataset_upload_never_waits_for_a_slot() -> None:
    async def scenario() -> _Slow:
        inner = _Slow()
        app = AdmissionMiddleware(inner, max_in_flight=1)
        held = asyncio.create_task(app(_http("/r0"), _nothing, _ignore))
        upload = asyncio.create_task(app(_http(paths.DATASET_UPLOAD), _nothing, _ignore))
        queued = asyncio.create_task(app(_http("/r1"), _nothing, _ignore))
        await asyncio.sleep(0.05)
        assert inner.started == ["/r0", paths.DATASET_UPLOAD]  # /r1 waits, the upload does not
        inner.release.set()
        await asyncio.wait_for(asyncio.gather(held, upload, queued), timeout=5)
        return inner

    assert asyncio.run(scenario()).started == ["/r0", paths.DATASET_UPLOAD, "/r1"]


class _SlowBody:
    """An ASGI app that answers at once and then streams its body until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/download":
            await self.release.wait()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def test_a_streaming_body_does_not_hold_a_slot() -> None:
    async def scenario() -> None:
        inner = _SlowBody()
        app = AdmissionMiddleware(inner, max_in_flight=1)
        download = asyncio.create_task(app(_http("/download"), _nothing, _ignore))
        await asyncio.sleep(0.05)  # its head is out; its body is still streaming
        await asyncio.wait_for(app(_http("/r0"), _nothing, _ignore), timeout=1)
        inner.release.set()
        await asyncio.wait_for(download, timeout=1)
        # and the slot came back exactly once
        assert app._slots is not None and app._slots._value == 1

    asyncio.run(scenario())


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AdmissionMiddleware(_Slow(), max_in_flight=0)


def test_the_app_uses_the_setting() -> None:
    app = create_app(Settings(api_max_in_flight=3))
    (admission,) = [m for m in app.user_middleware if m.cls is AdmissionMiddleware]
    assert admission.kwargs == {"max_in_flight": 3}
