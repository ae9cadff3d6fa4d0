"""``/v1/datasets``: register (admin) and read (models:read) datasets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from app.api import paths
from app.api.deps import SessionDep, SettingsDep, require
from app.api.idempotency import IdempotencyDep
from app.db.models import ApiKey
from app.schemas.datasets import DatasetCreate, DatasetPublic
from app.services import datasets as service
from app.services.auth import SCOPE_ADMIN, SCOPE_MODELS_READ

router = APIRouter(tags=["datasets"])


@router.post(paths.DATASETS, status_code=status.HTTP_201_CREATED)
def register_dataset(
    body: DatasetCreate,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    _key: Annotated[ApiKey, Depends(require(SCOPE_ADMIN))],
    idem: IdempotencyDep,
) -> DatasetPublic:
    """Register a built-in dataset (``mnist`` must be fetched first: ``lethe data fetch mnist``)."""
    dataset = service.register_builtin(
        session, name=body.name, source=body.source, data_dir=settings.resolved_data_dir
    )
    response.headers["Location"] = paths.url(paths.DATASET, dataset_id=dataset.id)
    return idem.remember(201, DatasetPublic.model_validate(dataset), response)


@router.get(paths.DATASETS)
def list_datasets(
    session: SessionDep, _key: Annotated[ApiKey, Depends(require(SCOPE_MODELS_READ))]
) -> list[DatasetPublic]:
    return [DatasetPublic.model_validate(d) for d in service.list_datasets(session)]


@router.get(paths.DATASET)
def get_dataset(
    dataset_id: str,
    session: SessionDep,
    _key: Annotated[ApiKey, Depends(require(SCOPE_MODELS_READ))],
) -> DatasetPublic:
    return DatasetPublic.model_validate(service.get_dataset(session, dataset_id))
