"""The public signing keys (no auth): what an auditor needs to check a certificate offline."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.api import paths
from app.api.deps import SettingsDep
from app.schemas.receipts import SigningKeyPublic
from app.services import signing

router = APIRouter(tags=["keys"])


@router.get(paths.KEYS)
async def list_keys(settings: SettingsDep) -> list[SigningKeyPublic]:
    """Every Ed25519 key that signs or signed certificates (RFC 8032); ``active`` marks the one
    that signs new versions. Rotated-out keys stay listed so old certificates stay verifiable."""
    keys = await run_in_threadpool(signing.public_keys, settings)
    return [SigningKeyPublic.model_validate(k) for k in keys]
