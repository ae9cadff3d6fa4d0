"""Translate an uploaded dataset's sample ids, or any dataset's subject ids, to training rows.

Deletion requests name what the app knows: its own sample ids, or the subject (person) whose
samples they are. The worker only knows row indices of the train split (METHOD §2, D), so the
intake resolves ids once, through ``dataset_samples`` and its indexes on (dataset, sample_id) and
(dataset, subject_id): one indexed ``IN`` lookup per 5000 ids, never a scan of the dataset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Dataset, DatasetSample
from app.errors import InvalidInput
from app.unlearning.uploads import MAX_ID_CHARS

__all__ = ["MAX_LISTED_IDS", "check_id_list", "rows_of_sample_ids", "rows_of_subjects",
           "sample_ids_of_rows"]

MAX_LISTED_IDS = 20
"""At most this many offending ids are named in an error."""

_LOOKUP_CHUNK = 5000  # ids per IN (...): under every driver's bound on bound parameters
_MAX_ECHO_CHARS = 64


def _echo(raw: object) -> str:
    text = str(raw)
    return text if len(text) <= _MAX_ECHO_CHARS else text[:_MAX_ECHO_CHARS] + "…"


def check_id_list(raw_ids: Sequence[str], *, field: str, max_ids: int) -> list[str]:
    """Refuse an empty list, too many ids, non-strings and ids given twice.

    Args:
        raw_ids: The ids as sent.
        field: ``sample_ids`` or ``subject_ids`` (named in the error).
        max_ids: Most ids one request may carry.

    Returns:
        The ids, in the order sent.

    Raises:
        InvalidInput: Naming ``field``, and the first 20 duplicates (``duplicate_<field>``).
    """
    if not raw_ids:
        raise InvalidInput(f"{field} is empty: name at least one id", field=field)
    if len(raw_ids) > max_ids:
        raise InvalidInput(f"{len(raw_ids)} ids in {field}; at most {max_ids} are allowed",
                           field=field, max_samples=max_ids)
    if not all(isinstance(raw, str) for raw in raw_ids):
        raise InvalidInput(f"{field} must be a list of strings", field=field)
    duplicates = [raw for raw, count in Counter(raw_ids).items() if count > 1]
    if duplicates:
        raise InvalidInput(
            f"{len(duplicates)} id(s) appear more than once in {field}", field=field,
            **{f"duplicate_{field}": [_echo(d) for d in duplicates[:MAX_LISTED_IDS]]},
            duplicate_count=len(duplicates))
    return list(raw_ids)


def _lookup(session: Session, dataset_id: str, column: str,
            ids: Sequence[str]) -> list[tuple[str, int]]:
    key = getattr(DatasetSample, column)
    # Ids an upload can never hold (too long, control characters such as NUL, which PostgreSQL
    # text refuses) are unknown without asking the database.
    ids = [i for i in ids if len(i) <= MAX_ID_CHARS and i.isprintable()]
    found: list[tuple[str, int]] = []
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start:start + _LOOKUP_CHUNK]
        found.extend((str(k), int(row)) for k, row in session.execute(
            select(key, DatasetSample.row_index)
            .where(DatasetSample.dataset_id == dataset_id, key.in_(chunk))))
    return found


def _refuse_unknown(field: str, sent: Sequence[str], found: set[str], what: str) -> None:
    unknown = [raw for raw in sent if raw not in found]
    if unknown:
        raise InvalidInput(
            f"{len(unknown)} of the {field} are not {what} of this dataset", field=field,
            **{f"unknown_{field}": [_echo(u) for u in unknown[:MAX_LISTED_IDS]]},
            unknown_count=len(unknown))


def rows_of_sample_ids(session: Session, dataset_id: str, raw_ids: Sequence[str], *,
                       max_samples: int) -> list[int]:
    """Rows of an uploaded dataset's sample ids.

    Returns:
        The row indices, sorted (one per id).

    Raises:
        InvalidInput: See :func:`check_id_list`; ids the upload did not contain
            (``unknown_sample_ids`` names the first 20).
    """
    ids = check_id_list(raw_ids, field="sample_ids", max_ids=max_samples)
    found = _lookup(session, dataset_id, "sample_id", ids)
    _refuse_unknown("sample_ids", ids, {k for k, _ in found}, "sample ids")
    return sorted(row for _, row in found)


def rows_of_subjects(session: Session, dataset: Dataset, raw_ids: Sequence[str], *,
                     max_samples: int) -> list[int]:
    """Rows of every sample of the given subjects: forgetting a subject forgets all of them.

    Args:
        dataset: The model's dataset.
        raw_ids: Subject ids as sent.
        max_samples: Most ids one request may carry, and most rows the subjects may cover.

    Returns:
        The row indices, sorted.

    Raises:
        InvalidInput: The dataset has no subject column; see :func:`check_id_list`; subjects the
            dataset does not have (``unknown_subject_ids`` names the first 20); subjects covering
            more than ``max_samples`` rows.
    """
    if not dataset.has_subjects:
        raise InvalidInput(
            f"dataset {dataset.id!r} has no subject column (upload it with subject_ids to "
            "delete by subject); name sample_ids instead", field="subject_ids")
    ids = check_id_list(raw_ids, field="subject_ids", max_ids=max_samples)
    found = _lookup(session, dataset.id, "subject_id", ids)
    _refuse_unknown("subject_ids", ids, {k for k, _ in found}, "subjects")
    if len(found) > max_samples:
        raise InvalidInput(
            f"these subjects have {len(found)} samples; one request may forget at most "
            f"{max_samples}", field="subject_ids", max_samples=max_samples)
    return sorted(row for _, row in found)


def sample_ids_of_rows(session: Session, dataset_id: str, rows: Sequence[int]) -> dict[int, str]:
    """The uploaded sample id of each row (the inverse of :func:`rows_of_sample_ids`); rows of a
    built-in dataset have none (empty mapping)."""
    found: dict[int, str] = {}
    for start in range(0, len(rows), _LOOKUP_CHUNK):
        chunk = list(rows[start:start + _LOOKUP_CHUNK])
        found.update((int(row), str(sid)) for row, sid in session.execute(
            select(DatasetSample.row_index, DatasetSample.sample_id)
            .where(DatasetSample.dataset_id == dataset_id, DatasetSample.row_index.in_(chunk))))
    return found
