"""The worker's device: LETHE_DEVICE checked at start-up, resolved once per process, recorded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from pydantic import ValidationError

from app.services import worker_runtime
from app.settings import Settings, get_settings
from app.unlearning.device import DeviceError


@pytest.mark.parametrize("spec", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_settings_accept_the_device_forms(spec: str) -> None:
    assert Settings(device=spec).device == spec


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:01", "cuda:-1", "CPU", "cuda:0,1"])
def test_settings_refuse_a_malformed_device_at_start_up(spec: str) -> None:
    with pytest.raises(ValidationError, match="LETHE_DEVICE must be auto, cpu, cuda or cuda:N"):
        Settings(device=spec)


@pytest.fixture
def fresh_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process whose worker runtime has not started yet (restored afterwards)."""
    monkeypatch.setattr(worker_runtime, "_current", None)
    threads = torch.get_num_threads()
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("fresh_runtime")
def test_current_starts_from_the_settings_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LETHE_DEVICE", "cpu")
    monkeypatch.setenv("LETHE_WORKER_THREADS", "1")
    first = worker_runtime.current()
    assert first.device == torch.device("cpu") and first.info["device"] == "cpu"
    assert first.info["threads"] == 1
    monkeypatch.setenv("LETHE_DEVICE", "cuda")  # too late: the process has its device
    get_settings.cache_clear()
    assert worker_runtime.current() is first and worker_runtime.start() is first


@pytest.mark.usefixtures("fresh_runtime")
def test_a_missing_gpu_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LETHE_DEVICE", "cuda:1")
    with pytest.raises(DeviceError, match="asks for a GPU"):
        worker_runtime.current()
    assert worker_runtime._current is None
