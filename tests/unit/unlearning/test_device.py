"""LETHE_DEVICE resolution, device preparation and the runtime facts (app.unlearning.device).

There is no GPU here: the CUDA branches are driven by monkeypatching what torch reports
(``torch.cuda.is_available``, ``device_count``, ``set_device``...)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from app.unlearning import device as dev
from app.unlearning.device import DeviceError, prepare_device, resolve_device, runtime_info


def _gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize(("count", "spec", "expected"), [
    (0, "auto", torch.device("cpu")),
    (2, "auto", torch.device("cuda", 0)),
    (0, "cpu", torch.device("cpu")),
    (2, "cpu", torch.device("cpu")),
    (1, "cuda", torch.device("cuda", 0)),
    (2, "cuda:1", torch.device("cuda", 1)),
])
def test_resolve_device(monkeypatch: pytest.MonkeyPatch, count: int, spec: str,
                        expected: torch.device) -> None:
    _gpus(monkeypatch, count)
    assert resolve_device(spec) == expected


@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_a_missing_gpu_is_an_error_not_a_cpu_fallback(monkeypatch: pytest.MonkeyPatch,
                                                      spec: str) -> None:
    _gpus(monkeypatch, 0)
    with pytest.raises(DeviceError, match=rf"LETHE_DEVICE={spec} asks for a GPU but torch sees none"):
        resolve_device(spec)


def test_a_gpu_index_past_the_last_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 2)
    with pytest.raises(DeviceError, match=r"names GPU 2 but this machine has 2 \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["gpu", "CUDA", "cuda:", "cuda:-1", "cuda:01", "cuda:x", "cpu:0",
                                  "mps", "", " cpu", "cuda:0:1"])
def test_malformed_specs_are_refused(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    _gpus(monkeypatch, 4)
    with pytest.raises(DeviceError, match="must be auto, cpu, cuda or cuda:N"):
        resolve_device(spec)


@pytest.fixture
def _restore_determinism() -> Iterator[None]:
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    benchmark = torch.backends.cudnn.benchmark
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = benchmark


@pytest.mark.usefixtures("_restore_determinism")
def test_prepare_cpu_sets_threads_and_leaves_cuda_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: pytest.fail("CUDA touched on cpu"))
    torch.set_num_threads(2)
    prepare_device(torch.device("cpu"), 1)
    assert torch.get_num_threads() == 1
    assert not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


@pytest.mark.usefixtures("_restore_determinism")
def test_prepare_cuda_makes_it_deterministic_before_the_context(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    calls: list[tuple[torch.device, str | None]] = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    # The workspace setting must already be in place when the context is created.
    monkeypatch.setattr(torch.cuda, "set_device",
                        lambda d: calls.append((d, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))))
    torch.backends.cudnn.benchmark = True
    prepare_device(torch.device("cuda", 1), 1)
    assert calls == [(torch.device("cuda", 1), ":4096:8")]
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.usefixtures("_restore_determinism")
def test_prepare_cuda_keeps_an_operator_workspace_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    prepare_device(torch.device("cuda", 0), 1)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_prepare_cuda_refuses_a_context_created_without_the_workspace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(DeviceError, match="CUBLAS_WORKSPACE_CONFIG"):
        prepare_device(torch.device("cuda", 0), 1)


def test_runtime_info_on_cpu() -> None:
    info = runtime_info(torch.device("cpu"))
    assert info["device"] == "cpu" and info["device_name"]
    assert info["torch"] == torch.__version__ and info["cuda"] == torch.version.cuda
    assert info["threads"] == torch.get_num_threads()
    assert set(info) == {"device", "device_name", "torch", "cuda", "cudnn", "threads",
                         "deterministic"}


def test_runtime_info_on_cuda_names_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: f"Fake GPU {d.index}")
    info = runtime_info(torch.device("cuda", 3))
    assert info["device"] == "cuda:3" and info["device_name"] == "Fake GPU 3"


def test_release_device_memory_empties_the_cuda_cache_only_on_cuda(
        monkeypatch: pytest.MonkeyPatch) -> None:
    emptied: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    dev.release_device_memory(torch.device("cpu"))
    assert emptied == []
    dev.release_device_memory(torch.device("cuda", 0))
    assert emptied == [True]
