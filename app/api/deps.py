"""Request dependencies as named ``Annotated`` aliases.

- ``UnitOfWorkDep``: one database session per request; it commits after the handler returns and
  before the answer is sent (``scope="function"``), rolls back if the handler raises, and only then
  runs the after-commit callbacks (enqueueing jobs). Handlers never commit.
- ``SessionDep``: that unit of work's session.
- ``CurrentKey``: the caller's API key (401 without a live one).
- ``require(scope)``: a dependency that also checks a scope (403 names the missing one).
- ``SettingsDep``: the app's settings.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.db.models import ApiKey
from app.db.session import session_scope
from app.services import auth
from app.services.dispatch import AfterCommit
from app.settings import Settings, get_settings

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
    """A request's session and what to do once it has committed."""

    session: Session
    after_commit: AfterCommit = field(default_factory=AfterCommit)


def _unit_of_work() -> Iterator[UnitOfWork]:
    with session_scope() as session:
        uow = UnitOfWork(session)
        yield uow
    uow.after_commit.run()


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


def _current_key(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    return auth.authenticate(session, credentials.credentials if credentials else None)


CurrentKey = Annotated[ApiKey, Depends(_current_key)]


def require(scope: str) -> Callable[[ApiKey], Coroutine[None, None, ApiKey]]:
    """A dependency returning the caller's key if it holds ``scope``; use as
    ``key: Annotated[ApiKey, Depends(require(SCOPE_ADMIN))]``."""

    async def _check(key: CurrentKey) -> ApiKey:  # no I/O: runs on the event loop
        auth.require_scope(key, scope)
        return key

    _check.__name__ = f"require_{scope.replace(':', '_')}"
    return _check
