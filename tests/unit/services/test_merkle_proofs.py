"""Merkle inclusion proofs, consistent with merkle_root's promotion rule."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.services.merkle import merkle_proof, merkle_proofs, merkle_root, verify_proof


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_three_leaves_by_hand() -> None:
    leaves = [h(b"\x00" + s) for s in (b"2", b"10", b"33")]
    pair = h(b"\x01" + leaves[0] + leaves[1])
    assert merkle_proof([33, 10, 2], 2) == [{"side": "right", "hash": leaves[1].hex()},
                                            {"side": "right", "hash": leaves[2].hex()}]
    assert merkle_proof([33, 10, 2], 10) == [{"side": "left", "hash": leaves[0].hex()},
                                             {"side": "right", "hash": leaves[2].hex()}]
    # 33 is promoted at the first level: one step only, its sibling is the pair above.
    assert merkle_proof([33, 10, 2], 33) == [{"side": "left", "hash": pair.hex()}]


@given(st.sets(st.integers(0, 10**6), min_size=1, max_size=70), st.data())
def test_every_member_verifies_and_nothing_else(ids: set[int], data: st.DataObject) -> None:
    root = merkle_root(ids)
    proofs = merkle_proofs(ids, sorted(ids))
    for sid, proof in proofs.items():
        assert verify_proof(root, sid, proof)
        assert proof == merkle_proof(ids, sid)
    sid = data.draw(st.sampled_from(sorted(ids)))
    proof = proofs[sid]
    assert not verify_proof(root, sid + 10**7, proof)  # another id, same path
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        flipped = [dict(s) for s in proof]
        flipped[k]["hash"] = ("0" if flipped[k]["hash"][0] != "0" else "1") + flipped[k]["hash"][1:]
        assert not verify_proof(root, sid, flipped)
        swapped = [dict(s) for s in proof]
        swapped[k]["side"] = "left" if swapped[k]["side"] == "right" else "right"
        assert not verify_proof(root, sid, swapped)
        assert not verify_proof(root, sid, proof[:-1])


def test_malformed_proofs_and_non_members() -> None:
    root = merkle_root([1, 2, 3])
    assert not verify_proof(root, 1, [{"side": "up", "hash": "00" * 32}])
    assert not verify_proof(root, 1, [{"side": "left", "hash": "zz"}])
    assert not verify_proof(root, 1, [{"hash": "00" * 32}])
    assert not verify_proof(root, 1, "not a list")  # type: ignore[arg-type]
    assert not verify_proof(None, 1, [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not in the committed set"):
        merkle_proof([1, 2, 3], 4)
