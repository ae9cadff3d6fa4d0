"""Service settings: one pydantic-settings class, environment prefix ``LETHE_``.

Everything the embedded default writes lives under ``LETHE_HOME`` (default ``./var``): the SQLite
database, the filesystem broker's folder, the public artifacts and the private state. Two services
with different homes never touch each other. Production overrides ``LETHE_DATABASE_URL`` and
``LETHE_BROKER_URL``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVICE_SPEC = re.compile(r"auto|cpu|cuda|cuda:(0|[1-9][0-9]*)")
"""The forms of ``LETHE_DEVICE``."""


class Settings(BaseSettings):
    """Runtime configuration, read from ``LETHE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LETHE_", extra="ignore")

    home: Path = Field(default=Path("var"), description="Root of everything the embedded default writes.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite under home.")
    broker_url: str | None = Field(default=None, description="Celery broker; default lethefs:// (kombu's filesystem transport) under home.")
    data_dir: Path | None = Field(default=None, description="Built-in datasets (MNIST npz); default home/data.")
    bootstrap_admin_key: str | None = Field(default=None, description="If set, an admin key with this value exists.")
    device: str = Field(
        default="auto", description="Torch device of a worker: auto (cuda:0 if a GPU is visible, "
        "else cpu), cpu, cuda or cuda:N. One worker process per GPU (README).")
    # One thread: measured here, 2 threads made LiSSA minibatch products 40x slower on 2 cores.
    worker_threads: int = Field(default=1, ge=1, description="torch intra-op threads in a worker.")
    job_stale_seconds: float = Field(default=60.0, gt=0, description="A running job whose heartbeat is older is reaped.")
    broker_visibility_timeout_s: float = Field(
        default=6 * 3600, gt=0, description="Redis: an unacknowledged task is redelivered after this; "
        "longer than the longest job.")
    # 5 min: a lost message is rare, and one re-send is enough, so the wait is what a lost request
    # costs; each re-send to a healthy worker that is busy is one more message, consumed as a
    # no-op claim, and consecutive re-sends back off (app.services.dispatch.REDISPATCH_BACKOFF).
    job_redispatch_seconds: float = Field(
        default=300.0, gt=0, description="A job still queued this long after its message was "
        "published is published again (a lost message); the wait doubles with each re-send.")
    job_max_attempts: int = Field(default=3, ge=1, description="Deliveries of a job before it is failed.")
    max_request_samples: int = Field(default=100_000, ge=1, description="Most sample ids in one deletion request.")
    # Below the connection pool's 30 (pool_size 10 + max_overflow 20): see app/api/admission.py.
    # 2: measured best for intake on 2 cores (benchmarks/intake.py, 64 clients: 2 -> 454-493
    # accepted/s, 4 -> 369-409, 8 -> 320-362), since fewer requests contend for the GIL.
    api_max_in_flight: int = Field(
        default=2, ge=1, le=30, description="Requests one API process runs at once; the rest "
        "wait their turn on the event loop.")
    idempotency_ttl_hours: float = Field(
        default=24.0, gt=0, description="An Idempotency-Key is kept this long; after it, the key "
        "is new again, and the workers purge it.")
    # 1 GiB: MNIST's 70k rows as float32 take 220 MB, CIFAR-10's 60k as float32 737 MB.
    max_upload_bytes: int = Field(
        default=1 << 30, ge=1, description="Largest uploaded dataset (.npz body), and most bytes "
        "its arrays may take once decoded; past it, 413.")
    # An upload streams bytes steadily, so its file's mtime keeps moving; one untouched this long
    # was left by an API process that died mid-upload (errors remove their own files).
    upload_abandon_seconds: float = Field(
        default=3600.0, gt=0, description="A partial upload in the artifact dir's .incoming/ not "
        "written to for this long is abandoned, and the workers delete it.")
    architectures: dict[str, str] = Field(
        default_factory=dict, description="Owner-registered architectures, a JSON mapping name -> "
        "'package.module:factory' (with the entry-point group lethe.architectures; this wins).")
    max_parameters: int = Field(default=20_000_000, ge=1, description="Most trainable parameters "
                                "of a model (ResNet-18 on 32x32 images has 11.2M).")
    signing_key_path: Path | None = Field(
        default=None, description="Ed25519 PEM private key that signs certificates; default: one "
                                  "generated on first use under private_dir/signing.")

    @field_validator("device")
    @classmethod
    def _device_spec(cls, value: str) -> str:
        # Syntax only: whether the GPU exists is checked by the worker (app.unlearning.device),
        # since this class is also read by the API, which never imports torch.
        if not DEVICE_SPEC.fullmatch(value):
            raise ValueError(f"LETHE_DEVICE must be auto, cpu, cuda or cuda:N (N a GPU index), "
                             f"got {value!r}")
        return value

    @property
    def resolved_home(self) -> Path:
        return self.home.resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_home / 'lethe.db'}"

    @property
    def broker_dir(self) -> Path:
        return self.resolved_home / "broker"

    @property
    def resolved_broker_url(self) -> str:
        # kombu's filesystem transport with an atomic put (app.fs_transport)
        return self.broker_url or "lethefs://"

    @property
    def artifacts_dir(self) -> Path:
        """Public, content-addressed release files (served by the download route)."""
        return self.resolved_home / "artifacts"

    @property
    def private_dir(self) -> Path:
        """Noiseless internal states; no route ever serves this folder."""
        return self.resolved_home / "private"

    @property
    def resolved_data_dir(self) -> Path:
        return (self.data_dir or self.resolved_home / "data").resolve()

    def ensure_dirs(self) -> None:
        for path in (self.resolved_home, self.broker_dir, self.artifacts_dir, self.private_dir,
                     self.resolved_data_dir):
            path.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing the env."""
    return Settings()
