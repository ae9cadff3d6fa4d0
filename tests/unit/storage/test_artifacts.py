"""Content-addressed artifacts and the private state area."""

import hashlib
import os
import time
from pathlib import Path

import pytest

from app.storage.artifacts import ArtifactStore, PrivateStore


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    digest, size = store.put(b"weights")
    assert digest == hashlib.sha256(b"weights").hexdigest() and size == 7
    assert store.path_for(digest).read_bytes() == b"weights"
    assert store.put(b"weights") == (digest, size)
    assert not list(store.path_for(digest).parent.glob(".tmp-*"))  # no half-written files left


@pytest.mark.parametrize("bad", ["../etc/passwd", "ABC", "g" * 64, "a" * 63])
def test_path_for_refuses_anything_but_a_digest(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        ArtifactStore(tmp_path).path_for(bad)


def test_private_states_live_outside_the_public_tree(tmp_path: Path) -> None:
    public, private = ArtifactStore(tmp_path / "artifacts"), PrivateStore(tmp_path / "private")
    path = private.put_state("m1", "job1", b"noiseless")
    assert private.read_state("m1", "job1") == b"noiseless"
    assert public.root not in path.parents


def test_sweep_incoming_deletes_only_untouched_partial_uploads(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    assert store.sweep_incoming(60) == 0  # no .incoming yet: nothing to do, nothing created
    incoming = store.incoming_dir()
    now = time.time()
    old, fresh = incoming / "upload-old.npz.part", incoming / "upload-fresh.npz.part"
    old.write_bytes(b"half an upload")
    fresh.write_bytes(b"still arriving")
    os.utime(old, (now - 7200, now - 7200))
    os.utime(fresh, (now - 30, now - 30))
    kept_sha, _ = store.put(b"a stored artifact")  # content-addressed files are never swept
    assert store.sweep_incoming(3600, now=now) == 1
    assert not old.exists() and fresh.exists() and store.path_for(kept_sha).exists()
    assert store.sweep_incoming(3600, now=now) == 0
    with pytest.raises(ValueError, match="older_than_s"):
        store.sweep_incoming(0)
