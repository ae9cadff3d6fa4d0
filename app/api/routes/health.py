"""Liveness, readiness and metrics (no auth)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from app.api import paths
from app.api.problems import problem_response
from app.services import readiness

router = APIRouter(tags=["health"])


@router.get(paths.HEALTH)
def healthz() -> dict[str, str]:
    """``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}


@router.get(
    paths.READY,
    responses={503: {"content": {"application/problem+json": {}},
                     "description": "A component is missing; `missing` names it."}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when the database answers, the broker accepts a connection and at least one worker
    answers a ping; otherwise 503 problem+json whose ``missing`` names what is not there."""
    components = await run_in_threadpool(readiness.check_all)
    body = {c.name: c.as_dict() for c in components}
    missing = [c.name for c in components if not c.ok]
    if missing:
        return problem_response(
            request, 503, "Not ready", f"not ready: {', '.join(missing)} unavailable",
            missing=missing, components=body, headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready", "components": body})


@router.get(paths.METRICS, response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text format."}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests by route and status, deletion requests and jobs by status,
    batch sizes, job durations by kind, cumulative ε and δ per model."""
    registry = request.app.state.metrics.registry
    return Response(await run_in_threadpool(generate_latest, registry),
                    media_type=CONTENT_TYPE_LATEST)
