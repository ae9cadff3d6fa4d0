"""Merkle commitment to a set of forgotten sample ids (METHOD §8).

Leaves are the ids as decimal strings, sorted numerically; ``leaf = SHA-256(0x00 || id)``,
``node = SHA-256(0x01 || left || right)`` (RFC 6962-style domain separation, so a leaf can never be
passed off as a node); an odd node at the end of a level is promoted unchanged. The empty set's
root is SHA-256 of the empty string.

An inclusion proof (:func:`merkle_proof`, checked by :func:`verify_proof`) lists, from the leaf
up, the sibling hash at each level where the path has one, and on which side it sits; a promoted
node contributes no step. Unlike RFC 6962 §2.1.1 (which splits at the largest power of two) the
tree pairs left to right level by level, so the proofs are of this scheme, not RFC 6962 audit paths.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["COMMITMENT_SCHEME", "merkle_proof", "merkle_proofs", "merkle_root", "verify_proof"]


def _leaf(sample_id: int) -> bytes:
    return hashlib.sha256(b"\x00" + str(sample_id).encode()).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _levels(ordered: list[int]) -> list[list[bytes]]:
    """Every level of the tree over ``ordered`` (sorted, distinct ids), leaves first."""
    levels = [[_leaf(i) for i in ordered]]
    while len(levels[-1]) > 1:
        level = levels[-1]
        paired = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        levels.append(paired)
    return levels


def merkle_root(sample_ids: Iterable[int]) -> str:
    """Hex root over the sorted, de-duplicated ids.

    >>> merkle_root([]) == hashlib.sha256(b"").hexdigest()
    True
    """
    ordered = sorted(set(sample_ids))
    if not ordered:
        return hashlib.sha256(b"").hexdigest()
    return _levels(ordered)[-1][0].hex()


def merkle_proofs(sample_ids: Iterable[int], targets: Iterable[int]) -> dict[int, list[dict[str, str]]]:
    """Inclusion proofs of several ``targets`` in the tree over ``sample_ids`` (built once).

    Returns:
        ``{target: proof}``, each proof as in :func:`merkle_proof`.

    Raises:
        ValueError: A target is not among ``sample_ids``.
    """
    ordered = sorted(set(sample_ids))
    position = {sid: k for k, sid in enumerate(ordered)}
    levels = _levels(ordered) if ordered else []
    out: dict[int, list[dict[str, str]]] = {}
    for target in targets:
        if target not in position:
            raise ValueError(f"sample id {target} is not in the committed set")
        index, proof = position[target], []
        for level in levels[:-1]:
            if index % 2:
                proof.append({"side": "left", "hash": level[index - 1].hex()})
            elif index + 1 < len(level):
                proof.append({"side": "right", "hash": level[index + 1].hex()})
            index //= 2  # a promoted last node keeps its hash and moves up without a step
        out[target] = proof
    return out


def merkle_proof(sample_ids: Iterable[int], target: int) -> list[dict[str, str]]:
    """Inclusion proof of ``target`` in the tree of :func:`merkle_root` over ``sample_ids``.

    Args:
        sample_ids: The committed set (any order; duplicates ignored).
        target: One id of that set.

    Returns:
        Steps from the leaf up: ``{"side": "left" | "right", "hash": hex sibling}``; the sibling
        is hashed on that side of the running hash (``node(sibling, h)`` for ``"left"``).

    Raises:
        ValueError: ``target`` is not in the set.

    >>> merkle_proof([5], 5)
    []
    >>> verify_proof(merkle_root([1, 2, 3]), 3, merkle_proof([3, 1, 2], 3))
    True
    """
    return merkle_proofs(sample_ids, [target])[target]


def verify_proof(root: str, sample_id: int, proof: list[dict[str, str]]) -> bool:
    """Whether ``proof`` shows that ``sample_id`` is a leaf of the tree with hex ``root``.

    Malformed proofs (unknown side, a hash that is not 32 bytes of hex) verify as False.
    """
    if isinstance(sample_id, bool) or not isinstance(sample_id, int) or not isinstance(proof, list):
        return False
    running = _leaf(sample_id)
    for step in proof:
        try:
            side, sibling = step["side"], bytes.fromhex(step["hash"])
        except (KeyError, TypeError, ValueError):
            return False
        if len(sibling) != 32 or side not in ("left", "right"):
            return False
        running = _node(sibling, running) if side == "left" else _node(running, sibling)
    return isinstance(root, str) and running.hex() == root.lower()


COMMITMENT_SCHEME = {
    "hash": "sha256",
    "leaf": "sha256(0x00 || decimal id)",
    "node": "sha256(0x01 || left || right)",
    "order": "ids sorted numerically, de-duplicated; odd last node promoted",
}
