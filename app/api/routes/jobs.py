"""``GET /v1/jobs/{id}`` (models:read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.api import paths
from app.api.deps import SessionDep, require
from app.db.models import ApiKey
from app.schemas.jobs import JobPublic
from app.services import jobs as service
from app.services.auth import SCOPE_MODELS_READ

router = APIRouter(tags=["jobs"])


@router.get(paths.JOB)
def get_job(
    job_id: str,
    session: SessionDep,
    _key: Annotated[ApiKey, Depends(require(SCOPE_MODELS_READ))],
) -> JobPublic:
    job = service.get_job(session, job_id)
    public = JobPublic.model_validate(job)
    # Only durations go out: a worker may keep diagnostics (a traceback) beside them.
    public.timings = {
        k: v for k, v in (job.timings or {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return public
