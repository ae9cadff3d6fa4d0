"""Wire types of published versions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field

from app.schemas.common import PublicModel, UtcDatetime

VersionKind = Literal["trained", "unlearned", "retrained"]


class VersionPublic(PublicModel):
    """A published release; ``sha256`` and ``size`` (bytes) describe its safetensors file."""

    number: int
    kind: VersionKind
    parent_number: int | None
    lineage: int
    sha256: str
    size: int = Field(
        validation_alias=AliasChoices("size_bytes", "size"), description="File size in bytes."
    )
    created_at: UtcDatetime
    metrics: dict[str, Any]
