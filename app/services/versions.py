"""Read published versions and locate their public artifact files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Version
from app.errors import NotFound
from app.services.models import get_model
from app.storage.artifacts import ArtifactStore

__all__ = ["artifact_path", "get_version", "list_versions"]


def list_versions(session: Session, model_id: str) -> Sequence[Version]:
    """The model's versions by number. Raises: NotFound (unknown model)."""
    get_model(session, model_id)
    return session.scalars(
        select(Version).where(Version.model_id == model_id).order_by(Version.number)
    ).all()


def get_version(session: Session, model_id: str, number: int) -> Version:
    """Raises: NotFound (unknown model or version number)."""
    get_model(session, model_id)
    version = session.scalar(
        select(Version).where(Version.model_id == model_id, Version.number == number)
    )
    if version is None:
        raise NotFound(f"model {model_id!r} has no version {number}", version=number)
    return version


def artifact_path(version: Version, artifacts_dir: Path) -> Path:
    """Path of the version's released safetensors file.

    Raises:
        NotFound: The file is missing from the artifact store.
    """
    try:
        path = ArtifactStore(artifacts_dir).path_for(version.sha256)
    except ValueError as exc:
        raise NotFound(f"version {version.number} has no valid artifact digest") from exc
    if not path.is_file():
        raise NotFound(f"the weights file of version {version.number} is missing from the store")
    return path
