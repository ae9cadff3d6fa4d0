"""Content-addressed artifact files, and the private area for noiseless internal states.

Public releases live at ``<artifacts>/<sha[:2]>/<sha>.safetensors``: the name is the SHA-256 of
the bytes, so a file can never change under a version that points at it. The private area holds
the noiseless internal state of each version (METHOD §3 step 5); no route serves it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

SUFFIX = ".safetensors"


@contextmanager
def atomic_file(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit fsync it and rename it
    onto ``path``, so readers see the old file or the whole new one, never a part. On an error
    the temporary file is removed and ``path`` is untouched. Permission bits ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path, mode) as fh:
        fh.write(data)


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ArtifactStore:
    """Public, content-addressed release files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, sha256_hex: str, suffix: str = SUFFIX) -> Path:
        if len(sha256_hex) != 64 or any(c not in "0123456789abcdef" for c in sha256_hex):
            raise ValueError(f"not a SHA-256 hex digest: {sha256_hex!r}")
        return self.root / sha256_hex[:2] / f"{sha256_hex}{suffix}"

    def key_for(self, sha256_hex: str, suffix: str) -> str:
        """``path_for`` relative to the root: what a row stores (the root may move)."""
        return self.path_for(sha256_hex, suffix).relative_to(self.root).as_posix()

    def incoming_dir(self) -> Path:
        """Where uploads are streamed before they are validated (same filesystem as the root,
        so :meth:`adopt` is a rename)."""
        path = self.root / ".incoming"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def sweep_incoming(self, older_than_s: float, *, now: float | None = None) -> int:
        """Delete the partial uploads in ``.incoming`` not written to for ``older_than_s`` seconds
        (left by an API process that died mid-upload); returns how many were deleted.

        Raises:
            ValueError: ``older_than_s`` is not positive.
        """
        if not older_than_s > 0:
            raise ValueError(f"older_than_s must be > 0, got {older_than_s}")
        folder = self.root / ".incoming"
        if not folder.is_dir():
            return 0
        cutoff = (time.time() if now is None else now) - older_than_s
        deleted = 0
        for entry in os.scandir(folder):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    deleted += 1
            except FileNotFoundError:  # another worker swept it, or the upload finished
                continue
        return deleted

    def adopt(self, tmp_path: Path, sha256_hex: str, suffix: str) -> bool:
        """Move a fully written, fsynced file (whose SHA-256 the caller computed) to its
        content address. Returns whether it was new (False: the same bytes were there already,
        and ``tmp_path`` is removed)."""
        path = self.path_for(sha256_hex, suffix)
        if path.exists():
            tmp_path.unlink(missing_ok=True)
            return False
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
        return True

    def put(self, data: bytes) -> tuple[str, int]:
        """Store ``data``; returns ``(sha256_hex, size_bytes)``. Idempotent."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path_for(digest)
        if not path.exists():
            atomic_write(path, data)
        return digest, len(data)


class PrivateStore:
    """Noiseless internal states, keyed by model and version; never served over HTTP."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # Keyed by the job that produced the state: the version number is only assigned later, in
    # the publish transaction, and a job publishes at most one version.
    def state_path(self, model_id: str, job_id: str) -> Path:
        return self.root / "models" / model_id / f"{job_id}-state{SUFFIX}"

    def put_state(self, model_id: str, job_id: str, data: bytes) -> Path:
        path = self.state_path(model_id, job_id)
        atomic_write(path, data)
        return path

    def read_state(self, model_id: str, job_id: str) -> bytes:
        return self.state_path(model_id, job_id).read_bytes()
