"""The Merkle commitment to forgotten ids, checked against a tree built by hand."""

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from app.services.merkle import merkle_root


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_three_leaves_by_hand() -> None:
    leaves = [h(b"\x00" + s) for s in (b"2", b"10", b"33")]  # numeric order, not text order
    expected = h(b"\x01" + h(b"\x01" + leaves[0] + leaves[1]) + leaves[2])
    assert merkle_root([33, 10, 2]) == expected.hex()


def test_single_leaf_and_empty() -> None:
    assert merkle_root([7]) == h(b"\x007").hex()
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()


@given(st.sets(st.integers(0, 10**6), max_size=40), st.integers(0, 10**6))
def test_root_depends_on_the_set_only(ids: set[int], extra: int) -> None:
    order = sorted(ids, reverse=True)
    assert merkle_root(order) == merkle_root(list(ids) + order)  # duplicates and order ignored
    if extra not in ids:
        assert merkle_root(ids | {extra}) != merkle_root(ids)
