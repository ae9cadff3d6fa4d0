"""The SYNTHETIC CIFAR-10- and SVHN-shaped sources: deterministic from their seed, a smaller size
is a prefix of the full set, cached byte-reproducibly, learnable, and named synthetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.unlearning import synthetic
from app.unlearning.datasets import (
    BUILTIN_DATASETS,
    DatasetError,
    dataset_checksum,
    fetch_builtin,
    load_synthetic,
)
from app.unlearning.synthetic import SYNTHETIC_SOURCES, synthetic_arrays, synthetic_path

SOURCES = sorted(SYNTHETIC_SOURCES)


def test_the_sources_have_the_real_shapes_and_say_synthetic() -> None:
    cifar, svhn = BUILTIN_DATASETS["synthetic-cifar10-shape"], BUILTIN_DATASETS["synthetic-svhn-shape"]
    assert (cifar.n_train, cifar.n_test, cifar.input_shape) == (50000, 10000, (3, 32, 32))
    assert (svhn.n_train, svhn.n_test, svhn.input_shape) == (73257, 26032, (3, 32, 32))
    for info in (cifar, svhn):
        assert info.synthetic and info.source.startswith("synthetic-")
        assert info.description.startswith("SYNTHETIC") and info.num_features == 3072
    assert not any(info.synthetic for name, info in BUILTIN_DATASETS.items()
                   if not name.startswith("synthetic-"))


@pytest.mark.parametrize("source", SOURCES)
def test_deterministic_and_a_prefix_of_the_full_set(source: str, tmp_path: Path) -> None:
    # 1500 rows span two generation blocks; 700 is a prefix inside the first.
    a = synthetic_arrays(source, tmp_path / "a", n_train=1500, n_test=300)
    b = synthetic_arrays(source, tmp_path / "b", n_train=700, n_test=300)
    assert a["x_train"].shape == (1500, 3, 32, 32) and a["x_train"].dtype == np.uint8
    assert a["y_train"].dtype == np.int64 and set(np.unique(a["y_train"])) == set(range(10))
    assert np.array_equal(a["x_train"][:700], b["x_train"]) and np.array_equal(a["y_train"][:700], b["y_train"])
    assert np.array_equal(a["x_test"], b["x_test"])
    # Train and test are different draws, and the two sources differ.
    assert not np.array_equal(a["x_train"][:300], a["x_test"])


def test_the_two_sources_differ(tmp_path: Path) -> None:
    c = synthetic_arrays("synthetic-cifar10-shape", tmp_path, n_train=50, n_test=0)
    s = synthetic_arrays("synthetic-svhn-shape", tmp_path, n_train=50, n_test=0)
    assert not np.array_equal(c["x_train"], s["x_train"])


def test_cached_once_byte_reproducibly_and_regenerated_when_damaged(tmp_path: Path) -> None:
    source = "synthetic-svhn-shape"
    synthetic_arrays(source, tmp_path / "one", n_train=200, n_test=50)
    path = synthetic_path(tmp_path / "one", source, 200, 50)
    assert path.name == "synthetic-svhn-shape-200-50.npz"
    stamp = path.stat().st_mtime_ns
    synthetic_arrays(source, tmp_path / "one", n_train=200, n_test=50)
    assert path.stat().st_mtime_ns == stamp  # read, not regenerated
    synthetic_arrays(source, tmp_path / "two", n_train=200, n_test=50)
    assert path.read_bytes() == synthetic_path(tmp_path / "two", source, 200, 50).read_bytes()
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetError, match="unreadable or incomplete"):
        synthetic_arrays(source, tmp_path / "one", n_train=200, n_test=50, create=False)
    again = synthetic_arrays(source, tmp_path / "one", n_train=200, n_test=50)
    assert path.read_bytes() == synthetic_path(tmp_path / "two", source, 200, 50).read_bytes()
    assert again["x_train"].shape == (200, 3, 32, 32)


def test_registration_needs_the_generated_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = "synthetic-cifar10-shape"
    with pytest.raises(DatasetError, match="lethe data fetch synthetic-cifar10-shape"):
        dataset_checksum(source, tmp_path)
    # fetch_builtin generates the full set; a small stand-in keeps the test quick.
    spec = SYNTHETIC_SOURCES[source]
    small = synthetic.SyntheticSpec(spec.source, spec.mimics, spec.input_shape, 120, 30, 10, spec.seed)
    monkeypatch.setitem(SYNTHETIC_SOURCES, source, small)
    path = fetch_builtin(source, tmp_path)
    assert path == tmp_path / "synthetic-cifar10-shape-120-30.npz"
    assert len(dataset_checksum(source, tmp_path)) == 64


def test_sizes_out_of_range_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"sizes must be 1..50000 train and 0..10000 test rows"):
        synthetic_arrays("synthetic-cifar10-shape", tmp_path, n_train=50001)
    with pytest.raises(DatasetError, match="unknown synthetic source"):
        synthetic_arrays("cifar10", tmp_path)


def test_loaded_flat_in_unit_range_and_learnable(tmp_path: Path) -> None:
    data = load_synthetic("synthetic-cifar10-shape", tmp_path, n_train=2000, n_test=500)
    assert data.x_train.shape == (2000, 3072) and data.x_train.dtype == np.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert data.input_shape == (3, 32, 32) and data.source == "synthetic-cifar10-shape"
    # Class structure: the nearest class mean beats chance (10%) by far (measured 41% at 3000
    # rows), and the classes are balanced.
    means = np.stack([data.x_train[data.y_train == c].mean(axis=0) for c in range(10)])
    dist = ((data.x_test[:, None, :] - means[None]) ** 2).sum(axis=2)
    assert (dist.argmin(axis=1) == data.y_test).mean() > 0.25
    assert np.bincount(data.y_train, minlength=10).min() > 150
