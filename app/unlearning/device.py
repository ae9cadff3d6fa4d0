"""Which torch device a worker computes on, how it is prepared, and what it is.

``LETHE_DEVICE`` is ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` (DESIGN "How it runs": one worker
process per GPU). :func:`resolve_device` turns it into a ``torch.device`` and refuses a GPU that
is not there (never a silent CPU fallback: a job asked to run on a GPU must not quietly take 100×
longer). :func:`prepare_device` is called once inside the worker process after it starts; it is
the only place that initialises CUDA. :func:`runtime_info` is what a job and its certificate
record about the machine that computed them.

Determinism (METHOD §2, the determinism guard): on CUDA, cuBLAS needs
``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set before its first handle is created, and
``torch.use_deterministic_algorithms(True)`` makes every op either deterministic or raise.
"""

from __future__ import annotations

import gc
import os
import platform
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CUBLAS_WORKSPACE_CONFIG",
    "DeviceError",
    "prepare_device",
    "release_device_memory",
    "resolve_device",
    "runtime_info",
]

CUBLAS_WORKSPACE_CONFIG = ":4096:8"
"""cuBLAS workspace setting that makes its reductions deterministic (CUDA docs, "Results
reproducibility"; torch's ``use_deterministic_algorithms``)."""


class DeviceError(ValueError):
    """The requested device is malformed or not present on this machine."""


def resolve_device(spec: str = "auto") -> torch.device:
    """The device ``spec`` names on this machine.

    Asks the driver how many GPUs there are (``torch.cuda.is_available`` / ``device_count``), which
    does not create a CUDA context.

    Args:
        spec: ``"auto"`` (``cuda:0`` when a GPU is available, else ``cpu``), ``"cpu"``,
            ``"cuda"`` (= ``cuda:0``) or ``"cuda:N"``.

    Returns:
        ``torch.device("cpu")`` or ``torch.device("cuda", N)`` with an explicit index.

    Raises:
        DeviceError: ``spec`` is not one of those forms, or names a GPU this machine lacks (the
            message says what torch sees and how to choose another device).

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if spec == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise DeviceError(_bad_spec(spec)) from exc
    if device.type == "cpu" and spec == "cpu":
        return device
    if device.type != "cuda" or spec not in ("cuda", f"cuda:{device.index}"):
        raise DeviceError(_bad_spec(spec))
    index = device.index or 0
    if not torch.cuda.is_available():
        raise DeviceError(
            f"LETHE_DEVICE={spec} asks for a GPU but torch sees none (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda or 'no (CPU-only build)'}); install a CUDA build "
            "of torch and a driver, or set LETHE_DEVICE=cpu or auto"
        )
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(
            f"LETHE_DEVICE={spec} names GPU {index} but this machine has {count} "
            f"(cuda:0..cuda:{count - 1}); run one worker per GPU with LETHE_DEVICE=cuda:N"
        )
    return torch.device("cuda", index)


def _bad_spec(spec: str) -> str:
    return f"LETHE_DEVICE must be auto, cpu, cuda or cuda:N (N a GPU index), got {spec!r}"


def prepare_device(device: torch.device, threads: int) -> None:
    """Make this process ready to compute on ``device``; call once, in the worker, after it starts.

    Sets torch's intra-op CPU threads. On CUDA: ``CUBLAS_WORKSPACE_CONFIG`` (unless set), then
    ``torch.use_deterministic_algorithms(True)`` and cuDNN's autotuner off, then makes ``device``
    the current GPU, which creates the CUDA context here and nowhere earlier.

    Args:
        device: From :func:`resolve_device`.
        threads: torch intra-op threads (≥ 1).

    Raises:
        DeviceError: CUDA is already initialised without the deterministic cuBLAS workspace (the
            setting would be ignored, so the determinism guard could not hold).
    """
    torch.set_num_threads(threads)
    if device.type != "cuda":
        return
    if not torch.cuda.is_initialized():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    elif not os.environ.get("CUBLAS_WORKSPACE_CONFIG"):
        raise DeviceError(
            "CUDA was initialised before the worker prepared it, without "
            "CUBLAS_WORKSPACE_CONFIG; cuBLAS results would not be deterministic"
        )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.cuda.set_device(device)


def release_device_memory(device: torch.device) -> None:
    """Return a finished job's cached GPU memory to the driver (a no-op on CPU).

    Call after the job's tensors are out of scope; ``gc.collect`` frees any held by reference
    cycles first.
    """
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def _cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (Linux), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "cpu"


def runtime_info(device: torch.device) -> dict[str, Any]:
    """What computed a job: device, its name, and the torch/CUDA/cuDNN versions.

    Args:
        device: The worker's device.

    Returns:
        ``{"device": "cpu" | "cuda:N", "device_name", "torch", "cuda", "cudnn", "threads",
        "deterministic"}``; ``cuda``/``cudnn`` are ``None`` on a CPU-only build of torch.
    """
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        label = f"cuda:{device.index if device.index is not None else 0}"
    else:
        name, label = _cpu_name(), "cpu"
    return {
        "device": label,
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }
