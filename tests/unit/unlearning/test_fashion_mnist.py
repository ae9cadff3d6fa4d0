"""Fashion-MNIST from Debian's dataset-fashion-mnist: pinned checksums, strict IDX parsing, the
data-dir copy, and a clear error naming the package when it is absent.

The loader tests need the package's files; without them they skip with the reason, and fail under
``LETHE_REQUIRE_INTEGRATION=1`` (CI installs the package)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.unlearning import fashion_mnist as fm
from app.unlearning.datasets import BUILTIN_DATASETS, DatasetError, dataset_checksum, load_builtin

REQUIRED = os.environ.get("LETHE_REQUIRE_INTEGRATION") == "1"
# Over "name sha256\n" of the four pinned digests (fashion_mnist_checksum).
CHECKSUM = "75feddd2991512ed7fdf5b9e515a28eea732bb6af7158e0095b456e452787413"


@pytest.fixture
def package() -> Path:
    missing = [n for n in fm.FASHION_MNIST_SHA256 if not (fm.SYSTEM_DIR / n).is_file()]
    if missing:
        reason = f"{fm.APT_PACKAGE} is not installed ({', '.join(missing)} missing in {fm.SYSTEM_DIR})"
        if REQUIRED:
            pytest.fail(f"LETHE_REQUIRE_INTEGRATION=1 but {reason}")
        pytest.skip(reason)
    return fm.SYSTEM_DIR


def test_loads_the_real_dataset(package: Path, tmp_path: Path) -> None:
    data = load_builtin("fashion-mnist", tmp_path)
    info = BUILTIN_DATASETS["fashion-mnist"]
    assert data.x_train.shape == (60000, 784) and data.x_test.shape == (10000, 784)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.input_shape == info.input_shape == (1, 28, 28) and data.num_classes == 10
    assert 0.0 == data.x_train.min() and data.x_train.max() == 1.0
    # The published dataset: balanced classes, and its well-known first labels.
    assert np.bincount(data.y_train).tolist() == [6000] * 10
    assert np.bincount(data.y_test).tolist() == [1000] * 10
    assert data.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert dataset_checksum("fashion-mnist", tmp_path) == CHECKSUM


def test_fetch_copies_verified_files_that_then_stand_alone(package: Path, tmp_path: Path) -> None:
    folder = fm.fetch_fashion_mnist(tmp_path)
    assert folder == tmp_path / "fashion-mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(fm.FASHION_MNIST_SHA256)
    # The copy serves without the package (a worker with only the shared data dir).
    no_package = tmp_path / "empty"
    assert fm.fashion_mnist_dir(tmp_path, no_package) == folder
    assert fm.fashion_mnist_checksum(tmp_path, no_package) == CHECKSUM
    # A damaged copy is fetched again from the package.
    victim = folder / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:-1])
    assert fm.fetch_fashion_mnist(tmp_path) == folder
    assert fm.fashion_mnist_checksum(tmp_path, no_package) == CHECKSUM


def test_a_tampered_file_is_refused(package: Path, tmp_path: Path) -> None:
    fake = tmp_path / "system"
    shutil.copytree(package, fake)
    labels = bytearray((fake / "train-labels-idx1-ubyte.gz").read_bytes())
    labels[-5] ^= 0xFF
    (fake / "train-labels-idx1-ubyte.gz").write_bytes(bytes(labels))
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz has SHA-256 .* refusing"):
        fm.fashion_mnist_arrays(tmp_path / "data", fake)
    with pytest.raises(DatasetError, match="refusing"):
        fm.fetch_fashion_mnist(tmp_path / "data", fake)
    assert not (tmp_path / "data" / "fashion-mnist" / "train-labels-idx1-ubyte.gz").exists()


def test_without_the_package_the_error_names_it(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "none")
    for call in (lambda: fm.fashion_mnist_arrays(tmp_path, tmp_path / "none"),
                 lambda: fm.fetch_fashion_mnist(tmp_path, tmp_path / "none")):
        with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
            call()


def test_checked_end_to_end_on_small_hand_made_files(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole path (pinned digest, gzip, IDX header and shape, labels) on tiny files."""
    import gzip
    import hashlib

    system = tmp_path / "system"
    system.mkdir()
    digests: dict[str, str] = {}

    def put(name: str, raw: bytes) -> None:
        blob = gzip.compress(raw, mtime=0)
        (system / name).write_bytes(blob)
        digests[name] = hashlib.sha256(blob).hexdigest()

    images = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 255, 10, 20])
    put("train-images-idx3-ubyte.gz", images)
    put("t10k-images-idx3-ubyte.gz", images)
    put("train-labels-idx1-ubyte.gz", bytes([0, 0, 8, 1, 0, 0, 0, 2, 3, 9]))
    put("t10k-labels-idx1-ubyte.gz", bytes([0, 0, 8, 1, 0, 0, 0, 2, 1, 10]))
    monkeypatch.setattr(fm, "FASHION_MNIST_SHA256", digests)
    monkeypatch.setattr(fm, "_SHAPES", {"x_train": (2, 1, 2), "y_train": (2,),
                                        "x_test": (2, 1, 2), "y_test": (2,)})
    with pytest.raises(DatasetError, match="y_test holds label 10, expected 0..9"):
        fm.fashion_mnist_arrays(tmp_path, system)
    put("t10k-labels-idx1-ubyte.gz", bytes([0, 0, 8, 1, 0, 0, 0, 2, 1, 4]))
    arrays = fm.fashion_mnist_arrays(tmp_path, system)
    assert arrays["x_train"].tolist() == [[[0, 255]], [[10, 20]]]
    assert arrays["y_train"].tolist() == [3, 9] and arrays["y_train"].dtype == np.int64
    put("train-images-idx3-ubyte.gz", images[:-1])  # truncated, yet its digest is pinned
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte: shape"):
        fm.fashion_mnist_arrays(tmp_path, system)
