"""RFC 9457 problem details, the body of every error answer (``application/problem+json``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """``type``, ``title``, ``status``, ``detail`` and ``instance``, plus extension members
    (``errors`` for invalid fields, ``invalid_sample_ids``, ``missing_scope``, ...)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
