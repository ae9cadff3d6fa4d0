"""Merkle commitment to a set of forgotten sample ids (METHOD §8).

Leaves are the ids as decimal strings, sorted numerically; ``leaf = SHA-256(0x00 || id)``,
``node = SHA-256(0x01 || left || right)`` (RFC 6962-style domain separation, so a leaf can never be
passed off as a node); an odd node at the end of a level is promoted unchanged. The empty set's
root is SHA-256 of the empty string.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _leaf(sample_id: int) -> bytes:
    return hashlib.sha256(b"\x00" + str(sample_id).encode()).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(sample_ids: Iterable[int]) -> str:
    """Hex root over the sorted, de-duplicated ids.

    >>> merkle_root([]) == hashlib.sha256(b"").hexdigest()
    True
    """
    level = [_leaf(i) for i in sorted(set(sample_ids))]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        paired = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()


COMMITMENT_SCHEME = {
    "hash": "sha256",
    "leaf": "sha256(0x00 || decimal id)",
    "node": "sha256(0x01 || left || right)",
    "order": "ids sorted numerically, de-duplicated; odd last node promoted",
}
