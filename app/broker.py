"""Celery configuration shared by the worker and by the services that enqueue jobs.

The API process builds a producer-only Celery app from this (it never imports ``workers``).
Embedded default: kombu's filesystem transport (as ``lethefs://``, with an atomic put: see
``app.fs_transport``), whose in and out folders must be the same existing folder with
``store_processed`` off (DESIGN.md).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery

from app import fs_transport
from app.settings import Settings, get_settings

TASK_TRAIN = "lethe.train"
TASK_UNLEARN_BATCH = "lethe.unlearn_batch"
TASK_RETRAIN = "lethe.retrain"
TASK_SEAL_DUE = "lethe.seal_due"
QUEUE = "lethe"
CONTROL_RUNTIME = "lethe_runtime"
"""Remote-control command a worker answers with its device and versions (``/readyz``)."""
EXIT_BAD_DEVICE = 78
"""EX_CONFIG (sysexits.h): a worker's exit code when its device (``LETHE_DEVICE``) is malformed or
absent; ``lethe serve`` stops instead of restarting it."""


def celery_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "broker_url": settings.resolved_broker_url,
        "task_default_queue": QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "worker_prefetch_multiplier": 1,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "broker_connection_retry_on_startup": True,
    }
    if settings.resolved_broker_url.split("://")[0] in ("filesystem", fs_transport.ALIAS):
        folder = str(settings.broker_dir)
        settings.broker_dir.mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "store_processed": False,
            # kombu's default is ./control, relative to whatever cwd the process has.
            "control_folder": str(settings.broker_dir / "control"),
        }
    else:
        # Longer than the longest job, so Redis never redelivers a running task (and if it does,
        # the job's claim sees a live heartbeat and the duplicate returns at once).
        config["broker_transport_options"] = {"visibility_timeout": settings.broker_visibility_timeout_s}
    return config


def make_celery(settings: Settings | None = None) -> Celery:
    app = Celery("lethe")
    app.conf.update(celery_config(settings or get_settings()))
    return app


@lru_cache(maxsize=1)
def producer() -> Celery:
    """The process-wide producer used to enqueue jobs (after their rows are committed)."""
    return make_celery()


def enqueue(task_name: str, *args: Any, countdown: float | None = None) -> str:
    """Send ``task_name(*args)`` to the worker queue; returns the Celery task id."""
    result = producer().send_task(task_name, args=list(args), queue=QUEUE, countdown=countdown)
    return str(result.id)
