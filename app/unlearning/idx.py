"""A strict reader of the IDX format (LeCun's MNIST files, also Fashion-MNIST), NumPy only.

Layout (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"): two zero bytes, one byte naming
the element type, one byte with the number of dimensions k, then k big-endian uint32 sizes, then
the elements in C order, big-endian. Every field is checked, and the payload must hold exactly
prod(sizes) elements: a truncated or padded file is refused, never silently reshaped.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from app.unlearning.dataset_files import DatasetError

__all__ = ["IDX_DTYPES", "read_idx"]

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX type byte → big-endian element type."""


def read_idx(data: bytes, what: str, *, shape: tuple[int, ...] | None = None,
             dtype: np.dtype | None = None) -> np.ndarray:
    """Parse one IDX file into an array of its declared shape, in native byte order.

    Args:
        data: The whole (decompressed) file.
        what: Its name, for error messages (e.g. ``"train-images-idx3-ubyte"``).
        shape: If given, the sizes the header must declare (e.g. ``(60000, 28, 28)``).
        dtype: If given, the element type the header must declare (e.g. ``np.uint8``).

    Returns:
        ``ndarray`` of the header's shape (``[n]`` labels, ``[n, rows, cols]`` images), a copy.

    Raises:
        DatasetError: The magic bytes, type byte, dimension count, sizes or payload length are
            not what the format (or ``shape``/``dtype``) requires; the message names the field.

    Example:
        >>> read_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]), "labels")
        array([7, 9], dtype=uint8)
    """
    if len(data) < 4:
        raise DatasetError(f"{what}: {len(data)} bytes is too short for an IDX header")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise DatasetError(f"{what}: not an IDX file (magic starts {data[:2].hex()}, expected 0000)")
    if type_code not in IDX_DTYPES:
        raise DatasetError(f"{what}: unknown IDX element type 0x{type_code:02x}")
    element = IDX_DTYPES[type_code]
    if dtype is not None and element.newbyteorder("=") != np.dtype(dtype):
        raise DatasetError(f"{what}: elements are {element.newbyteorder('=')}, expected "
                           f"{np.dtype(dtype)}")
    if ndim == 0:
        raise DatasetError(f"{what}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DatasetError(f"{what}: header declares {ndim} dimensions but the file ends after "
                           f"{len(data)} bytes")
    sizes = struct.unpack(f">{ndim}I", data[4:header_len])
    if shape is not None and tuple(sizes) != tuple(shape):
        raise DatasetError(f"{what}: header declares shape {tuple(sizes)}, expected {tuple(shape)}")
    expected = math.prod(sizes) * element.itemsize
    payload = len(data) - header_len
    if payload != expected:
        raise DatasetError(f"{what}: shape {tuple(sizes)} needs {expected} bytes of "
                           f"{element.newbyteorder('=')} data, the file has {payload}")
    array = np.frombuffer(data, dtype=element, offset=header_len).reshape(sizes)
    return array.astype(element.newbyteorder("="))
