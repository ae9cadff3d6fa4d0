"""The Alembic migrations create exactly the tables of ``app.db.models``."""

from __future__ import annotations

import os

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.db.migrate import upgrade_to_head
from app.db.models import Base


def test_upgrade_matches_the_models_and_is_idempotent(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.chdir(tmp_path)  # works from any working directory
    upgrade_to_head(url)
    upgrade_to_head(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == set(Base.metadata.tables) | {
                "alembic_version"}
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diff == []
            assert MigrationContext.configure(conn).get_current_revision() == "0005"
    finally:
        engine.dispose()
    assert os.path.exists(tmp_path / "fresh.db")
