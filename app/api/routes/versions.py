"""Published versions (models:read): list, one, the weights file, the certificate."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from app.api import paths
from app.api.deps import SessionDep, SettingsDep, require
from app.api.file_response import ProblemFileResponse
from app.db.models import ApiKey
from app.schemas.versions import VersionPublic
from app.services import versions as service
from app.services.auth import SCOPE_MODELS_READ

# A version number is a non-negative 64-bit integer; anything larger can name no version (404),
# and must never reach the database driver (SQLite overflows on it).
VersionNumber = Annotated[int, Path(ge=0, le=2**63 - 1, description="Version number.")]

router = APIRouter(tags=["versions"])

ModelsRead = Annotated[ApiKey, Depends(require(SCOPE_MODELS_READ))]


@router.get(paths.MODEL_VERSIONS)
def list_versions(model_id: str, session: SessionDep, _key: ModelsRead) -> list[VersionPublic]:
    return [VersionPublic.model_validate(v) for v in service.list_versions(session, model_id)]


@router.get(paths.MODEL_VERSION)
def get_version(model_id: str, number: VersionNumber, session: SessionDep, _key: ModelsRead) -> VersionPublic:
    return VersionPublic.model_validate(service.get_version(session, model_id, number))


@router.head(paths.MODEL_VERSION_DOWNLOAD, include_in_schema=False)
@router.get(
    paths.MODEL_VERSION_DOWNLOAD,
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}},
                     "description": "The released weights (safetensors); supports Range."}},
)
def download_version(
    model_id: str, number: VersionNumber, request: Request, session: SessionDep,
    settings: SettingsDep, _key: ModelsRead,
) -> Response:
    """The released weights as safetensors, with ``Content-Length``, ``ETag`` (the SHA-256) and
    ``Repr-Digest`` (RFC 9530) / ``Digest`` (RFC 3230) headers; byte ranges are served, and a
    matching ``If-None-Match`` answers 304 (RFC 9110 §13.1.2)."""
    version = service.get_version(session, model_id, number)
    path = service.artifact_path(version, settings.artifacts_dir)
    digest_b64 = base64.b64encode(bytes.fromhex(version.sha256)).decode("ascii")
    headers = {
        "ETag": f'"{version.sha256}"',
        "Repr-Digest": f"sha-256=:{digest_b64}:",
        "Digest": f"SHA-256={digest_b64}",
        "Cache-Control": "public, max-age=31536000, immutable",
    }
    wanted = {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}
    if headers["ETag"] in wanted or "*" in wanted:
        return Response(status_code=304, headers=headers)
    return ProblemFileResponse(
        path,
        request=request,
        media_type="application/octet-stream",
        filename=f"{model_id}-v{number}.safetensors",
        headers=headers,
    )


@router.get(paths.MODEL_VERSION_CERTIFICATE)
def get_certificate(
    model_id: str, number: VersionNumber, session: SessionDep, _key: ModelsRead
) -> JSONResponse:
    """The certificate of METHOD §8 exactly as stored (it includes ``weights_sha256``)."""
    version = service.get_version(session, model_id, number)
    return JSONResponse(version.certificate)
