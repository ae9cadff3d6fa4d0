"""Is the service ready to take work? The database answers ``SELECT 1``, the broker accepts a
connection, and at least one worker answers a Celery remote-control ping (which also reports each
worker's device). Each check returns a :class:`Component`; none raises."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from app import broker
from app.db.session import session_scope

__all__ = ["Component", "check_all", "check_broker", "check_database", "check_workers"]

log = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 2.0
PING_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Component:
    name: str
    ok: bool
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "unavailable", "detail": self.detail, **self.extra}


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}".rstrip(": ")


def _producer() -> Any:
    return broker.producer()


def check_database() -> Component:
    try:
        with session_scope() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        log.warning("readiness: database check failed: %s", exc)
        return Component("database", False, f"the database does not answer ({_reason(exc)})")
    return Component("database", True, "SELECT 1 answered")


def check_broker(timeout_s: float = BROKER_TIMEOUT_S) -> Component:
    try:
        with _producer().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2,
                                   interval_max=0.2, timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001
        log.warning("readiness: broker check failed: %s", exc)
        return Component("broker", False, f"the broker is unreachable ({_reason(exc)})")
    return Component("broker", True, "connected")


def _worker_entry(name: str, reply: Any) -> dict[str, Any]:
    """One worker of the ``/readyz`` body: its name and the device it computes on."""
    info = reply if isinstance(reply, dict) and "device" in reply else {}
    return {"name": name, "device": info.get("device", "unknown"),
            "device_name": info.get("device_name"), "torch": info.get("torch"),
            "cuda": info.get("cuda")}


def check_workers(timeout_s: float = PING_TIMEOUT_S) -> Component:
    """Ask every worker for its runtime (``broker.CONTROL_RUNTIME``), collecting for ``timeout_s``.

    The answer lists each worker with its device (``cpu``, ``cuda:0``...); a worker that does not
    know the command (an older version) still counts, with device ``unknown``.
    """
    try:
        # No limit: how many workers exist is unknown, so replies are collected until timeout_s.
        replies = _producer().control.broadcast(broker.CONTROL_RUNTIME, reply=True,
                                                timeout=timeout_s) or []
    except Exception as exc:  # noqa: BLE001
        log.warning("readiness: worker ping failed: %s", exc)
        return Component("workers", False, f"the worker ping failed ({_reason(exc)})",
                         {"count": 0})
    workers = sorted((_worker_entry(name, reply) for answer in replies
                      for name, reply in answer.items()), key=lambda w: w["name"])
    if not workers:
        return Component("workers", False, f"no worker answered a ping within {timeout_s} s",
                         {"count": 0})
    return Component("workers", True, f"{len(workers)} worker(s) answered",
                     {"count": len(workers), "names": [w["name"] for w in workers],
                      "workers": workers})


def check_all() -> list[Component]:
    """Database, broker and workers (the ping is skipped when the broker is down)."""
    database, broker_state = check_database(), check_broker()
    workers = (check_workers() if broker_state.ok
               else Component("workers", False, "not checked: the broker is unreachable",
                              {"count": 0}))
    return [database, broker_state, workers]
