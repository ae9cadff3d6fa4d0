"""Deletion requests: submit and cancel (requests:write); list, poll and fetch the receipt
(requests:read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from sqlalchemy.orm import Session

from app.api import paths
from app.api.deps import SessionDep, UnitOfWorkDep, require
from app.api.idempotency import IdempotencyDep
from app.db.models import ApiKey, DeletionRequest
from app.schemas.deletion_requests import (DeletionRequestCreate, DeletionRequestPage,
                                           DeletionRequestPublic, RequestStatus)
from app.schemas.receipts import ReceiptPublic
from app.services import receipts
from app.services import requests as service
from app.services.auth import SCOPE_REQUESTS_READ, SCOPE_REQUESTS_WRITE
from app.services.dispatch import schedule_seal_check

router = APIRouter(tags=["deletion requests"])


def to_public(request: DeletionRequest) -> DeletionRequestPublic:
    return DeletionRequestPublic(
        id=request.id,
        model_id=request.model_id,
        status=request.status,  # type: ignore[arg-type]
        version=request.version,
        error=request.error,
        sample_count=len(request.sample_ids or []),
        subject_count=None if request.subject_ids is None else len(request.subject_ids),
        created_at=request.created_at,
        updated_at=request.updated_at,
    )


@router.post(paths.MODEL_DELETION_REQUESTS, status_code=status.HTTP_202_ACCEPTED)
async def submit_deletion_request(
    model_id: str,
    body: DeletionRequestCreate,
    uow: UnitOfWorkDep,
    response: Response,
    _key: Annotated[ApiKey, Depends(require(SCOPE_REQUESTS_WRITE))],
    idem: IdempotencyDep,
) -> DeletionRequestPublic:
    """Ask the model to forget training samples (``sample_ids``) or every sample of some
    subjects (``subject_ids``); poll the ``Location`` until ``completed``."""

    def accept(session: Session) -> DeletionRequestPublic:
        request, after = service.submit(session, model_id, body.sample_ids,
                                        subject_ids=body.subject_ids)
        if after.job is not None:
            uow.after_commit.enqueue([after.job])
        if after.seal_check_in_s is not None:
            uow.after_commit.add(schedule_seal_check, model_id, after.seal_check_in_s)
        response.headers["Location"] = paths.url(paths.DELETION_REQUEST, request_id=request.id)
        return idem.remember(202, to_public(request), response)

    # async with one thread hop: the intake path (issue 4 §4) pays for each hop
    return await uow.run_and_commit(accept)


@router.get(paths.DELETION_REQUESTS)
def list_deletion_requests(
    session: SessionDep,
    _key: Annotated[ApiKey, Depends(require(SCOPE_REQUESTS_READ))],
    model_id: Annotated[str | None, Query(min_length=1, max_length=64,
                                          description="Only this model's requests.")] = None,
    status_: Annotated[RequestStatus | None, Query(
        alias="status", description="Only requests in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Requests per page.")] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=200,
                                        description="`next_cursor` of the previous page.")] = None,
) -> DeletionRequestPage:
    """Deletion requests, oldest first, with cursor pagination."""
    page = service.list_requests(session, model_id=model_id, status=status_, limit=limit,
                                 cursor=cursor)
    return DeletionRequestPage(items=[to_public(r) for r in page.items],
                               next_cursor=page.next_cursor)


@router.post(paths.DELETION_REQUEST_CANCEL)
def cancel_deletion_request(
    request_id: str,
    session: SessionDep,
    _key: Annotated[ApiKey, Depends(require(SCOPE_REQUESTS_WRITE))],
) -> DeletionRequestPublic:
    """Cancel a ``pending`` request; 409 once it is sealed into a batch (the problem names its
    status). Canceling a canceled request answers it again."""
    return to_public(service.cancel(session, request_id))


@router.get(paths.DELETION_REQUEST)
def get_deletion_request(
    request_id: str,
    session: SessionDep,
    _key: Annotated[ApiKey, Depends(require(SCOPE_REQUESTS_READ))],
) -> DeletionRequestPublic:
    return to_public(service.get_request(session, request_id))


@router.get(paths.DELETION_REQUEST_RECEIPT)
def get_deletion_receipt(
    request_id: str,
    session: SessionDep,
    _key: Annotated[ApiKey, Depends(require(SCOPE_REQUESTS_READ))],
) -> ReceiptPublic:
    """A completed request's receipt: per sample id the version that forgot it and a Merkle
    inclusion proof in that version's ``forgotten.merkle_root``, plus the signed certificates.
    Check it offline with ``lethe verify CERT.json --receipt R.json --key KEYS.json``.
    409 while the request is not completed."""
    return ReceiptPublic.model_validate(receipts.build_receipt(session, request_id))
