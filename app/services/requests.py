"""Deletion requests: refuse bad ones at the door, store good ones, and move them along.

Lifecycle (DESIGN.md): ``pending`` → ``batched`` (sealed into a job) → ``applying`` →
``completed`` (names the version that no longer contains the samples) or ``failed``;
``pending`` → ``canceled``. A request whose samples an earlier version already forgot completes at
once, pointing at that version. Invalid requests are refused whole (4xx) and leave no row.

Sample ids of a built-in dataset are the decimal row indices of its training split, as strings:
``"0"`` … ``str(n - 1)``, with no sign, spaces or leading zeros. An uploaded dataset's are its own
strings, and a request may name subjects instead (:mod:`app.services.id_lookup`); either way the
stored ``sample_ids`` are row indices.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from app.db.models import Dataset, DeletionRequest, Job, Model, new_id, utcnow
from app.errors import InvalidInput, NotFound, StateConflict
from app.services.batching import AfterSubmit, seal_after_submit
from app.services.forgotten import forgotten_and_total, forgotten_versions
from app.services.id_lookup import rows_of_sample_ids, rows_of_subjects
from app.services.pagination import after, decode_cursor, encode_cursor
from app.services.uploads import UPLOADED_SCHEME
from app.settings import get_settings

__all__ = [
    "CANCELABLE",
    "MAX_LISTED_IDS",
    "RequestPage",
    "cancel",
    "fail_job_requests",
    "finish_job_requests",
    "forget_set_of_job",
    "get_request",
    "list_requests",
    "mark_job_requests_applying",
    "parse_sample_ids",
    "requests_of_job",
    "submit",
]

MAX_LISTED_IDS = 20
"""At most this many offending ids are named in an error."""

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,17}", re.ASCII)
_MAX_ECHO_CHARS = 64


def _echo(raw: str) -> str:
    return raw if len(raw) <= _MAX_ECHO_CHARS else raw[:_MAX_ECHO_CHARS] + "…"


def parse_sample_ids(raw_ids: Sequence[str], n: int, *, max_samples: int) -> list[int]:
    """Validate sample ids against a training split of size ``n``.

    Args:
        raw_ids: The ids as sent.
        n: Size of the training split; valid ids are ``"0"`` … ``str(n - 1)``.
        max_samples: Most ids one request may carry.

    Returns:
        The row indices, sorted.

    Raises:
        InvalidInput: An empty list; too many ids; ids that are not canonical decimals in
            ``[0, n)`` (``invalid_sample_ids`` names the first 20); ids given twice
            (``duplicate_sample_ids`` names the first 20).
    """
    if not raw_ids:
        raise InvalidInput("sample_ids is empty: name at least one sample", field="sample_ids")
    if len(raw_ids) > max_samples:
        raise InvalidInput(
            f"{len(raw_ids)} sample ids in one request; at most {max_samples} are allowed",
            field="sample_ids",
            max_samples=max_samples,
        )
    invalid = list(dict.fromkeys(
        raw for raw in raw_ids
        if not isinstance(raw, str) or not _DECIMAL.fullmatch(raw) or int(raw) >= n
    ))
    if invalid:
        raise InvalidInput(
            f"{len(invalid)} sample id(s) are not training-row indices of this dataset "
            f'(decimal strings "0" to "{n - 1}", no sign, spaces or leading zeros)',
            field="sample_ids",
            invalid_sample_ids=[_echo(str(raw)) for raw in invalid[:MAX_LISTED_IDS]],
            invalid_count=len(invalid),
        )
    counts = Counter(raw_ids)
    duplicates = [raw for raw, c in counts.items() if c > 1]
    if duplicates:
        raise InvalidInput(
            f"{len(duplicates)} sample id(s) appear more than once in this request",
            field="sample_ids",
            duplicate_sample_ids=duplicates[:MAX_LISTED_IDS],
            duplicate_count=len(duplicates),
        )
    return sorted(int(raw) for raw in raw_ids)


def _rows(session: Session, dataset: Dataset, sample_ids: Sequence[str] | None,
          subject_ids: Sequence[str] | None, limit: int) -> list[int]:
    """The training rows a request names, sorted (see :func:`submit`)."""
    if (sample_ids is None) == (subject_ids is None):
        raise InvalidInput("give exactly one of sample_ids or subject_ids",
                           fields=["sample_ids", "subject_ids"])
    if subject_ids is not None:
        return rows_of_subjects(session, dataset, subject_ids, max_samples=limit)
    assert sample_ids is not None
    if dataset.sample_id_scheme == UPLOADED_SCHEME:
        return rows_of_sample_ids(session, dataset.id, sample_ids, max_samples=limit)
    return parse_sample_ids(sample_ids, dataset.n, max_samples=limit)


def submit(
    session: Session,
    model_id: str,
    sample_ids: Sequence[str] | None,
    *,
    subject_ids: Sequence[str] | None = None,
    now: datetime | None = None,
    max_request_samples: int | None = None,
) -> tuple[DeletionRequest, AfterSubmit]:
    """Accept a deletion request, then seal the model's pending requests if the policy says so.

    If an earlier version already forgot every sample, the request is stored ``completed`` and
    names the newest such version; otherwise it is stored ``pending`` with all its ids (the worker
    skips the already-forgotten ones).

    Args:
        model_id: The model whose training samples are to be forgotten.
        sample_ids: Decimal row indices of the training split as strings (built-ins), or an
            uploaded dataset's own sample ids; ``None`` for a subject request.
        subject_ids: Subjects whose every sample is forgotten (datasets with a subject column);
            stored as sent, next to the rows they resolve to.
        now: The clock (tests).
        max_request_samples: Default ``Settings.max_request_samples``.

    Returns:
        ``(request, after)``: enqueue ``after.job`` and schedule ``after.seal_check_in_s`` after
        the commit (:class:`~app.services.batching.AfterSubmit`).

    Raises:
        NotFound: Unknown model.
        StateConflict: The model failed to train.
        InvalidInput: Both or neither of ``sample_ids``/``subject_ids``; see
            :func:`parse_sample_ids`, :func:`~app.services.id_lookup.rows_of_sample_ids` and
            :func:`~app.services.id_lookup.rows_of_subjects`.
    """
    # The model and its dataset in one query (the hot path of intake).
    found = session.execute(select(Model, Dataset).join(Dataset, Model.dataset_id == Dataset.id)
                            .where(Model.id == model_id)).first()
    if found is None:
        raise NotFound(f"no model {model_id!r}", model_id=model_id)
    model, dataset = found.tuple()
    if model.status == "failed":
        raise StateConflict(
            f"model {model_id!r} failed to train and cannot forget samples", model_status="failed"
        )
    limit = max_request_samples or get_settings().max_request_samples
    indices = _rows(session, dataset, sample_ids, subject_ids, limit)
    sent_subjects = None if subject_ids is None else list(subject_ids)
    now = now or utcnow()
    forgotten, already = forgotten_and_total(session, model_id, indices)
    if already + len(indices) - len(forgotten) >= dataset.n:
        # Nothing would be left to train on: neither a Newton step nor a retrain is defined.
        raise InvalidInput(
            f"forgetting these samples would leave the retain set of model {model_id!r} empty "
            f"({already} of {dataset.n} samples are already forgotten)", field="sample_ids")
    done = len(forgotten) == len(indices)
    request = DeletionRequest(
        id=new_id(), model_id=model_id, sample_ids=indices, subject_ids=sent_subjects,
        status="completed" if done else "pending",
        version=max(forgotten.values()) if done else None, job_id=None, error=None,
        created_at=now, updated_at=now,
    )
    # A Core INSERT on the request's connection, not an ORM flush (a third of submit's CPU): the
    # returned request is not in the session, and nothing in this transaction needs it there.
    session.connection().execute(insert(DeletionRequest.__table__).values(
        {c.key: getattr(request, c.key) for c in DeletionRequest.__table__.columns}))
    if request.status != "pending":  # already forgotten: the pending set did not change
        return request, AfterSubmit(None, None)
    after = seal_after_submit(session, model, now=now)
    if after.job is not None:  # sealed with the others: answer the stored row (``batched``)
        request = session.get(DeletionRequest, request.id) or request
    return request, after


def get_request(session: Session, request_id: str) -> DeletionRequest:
    """Raises: NotFound."""
    request = session.get(DeletionRequest, request_id)
    if request is None:
        raise NotFound(f"no deletion request {request_id!r}", request_id=request_id)
    return request


CANCELABLE = "pending"
"""Only a request not yet sealed into a batch can be canceled."""


def cancel(session: Session, request_id: str, *, now: datetime | None = None) -> DeletionRequest:
    """``pending`` → ``canceled``, by a conditional UPDATE: a concurrent seal (``... WHERE status =
    'pending'``) and this cancel cannot both win. Canceling a canceled request is a no-op.

    Raises:
        NotFound: Unknown request.
        StateConflict: The request was sealed into a batch already (``batched``, ``applying``,
            ``completed`` or ``failed``); names its status.
    """
    result = session.execute(
        update(DeletionRequest)
        .where(DeletionRequest.id == request_id, DeletionRequest.status == CANCELABLE)
        .values(status="canceled", updated_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    request = get_request(session, request_id)
    session.refresh(request)
    if result.rowcount or request.status == "canceled":  # type: ignore[attr-defined]
        return request
    raise StateConflict(
        f"deletion request {request_id!r} is {request.status} and can no longer be canceled "
        "(only a pending request, not yet sealed into a batch, can be)",
        request_id=request_id, request_status=request.status,
    )


@dataclass(frozen=True)
class RequestPage:
    items: Sequence[DeletionRequest]
    next_cursor: str | None


def list_requests(
    session: Session, *, model_id: str | None = None, status: str | None = None,
    limit: int = 50, cursor: str | None = None,
) -> RequestPage:
    """Deletion requests oldest first (``created_at``, then ``id``), filtered by model and status.

    Args:
        limit: Page size.
        cursor: ``next_cursor`` of the previous page.

    Returns:
        The page and the cursor of the next one (``None`` on the last page).

    Raises:
        InvalidInput: A cursor this service did not write.
    """
    query = select(DeletionRequest)
    if model_id is not None:
        query = query.where(DeletionRequest.model_id == model_id)
    if status is not None:
        query = query.where(DeletionRequest.status == status)
    if cursor is not None:
        query = query.where(after(DeletionRequest.created_at, DeletionRequest.id,
                                  decode_cursor(cursor)))
    rows = session.scalars(
        query.order_by(DeletionRequest.created_at, DeletionRequest.id).limit(limit + 1)
    ).all()
    items = rows[:limit]
    more = len(rows) > limit
    return RequestPage(items, encode_cursor(items[-1].created_at, items[-1].id) if more else None)


# --- worker side -----------------------------------------------------------------------------


def requests_of_job(session: Session, job_id: str) -> Sequence[DeletionRequest]:
    """The requests sealed into a job (unlearn batch or retrain), oldest first."""
    return session.scalars(
        select(DeletionRequest)
        .where(DeletionRequest.job_id == job_id)
        .order_by(DeletionRequest.created_at, DeletionRequest.id)
    ).all()


def forget_set_of_job(session: Session, job: Job) -> list[int]:
    """D_u of a job (METHOD §3 step 1): the distinct samples its requests name that no version has
    forgotten yet, sorted."""
    wanted = {int(i) for r in requests_of_job(session, job.id) for i in r.sample_ids}
    return sorted(wanted - forgotten_versions(session, job.model_id, wanted).keys())


def mark_job_requests_applying(session: Session, job_id: str) -> int:
    """``batched`` → ``applying`` for the job's requests; returns how many moved."""
    result = session.execute(
        update(DeletionRequest)
        .where(DeletionRequest.job_id == job_id, DeletionRequest.status == "batched")
        .values(status="applying", updated_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def finish_job_requests(session: Session, job_id: str, version: int) -> int:
    """Complete the job's requests, naming ``version``; call in the publish transaction."""
    result = session.execute(
        update(DeletionRequest)
        .where(
            DeletionRequest.job_id == job_id,
            DeletionRequest.status.in_(("batched", "applying")),
        )
        .values(status="completed", version=version, error=None, updated_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def fail_job_requests(session: Session, job_id: str, error: str) -> int:
    """Fail the job's unfinished requests with a reason."""
    result = session.execute(
        update(DeletionRequest)
        .where(
            DeletionRequest.job_id == job_id,
            DeletionRequest.status.in_(("batched", "applying")),
        )
        .values(status="failed", error=error, updated_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
