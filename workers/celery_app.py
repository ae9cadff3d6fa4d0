"""The Celery app of the worker process: configuration from ``app.broker``, tasks from
``workers.tasks``. Run with ``lethe worker`` (``--pool=solo``: one job at a time per process)."""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown

from app.broker import make_celery

celery_app = make_celery()
celery_app.conf.update(include=["workers.tasks"])
log = logging.getLogger(__name__)
_stop_reaper = threading.Event()


@worker_ready.connect
def _on_ready(**_kwargs: object) -> None:
    # torch is imported here, inside the worker after it starts, never at import time.
    import torch

    from app.settings import get_settings

    torch.set_num_threads(get_settings().worker_threads)
    threading.Thread(target=_reaper, name="lethe-reaper", daemon=True).start()


@worker_shutdown.connect
def _on_shutdown(**_kwargs: object) -> None:
    _stop_reaper.set()


def _reaper() -> None:
    """Find jobs whose worker died (stale heartbeat) and requeue them, now and periodically."""
    from app.services.engine import reap_stale_jobs
    from app.settings import get_settings

    period = get_settings().job_stale_seconds / 2
    while True:
        try:
            reap_stale_jobs()
        except Exception:  # the reaper must outlive a database hiccup
            log.exception("reaping stale jobs failed")
        if _stop_reaper.wait(period):
            return
