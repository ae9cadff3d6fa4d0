"""Synthetic stand-ins of CIFAR-10's and SVHN's shapes, for scaling measurements (NumPy only).

CIFAR-10 and SVHN cannot be had offline here (DESIGN "Data that exists offline here"), so these
sources are SYNTHETIC: images of the same shape (3×32×32 uint8), split sizes and class count,
generated from a fixed seed, never downloaded. They are not CIFAR-10 or SVHN; results on them
measure cost (time, memory, products per second), not accuracy on the real data.

Generation (:data:`GENERATOR`): each class c has a smooth template T_c [3, 32, 32], a sum of
random low-frequency cosines per channel. Sample i of a split gets a label, a random translation
of up to ±``MAX_SHIFT`` pixels (circular), a random contrast and brightness, and Gaussian pixel
noise:  x = clip(128 + contrast·24·shift(T_y) + brightness + N(0, 56²), 0, 255) → uint8.
Learnable but not trivial: measured on 3000 train / 1000 test rows of the CIFAR-10-shaped source,
nearest class mean 41% and logistic regression 69% test accuracy (chance 10%); a convolutional
network can also use the translation structure.
Rows are made in blocks of :data:`BLOCK` from a generator seeded by (seed, split, block), so a
smaller size is exactly a prefix of the full dataset (tests run on slices of the real thing).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.unlearning.dataset_files import DatasetError, write_npz_atomic

__all__ = [
    "BLOCK",
    "GENERATOR",
    "SYNTHETIC_SOURCES",
    "SyntheticSpec",
    "synthetic_arrays",
    "synthetic_path",
]

GENERATOR = "lethe-synthetic/1"
"""Version of the generation recipe; recorded in every cached file (a change makes a new file)."""
BLOCK = 1024
"""Rows generated per seeded block."""
MAX_SHIFT = 4
_FREQUENCIES = 4  # cosines per channel in a class template
_AMPLITUDE = 24.0
_NOISE_STD = 56.0


@dataclass(frozen=True)
class SyntheticSpec:
    """A synthetic source: the shape and split sizes of the dataset it stands in for."""

    source: str
    mimics: str
    input_shape: tuple[int, int, int]
    n_train: int
    n_test: int
    num_classes: int
    seed: int


SYNTHETIC_SOURCES: dict[str, SyntheticSpec] = {
    "synthetic-cifar10-shape": SyntheticSpec("synthetic-cifar10-shape", "CIFAR-10", (3, 32, 32),
                                             50000, 10000, 10, seed=10),
    "synthetic-svhn-shape": SyntheticSpec("synthetic-svhn-shape", "SVHN (cropped digits)",
                                          (3, 32, 32), 73257, 26032, 10, seed=73257),
}
"""The synthetic sources by name; sizes are those of the real datasets' train/test splits."""

_SPLITS = {"train": 0, "test": 1}


def _templates(spec: SyntheticSpec) -> np.ndarray:
    """Class templates ``float32 [k, C, H, W]`` with values in about [-1, 1]."""
    rng = np.random.default_rng([spec.seed, 0])
    k, (c, h, w) = spec.num_classes, spec.input_shape
    u = np.arange(h, dtype=np.float64)[:, None] / h
    v = np.arange(w, dtype=np.float64)[None, :] / w
    out = np.zeros((k, c, h, w))
    for cls in range(k):
        for ch in range(c):
            fu, fv = rng.integers(0, 4, size=(2, _FREQUENCIES))
            phase = rng.uniform(0, 2 * np.pi, size=_FREQUENCIES)
            amp = rng.normal(size=_FREQUENCIES)
            for f in range(_FREQUENCIES):
                out[cls, ch] += amp[f] * np.cos(2 * np.pi * (fu[f] * u + fv[f] * v) + phase[f])
    out /= np.abs(out).max(axis=(1, 2, 3), keepdims=True)
    return out.astype(np.float32)


