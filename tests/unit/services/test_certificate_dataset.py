"""A certificate's dataset block says so when the data is synthetic (never mistaken for the real
dataset it stands in for)."""

from __future__ import annotations

from types import SimpleNamespace

from app.services.certificates import _dataset


def _ctx(source: str) -> SimpleNamespace:
    return SimpleNamespace(dataset_id="d1", dataset_source=source, dataset_checksum="ab" * 32,
                           dataset_n=100)


def test_synthetic_sources_are_labelled() -> None:
    block = _dataset(_ctx("synthetic-cifar10-shape"))
    assert block["synthetic"] is True
    assert block["description"].startswith("SYNTHETIC data of CIFAR-10's shape")
    assert "not CIFAR-10" in block["description"]


def test_real_sources_keep_the_plain_block() -> None:
    assert _dataset(_ctx("fashion-mnist")) == {"id": "d1", "source": "fashion-mnist",
                                               "checksum_sha256": "ab" * 32, "n": 100}
