"""``POST /v1/datasets/upload``: a dataset as an ``.npz`` body (admin, like built-in registration).

The body is streamed to a file under the artifact store (never held whole in memory), hashed on
the way and cut off with 413 past ``LETHE_MAX_UPLOAD_BYTES`` (``Content-Length`` is checked before
reading). Validation, the rows and the move to the file's content address then run in a worker
thread, in one transaction; any failure leaves no row and no file behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from app.api import paths
from app.api.deps import SessionDep, SettingsDep, require
from app.api.problems import media_type
from app.db.models import ApiKey
from app.db.session import session_scope
from app.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from app.schemas.datasets import DatasetPublic
from app.services import idempotency
from app.services import uploads as service
from app.services.auth import SCOPE_ADMIN
from app.settings import Settings
from app.storage.artifacts import ArtifactStore

router = APIRouter(tags=["datasets"])

_NPZ_BODY = {
    "requestBody": {
        "required": True,
        "description": "An .npz file (numpy.savez or savez_compressed): x, y, sample_ids, "
                       "optional subject_ids, optional x_test and y_test.",
        "content": {"application/octet-stream": {"schema": {"type": "string",
                                                            "format": "binary"}}},
    }
}


def _too_large(limit: int, *, received: int | None = None) -> PayloadTooLarge:
    told = "is" if received is None else f"reached {received} bytes,"
    return PayloadTooLarge(f"the upload {told} over the limit of {limit} bytes "
                           "(LETHE_MAX_UPLOAD_BYTES)", max_bytes=limit)


def _refuse_forms(content_type: str) -> None:
    """``curl -F`` wraps the file in a form: its bytes are not the .npz, and reading them would
    fail with a misleading message deep inside numpy."""
    media = media_type(content_type)
    if media in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise UnsupportedMediaType(
            f"the .npz must be the raw request body, not a form ({media}): send it with "
            "curl --data-binary @file.npz -H 'Content-Type: application/octet-stream'",
            content_type=media)


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"Content-Length {raw[:40]!r} is not a number",
                           field="Content-Length") from None


async def _stream_to_file(request: Request, dest_dir: Path, limit: int) -> tuple[Path, str]:
    """Write the body to a new file in ``dest_dir``; returns its path and SHA-256.

    Raises:
        PayloadTooLarge: More than ``limit`` bytes arrived (the file is removed).
    """
    fd, name = tempfile.mkstemp(dir=dest_dir, prefix="upload-", suffix=".npz.part")
    path = Path(name)
    digest = hashlib.sha256()
    received = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise _too_large(limit, received=received)
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, digest.hexdigest()


def _register(settings: Settings, key_id: str, idempotency_key: str | None, route: str,
              name: str, file: Path, sha256: str) -> tuple[DatasetPublic, str]:
    store = ArtifactStore(settings.artifacts_dir)
    created = False
    try:
        with session_scope() as session:
            claim = None
            if idempotency_key is not None:
                # The fingerprint covers the name and the file's digest, not the bytes again.
                claim = idempotency.claim(session, key_id, idempotency_key, method="POST",
                                          path=route, body=f"{name}\n{sha256}".encode())
            dataset, created = service.register_upload(
                session, name=name, file=file, sha256=sha256, store=store,
                max_array_bytes=settings.max_upload_bytes)
            public = DatasetPublic.model_validate(dataset)
            location = paths.url(paths.DATASET, dataset_id=dataset.id)
            if claim is not None:
                claim.remember(201, public.model_dump(mode="json"), {"Location": location})
        return public, location
    except BaseException:
        if created:
            with session_scope() as session:
                service.discard_stored(session, store, sha256)
        raise
    finally:
        file.unlink(missing_ok=True)


@router.post(paths.DATASET_UPLOAD, status_code=status.HTTP_201_CREATED,
             openapi_extra=_NPZ_BODY,
             responses={413: {"description": "The body is over LETHE_MAX_UPLOAD_BYTES."},
                        415: {"description": "The body is a form (curl -F), not the .npz."}})
async def upload_dataset(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    key: Annotated[ApiKey, Depends(require(SCOPE_ADMIN))],
    name: Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
                               description="Display name of the dataset.")],
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=idempotency.MAX_KEY_CHARS,
        description="Makes a retry safe: the same key, name and file return the stored answer; "
                    "with another name or file, 409.")] = None,
) -> DatasetPublic:
    """Upload a dataset as an ``.npz`` body (``curl --data-binary @data.npz``).

    Arrays: ``x`` (float or uint8, ``[n, d]`` or ``[n, C, H, W]``), ``y`` (int labels ``[n]``),
    ``sample_ids`` (``[n]`` unique strings or ints: the ids deletion requests name), optional
    ``subject_ids`` (``[n]``: whose sample each row is, for subject deletion requests), optional
    ``x_test``/``y_test`` (test accuracy of each version). 413 past ``LETHE_MAX_UPLOAD_BYTES``;
    422 naming the array at fault otherwise."""
    key_id = key.id
    # End the auth transaction: on SQLite it holds the write lock (BEGIN IMMEDIATE), and the
    # upload may take a while.
    session.rollback()
    _refuse_forms(request.headers.get("content-type", ""))
    limit = settings.max_upload_bytes
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    store = ArtifactStore(settings.artifacts_dir)
    file, sha256 = await _stream_to_file(request, store.incoming_dir(), limit)
    public, location = await run_in_threadpool(
        _register, settings, key_id, idempotency_key, request.url.path, name, file, sha256)
    response.headers["Location"] = location
    return public
