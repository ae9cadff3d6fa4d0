"""Uploaded datasets (.npz), subject deletion requests, the worker's runtime on each job.

- ``datasets.input_shape``: one sample's shape (``[784]``, ``[3, 32, 32]``); existing rows get
  ``[num_features]``. ``datasets.has_subjects`` and ``datasets.storage_key`` (the uploaded file's
  content-addressed path in the artifact store; null for built-ins).
- ``dataset_samples``: an uploaded dataset's ``sample_id`` and ``subject_id`` strings → row index,
  with a unique index on (dataset, sample_id) and an index on (dataset, subject_id), so a request
  resolves with one indexed ``IN`` lookup instead of loading 60k ids.
- ``deletion_requests.subject_ids`` (the subject ids as sent; null for a sample request).
- ``jobs.runtime`` (device, torch and CUDA versions of the worker that ran the job).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_datasets = sa.table(
    "datasets",
    sa.column("id", sa.String(32)),
    sa.column("num_features", sa.Integer()),
    sa.column("input_shape", sa.JSON()),
)


def upgrade() -> None:
    # Added nullable, filled, then made NOT NULL: existing rows need a value first.
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("input_shape", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("has_subjects", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("storage_key", sa.String(length=500), nullable=True))
    conn = op.get_bind()
    for dataset_id, num_features in conn.execute(
            sa.select(_datasets.c.id, _datasets.c.num_features)).all():
        conn.execute(_datasets.update().where(_datasets.c.id == dataset_id)
                     .values(input_shape=[int(num_features)]))
    with op.batch_alter_table("datasets") as batch:
        batch.alter_column("input_shape", existing_type=sa.JSON(), nullable=False)

    op.create_table(
        "dataset_samples",
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.String(length=200), nullable=False),
        sa.Column("subject_id", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
        sa.PrimaryKeyConstraint("dataset_id", "row_index"),
    )
    op.create_index("ix_dataset_samples_sample", "dataset_samples", ["dataset_id", "sample_id"],
                    unique=True)
    op.create_index("ix_dataset_samples_subject", "dataset_samples",
                    ["dataset_id", "subject_id"], unique=False)

    with op.batch_alter_table("deletion_requests") as batch:
        batch.add_column(sa.Column("subject_ids", sa.JSON(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("runtime", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("runtime")
    with op.batch_alter_table("deletion_requests") as batch:
        batch.drop_column("subject_ids")
    op.drop_index("ix_dataset_samples_subject", table_name="dataset_samples")
    op.drop_index("ix_dataset_samples_sample", table_name="dataset_samples")
    op.drop_table("dataset_samples")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("storage_key")
        batch.drop_column("has_subjects")
        batch.drop_column("input_shape")
