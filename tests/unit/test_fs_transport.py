"""The embedded broker: messages appear whole or not at all, and round-trip through kombu."""

from __future__ import annotations

import os
from pathlib import Path

from kombu import Connection

from app.fs_transport import ALIAS


def _connection(folder: Path) -> Connection:
    return Connection(f"{ALIAS}://", transport_options={
        "data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False,
        "control_folder": str(folder / "control")})


def test_put_then_get_round_trips(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("q1")  # kombu keeps bindings per process: one name per test
        queue.put({"job": "1"})
        queue.put({"job": "2"})
        assert [queue.get(timeout=1).payload for _ in range(2)] == [{"job": "1"}, {"job": "2"}]
        queue.close()


def test_a_partial_write_is_invisible_to_consumers(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("q2")
        (tmp_path / ".part-123").write_bytes(b'{"half": ')  # as if a producer were mid-write
        queue.put({"whole": True})
        assert queue.get(timeout=1).payload == {"whole": True}
        assert os.listdir(tmp_path).count(".part-123") == 1  # never consumed
        queue.close()


def test_a_burst_from_one_producer_comes_out_in_order(tmp_path: Path) -> None:
    # Many puts land in the same millisecond; the consumer must still see them in put order.
    with _connection(tmp_path) as conn:
        queue = conn.SimpleQueue("q3")
        for i in range(200):
            queue.put({"n": i})
        assert [queue.get(timeout=1).payload["n"] for _ in range(200)] == list(range(200))
        queue.close()
