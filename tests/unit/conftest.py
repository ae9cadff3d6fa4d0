"""Fixtures of the unit tests (the math core and the torch side of the services)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny problems: one intra-op thread is faster, and immune to OpenMP spin-waiting when the
    cores are shared (measured 20-30x slowdowns with 2 threads under contention)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
