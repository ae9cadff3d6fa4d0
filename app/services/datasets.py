"""Register and read datasets. Only built-in sources for now (``mnist``, ``digits``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Dataset
from app.errors import InvalidInput, NotFound, StateConflict

__all__ = ["get_dataset", "list_datasets", "register_builtin"]


def register_builtin(session: Session, *, name: str, source: str, data_dir: Path) -> Dataset:
    """Register a built-in dataset, recording its size, shape and content checksum.

    Args:
        name: Display name.
        source: ``"mnist"`` or ``"digits"``.
        data_dir: Where fetched datasets live (``Settings.resolved_data_dir``).

    Raises:
        InvalidInput: Unknown source.
        StateConflict: The data is not available yet (MNIST not fetched) or fails verification.
    """
    # numpy only (the API never imports torch); imported here to keep start-up light.
    from app.unlearning.datasets import BUILTIN_DATASETS, DatasetError, dataset_checksum

    info = BUILTIN_DATASETS.get(source)
    if info is None:
        raise InvalidInput(
            f"unknown source {source!r}; choose one of {sorted(BUILTIN_DATASETS)}", field="source"
        )
    try:
        checksum = dataset_checksum(source, data_dir)
    except DatasetError as exc:
        raise StateConflict(str(exc), source=source) from exc
    dataset = Dataset(
        name=name,
        source=source,
        n=info.n_train,
        n_test=info.n_test,
        num_features=info.num_features,
        num_classes=info.num_classes,
        sample_id_scheme="row-index",
        checksum_sha256=checksum,
        input_shape=list(info.input_shape),
    )
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    """Raises: NotFound."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id!r}", dataset_id=dataset_id)
    return dataset


def list_datasets(session: Session) -> Sequence[Dataset]:
    """All datasets, oldest first."""
    return session.scalars(select(Dataset).order_by(Dataset.created_at, Dataset.id)).all()
