"""The FastAPI application factory: ``uvicorn --factory app.api.main:app``.

Nothing is built at import time. On start the lifespan creates the folders under ``LETHE_HOME``,
upgrades the database to the newest migration, and creates the bootstrap admin key when
``LETHE_BOOTSTRAP_ADMIN_KEY`` is set. This process never imports torch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from app.api.admission import AdmissionMiddleware
from app.api.idempotency import install_idempotency
from app.api.metrics import Metrics, MetricsMiddleware
from app.api.problems import install_problem_handlers
from app.api.routes import ROUTERS
from app.db.migrate import upgrade_to_head
from app.db.session import session_scope
from app.services.auth import ensure_bootstrap_admin_key
from app.settings import Settings, get_settings

__all__ = ["app", "create_app"]


def _start(settings: Settings) -> None:
    settings.ensure_dirs()
    upgrade_to_head(settings.resolved_database_url)
    if settings.bootstrap_admin_key:
        with session_scope() as session:
            ensure_bootstrap_admin_key(session, settings.bootstrap_admin_key)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app.

    Args:
        settings: Default ``get_settings()``. The database session layer reads
            ``get_settings()``; pass settings that agree with it (tests set ``LETHE_*`` and clear
            the cache instead).
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_start, settings)
        yield

    app = FastAPI(
        title="Lethe",
        version="0.1.0",
        summary="Certified machine unlearning as a service.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    # Added first, so it runs inside the metrics: their latencies include the wait for a slot.
    app.add_middleware(AdmissionMiddleware, max_in_flight=settings.api_max_in_flight)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    install_problem_handlers(app)
    install_idempotency(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


app = create_app
"""Factory for ``uvicorn --factory app.api.main:app``."""
