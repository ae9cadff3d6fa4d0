"""The device of this worker process: resolved and prepared once, after the worker starts.

Worker process only (imports torch). ``workers.celery_app`` calls :func:`start` from Celery's
``worker_process_init`` (the solo pool's process itself, or each prefork child after its fork), so
CUDA is never initialised at import time, in the API, or before a fork. :func:`current` starts it
on first use for code that runs jobs without a Celery worker (tests, benchmarks).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch

from app.settings import get_settings
from app.unlearning.device import prepare_device, resolve_device, runtime_info

__all__ = ["WorkerRuntime", "current", "start"]


@dataclass(frozen=True)
class WorkerRuntime:
    """The prepared device and the facts recorded with every job it runs (``runtime_info``)."""

    device: torch.device
    info: dict[str, Any]


_lock = threading.Lock()
_current: WorkerRuntime | None = None


def start(spec: str | None = None, threads: int | None = None) -> WorkerRuntime:
    """Resolve and prepare the device (``LETHE_DEVICE`` and ``LETHE_WORKER_THREADS`` by default).

    Idempotent: a second call returns the first runtime.

    Raises:
        DeviceError: The device is malformed or absent (no silent CPU fallback).
    """
    global _current
    with _lock:
        if _current is None:
            settings = get_settings()
            device = resolve_device(spec or settings.device)
            prepare_device(device, threads or settings.worker_threads)
            _current = WorkerRuntime(device, runtime_info(device))
        return _current


def current() -> WorkerRuntime:
    """The runtime of this process, started from the settings if nothing started it yet."""
    return _current or start()
