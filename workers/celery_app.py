"""The Celery app of the worker process: configuration from ``app.broker``, tasks from
``workers.tasks``. Run with ``lethe worker`` (``--pool=solo``: one job at a time per process)."""

from __future__ import annotations

from celery.signals import worker_process_init, worker_ready

from app.broker import make_celery

celery_app = make_celery()
celery_app.conf.update(include=["workers.tasks"])


@worker_ready.connect
def _limit_threads(**_kwargs: object) -> None:
    # torch is imported here, inside the worker after it starts, never at import time.
    import torch

    from app.settings import get_settings

    torch.set_num_threads(get_settings().worker_threads)


worker_process_init.connect(_limit_threads)
