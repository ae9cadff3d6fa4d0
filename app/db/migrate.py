"""Bring the database schema to the newest Alembic revision; run on every start.

The Alembic ``Config`` is built in code (``script_location`` = the ``migrations`` package's folder),
so an upgrade works from any working directory and needs no ``alembic.ini``. Several processes may
start together (API and worker of ``lethe serve``), so the upgrade holds a lock: a file lock next to
a SQLite database, a transaction-level advisory lock on PostgreSQL.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

import migrations
from app.db.session import make_engine
from app.settings import get_settings

__all__ = ["alembic_config", "upgrade_to_head"]

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent
_PG_LOCK_KEY = 0x4C65_7468  # "Leth": arbitrary, constant across processes


def alembic_config(database_url: str) -> Config:
    """An Alembic config for ``database_url``, independent of the working directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # '%' would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@contextmanager
def _sqlite_file_lock(database_url: str) -> Iterator[None]:
    db_path = make_url(database_url).database
    if not db_path or db_path == ":memory:":
        yield
        return
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".migrate.lock"), "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _upgrade(connection: Connection, database_url: str) -> None:
    config = alembic_config(database_url)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def upgrade_to_head(database_url: str | None = None) -> None:
    """Apply every migration not yet applied (idempotent; safe to call from several processes).

    Args:
        database_url: SQLAlchemy URL; default ``get_settings().resolved_database_url``.
    """
    url = database_url or get_settings().resolved_database_url
    engine = make_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            with _sqlite_file_lock(url), engine.begin() as conn:
                _upgrade(conn, url)
        else:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                _upgrade(conn, url)
    finally:
        engine.dispose()
