"""``/v1/models``: create (admin, queues training), read (models:read), retrain (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from app.api import paths
from app.api.deps import SessionDep, UnitOfWorkDep, require
from app.api.idempotency import IdempotencyDep
from app.db.models import ApiKey, Model
from app.schemas.common import RequestBody
from app.schemas.jobs import RetrainAccepted
from app.schemas.models import (BatchingSpec, BudgetCaps, CertificationSpec, ModelCreate, ModelPublic,
                                TrainingSpec)
from app.services import models as service
from app.services.auth import SCOPE_ADMIN, SCOPE_MODELS_READ

router = APIRouter(tags=["models"])


def _known(spec: type[RequestBody], stored: dict[str, Any] | None) -> dict[str, Any]:
    """Stored recipe keys that this version's spec knows (a newer worker may have added some)."""
    return {k: v for k, v in (stored or {}).items() if k in spec.model_fields}


def to_public(model: Model, train_job_id: str | None) -> ModelPublic:
    """Shape a ``Model`` row for the wire."""
    return ModelPublic(
        id=model.id,
        name=model.name,
        dataset_id=model.dataset_id,
        architecture=model.architecture,
        status=model.status,
        current_version=model.current_version,
        error=model.error,
        training=TrainingSpec.model_validate(_known(TrainingSpec, model.training)),
        certification=CertificationSpec.model_validate(
            _known(CertificationSpec, model.certification)
        ),
        batching=BatchingSpec.model_validate(_known(BatchingSpec, model.batching)),
        budget=BudgetCaps.model_validate(_known(BudgetCaps, model.budget)),
        created_at=model.created_at,
        train_job_id=train_job_id,
    )


@router.post(paths.MODELS, status_code=status.HTTP_202_ACCEPTED)
def create_model(
    body: ModelCreate,
    uow: UnitOfWorkDep,
    response: Response,
    _key: Annotated[ApiKey, Depends(require(SCOPE_ADMIN))],
    idem: IdempotencyDep,
) -> ModelPublic:
    """Create a model and queue its training; poll ``GET /v1/models/{id}`` until ``ready``."""
    model, job = service.create_model(uow.session, body)
    uow.after_commit.enqueue([job])
    response.headers["Location"] = paths.url(paths.MODEL, model_id=model.id)
    return idem.remember(202, to_public(model, job.id), response)


NEXT_CURSOR_HEADER = "Next-Cursor"


@router.get(paths.MODELS)
def list_models(
    session: SessionDep,
    response: Response,
    _key: Annotated[ApiKey, Depends(require(SCOPE_MODELS_READ))],
    limit: Annotated[int | None, Query(ge=1, le=500, description="Models per page (default: all).")] = None,
    cursor: Annotated[str | None, Query(min_length=1, max_length=200,
                                        description="The `Next-Cursor` header of the previous page.")] = None,
) -> list[ModelPublic]:
    """Models, oldest first. With ``limit``, a page; the ``Next-Cursor`` header (absent on the
    last page) is the ``cursor`` of the next one."""
    models, next_cursor = service.list_models(session, limit=limit, cursor=cursor)
    if next_cursor is not None:
        response.headers[NEXT_CURSOR_HEADER] = next_cursor
    jobs = service.train_job_ids(session, (m.id for m in models))
    return [to_public(m, jobs.get(m.id)) for m in models]


@router.get(paths.MODEL)
def get_model(
    model_id: str,
    session: SessionDep,
    _key: Annotated[ApiKey, Depends(require(SCOPE_MODELS_READ))],
) -> ModelPublic:
    model = service.get_model(session, model_id)
    return to_public(model, service.train_job_ids(session, [model.id]).get(model.id))


@router.post(paths.MODEL_RETRAIN, status_code=status.HTTP_202_ACCEPTED)
def retrain_model(
    model_id: str,
    uow: UnitOfWorkDep,
    response: Response,
    _key: Annotated[ApiKey, Depends(require(SCOPE_ADMIN))],
    idem: IdempotencyDep,
) -> RetrainAccepted:
    """Queue an exact retrain on the current retain set; it publishes a ``retrained`` version."""
    job = service.request_retrain(uow.session, model_id)
    uow.after_commit.enqueue([job])
    response.headers["Location"] = paths.url(paths.JOB, job_id=job.id)
    accepted = RetrainAccepted(job_id=job.id, status=job.status)  # type: ignore[arg-type]
    return idem.remember(202, accepted, response)
