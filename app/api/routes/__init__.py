"""One router per resource."""

from app.api.routes import (admin, budget, dataset_upload, datasets, deletion_requests, health,
                            jobs, keys, models, versions)

ROUTERS = [
    health.router,
    dataset_upload.router,
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
