"""Python client of the Lethe HTTP API: ``LetheClient`` (sync) and ``AsyncLetheClient`` (httpx).

What it adds over raw HTTP:

- every POST that creates something carries an ``Idempotency-Key`` (a uuid4 per logical call,
  reused by each retry of that call);
- retries with exponential backoff (``backoff_s · 2^attempt``, capped, ``Retry-After`` honoured) on
  429 and 503 answers and on connection errors;
- waits (poll with a timeout) for a deletion request, a job or a model's training;
- downloads with resume: bytes go to ``<path>.part``; an interrupted transfer continues with an HTTP
  ``Range`` (and ``If-Range`` on the ETag); the file is renamed into place only once its SHA-256
  equals the certificate's ``weights_sha256``;
- offline verification of certificates and receipts with :func:`app.verify.verify`.

Errors: every non-2xx answer raises :class:`LetheClientError` carrying the RFC 9457 problem
(``status``, ``title``, ``detail``, ``problem``). Exception tree::

    LetheClientError            a problem+json answer, or a transport failure after the retries
     ├── ChecksumMismatch       a download's SHA-256 is not the certificate's
     └── WaitTimeout            a wait ran past its timeout

Imports httpx only (never torch); :mod:`app.verify` is imported when a verification is asked for.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from app.verify import Check

__all__ = [
    "AsyncLetheClient",
    "ChecksumMismatch",
    "DownloadResult",
    "LetheClient",
    "LetheClientError",
    "RetryPolicy",
    "WaitTimeout",
]

DEFAULT_URL = "http://127.0.0.1:8000"
REQUEST_FINAL = frozenset({"completed", "failed", "canceled"})
JOB_FINAL = frozenset({"succeeded", "failed"})
_CHUNK_BYTES = 1 << 16

ProgressFn = Callable[[int, int | None], None]
"""``on_progress(done_bytes, total_bytes)`` during a download."""


class LetheClientError(Exception):
    """An error answer (RFC 9457 problem+json) or a transport failure after every retry.

    Attributes:
        status: HTTP status, or 0 for a transport failure.
        title: The problem's title.
        detail: The problem's detail (may be ``None``).
        problem: The whole problem object (extension members such as ``errors`` included).
    """

    def __init__(self, status: int, title: str, detail: str | None = None,
                 problem: dict[str, Any] | None = None) -> None:
        self.status, self.title, self.detail = status, title, detail
        self.problem = problem or {"status": status, "title": title, "detail": detail}
        super().__init__(f"{status} {title}" + (f": {detail}" if detail else ""))

    @classmethod
    def from_response(cls, response: httpx.Response) -> LetheClientError:
        """Build from an error answer; a body that is not a problem becomes its detail."""
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and "title" in body:
            return cls(int(body.get("status", response.status_code)), str(body["title"]),
                       body.get("detail"), body)
        return cls(response.status_code, response.reason_phrase or "Error",
                   response.text[:500] or None)


class ChecksumMismatch(LetheClientError):
    """The downloaded file's SHA-256 differs from the certificate's ``weights_sha256``."""


class WaitTimeout(LetheClientError):
    """A wait did not see a final state within its timeout."""


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry.

    Args:
        attempts: Tries in all (1 = no retry).
        backoff_s: Delay before the first retry, seconds; doubles on each later one.
        max_backoff_s: Cap on one delay, seconds (also on a ``Retry-After`` the server sends).
        statuses: Answers that are retried.
    """

    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    statuses: frozenset[int] = frozenset({429, 503})

    def delay_s(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait after failed try ``attempt`` (0-based): ``Retry-After`` if the
        server gave one in seconds, else ``backoff_s · 2^attempt``; both capped."""
        if response is not None:
            try:
                return min(self.max_backoff_s, max(0.0, float(response.headers["Retry-After"])))
            except (KeyError, ValueError):
                pass
        return min(self.max_backoff_s, self.backoff_s * 2 ** attempt)


@dataclass(frozen=True)
class DownloadResult:
    """A verified download: where it is, its SHA-256 (hex), size in bytes, and the byte offset
    the transfer resumed from (0 = from scratch)."""

    path: Path
    sha256: str
    size_bytes: int
    resumed_from: int


@dataclass
class _Call:
    """One logical API call (a retry repeats it with the same idempotency key)."""

    method: str
    path: str
    expect: tuple[int, ...] = (200,)
    json: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    upload: Path | None = None  # a file sent as the raw body, reopened on each attempt

    @classmethod
    def create(cls, path: str, body: Any, expect: tuple[int, ...]) -> _Call:
        """A POST that creates something: gets a fresh ``Idempotency-Key``."""
        return cls("POST", path, expect, body, headers={"Idempotency-Key": str(uuid.uuid4())})


_UPLOAD_CHUNK = 1 << 20


async def _file_chunks(path: Path) -> Any:
    """The file's bytes for the async client, read off the event loop."""
    with path.open("rb") as fh:
        while chunk := await asyncio.to_thread(fh.read, _UPLOAD_CHUNK):
            yield chunk


def _check(call: _Call, response: httpx.Response) -> Any:
    if response.status_code not in call.expect:
        raise LetheClientError.from_response(response)
    return response.json() if response.content else None


def _transport_error(call: _Call, exc: httpx.TransportError) -> LetheClientError:
    return LetheClientError(0, "Transport error", f"{call.method} {call.path}: {exc!r}")


class _Api:
    """The routes, as calls; shared by both clients (they only differ in how a call runs)."""

    @staticmethod
    def _forget(model_id: str, sample_ids: Sequence[str | int] | None,
                subject_ids: Sequence[str] | None) -> _Call:
        if (sample_ids is None) == (subject_ids is None):
            raise ValueError("give exactly one of sample_ids or subject_ids")
        body = ({"sample_ids": [str(s) for s in sample_ids]} if sample_ids is not None
                else {"subject_ids": [str(s) for s in subject_ids or ()]})
        return _Call.create(f"/v1/models/{model_id}/deletion-requests", body, (202,))

    @staticmethod
    def _create_dataset(name: str, source: str) -> _Call:
        return _Call.create("/v1/datasets", {"name": name, "source": source}, (201,))

    @staticmethod
    def _upload_dataset(name: str, path: Path) -> _Call:
        call = _Call.create("/v1/datasets/upload", None, (201,))
        call.params = {"name": name}
        call.headers.update({"Content-Type": "application/octet-stream",
                             "Content-Length": str(path.stat().st_size)})
        call.upload = path
        return call

    @staticmethod
    def _create_model(body: dict[str, Any]) -> _Call:
        return _Call.create("/v1/models", body, (202,))

    @staticmethod
    def _retrain(model_id: str) -> _Call:
        return _Call.create(f"/v1/models/{model_id}/retrain", None, (202,))

    @staticmethod
    def _cancel(request_id: str) -> _Call:
        return _Call("POST", f"/v1/deletion-requests/{request_id}/cancel")  # idempotent

    @staticmethod
    def _list_requests(model_id: str | None, status: str | None, limit: int,
                       cursor: str | None) -> _Call:
        params = {k: v for k, v in (("model_id", model_id), ("status", status), ("limit", limit),
                                    ("cursor", cursor)) if v is not None}
        return _Call("GET", "/v1/deletion-requests", params=params)

    @staticmethod
    def _get(path: str, params: dict[str, Any] | None = None) -> _Call:
        return _Call("GET", path, params=params)


def _model_body(name: str, dataset_id: str, architecture: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "dataset_id": dataset_id, "architecture": architecture, **spec}


def _verify_files(cert: dict[str, Any], keys: list[dict[str, Any]], weights: Path | None,
                  receipt: dict[str, Any] | None) -> list[Check]:
    """Run the checks of ``lethe verify`` on in-memory documents."""
    from app.verify import Check, public_keys_from_json, verify_documents

    try:
        public = public_keys_from_json(keys, "GET /v1/keys")
    except (ValueError, KeyError, TypeError) as exc:
        return [Check("key", "FAIL", f"cannot load the public keys: {exc}"),
                *verify_documents(cert, weights, receipt=receipt, keys={})]
    return verify_documents(cert, weights, receipt=receipt, keys=public)


def _part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _range_headers(offset: int, etag: str) -> dict[str, str]:
    return {"Range": f"bytes={offset}-", "If-Range": etag} if offset else {}


def _total_bytes(response: httpx.Response, offset: int) -> int | None:
    """Full file size from ``Content-Range: bytes a-b/N`` or ``Content-Length``."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return int(length) + (offset if response.status_code == 206 else 0) if length else None


def _finish_download(part: Path, path: Path, expected_sha: str, resumed_from: int) -> DownloadResult:
    from app.storage.artifacts import sha256_file

    sha = sha256_file(part)
    if sha != expected_sha:
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(0, "Checksum mismatch",
                               f"{path.name}: SHA-256 {sha} is not the certificate's {expected_sha}")
    size = part.stat().st_size
    os.replace(part, path)
    return DownloadResult(path, sha, size, resumed_from)


class LetheClient(_Api):
    """Synchronous client.

    Args:
        base_url: The service, e.g. ``http://127.0.0.1:8000``.
        api_key: A bearer API key (``None``: unauthenticated calls only, such as ``keys()``).
        timeout_s: Per-request timeout, seconds.
        retry: Retry policy (429/503/connection errors).
        transport: An httpx transport (tests pass ``httpx.MockTransport``).
        sleep: Called with the backoff delay in seconds (tests record it).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, *,
                 timeout_s: float = 30.0, retry: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                 timeout=timeout_s, transport=transport)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    def __enter__(self) -> LetheClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- plumbing --------------------------------------------------------------------------

    def _send(self, call: _Call) -> httpx.Response:
        """Send ``call``, retrying per the policy; returns the last answer (any status)."""
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                if call.upload is not None:
                    with call.upload.open("rb") as fh:  # httpx streams it in chunks
                        response = self.http.request(call.method, call.path, content=fh,
                                                     params=call.params, headers=call.headers)
                else:
                    response = self.http.request(call.method, call.path, json=call.json,
                                                 params=call.params, headers=call.headers)
            except httpx.TransportError as exc:
                if last:
                    raise _transport_error(call, exc) from exc
                self._sleep(self.retry.delay_s(attempt))
                continue
            if response.status_code not in self.retry.statuses or last:
                return response
            self._sleep(self.retry.delay_s(attempt, response))
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, call: _Call) -> Any:
        return _check(call, self._send(call))

    # --- reads -----------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        """GET any API path (e.g. ``/v1/models``) and return its JSON body."""
        return self._run(self._get(path, params or None))

    def health(self) -> dict[str, Any]:
        return self._run(self._get("/healthz"))  # type: ignore[no-any-return]

    def list_models(self) -> list[dict[str, Any]]:
        return self._run(self._get("/v1/models"))  # type: ignore[no-any-return]

    def get_model(self, model_id: str) -> dict[str, Any]:
        return self._run(self._get(f"/v1/models/{model_id}"))  # type: ignore[no-any-return]

    def list_versions(self, model_id: str) -> list[dict[str, Any]]:
        return self._run(self._get(f"/v1/models/{model_id}/versions"))  # type: ignore[no-any-return]

    def get_version(self, model_id: str, number: int) -> dict[str, Any]:
        return self._run(self._get(f"/v1/models/{model_id}/versions/{number}"))  # type: ignore[no-any-return]

    def certificate(self, model_id: str, number: int) -> dict[str, Any]:
        """The signed certificate of a version (METHOD §8)."""
        return self._run(self._get(f"/v1/models/{model_id}/versions/{number}/certificate"))  # type: ignore[no-any-return]

    def budget(self, model_id: str) -> dict[str, Any]:
        """Caps, consumption, remainder, projection and ledger rows (``GET .../budget``)."""
        return self._run(self._get(f"/v1/models/{model_id}/budget"))  # type: ignore[no-any-return]

    def get_request(self, request_id: str) -> dict[str, Any]:
        return self._run(self._get(f"/v1/deletion-requests/{request_id}"))  # type: ignore[no-any-return]

    def list_requests(self, model_id: str | None = None, status: str | None = None,
                      limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """A page of deletion requests, oldest first: ``{"items": [...], "next_cursor"}``."""
        return self._run(self._list_requests(model_id, status, limit, cursor))  # type: ignore[no-any-return]

    def cancel_request(self, request_id: str) -> dict[str, Any]:
        """Cancel a pending request (409, as :class:`LetheClientError`, once it is batched)."""
        return self._run(self._cancel(request_id))  # type: ignore[no-any-return]

    def receipt(self, request_id: str) -> dict[str, Any]:
        """A completed request's receipt (inclusion proofs and signed certificates)."""
        return self._run(self._get(f"/v1/deletion-requests/{request_id}/receipt"))  # type: ignore[no-any-return]

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._run(self._get(f"/v1/jobs/{job_id}"))  # type: ignore[no-any-return]

    def keys(self) -> list[dict[str, Any]]:
        """The public signing keys (``GET /v1/keys``, no auth)."""
        return self._run(self._get("/v1/keys"))  # type: ignore[no-any-return]

    # --- writes ----------------------------------------------------------------------------

    def forget(self, model_id: str, sample_ids: Sequence[str | int] | None = None, *,
               subject_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """Submit a deletion request for samples, or for every sample of some subjects (datasets
        uploaded with ``subject_ids``); returns ``{"id", "status", ...}`` (202).

        Raises:
            ValueError: Both or neither of ``sample_ids`` and ``subject_ids``.
            LetheClientError: The service refused it (e.g. 422 naming unknown ids).
        """
        return self._run(self._forget(model_id, sample_ids, subject_ids))  # type: ignore[no-any-return]

    def create_dataset(self, name: str, source: str) -> dict[str, Any]:
        return self._run(self._create_dataset(name, source))  # type: ignore[no-any-return]

    def upload_dataset(self, name: str, path: Path | str) -> dict[str, Any]:
        """Upload an ``.npz`` dataset (``POST /v1/datasets/upload``, streamed from the file; see
        the README for its arrays); returns the dataset (201).

        Raises:
            OSError: The file cannot be read.
            LetheClientError: The service refused it (413 over its size limit, 422 naming the
                array at fault).
        """
        return self._run(self._upload_dataset(name, Path(path)))  # type: ignore[no-any-return]

    def create_model(self, name: str, dataset_id: str, architecture: str,
                     **spec: Any) -> dict[str, Any]:
        """Create a model and queue its training; ``spec``: ``training``, ``certification``,
        ``batching``, ``budget`` dicts."""
        return self._run(self._create_model(_model_body(name, dataset_id, architecture, spec)))  # type: ignore[no-any-return]

    def retrain(self, model_id: str) -> dict[str, Any]:
        """Queue an exact retrain; returns ``{"job_id", "status"}``."""
        return self._run(self._retrain(model_id))  # type: ignore[no-any-return]

    # --- waits -----------------------------------------------------------------------------

    def _poll(self, fetch: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool],
              what: str, timeout_s: float, poll_s: float,
              on_update: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            body = fetch()
            if on_update:
                on_update(body)
            if done(body):
                return body
            if time.monotonic() >= deadline:
                raise WaitTimeout(0, "Wait timeout", f"{what} not finished after {timeout_s:g} s "
                                                     f"(last status {body.get('status')!r})", body)
            time.sleep(poll_s)

    def wait_request(self, request_id: str, *, timeout_s: float = 600, poll_s: float = 1.0,
                     on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll a deletion request until ``completed``, ``failed`` or ``canceled``.

        Raises:
            WaitTimeout: Still not final after ``timeout_s`` seconds.
        """
        return self._poll(lambda: self.get_request(request_id), lambda b: b["status"] in REQUEST_FINAL,
                          f"deletion request {request_id}", timeout_s, poll_s, on_update)

    def wait_job(self, job_id: str, *, timeout_s: float = 900, poll_s: float = 1.0,
                 on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll a job until ``succeeded`` or ``failed``; ``on_update`` sees each body (with
        ``progress`` in [0, 1])."""
        return self._poll(lambda: self.get_job(job_id), lambda b: b["status"] in JOB_FINAL,
                          f"job {job_id}", timeout_s, poll_s, on_update)

    def wait_model(self, model_id: str, *, timeout_s: float = 900, poll_s: float = 1.0,
                   on_update: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll a model until it is no longer ``training`` (``ready`` or ``failed``)."""
        return self._poll(lambda: self.get_model(model_id), lambda b: b["status"] != "training",
                          f"model {model_id}", timeout_s, poll_s, on_update)

    # --- download and verification -----------------------------------------------------------

    def download(self, model_id: str, number: int, path: Path | str, *,
                 on_progress: ProgressFn | None = None) -> DownloadResult:
        """Download a version's weights to ``path``, resuming ``<path>.part`` if present.

        The transfer restarts from the part file's size after a connection error (up to the retry
        policy's attempts); the file is renamed to ``path`` only when its SHA-256 equals the
        certificate's ``weights_sha256``.

        Raises:
            ChecksumMismatch: The bytes are not the certified ones (the part file is removed).
            LetheClientError: An error answer, or transport failures past the retry policy.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        expected = self.certificate(model_id, number)["weights_sha256"]
        part, etag = _part_path(path), f'"{expected}"'
        call = _Call("GET", f"/v1/models/{model_id}/versions/{number}/download", (200, 206))
        resumed_from = part.stat().st_size if part.exists() else 0
        for attempt in range(self.retry.attempts):
            offset = part.stat().st_size if part.exists() else 0
            try:
                with self.http.stream("GET", call.path, headers=_range_headers(offset, etag)) as rsp:
                    if rsp.status_code == 416:  # the part is already whole (or longer): start over
                        part.unlink(missing_ok=True)
                        resumed_from = 0
                        continue
                    if rsp.status_code in self.retry.statuses and attempt < self.retry.attempts - 1:
                        self._sleep(self.retry.delay_s(attempt, rsp))
                        continue
                    if rsp.status_code not in call.expect:
                        rsp.read()
                        raise LetheClientError.from_response(rsp)
                    if rsp.status_code == 200:
                        offset = resumed_from = 0  # the server sent the whole file
                    total = _total_bytes(rsp, offset)
                    with part.open("ab" if offset else "wb") as fh:
                        done = offset
                        for chunk in rsp.iter_bytes(_CHUNK_BYTES):
                            fh.write(chunk)
                            done += len(chunk)
                            if on_progress:
                                on_progress(done, total)
                return _finish_download(part, path, expected, resumed_from)
            except httpx.TransportError as exc:
                if attempt == self.retry.attempts - 1:
                    raise _transport_error(call, exc) from exc
                self._sleep(self.retry.delay_s(attempt))
        raise LetheClientError(0, "Download failed", f"{call.path}: no complete transfer after "
                                                     f"{self.retry.attempts} tries")

    def verify_version(self, model_id: str, number: int, weights: Path | str | None = None,
                       *, request_id: str | None = None) -> list[Check]:
        """Fetch a version's certificate and the public keys (and a request's receipt) and run
        the offline checks of ``lethe verify`` on them (and on the weights file, if given)."""
        receipt = self.receipt(request_id) if request_id else None
        return _verify_files(self.certificate(model_id, number), self.keys(),
                             Path(weights) if weights else None, receipt)


class AsyncLetheClient(_Api):
    """Asynchronous client; the same methods as :class:`LetheClient`, awaited.

    Args:
        base_url, api_key, timeout_s, retry: As for :class:`LetheClient`.
        transport: An httpx async transport (``httpx.MockTransport`` works too).
        sleep: Awaited with the backoff delay in seconds.
    """

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, *,
                 timeout_s: float = 30.0, retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers,
                                      timeout=timeout_s, transport=transport)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    async def __aenter__(self) -> AsyncLetheClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send(self, call: _Call) -> httpx.Response:
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            try:
                if call.upload is not None:
                    response = await self.http.request(
                        call.method, call.path, content=_file_chunks(call.upload),
                        params=call.params, headers=call.headers)
                else:
                    response = await self.http.request(call.method, call.path, json=call.json,
                                                       params=call.params, headers=call.headers)
            except httpx.TransportError as exc:
                if last:
                    raise _transport_error(call, exc) from exc
                await self._sleep(self.retry.delay_s(attempt))
                continue
            if response.status_code not in self.retry.statuses or last:
                return response
            await self._sleep(self.retry.delay_s(attempt, response))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, call: _Call) -> Any:
        return _check(call, await self._send(call))

    async def get(self, path: str, **params: Any) -> Any:
        """GET any API path (e.g. ``/v1/models``) and return its JSON body."""
        return await self._run(self._get(path, params or None))

    async def list_models(self) -> list[dict[str, Any]]:
        return await self._run(self._get("/v1/models"))  # type: ignore[no-any-return]

    async def get_model(self, model_id: str) -> dict[str, Any]:
        return await self._run(self._get(f"/v1/models/{model_id}"))  # type: ignore[no-any-return]

    async def list_versions(self, model_id: str) -> list[dict[str, Any]]:
        return await self._run(self._get(f"/v1/models/{model_id}/versions"))  # type: ignore[no-any-return]

    async def certificate(self, model_id: str, number: int) -> dict[str, Any]:
        return await self._run(self._get(f"/v1/models/{model_id}/versions/{number}/certificate"))  # type: ignore[no-any-return]

    async def budget(self, model_id: str) -> dict[str, Any]:
        return await self._run(self._get(f"/v1/models/{model_id}/budget"))  # type: ignore[no-any-return]

    async def get_request(self, request_id: str) -> dict[str, Any]:
        return await self._run(self._get(f"/v1/deletion-requests/{request_id}"))  # type: ignore[no-any-return]

    async def list_requests(self, model_id: str | None = None, status: str | None = None,
                            limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """A page of deletion requests, oldest first: ``{"items": [...], "next_cursor"}``."""
        return await self._run(self._list_requests(model_id, status, limit, cursor))  # type: ignore[no-any-return]

    async def cancel_request(self, request_id: str) -> dict[str, Any]:
        """Cancel a pending request (409, as :class:`LetheClientError`, once it is batched)."""
        return await self._run(self._cancel(request_id))  # type: ignore[no-any-return]

    async def receipt(self, request_id: str) -> dict[str, Any]:
        return await self._run(self._get(f"/v1/deletion-requests/{request_id}/receipt"))  # type: ignore[no-any-return]

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return await self._run(self._get(f"/v1/jobs/{job_id}"))  # type: ignore[no-any-return]

    async def keys(self) -> list[dict[str, Any]]:
        return await self._run(self._get("/v1/keys"))  # type: ignore[no-any-return]

    async def forget(self, model_id: str, sample_ids: Sequence[str | int] | None = None, *,
                     subject_ids: Sequence[str] | None = None) -> dict[str, Any]:
        return await self._run(self._forget(model_id, sample_ids, subject_ids))  # type: ignore[no-any-return]

    async def create_dataset(self, name: str, source: str) -> dict[str, Any]:
        return await self._run(self._create_dataset(name, source))  # type: ignore[no-any-return]

    async def upload_dataset(self, name: str, path: Path | str) -> dict[str, Any]:
        return await self._run(self._upload_dataset(name, Path(path)))  # type: ignore[no-any-return]

    async def create_model(self, name: str, dataset_id: str, architecture: str,
                           **spec: Any) -> dict[str, Any]:
        return await self._run(self._create_model(_model_body(name, dataset_id, architecture, spec)))  # type: ignore[no-any-return]

    async def retrain(self, model_id: str) -> dict[str, Any]:
        return await self._run(self._retrain(model_id))  # type: ignore[no-any-return]

    async def _poll(self, fetch: Callable[[], Awaitable[dict[str, Any]]],
                    done: Callable[[dict[str, Any]], bool], what: str, timeout_s: float,
                    poll_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            body = await fetch()
            if done(body):
                return body
            if time.monotonic() >= deadline:
                raise WaitTimeout(0, "Wait timeout", f"{what} not finished after {timeout_s:g} s "
                                                     f"(last status {body.get('status')!r})", body)
            await asyncio.sleep(poll_s)

    async def wait_request(self, request_id: str, *, timeout_s: float = 600,
                           poll_s: float = 1.0) -> dict[str, Any]:
        return await self._poll(lambda: self.get_request(request_id),
                                lambda b: b["status"] in REQUEST_FINAL,
                                f"deletion request {request_id}", timeout_s, poll_s)

    async def wait_job(self, job_id: str, *, timeout_s: float = 900,
                       poll_s: float = 1.0) -> dict[str, Any]:
        return await self._poll(lambda: self.get_job(job_id), lambda b: b["status"] in JOB_FINAL,
                                f"job {job_id}", timeout_s, poll_s)

    async def wait_model(self, model_id: str, *, timeout_s: float = 900,
                         poll_s: float = 1.0) -> dict[str, Any]:
        return await self._poll(lambda: self.get_model(model_id),
                                lambda b: b["status"] != "training", f"model {model_id}",
                                timeout_s, poll_s)

    async def download(self, model_id: str, number: int, path: Path | str, *,
                       on_progress: ProgressFn | None = None) -> DownloadResult:
        """As :meth:`LetheClient.download` (resume with Range, SHA-256 against the certificate)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        expected = (await self.certificate(model_id, number))["weights_sha256"]
        part, etag = _part_path(path), f'"{expected}"'
        call = _Call("GET", f"/v1/models/{model_id}/versions/{number}/download", (200, 206))
        resumed_from = part.stat().st_size if part.exists() else 0
        for attempt in range(self.retry.attempts):
            offset = part.stat().st_size if part.exists() else 0
            try:
                async with self.http.stream("GET", call.path,
                                            headers=_range_headers(offset, etag)) as rsp:
                    if rsp.status_code == 416:
                        part.unlink(missing_ok=True)
                        resumed_from = 0
                        continue
                    if rsp.status_code in self.retry.statuses and attempt < self.retry.attempts - 1:
                        await self._sleep(self.retry.delay_s(attempt, rsp))
                        continue
                    if rsp.status_code not in call.expect:
                        await rsp.aread()
                        raise LetheClientError.from_response(rsp)
                    if rsp.status_code == 200:
                        offset = resumed_from = 0
                    total = _total_bytes(rsp, offset)
                    with part.open("ab" if offset else "wb") as fh:
                        done = offset
                        async for chunk in rsp.aiter_bytes(_CHUNK_BYTES):
                            fh.write(chunk)
                            done += len(chunk)
                            if on_progress:
                                on_progress(done, total)
                return _finish_download(part, path, expected, resumed_from)
            except httpx.TransportError as exc:
                if attempt == self.retry.attempts - 1:
                    raise _transport_error(call, exc) from exc
                await self._sleep(self.retry.delay_s(attempt))
        raise LetheClientError(0, "Download failed", f"{call.path}: no complete transfer after "
                                                     f"{self.retry.attempts} tries")

    async def verify_version(self, model_id: str, number: int, weights: Path | str | None = None,
                             *, request_id: str | None = None) -> list[Check]:
        """As :meth:`LetheClient.verify_version`."""
        receipt = await self.receipt(request_id) if request_id else None
        cert, keys = await self.certificate(model_id, number), await self.keys()
        return _verify_files(cert, keys, Path(weights) if weights else None, receipt)
