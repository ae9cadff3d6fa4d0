"""Request dependencies as named ``Annotated`` aliases.

- ``UnitOfWorkDep``: one database session per request; it commits after the handler returns and
  before the answer is sent (``scope="function"``), rolls back if the handler raises, and only then
  runs the after-commit callbacks (enqueueing jobs). Handlers never commit. Opening it does no I/O
  and runs on the event loop; its end (commit or rollback, close, callbacks) is one hop to a worker
  thread (each hop costs CPU on the intake path: ``benchmarks/intake.py``).
- ``SessionDep``: that unit of work's session.
- ``CurrentKey``: the caller's API key (401 without a live one); a key this process saw in the
  last :data:`~app.services.key_cache.KEY_CACHE_S` seconds is not looked up again.
- ``require(scope)``: a dependency that also checks a scope (403 names the missing one).
- ``SettingsDep``: the app's settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.db.models import ApiKey
from app.db.session import session_scope
from app.services import auth
from app.services.dispatch import AfterCommit
from app.settings import Settings, get_settings

T = TypeVar("T")

__all__ = [
    "CurrentKey",
    "SessionDep",
    "SettingsDep",
    "UnitOfWork",
    "UnitOfWorkDep",
    "require",
]


@dataclass
class UnitOfWork:
    """A request's session and what to do once it has committed.

    Attributes:
        session: The request's session (sync routes use it in their worker thread).
        after_commit: Callbacks run once the commit succeeded.
        scope: The :func:`~app.db.session.session_scope` the session came from.
    """

    session: Session
    scope: AbstractContextManager[Session]
    after_commit: AfterCommit = field(default_factory=AfterCommit)
    _finished: bool = field(default=False, init=False)

    def commit(self) -> None:
        """Commit (or roll back on failure) and close the session, then run the callbacks.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The commit failed (rolled back; nothing stored).
        """
        self._finished = True  # even if the commit fails: session_scope has rolled back then
        self.scope.__exit__(None, None, None)
        self.after_commit.run()

    async def run_and_commit(self, handler: Callable[[Session], T]) -> T:
        """``handler(session)`` then :meth:`commit`, both in one worker-thread hop: an async
        route's whole write costs one hop instead of a hop for the handler, one for validating
        its answer and one for the commit (measured by ``benchmarks/intake.py``). The
        dependency's end then has nothing left to do."""

        def handle_then_commit() -> T:
            answer = handler(self.session)
            self.commit()
            return answer

        return await run_in_threadpool(handle_then_commit)


async def _unit_of_work() -> AsyncIterator[UnitOfWork]:
    scope = session_scope()
    uow = UnitOfWork(scope.__enter__(), scope)  # no I/O: the first query checks out a connection
    try:
        yield uow
    except BaseException as exc:
        if not uow._finished:
            with anyio.CancelScope(shield=True):  # roll back even when the request was canceled
                await run_in_threadpool(scope.__exit__, type(exc), exc, exc.__traceback__)
        raise
    if not uow._finished:
        await run_in_threadpool(uow.commit)


UnitOfWorkDep = Annotated[UnitOfWork, Depends(_unit_of_work, scope="function")]


async def _session(uow: UnitOfWorkDep) -> Session:
    # async: no I/O here, so FastAPI need not hand it to a worker thread (each hop costs CPU)
    return uow.session


SessionDep = Annotated[Session, Depends(_session)]


def _settings(request: Request) -> Settings:
    settings = getattr(request.app.state, "settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


SettingsDep = Annotated[Settings, Depends(_settings)]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


async def _current_key(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    plaintext = credentials.credentials if credentials else None
    # A key seen in the last seconds is answered on the event loop: no query, no thread hop
    # (revocation bound: app.services.key_cache).
    key = auth.cached_key(session, plaintext)
    if key is None:
        key = await run_in_threadpool(auth.authenticate, session, plaintext)
    return key


CurrentKey = Annotated[ApiKey, Depends(_current_key)]


def require(scope: str) -> Callable[[ApiKey], Coroutine[None, None, ApiKey]]:
    """A dependency returning the caller's key if it holds ``scope``; use as
    ``key: Annotated[ApiKey, Depends(require(SCOPE_ADMIN))]``."""

    async def _check(key: CurrentKey) -> ApiKey:  # no I/O: runs on the event loop
        auth.require_scope(key, scope)
        return key

    _check.__name__ = f"require_{scope.replace(':', '_')}"
    return _check
