"""What every built-in dataset module shares: its error type and byte-reproducible ``.npz`` files.

NumPy only (the API process imports the dataset modules to validate registrations).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from app.storage.artifacts import atomic_file

__all__ = ["DatasetError", "write_npz_atomic"]


class DatasetError(ValueError):
    """A dataset is unknown, not fetched yet, malformed, or failed verification."""


def write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an uncompressed ``.npz`` byte-reproducibly, then move it into place atomically.

    ``np.savez`` stamps the current time into each zip entry, so the same arrays would hash
    differently on every write; fixed timestamps and sorted entries make a dataset's SHA-256
    reproducible. A crash leaves no partial file at ``path``.

    Args:
        path: Destination; its folder is created if missing.
        arrays: ``{name: array}``; object arrays are refused (``allow_pickle=False``).
    """
    with atomic_file(path) as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
            for key in sorted(arrays):
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arrays[key], allow_pickle=False)
