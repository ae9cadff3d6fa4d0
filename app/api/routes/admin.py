"""The admin dashboard: the page at ``/admin`` (static HTML + vanilla JS served from
``app/api/static``, nothing from a CDN) and its two admin-only JSON routes.

The page itself needs no key; it asks for the admin key once, keeps it in ``sessionStorage`` and
calls the JSON API with it (the public routes plus the two below).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from app.api import paths
from app.api.deps import SessionDep, SettingsDep, require
from app.db.models import ApiKey
from app.errors import NotFound
from app.schemas.dashboard import RequestSummaryPublic, VersionPagePublic
from app.services import dashboard, signing
from app.services.auth import SCOPE_ADMIN

router = APIRouter(tags=["admin"])

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_STATIC_FILES = {"admin.js": "text/javascript", "admin.css": "text/css"}
_NO_STORE = {"Cache-Control": "no-store"}

Admin = Annotated[ApiKey, Depends(require(SCOPE_ADMIN))]


@router.get(paths.ADMIN, include_in_schema=False)
def admin_page() -> FileResponse:
    """The dashboard's HTML shell."""
    return FileResponse(STATIC_DIR / "admin.html", media_type="text/html", headers=_NO_STORE)


@router.get(paths.ADMIN_STATIC, include_in_schema=False)
def admin_static(name: str) -> FileResponse:
    """The dashboard's script and stylesheet (a fixed list; nothing else under the folder)."""
    if name not in _STATIC_FILES:
        raise NotFound(f"no static file {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=_STATIC_FILES[name], headers=_NO_STORE)


@router.get(paths.ADMIN_MODEL_SUMMARY)
def model_summary(model_id: str, session: SessionDep, _key: Admin) -> RequestSummaryPublic:
    """Deletion requests by status, the oldest pending request's age, recent failures with
    their reasons, and the jobs queued or running with their progress."""
    return RequestSummaryPublic.model_validate(dashboard.request_summary(session, model_id))


@router.get(paths.ADMIN_MODEL_VERSIONS)
def model_versions_page(
    model_id: str,
    session: SessionDep,
    settings: SettingsDep,
    _key: Admin,
    limit: Annotated[int, Query(ge=1, le=500, description="Versions per page.")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1,  # a database integer: larger is a 422, not a 500
                                 description="Versions to skip (newest first).")] = 0,
) -> VersionPagePublic:
    """A page of versions, newest first, each with its certificate's verification status."""
    keys = dashboard.keys_by_id(signing.public_keys(settings))
    page = dashboard.versions_page(session, model_id, keys, limit=limit, offset=offset)
    return VersionPagePublic.model_validate(page)
