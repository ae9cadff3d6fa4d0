"""Liveness (no auth)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import paths

router = APIRouter(tags=["health"])


@router.get(paths.HEALTH)
def healthz() -> dict[str, str]:
    """``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}
