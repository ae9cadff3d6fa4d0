"""Uploaded datasets: a ``.npz`` file checked strictly, then loaded like a built-in.

NumPy only: the API process validates uploads with :func:`inspect_npz`, the worker loads them with
:func:`load_uploaded` (DESIGN "What may import what": the API never loads torch).

The file holds these arrays (``np.savez`` / ``np.savez_compressed``; pickles are never loaded):

============  ==========================================  =========================================
key           dtype                                       shape
============  ==========================================  =========================================
x             float16/32/64, or uint8 (read as x / 255)   ``[n, d]`` or ``[n, C, H, W]``
y             any integer kind, labels in ``[0, K)``       ``[n]``
sample_ids    unicode strings or integers, unique          ``[n]``
subject_ids   unicode strings or integers (optional)       ``[n]``
x_test        as ``x`` (optional, with y_test)             ``[m, *x.shape[1:]]``
y_test        as ``y`` (optional, with x_test)             ``[m]``
============  ==========================================  =========================================

``K`` (the number of classes) is ``max(y) + 1``. Rows are the training set D of METHOD §2: row i is
the sample named ``sample_ids[i]``; integer ids are stored as their decimal strings. Without
``x_test``/``y_test`` the versions' test accuracy is reported as ``null``.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.storage.artifacts import sha256_file
from app.unlearning.datasets import ArrayDataset, DatasetError

__all__ = [
    "MAX_CLASSES",
    "MAX_ID_CHARS",
    "UPLOAD_SOURCE",
    "NpzRejected",
    "NpzSummary",
    "inspect_npz",
    "load_uploaded",
]

UPLOAD_SOURCE = "upload"
"""``datasets.source`` of an uploaded dataset."""

MAX_ID_CHARS = 200
"""Longest sample or subject id (the width of ``dataset_samples.sample_id``)."""

MAX_CLASSES = 1000
"""Most classes (ImageNet's 1000): a stray label of 10**9 must not size the output layer."""

_REQUIRED = ("x", "y", "sample_ids")
_OPTIONAL = ("subject_ids", "x_test", "y_test")
_MAX_LISTED = 20
_ROWS_PER_CHUNK = 4096  # finiteness is checked in chunks: no full-size boolean temporary


class NpzRejected(ValueError):
    """The upload is not an acceptable dataset; ``array`` names the offending key (or ``file``).

    Attributes:
        array: The npz key at fault, or ``"file"`` for the container itself.
        extra: Details for the problem+json body (e.g. the first 20 duplicate ids).
    """

    def __init__(self, detail: str, *, array: str = "file", **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.array = array
        self.extra = extra


@dataclass(frozen=True)
class NpzSummary:
    """What an accepted upload holds (arrays not kept).

    Attributes:
        n: Training rows.
        n_test: Test rows (0 without ``x_test``).
        input_shape: One sample's shape, ``x.shape[1:]``.
        num_features: ``d = prod(input_shape)``.
        num_classes: ``max(y) + 1``.
        sample_ids: ``[n]`` id strings; row i is ``sample_ids[i]``.
        subject_ids: ``[n]`` subject strings, or ``None`` without a subject column.
    """

    n: int
    n_test: int
    input_shape: tuple[int, ...]
    num_features: int
    num_classes: int
    sample_ids: list[str]
    subject_ids: list[str] | None


def _read_header(zf: zipfile.ZipFile, member: str, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a member's ``.npy`` header, without reading its data."""
    try:
        with zf.open(member) as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fp)
            elif version == (2, 0):
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fp)
            else:  # 3.0 only exists for structured dtypes with non-ASCII field names
                raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise NpzRejected(f"{key!r} is not a readable .npy array: {exc}", array=key) from None
    if dtype.hasobject or dtype.fields is not None:
        raise NpzRejected(
            f"{key!r} has dtype {dtype}: object and structured arrays are refused (files are "
            "read with allow_pickle=False); save plain numeric or unicode arrays", array=key)
    return tuple(int(s) for s in shape), dtype


def _members(zf: zipfile.ZipFile) -> dict[str, str]:
    names = [info.filename for info in zf.infolist()]
    keys = [name[:-4] if name.endswith(".npy") else name for name in names]
    duplicated = sorted(k for k, c in Counter(keys).items() if c > 1)
    if duplicated:
        raise NpzRejected(f"the archive holds {duplicated} more than once")
    unknown = sorted(set(keys) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise NpzRejected(
            f"unexpected arrays {unknown[:_MAX_LISTED]}; allowed: "
            f"{list(_REQUIRED) + list(_OPTIONAL)}", unexpected_arrays=unknown[:_MAX_LISTED])
    missing = [k for k in _REQUIRED if k not in keys]
    if missing:
        raise NpzRejected(f"missing required arrays {missing}", missing_arrays=missing)
    if ("x_test" in keys) != ("y_test" in keys):
        raise NpzRejected("x_test and y_test come together: give both or neither",
                          array="x_test" if "x_test" not in keys else "y_test")
    return {key: name for key, name in zip(keys, names)}


def _check_header(key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if key in ("x", "x_test"):
        if not (dtype.kind == "f" or dtype == np.uint8):
            raise NpzRejected(f"{key!r} has dtype {dtype}; expected float16/32/64 or uint8",
                              array=key)
        if len(shape) not in (2, 4):
            raise NpzRejected(f"{key!r} has shape {list(shape)}; expected [n, d] or [n, C, H, W]",
                              array=key)
        if any(s == 0 for s in shape[1:]):
            raise NpzRejected(f"{key!r} has shape {list(shape)}: a sample has no features",
                              array=key)
    elif key in ("y", "y_test"):
        if dtype.kind not in "iu":
            raise NpzRejected(f"{key!r} has dtype {dtype}; expected integer class labels",
                              array=key)
    elif dtype.kind not in "iuU":  # sample_ids, subject_ids
        raise NpzRejected(f"{key!r} has dtype {dtype}; expected unicode strings or integers",
                          array=key)
    if key not in ("x", "x_test") and len(shape) != 1:
        raise NpzRejected(f"{key!r} has shape {list(shape)}; expected one dimension [n]",
                          array=key)


def _check_shapes(headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> tuple[int, int]:
    x_shape = headers["x"][0]
    n = x_shape[0]
    if n < 2:
        raise NpzRejected(f"'x' has {n} rows; a dataset needs at least 2", array="x")
    for key in ("y", "sample_ids", "subject_ids"):
        if key in headers and headers[key][0][0] != n:
            raise NpzRejected(
                f"{key!r} has {headers[key][0][0]} entries but 'x' has {n} rows", array=key)
    if "x_test" not in headers:
        return n, 0
    xt_shape, yt_shape = headers["x_test"][0], headers["y_test"][0]
    if xt_shape[1:] != x_shape[1:]:
        raise NpzRejected(f"'x_test' samples have shape {list(xt_shape[1:])} but 'x' samples "
                          f"have {list(x_shape[1:])}", array="x_test")
    if yt_shape[0] != xt_shape[0]:
        raise NpzRejected(f"'y_test' has {yt_shape[0]} entries but 'x_test' has {xt_shape[0]} "
                          "rows", array="y_test")
    return n, xt_shape[0]


def _check_finite(key: str, x: np.ndarray) -> None:
    if x.dtype.kind != "f":
        return
    rows = x.reshape(x.shape[0], -1)
    for start in range(0, rows.shape[0], _ROWS_PER_CHUNK):
        # float32 is what training uses: a float64 beyond its range would become inf there.
        with np.errstate(over="ignore"):  # the overflow is what is being looked for
            chunk = rows[start:start + _ROWS_PER_CHUNK].astype(np.float32)
        bad = ~np.isfinite(chunk).all(axis=1)
        if bad.any():
            first = start + int(np.flatnonzero(bad)[0])
            raise NpzRejected(f"{key!r} holds NaN or infinite values (as float32), first in row "
                              f"{first}", array=key, first_bad_row=first)


def _check_labels(key: str, y: np.ndarray, num_classes: int | None) -> int:
    low, high = int(y.min()), int(y.max())
    if low < 0:
        raise NpzRejected(f"{key!r} holds the label {low}; labels are class indices >= 0",
                          array=key)
    limit = num_classes if num_classes is not None else MAX_CLASSES
    if high >= limit:
        where = "the training labels 'y'" if num_classes is not None else f"{MAX_CLASSES} classes"
        raise NpzRejected(f"{key!r} holds the label {high}, out of range for {where} "
                          f"(labels must be < {limit})", array=key)
    k = high + 1
    if num_classes is None and k < 2:
        raise NpzRejected("'y' has a single class; a classifier needs at least 2", array=key)
    return k


def _id_strings(key: str, values: np.ndarray) -> list[str]:
    strings = [str(v) for v in values.tolist()]
    bad = [s for s in strings if not s or len(s) > MAX_ID_CHARS or not s.isprintable()]
    if bad:
        raise NpzRejected(
            f"{len(bad)} entries of {key!r} are empty, longer than {MAX_ID_CHARS} characters or "
            "hold control characters", array=key,
            invalid_ids=[s[:64] for s in bad[:_MAX_LISTED]], invalid_count=len(bad))
    return strings


def inspect_npz(path: Path, *, max_array_bytes: int) -> NpzSummary:
    """Validate an uploaded ``.npz`` (see the module docstring for the layout).

    Headers are read first, so a wrong dtype or a zip bomb is refused before any data is
    decompressed; then the arrays are loaded with ``allow_pickle=False`` and checked.

    Args:
        path: The uploaded file.
        max_array_bytes: Most bytes the arrays may take once decoded (all together).

    Returns:
        The summary, with the ids as strings.

    Raises:
        NpzRejected: Not a zip/npz; unexpected or missing arrays; object arrays; wrong dtypes or
            shapes; mismatched lengths; decoded size over ``max_array_bytes``; NaN/Inf in
            ``x``/``x_test``; labels < 0 or >= K (``y_test`` against ``y``'s K); bad or duplicate
            sample ids (the first 20 named).
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise NpzRejected(f"the body is not an .npz (zip) file: {exc}") from None
    with zf:
        members = _members(zf)
        headers = {key: _read_header(zf, name, key) for key, name in members.items()}
    for key, (shape, dtype) in headers.items():
        _check_header(key, shape, dtype)
    decoded = sum(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                  for shape, dtype in headers.values())
    if decoded > max_array_bytes:
        raise NpzRejected(f"the arrays take {decoded} bytes decoded; at most {max_array_bytes} "
                          "are accepted (LETHE_MAX_UPLOAD_BYTES)", decoded_bytes=decoded,
                          max_bytes=max_array_bytes)
    n, n_test = _check_shapes(headers)
    try:
        with np.load(path, allow_pickle=False) as npz:
            _check_finite("x", npz["x"])
            num_classes = _check_labels("y", npz["y"], None)
            if n_test:
                _check_finite("x_test", npz["x_test"])
                _check_labels("y_test", npz["y_test"], num_classes)
            sample_ids = _id_strings("sample_ids", npz["sample_ids"])
            subject_ids = (_id_strings("subject_ids", npz["subject_ids"])
                           if "subject_ids" in headers else None)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, NpzRejected):
            raise
        if "allow_pickle" in str(exc):  # numpy's message invites loading the pickle: never
            raise NpzRejected("an array holds pickled (object) data, which is never loaded; save "
                              "plain numeric or unicode arrays") from None
        raise NpzRejected(f"the arrays could not be read: {exc}") from None
    duplicates = [s for s, c in Counter(sample_ids).items() if c > 1]
    if duplicates:
        raise NpzRejected(f"{len(duplicates)} sample id(s) appear more than once",
                          array="sample_ids", duplicate_sample_ids=duplicates[:_MAX_LISTED],
                          duplicate_count=len(duplicates))
    input_shape = headers["x"][0][1:]
    return NpzSummary(n=n, n_test=n_test, input_shape=input_shape,
                      num_features=int(np.prod(input_shape)), num_classes=num_classes,
                      sample_ids=sample_ids, subject_ids=subject_ids)


def _features(x: np.ndarray) -> np.ndarray:
    """``[n, ...]`` → float32 ``[n, d]``; uint8 pixels are scaled to [0, 1] as MNIST's are."""
    flat = x.reshape(x.shape[0], -1)
    if flat.dtype == np.uint8:
        return flat.astype(np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(flat, dtype=np.float32)


def load_uploaded(path: Path, checksum_sha256: str) -> ArrayDataset:
    """Load an accepted upload as the worker trains on it.

    Args:
        path: The stored ``.npz`` (content-addressed in the artifact store).
        checksum_sha256: The dataset's recorded checksum; the file must still hash to it.

    Returns:
        ``x_train`` float32 ``[n, d]`` (uint8 / 255, floats as given), ``y_train`` int64 ``[n]``,
        test arrays likewise (``[0, d]`` and ``[0]`` without a test split), ``num_classes`` =
        ``max(y) + 1``, ``input_shape`` = ``x.shape[1:]``; row i is ``sample_ids[i]``.

    Raises:
        DatasetError: The file is missing, or its SHA-256 differs from ``checksum_sha256``.
    """
    if not path.exists():
        raise DatasetError(f"the uploaded dataset file {path} is missing")
    actual = sha256_file(path)
    if actual != checksum_sha256:
        raise DatasetError(f"{path} has SHA-256 {actual}, but the dataset records "
                           f"{checksum_sha256}; refusing to train on it")
    with np.load(path, allow_pickle=False) as npz:
        raw = npz["x"]  # each access decompresses again: read once
        input_shape = tuple(int(s) for s in raw.shape[1:])
        x = _features(raw)
        del raw
        y = npz["y"].astype(np.int64)
        if "x_test" in npz.files:
            x_test, y_test = _features(npz["x_test"]), npz["y_test"].astype(np.int64)
        else:
            x_test, y_test = np.zeros((0, x.shape[1]), np.float32), np.zeros(0, np.int64)
    return ArrayDataset(x_train=x, y_train=y, x_test=x_test, y_test=y_test,
                        num_classes=int(y.max()) + 1, source=UPLOAD_SOURCE,
                        input_shape=input_shape)
