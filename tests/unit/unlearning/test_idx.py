"""The strict IDX reader on hand-made files: exact arrays, and a clear error for each bad field."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from app.unlearning.dataset_files import DatasetError
from app.unlearning.idx import read_idx

# Two 2x3 images, then their labels, written byte by byte as the format says.
IMAGES = bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3,
                0, 1, 2, 3, 4, 5,
                250, 251, 252, 253, 254, 255])
LABELS = bytes([0, 0, 0x08, 1, 0, 0, 0, 2, 7, 9])


def test_golden_images_and_labels() -> None:
    images = read_idx(IMAGES, "images", shape=(2, 2, 3), dtype=np.uint8)
    assert images.dtype == np.uint8 and images.shape == (2, 2, 3)
    assert images.tolist() == [[[0, 1, 2], [3, 4, 5]], [[250, 251, 252], [253, 254, 255]]]
    assert read_idx(LABELS, "labels").tolist() == [7, 9]


def test_big_endian_elements_come_back_native() -> None:
    shorts = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])
    out = read_idx(shorts, "shorts")
    assert out.dtype == np.dtype("=i2") and out.tolist() == [258, -2]
    floats = bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + struct.pack(">f", 1.5)
    assert read_idx(floats, "floats").tolist() == [1.5]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "too short for an IDX header"),
    (bytes([0, 1, 8, 1, 0, 0, 0, 1, 5]), "not an IDX file"),
    (bytes([8, 0, 8, 1, 0, 0, 0, 1, 5]), "not an IDX file"),
    (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "unknown IDX element type 0x07"),
    (bytes([0, 0, 8, 0, 5]), "declares 0 dimensions"),
    (bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0]), "declares 3 dimensions but the file ends after 10"),
    (LABELS[:-1], r"shape \(2,\) needs 2 bytes of uint8 data, the file has 1"),
    (LABELS + b"\x00", r"shape \(2,\) needs 2 bytes of uint8 data, the file has 3"),
    (IMAGES[:-6], "the file has 6"),
])
def test_malformed_files_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        read_idx(data, "f")


def test_the_expected_shape_and_type_are_enforced() -> None:
    with pytest.raises(DatasetError, match=r"images: header declares shape \(2, 2, 3\), expected "
                                           r"\(60000, 28, 28\)"):
        read_idx(IMAGES, "images", shape=(60000, 28, 28))
    with pytest.raises(DatasetError, match="elements are uint8, expected int16"):
        read_idx(LABELS, "labels", dtype=np.int16)
