"""``lethe worker --device`` / ``lethe serve --device``: checked before anything starts, passed on
to the worker as LETHE_DEVICE; one uniquely named worker per device."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

import app.cli as cli_module
from app.settings import get_settings


@pytest.fixture
def restore_env() -> Iterator[None]:
    before = os.environ.get("LETHE_DEVICE")
    yield
    if before is None:
        os.environ.pop("LETHE_DEVICE", None)
    else:
        os.environ["LETHE_DEVICE"] = before
    get_settings.cache_clear()


@pytest.mark.usefixtures("restore_env")
def test_a_malformed_device_is_refused_before_the_worker_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module.os, "execv", lambda *a: pytest.fail("the worker started"))
    result = CliRunner().invoke(cli_module.cli, ["worker", "--device", "gpu0"])
    assert result.exit_code == 2
    assert "LETHE_DEVICE must be auto, cpu, cuda or cuda:N" in result.output
    assert "'gpu0'" in result.output


@pytest.mark.usefixtures("restore_env")
def test_the_device_reaches_the_worker_as_lethe_device(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[tuple[str, list[str], str | None]] = []
    monkeypatch.setattr(cli_module.os, "execv",
                        lambda exe, argv: started.append((exe, argv, os.environ.get("LETHE_DEVICE"))))
    result = CliRunner().invoke(cli_module.cli, ["worker", "--device", "cuda:1"])
    assert result.exit_code == 0, result.output
    [(_, argv, device)] = started
    assert device == "cuda:1" and get_settings().device == "cuda:1"
    assert "--pool=solo" in argv and "--concurrency=1" in argv


def test_workers_started_together_have_distinct_names() -> None:
    names = {cli_module.worker_command(i)[-1] for i in range(3)}
    assert len(names) == 3 and all(name.endswith("@%h") for name in names)