def _block(spec: SyntheticSpec, templates: np.ndarray, split: str, index: int,
           rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[index·BLOCK, index·BLOCK + rows)`` of a split: ``uint8 [rows, C, H, W]``, labels."""
    rng = np.random.default_rng([spec.seed, 1 + _SPLITS[split], index])
    y = rng.integers(0, spec.num_classes, size=BLOCK)[:rows]
    shifts = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(BLOCK, 2))[:rows]
    contrast = rng.uniform(0.6, 1.4, size=BLOCK)[:rows].astype(np.float32)
    brightness = rng.normal(0.0, 20.0, size=BLOCK)[:rows].astype(np.float32)
    noise = rng.standard_normal(size=(BLOCK, *spec.input_shape), dtype=np.float32)[:rows]
    x = np.empty((rows, *spec.input_shape), dtype=np.float32)
    for i in range(rows):
        x[i] = np.roll(templates[y[i]], tuple(shifts[i]), axis=(1, 2))
    x *= (_AMPLITUDE * contrast)[:, None, None, None]
    x += (128.0 + brightness)[:, None, None, None]
    x += _NOISE_STD * noise
    return np.clip(np.rint(x), 0, 255).astype(np.uint8), y.astype(np.int64)


def _generate(spec: SyntheticSpec, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    templates = _templates(spec)
    x = np.empty((n, *spec.input_shape), dtype=np.uint8)
    y = np.empty(n, dtype=np.int64)
    for index, start in enumerate(range(0, n, BLOCK)):
        rows = min(BLOCK, n - start)
        x[start:start + rows], y[start:start + rows] = _block(spec, templates, split, index, rows)
    return x, y


def _spec(source: str) -> SyntheticSpec:
    try:
        return SYNTHETIC_SOURCES[source]
    except KeyError:
        raise DatasetError(f"unknown synthetic source {source!r}; choose one of "
                           f"{sorted(SYNTHETIC_SOURCES)}") from None


def _sizes(spec: SyntheticSpec, n_train: int | None, n_test: int | None) -> tuple[int, int]:
    n_train = spec.n_train if n_train is None else int(n_train)
    n_test = spec.n_test if n_test is None else int(n_test)
    if not (1 <= n_train <= spec.n_train and 0 <= n_test <= spec.n_test):
        raise DatasetError(f"{spec.source}: sizes must be 1..{spec.n_train} train and "
                           f"0..{spec.n_test} test rows, got {n_train} and {n_test}")
    return n_train, n_test


def synthetic_path(data_dir: Path, source: str, n_train: int | None = None,
                   n_test: int | None = None) -> Path:
    """Where the cached ``.npz`` of ``source`` at these sizes lives in ``data_dir``."""
    spec = _spec(source)
    n_train, n_test = _sizes(spec, n_train, n_test)
    return Path(data_dir) / f"{source}-{n_train}-{n_test}.npz"


def _read(path: Path, spec: SyntheticSpec, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    want = {"x_train": ((n_train, *spec.input_shape), np.uint8), "y_train": ((n_train,), np.int64),
            "x_test": ((n_test, *spec.input_shape), np.uint8), "y_test": ((n_test,), np.int64)}
    try:
        # Our own handle: np.load leaks its file when the zip is damaged.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            generator = str(npz["generator"])
            arrays = {k: npz[k] for k in want}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path} is unreadable or incomplete ({exc})") from exc
    if generator != f"{GENERATOR} seed={spec.seed}":
        raise DatasetError(f"{path} was made by {generator!r}, expected {GENERATOR} seed={spec.seed}")
    for key, (shape, dtype) in want.items():
        if arrays[key].shape != shape or arrays[key].dtype != dtype:
            raise DatasetError(f"{path}: {key} is {arrays[key].shape} {arrays[key].dtype}, "
                               f"expected {shape} {np.dtype(dtype)}")
    return arrays


def synthetic_arrays(source: str, data_dir: Path, *, n_train: int | None = None,
                     n_test: int | None = None, create: bool = True) -> dict[str, np.ndarray]:
    """The synthetic dataset ``source`` (its first ``n_train``/``n_test`` rows), from its cache.

    Args:
        source: A key of :data:`SYNTHETIC_SOURCES`.
        data_dir: Where the cache ``{source}-{n_train}-{n_test}.npz`` lives.
        n_train: Train rows (default: the real dataset's size); a prefix of the full split.
        n_test: Test rows (default: the real dataset's size).
        create: Generate and cache the file when it is missing or invalid (else raise).

    Returns:
        ``x_train uint8 [n_train, 3, 32, 32]``, ``y_train int64 [n_train]``, ``x_test``,
        ``y_test``.

    Raises:
        DatasetError: Unknown source, sizes out of range, or (``create=False``) no valid cache.
    """
    spec = _spec(source)
    n_train, n_test = _sizes(spec, n_train, n_test)
    path = synthetic_path(data_dir, source, n_train, n_test)
    if path.exists():
        try:
            return _read(path, spec, n_train, n_test)
        except DatasetError:
            if not create:
                raise
    elif not create:
        raise DatasetError(f"{source} is not generated yet ({path} missing): run "
                           f"`lethe data fetch {source}` (synthetic, generated locally)")
    x_train, y_train = _generate(spec, "train", n_train)
    x_test, y_test = _generate(spec, "test", n_test)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    write_npz_atomic(path, arrays | {"generator": np.array(f"{GENERATOR} seed={spec.seed}")})
    return arrays
