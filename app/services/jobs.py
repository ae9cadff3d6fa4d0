"""Read worker jobs."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db.models import Job
from app.errors import NotFound

__all__ = ["get_job"]


def get_job(session: Session, job_id: str) -> Job:
    """Raises: NotFound."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}", job_id=job_id)
    return job
