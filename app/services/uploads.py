"""Register an uploaded ``.npz`` dataset: validate it, record it and its ids, store the file.

The route streams the body to a file under the artifact store's incoming folder and hashes it;
this module takes it from there. The dataset row, its ``dataset_samples`` rows (sample id and
subject id → row index) and the file at its content address are written together: the caller
commits, and on any failure :func:`discard_stored` removes a file that no dataset row names.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.db.models import Dataset, DatasetSample
from app.errors import InvalidInput
from app.storage.artifacts import ArtifactStore
from app.unlearning.uploads import UPLOAD_SOURCE, NpzRejected, inspect_npz

__all__ = ["NPZ_SUFFIX", "UPLOADED_SCHEME", "discard_stored", "register_upload"]

NPZ_SUFFIX = ".npz"
UPLOADED_SCHEME = "uploaded"
"""``datasets.sample_id_scheme`` of an upload: ids are the uploaded strings, not row indices."""

_INSERT_ROWS = 5000  # rows per INSERT statement; bounds one statement's parameters


def register_upload(session: Session, *, name: str, file: Path, sha256: str,
                    store: ArtifactStore, max_array_bytes: int) -> tuple[Dataset, bool]:
    """Validate ``file`` and register it as a dataset (flushed, not committed).

    Args:
        name: Display name.
        file: The streamed upload (moved into the store on success).
        sha256: Its SHA-256 hex digest: the dataset's checksum and content address.
        store: The artifact store.
        max_array_bytes: Most bytes the arrays may take decoded (``LETHE_MAX_UPLOAD_BYTES``).

    Returns:
        ``(dataset, created)``: ``created`` says whether the file was new in the store (so the
        caller knows what to remove if the commit fails).

    Raises:
        InvalidInput: The file is refused (:func:`app.unlearning.uploads.inspect_npz`); ``field``
            names the offending array.
    """
    try:
        summary = inspect_npz(file, max_array_bytes=max_array_bytes)
    except NpzRejected as exc:
        raise InvalidInput(exc.detail, field=exc.array, **exc.extra) from None
    dataset = Dataset(
        name=name, source=UPLOAD_SOURCE, n=summary.n, n_test=summary.n_test,
        num_features=summary.num_features, num_classes=summary.num_classes,
        sample_id_scheme=UPLOADED_SCHEME, checksum_sha256=sha256,
        input_shape=list(summary.input_shape), has_subjects=summary.subject_ids is not None,
        storage_key=store.key_for(sha256, NPZ_SUFFIX),
    )
    session.add(dataset)
    session.flush()
    subjects = summary.subject_ids or [None] * summary.n
    rows = [{"dataset_id": dataset.id, "row_index": i, "sample_id": sample, "subject_id": subject}
            for i, (sample, subject) in enumerate(zip(summary.sample_ids, subjects))]
    for start in range(0, len(rows), _INSERT_ROWS):
        session.execute(insert(DatasetSample), rows[start:start + _INSERT_ROWS])
    created = store.adopt(file, sha256, NPZ_SUFFIX)
    return dataset, created


def discard_stored(session: Session, store: ArtifactStore, sha256: str) -> None:
    """Remove the stored upload ``sha256`` unless a committed dataset names it (used after a
    failed commit, in a fresh session)."""
    key = store.key_for(sha256, NPZ_SUFFIX)
    used = session.scalar(select(func.count()).select_from(Dataset)
                          .where(Dataset.storage_key == key))
    if not used:
        store.path_for(sha256, NPZ_SUFFIX).unlink(missing_ok=True)
