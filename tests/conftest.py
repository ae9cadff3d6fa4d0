"""Shared fixtures: ``live_service`` starts real ``lethe serve`` processes (see service_harness)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service_harness import LiveService


@pytest.fixture
def live_service(tmp_path: Path) -> Iterator[Callable[..., LiveService]]:
    started: list[LiveService] = []

    def start(**env: str) -> LiveService:
        service = LiveService(tmp_path / f"home{len(started)}", env)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
