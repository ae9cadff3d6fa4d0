"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (Xiao, Rasul & Vollgraf 2017,
arXiv 1708.07747): 60k train and 10k test 28×28 grey images of 10 clothing classes, NumPy only.

The package installs four gzipped IDX files under :data:`SYSTEM_DIR`. Each file's SHA-256 is
pinned in :data:`FASHION_MNIST_SHA256` and checked before use; the arrays are then read by the
strict :func:`app.unlearning.idx.read_idx`. :func:`fetch_fashion_mnist` verifies the files and
copies them into the data dir (so a worker whose data dir is a shared volume finds them without
the package); :func:`fashion_mnist_dir` prefers that copy. Nothing is downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from app.storage.artifacts import atomic_write
from app.unlearning.dataset_files import DatasetError
from app.unlearning.idx import read_idx

__all__ = [
    "APT_PACKAGE",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_SHA256",
    "SYSTEM_DIR",
    "fashion_mnist_arrays",
    "fashion_mnist_checksum",
    "fashion_mnist_dir",
    "fetch_fashion_mnist",
]

APT_PACKAGE = "dataset-fashion-mnist"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` (0.0~git20200523.55506a9-1) installs the files."""
DATA_SUBDIR = "fashion-mnist"
"""The verified copy's folder inside the data dir."""

N_TRAIN, N_TEST, ROWS, COLS, NUM_CLASSES = 60000, 10000, 28, 28, 10

FASHION_MNIST_FILES: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
"""Array name → file name."""

FASHION_MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
"""SHA-256 of each file as Debian's package ships it (measured on its installed files)."""

_SHAPES: dict[str, tuple[int, ...]] = {
    "x_train": (N_TRAIN, ROWS, COLS), "y_train": (N_TRAIN,),
    "x_test": (N_TEST, ROWS, COLS), "y_test": (N_TEST,),
}


def _missing(folder: Path) -> list[str]:
    return [name for name in FASHION_MNIST_SHA256 if not (folder / name).is_file()]


def fashion_mnist_dir(data_dir: Path, system_dir: Path = SYSTEM_DIR) -> Path:
    """The folder holding the four files: the data dir's verified copy, else the package's.

    Raises:
        DatasetError: Neither has all four files; the message names the package to install.
    """
    for folder in (Path(data_dir) / DATA_SUBDIR, Path(system_dir)):
        if not _missing(folder):
            return folder
    raise _not_installed(Path(system_dir))


def _not_installed(system_dir: Path) -> DatasetError:
    return DatasetError(
        f"Fashion-MNIST is not installed: {', '.join(_missing(system_dir))} missing from "
        f"{system_dir}. Install Debian's package (apt-get install {APT_PACKAGE}), then run "
        "`lethe data fetch fashion-mnist`"
    )


def _verified_bytes(folder: Path, name: str) -> bytes:
    raw = (folder / name).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != FASHION_MNIST_SHA256[name]:
        raise DatasetError(f"{folder / name} has SHA-256 {digest}, expected "
                           f"{FASHION_MNIST_SHA256[name]} (package {APT_PACKAGE}); refusing to use it")
    return raw


def fashion_mnist_checksum(data_dir: Path, system_dir: Path = SYSTEM_DIR) -> str:
    """SHA-256 identifying Fashion-MNIST's content: over ``"name sha256\\n"`` of the four files,
    in :data:`FASHION_MNIST_SHA256` order, after checking each file against its pinned digest.

    Raises:
        DatasetError: A file is missing or differs from its pinned digest.
    """
    folder = fashion_mnist_dir(data_dir, system_dir)
    for name in FASHION_MNIST_SHA256:
        _verified_bytes(folder, name)
    listing = "".join(f"{name} {sha}\n" for name, sha in FASHION_MNIST_SHA256.items())
    return hashlib.sha256(listing.encode()).hexdigest()


def fashion_mnist_arrays(data_dir: Path, system_dir: Path = SYSTEM_DIR) -> dict[str, np.ndarray]:
    """The verified arrays: ``x_train uint8 [60000, 28, 28]``, ``y_train int64 [60000]``,
    ``x_test uint8 [10000, 28, 28]``, ``y_test int64 [10000]``.

    Raises:
        DatasetError: A file is missing, differs from its pinned digest, is not valid gzip or IDX
            of the expected shape, or holds a label outside 0..9.
    """
    folder = fashion_mnist_dir(data_dir, system_dir)
    arrays: dict[str, np.ndarray] = {}
    for key, name in FASHION_MNIST_FILES.items():
        try:
            data = gzip.decompress(_verified_bytes(folder, name))
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{folder / name} is not valid gzip: {exc}") from exc
        arrays[key] = read_idx(data, name.removesuffix(".gz"), shape=_SHAPES[key], dtype=np.uint8)
    for key in ("y_train", "y_test"):
        labels = arrays[key].astype(np.int64)
        if labels.max() >= NUM_CLASSES:
            raise DatasetError(f"Fashion-MNIST {key} holds label {labels.max()}, expected 0..9")
        arrays[key] = labels
    return arrays


def fetch_fashion_mnist(data_dir: Path, system_dir: Path = SYSTEM_DIR) -> Path:
    """Verify the package's files and copy them into ``data_dir/fashion-mnist`` (idempotent).

    A copy that already verifies is kept as it is. Each file's verified bytes are written to a
    temporary name and moved into place, so an interrupted fetch leaves no half-written file under
    its real name.

    Returns:
        The folder of the verified copy.

    Raises:
        DatasetError: The package is not installed or a file fails its checksum.
    """
    target = Path(data_dir) / DATA_SUBDIR
    if not _missing(target):
        try:
            fashion_mnist_checksum(data_dir, system_dir=target)
            return target
        except DatasetError:
            pass  # a damaged copy: fetch it again from the package
    source = Path(system_dir)
    if _missing(source):
        raise _not_installed(source)
    target.mkdir(parents=True, exist_ok=True)
    for name in FASHION_MNIST_SHA256:
        raw = _verified_bytes(source, name)
        atomic_write(target / name, raw)
    return target
