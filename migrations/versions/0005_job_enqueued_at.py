"""When a job's message was last published, and how often the reaper re-published it.

- ``jobs.enqueued_at`` (nullable: a job committed before this revision, or whose first publish
  failed, has none; the reaper then measures from ``created_at``).
- ``jobs.redispatches`` (re-sends of a lost message by the reaper; 0 for existing rows).
- ``ix_jobs_status``: the reaper scans queued and running jobs on every pass.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("redispatches", sa.Integer(), nullable=False,
                                   server_default="0"))
    op.create_index("ix_jobs_status", "jobs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("redispatches")
        batch.drop_column("enqueued_at")
