"""``GET /v1/models/{id}/budget`` (models:read): the ledger and the cumulative figures."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.api import paths
from app.api.deps import SessionDep, require
from app.db.models import ApiKey
from app.schemas.budget import BudgetPublic
from app.services import ledger
from app.services.auth import SCOPE_MODELS_READ

router = APIRouter(tags=["budget"])


@router.get(paths.MODEL_BUDGET)
def get_budget(
    model_id: str,
    session: SessionDep,
    _key: Annotated[ApiKey, Depends(require(SCOPE_MODELS_READ))],
) -> BudgetPublic:
    return ledger.budget(session, model_id)
