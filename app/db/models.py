"""SQLAlchemy 2 tables. No business rules here: the services own them (DESIGN.md, data model).

Ids are 32-character hex UUIDs (portable between SQLite and PostgreSQL); JSON columns hold the
recipes, certificates and metrics exactly as the services produced them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint, false)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class ApiKey(Base):
    """A bearer key; only its SHA-256 is stored."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Dataset(Base):
    """A registered dataset: a built-in (``sample_id_scheme`` ``row-index``: ids are row indices)
    or an upload (``uploaded``: ids are the uploaded strings, mapped by ``DatasetSample``)."""

    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(50))
    n: Mapped[int] = mapped_column(Integer)
    n_test: Mapped[int] = mapped_column(Integer)
    num_features: Mapped[int] = mapped_column(Integer)
    num_classes: Mapped[int] = mapped_column(Integer)
    sample_id_scheme: Mapped[str] = mapped_column(String(50), default="row-index")
    checksum_sha256: Mapped[str] = mapped_column(String(64))
    # One sample's shape before flattening: [784], [3, 32, 32]; its product is num_features.
    input_shape: Mapped[list[Any]] = mapped_column(JSON)
    has_subjects: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The uploaded .npz in the artifact store (content-addressed); None for built-ins.
    storage_key: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetSample(Base):
    """An uploaded dataset's sample id and subject id for one training row (indexed both ways)."""

    __tablename__ = "dataset_samples"
    __table_args__ = (
        Index("ix_dataset_samples_sample", "dataset_id", "sample_id", unique=True),
        Index("ix_dataset_samples_subject", "dataset_id", "subject_id"),
    )
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    row_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[str] = mapped_column(String(200))
    subject_id: Mapped[str | None] = mapped_column(String(200), default=None)


class Model(Base):
    __tablename__ = "models"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    architecture: Mapped[str] = mapped_column(String(50))
    training: Mapped[dict[str, Any]] = mapped_column(JSON)
    certification: Mapped[dict[str, Any]] = mapped_column(JSON)
    batching: Mapped[dict[str, Any]] = mapped_column(JSON)
    budget: Mapped[dict[str, Any]] = mapped_column(JSON)  # caps of METHOD §7
    # training | ready | failed
    status: Mapped[str] = mapped_column(String(20), default="training")
    current_version: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # The job that holds the model (one job at a time per model); cleared when it finishes.
    active_job_id: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A unit of worker work: ``train``, ``unlearn`` (one sealed batch) or ``retrain``."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status"),)  # the reaper's scans of queued/running
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    # queued | running | succeeded | failed
    status: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Written every few seconds by the worker running the job; a stale one means it died.
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    celery_task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # When the job's message was last published (after the commit); a job still queued long after
    # it lost its message, and the reaper publishes it again (app.services.dispatch).
    enqueued_at: Mapped[datetime | None] = mapped_column(default=None)
    # Messages the reaper published again because the job stayed queued (lost messages).
    redispatches: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    version: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Device, torch and CUDA versions of the worker that ran the job.
    runtime: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class Version(Base):
    """A published release. Its number is unique per model and assigned at publish time."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("model_id", "number", name="uq_versions_model_number"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    parent_number: Mapped[int | None] = mapped_column(Integer, default=None)
    lineage: Mapped[int] = mapped_column(Integer, default=0)
    # trained | unlearned | retrained
    kind: Mapped[str] = mapped_column(String(20))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), default=None, unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    certificate: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeletionRequest(Base):
    """pending → batched → applying → completed | failed; pending → canceled (DESIGN.md)."""

    __tablename__ = "deletion_requests"
    __table_args__ = (
        Index("ix_deletion_requests_model_status", "model_id", "status"),
        Index("ix_deletion_requests_created_id", "created_at", "id"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"))
    sample_ids: Mapped[list[Any]] = mapped_column(JSON)  # ints: row indices of the train split
    # The subject ids as sent, for a subject request (sample_ids then holds their rows).
    subject_ids: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), default=None, index=True)
    version: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ForgottenSample(Base):
    """A training sample that a published version no longer contains (server-side only)."""

    __tablename__ = "forgotten_samples"
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), primary_key=True)
    sample_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class LedgerEntry(Base):
    """One immutable row per release (METHOD §7)."""

    __tablename__ = "ledger"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_ledger_model_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    lineage: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    m: Mapped[int] = mapped_column(Integer)
    retain_size: Mapped[int] = mapped_column(Integer)
    sensitivity: Mapped[float] = mapped_column(Float)
    noise_std: Mapped[float] = mapped_column(Float)
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    cumulative_epsilon: Mapped[float] = mapped_column(Float)
    cumulative_delta: Mapped[float] = mapped_column(Float)
    accountant: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """A creating POST's ``Idempotency-Key``, scoped by the API key that sent it, with the
    request's fingerprint and the answer it got. Written in the transaction that created the
    resource, so the two exist together or not at all. Kept ``LETHE_IDEMPOTENCY_TTL_HOURS``."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("api_key_id", "key", name="uq_idempotency_keys_api_key_key"),
        Index("ix_idempotency_keys_created_at", "created_at"),  # the purge of expired keys
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    key: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    request_sha256: Mapped[str] = mapped_column(String(64))
    # Null only inside the transaction that claimed the key (never committed that way).
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    response_headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
