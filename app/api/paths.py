"""Every route path, in one place (fides' habit). ``{...}`` are path parameters."""

from __future__ import annotations

V1 = "/v1"

HEALTH = "/healthz"
READY = "/readyz"
METRICS = "/metrics"

DATASETS = f"{V1}/datasets"
DATASET = f"{V1}/datasets/{{dataset_id}}"
DATASET_UPLOAD = f"{V1}/datasets/upload"

MODELS = f"{V1}/models"
MODEL = f"{V1}/models/{{model_id}}"
MODEL_RETRAIN = f"{V1}/models/{{model_id}}/retrain"
MODEL_DELETION_REQUESTS = f"{V1}/models/{{model_id}}/deletion-requests"
MODEL_VERSIONS = f"{V1}/models/{{model_id}}/versions"
MODEL_VERSION = f"{V1}/models/{{model_id}}/versions/{{number}}"
MODEL_VERSION_DOWNLOAD = f"{V1}/models/{{model_id}}/versions/{{number}}/download"
MODEL_VERSION_CERTIFICATE = f"{V1}/models/{{model_id}}/versions/{{number}}/certificate"
MODEL_BUDGET = f"{V1}/models/{{model_id}}/budget"

DELETION_REQUESTS = f"{V1}/deletion-requests"
DELETION_REQUEST = f"{V1}/deletion-requests/{{request_id}}"
DELETION_REQUEST_CANCEL = f"{V1}/deletion-requests/{{request_id}}/cancel"
DELETION_REQUEST_RECEIPT = f"{V1}/deletion-requests/{{request_id}}/receipt"
KEYS = f"{V1}/keys"
JOB = f"{V1}/jobs/{{job_id}}"


def url(template: str, **params: object) -> str:
    """Fill a path template, e.g. ``url(JOB, job_id="ab12")`` → ``/v1/jobs/ab12``."""
    return template.format(**params)

ADMIN = "/admin"
ADMIN_STATIC = "/admin/static/{name}"
ADMIN_MODEL_SUMMARY = f"{V1}/admin/models/{{model_id}}/summary"
ADMIN_MODEL_VERSIONS = f"{V1}/admin/models/{{model_id}}/versions"
