"""``app.client`` against ``httpx.MockTransport``: idempotency keys, retries and backoff, Range
resume, SHA-256 verification, problem+json errors, waits; the async client the same way."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.client import (AsyncLetheClient, ChecksumMismatch, LetheClient, LetheClientError,
                        RetryPolicy, WaitTimeout)

BLOB = bytes(range(256)) * 1000  # 256 kB of "weights"
SHA = hashlib.sha256(BLOB).hexdigest()
CERT = {"version": 1, "weights_sha256": SHA}


class FakeApi:
    """A scripted server: queued answers per path, then a default; records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.script: dict[str, list[Any]] = {}
        self.blob = BLOB
        self.cut_after: int | None = None  # drop the connection after this many body bytes, once

    def queue(self, path: str, *answers: Any) -> None:
        self.script.setdefault(path, []).extend(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if self.script.get(path):
            answer = self.script[path].pop(0)
            if isinstance(answer, Exception):
                raise answer
            if isinstance(answer, httpx.Response):
                return answer
        if path.endswith("/certificate"):
            return httpx.Response(200, json=CERT)
        if path.endswith("/download"):
            return self._download(request)
        if path.endswith("/deletion-requests"):
            return httpx.Response(202, json={"id": "r1", "status": "pending"},
                                  headers={"Location": "/v1/deletion-requests/r1"})
        return httpx.Response(404, json={"type": "about:blank", "title": "Not Found",
                                         "status": 404, "detail": f"no route {path}"},
                              headers={"Content-Type": "application/problem+json"})

    def _download(self, request: httpx.Request) -> httpx.Response:
        start, status, headers = 0, 200, {"ETag": f'"{SHA}"'}
        rng = request.headers.get("Range")
        if rng and request.headers.get("If-Range") == f'"{SHA}"':
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(self.blob):
                return httpx.Response(416, headers={"Content-Range": f"bytes */{len(self.blob)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(self.blob) - 1}/{len(self.blob)}"
        body = self.blob[start:]
        headers["Content-Length"] = str(len(body))
        cut, self.cut_after = self.cut_after, None

        def stream() -> Iterator[bytes]:
            sent = 0
            for i in range(0, len(body), 4096):
                if cut is not None and sent >= cut:
                    raise httpx.ReadError("connection reset by peer")
                yield body[i:i + 4096]
                sent += 4096

        return httpx.Response(status, headers=headers, stream=_Stream(stream()))


class _Stream(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    async def __aiter__(self):  # type: ignore[override]
        for chunk in self.chunks:
            yield chunk


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(fake: FakeApi, sleeps: list[float]) -> Iterator[LetheClient]:
    with LetheClient("http://lethe.test", "k3y", transport=httpx.MockTransport(fake),
                     retry=RetryPolicy(attempts=4, backoff_s=0.5, max_backoff_s=3.0),
                     sleep=sleeps.append) as c:
        yield c


def _busy(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"title": "Busy", "status": status, "detail": "later"},
                          headers=headers)


def test_forget_sends_bearer_and_idempotency_key(client: LetheClient, fake: FakeApi) -> None:
    body = client.forget("m1", [1, "2"])
    assert body == {"id": "r1", "status": "pending"}
    sent = fake.requests[-1]
    assert sent.headers["Authorization"] == "Bearer k3y"
    assert json.loads(sent.content) == {"sample_ids": ["1", "2"]}
    assert len(sent.headers["Idempotency-Key"]) == 36
    client.forget("m1", ["3"])
    assert fake.requests[-1].headers["Idempotency-Key"] != sent.headers["Idempotency-Key"]


def test_forget_subjects_sends_subject_ids_only(client: LetheClient, fake: FakeApi) -> None:
    client.forget("m1", subject_ids=["alice", "bob"])
    assert json.loads(fake.requests[-1].content) == {"subject_ids": ["alice", "bob"]}
    sent = len(fake.requests)
    for kwargs in ({}, {"sample_ids": ["1"], "subject_ids": ["alice"]}):
        with pytest.raises(ValueError, match="exactly one"):
            client.forget("m1", **kwargs)  # type: ignore[arg-type]
    assert len(fake.requests) == sent


def test_retries_429_503_with_exponential_backoff_and_the_same_key(
        client: LetheClient, fake: FakeApi, sleeps: list[float]) -> None:
    path = "/v1/models/m1/deletion-requests"
    fake.queue(path, _busy(503), _busy(429), _busy(503))
    assert client.forget("m1", ["1"])["id"] == "r1"
    assert sleeps == [0.5, 1.0, 2.0]
    keys = {r.headers["Idempotency-Key"] for r in fake.requests}
    assert len(fake.requests) == 4 and len(keys) == 1


def test_backoff_is_capped_and_honours_retry_after(
        client: LetheClient, fake: FakeApi, sleeps: list[float]) -> None:
    fake.queue("/v1/models/m1/deletion-requests", _busy(429, **{"Retry-After": "2"}),
               _busy(503, **{"Retry-After": "60"}))
    client.forget("m1", ["1"])
    assert sleeps == [2.0, 3.0]


def test_connection_errors_are_retried(client: LetheClient, fake: FakeApi, sleeps: list[float]) -> None:
    fake.queue("/v1/models/m1/deletion-requests", httpx.ConnectError("refused"),
               httpx.ConnectError("refused"))
    assert client.forget("m1", ["1"])["status"] == "pending"
    assert sleeps == [0.5, 1.0]


def test_gives_up_after_the_last_attempt(client: LetheClient, fake: FakeApi) -> None:
    fake.queue("/v1/models/m1/deletion-requests", *[_busy(503)] * 4)
    with pytest.raises(LetheClientError) as err:
        client.forget("m1", ["1"])
    assert err.value.status == 503 and err.value.title == "Busy" and len(fake.requests) == 4
    fake.queue("/v1/models/m1/budget", *[httpx.ConnectError("refused")] * 4)
    with pytest.raises(LetheClientError) as err:
        client.budget("m1")
    assert err.value.status == 0 and "refused" in str(err.value.detail)


def test_errors_carry_the_problem(client: LetheClient, fake: FakeApi, sleeps: list[float]) -> None:
    problem = {"type": "urn:lethe:problem:invalid-input", "title": "Invalid input", "status": 422,
               "detail": "unknown sample ids: 99999", "invalid_sample_ids": ["99999"]}
    fake.queue("/v1/models/m1/deletion-requests", httpx.Response(422, json=problem))
    with pytest.raises(LetheClientError) as err:
        client.forget("m1", ["99999"])
    assert (err.value.status, err.value.title, err.value.detail) == (422, "Invalid input",
                                                                    "unknown sample ids: 99999")
    assert err.value.problem["invalid_sample_ids"] == ["99999"] and sleeps == []
    with pytest.raises(LetheClientError) as err:
        client.get_model("nope")
    assert err.value.status == 404


def test_download_verifies_and_renames(client: LetheClient, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    result = client.download("m1", 1, tmp_path / "w.safetensors",
                             on_progress=lambda d, t: seen.append((d, t)))
    assert result.sha256 == SHA and result.size_bytes == len(BLOB) and result.resumed_from == 0
    assert (tmp_path / "w.safetensors").read_bytes() == BLOB
    assert not (tmp_path / "w.safetensors.part").exists()
    assert seen[-1] == (len(BLOB), len(BLOB))


def test_download_resumes_an_existing_part_file_with_range(
        client: LetheClient, fake: FakeApi, tmp_path: Path) -> None:
    (tmp_path / "w.safetensors.part").write_bytes(BLOB[:100_000])
    result = client.download("m1", 1, tmp_path / "w.safetensors")
    assert result.resumed_from == 100_000 and result.sha256 == SHA
    download = [r for r in fake.requests if r.url.path.endswith("/download")]
    assert download[0].headers["Range"] == "bytes=100000-"
    assert download[0].headers["If-Range"] == f'"{SHA}"'
    assert (tmp_path / "w.safetensors").read_bytes() == BLOB


def test_download_resumes_after_a_dropped_connection(
        client: LetheClient, fake: FakeApi, sleeps: list[float], tmp_path: Path) -> None:
    fake.cut_after = 65_536
    result = client.download("m1", 1, tmp_path / "w.safetensors")
    assert result.sha256 == SHA and (tmp_path / "w.safetensors").read_bytes() == BLOB
    ranges = [r.headers.get("Range") for r in fake.requests if r.url.path.endswith("/download")]
    assert ranges[0] is None and ranges[1] == "bytes=65536-" and sleeps == [0.5]


def test_download_restarts_when_the_part_is_too_long(
        client: LetheClient, fake: FakeApi, tmp_path: Path) -> None:
    (tmp_path / "w.safetensors.part").write_bytes(BLOB + b"junk")
    assert client.download("m1", 1, tmp_path / "w.safetensors").resumed_from == 0
    assert (tmp_path / "w.safetensors").read_bytes() == BLOB


def test_download_refuses_bytes_that_are_not_the_certified_ones(
        client: LetheClient, fake: FakeApi, tmp_path: Path) -> None:
    fake.blob = BLOB[:-1] + b"\x00"
    with pytest.raises(ChecksumMismatch) as err:
        client.download("m1", 1, tmp_path / "w.safetensors")
    assert SHA in str(err.value.detail)
    assert not (tmp_path / "w.safetensors").exists()
    assert not (tmp_path / "w.safetensors.part").exists()


def test_wait_request_polls_until_final(client: LetheClient, fake: FakeApi) -> None:
    path = "/v1/deletion-requests/r1"
    fake.queue(path, *(httpx.Response(200, json={"id": "r1", "status": s, "version": v})
                       for s, v in (("pending", None), ("applying", None), ("completed", 1))))
    seen: list[str] = []
    final = client.wait_request("r1", poll_s=0.001, on_update=lambda b: seen.append(b["status"]))
    assert final["version"] == 1 and seen == ["pending", "applying", "completed"]


def test_wait_times_out(client: LetheClient, fake: FakeApi) -> None:
    fake.queue("/v1/jobs/j1", *[httpx.Response(200, json={"id": "j1", "status": "running",
                                                          "progress": 0.5})] * 50)
    with pytest.raises(WaitTimeout) as err:
        client.wait_job("j1", timeout_s=0.01, poll_s=0.005)
    assert "running" in str(err.value.detail)


def test_async_client_retries_and_downloads(fake: FakeApi, tmp_path: Path) -> None:
    sleeps: list[float] = []

    async def record(delay: float) -> None:
        sleeps.append(delay)

    async def run() -> None:
        async with AsyncLetheClient("http://lethe.test", "k3y", transport=httpx.MockTransport(fake),
                                    retry=RetryPolicy(attempts=3, backoff_s=0.25),
                                    sleep=record) as c:
            fake.queue("/v1/models/m1/deletion-requests", _busy(503))
            assert (await c.forget("m1", ["5"]))["id"] == "r1"
            posts = [r for r in fake.requests if r.method == "POST"]
            assert len({r.headers["Idempotency-Key"] for r in posts}) == 1 and len(posts) == 2
            (tmp_path / "a.part").write_bytes(BLOB[:5000])
            result = await c.download("m1", 1, tmp_path / "a")
            assert result.resumed_from == 5000 and (tmp_path / "a").read_bytes() == BLOB
            fake.blob = b"tampered"
            with pytest.raises(ChecksumMismatch):
                await c.download("m1", 1, tmp_path / "b")

    asyncio.run(run())
    assert sleeps == [0.25]


def test_client_and_cli_never_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, app.client, app.cli; "
            "sys.exit(1 if any(m == 'torch' or m.startswith('torch.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_upload_streams_the_file_and_retries_with_one_key(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # over one upload chunk
    path = tmp_path / "d.npz"
    path.write_bytes(data)
    seen: list[tuple[bytes, dict[str, str], str]] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append((request.read(), dict(request.headers), str(request.url)))
        if len(seen) == 1:
            return _busy(503)
        return httpx.Response(201, json={"id": "d1"})

    with LetheClient("http://lethe.test", "k", transport=httpx.MockTransport(server),
                     retry=RetryPolicy(attempts=2, backoff_s=0.0), sleep=lambda s: None) as c:
        assert c.upload_dataset("faces", path) == {"id": "d1"}

    async def run() -> None:
        async with AsyncLetheClient("http://lethe.test", "k",
                                    transport=httpx.MockTransport(server)) as c:
            assert await c.upload_dataset("faces", path) == {"id": "d1"}

    asyncio.run(run())
    assert [body for body, _, _ in seen] == [data] * 3
    assert all(url == "http://lethe.test/v1/datasets/upload?name=faces" for _, _, url in seen)
    assert all(h["content-type"] == "application/octet-stream" and
               h["content-length"] == str(len(data)) for _, h, _ in seen)
    assert seen[0][1]["idempotency-key"] == seen[1][1]["idempotency-key"]
