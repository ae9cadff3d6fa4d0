"""One router per resource."""

from app.api.routes import (admin, budget, datasets, deletion_requests, health, jobs, keys, models,
                            versions)

ROUTERS = [
    health.router,
    datasets.router,
    models.router,
    deletion_requests.router,
    jobs.router,
    versions.router,
    budget.router,
    keys.router,
    admin.router,
]

__all__ = ["ROUTERS"]
