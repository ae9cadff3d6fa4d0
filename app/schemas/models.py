"""Wire types of models: the training recipe, the certification settings and the batching policy.

Defaults are the paper's values ([Z24] §3 and its public code; METHOD §2, §4, §6); names follow
METHOD §1.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from app.schemas.common import PublicModel, RequestBody, UtcDatetime

Architecture = Annotated[str, Field(
    min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
    description="A built-in architecture (mlp, logreg, allcnn, resnet18) or one registered by the "
    "operator (LETHE_ARCHITECTURES or the lethe.architectures entry points); an unknown name is "
    "answered 422 with the choices.")]
Solver = Literal["lissa", "cg", "exact"]


class TrainingSpec(RequestBody):
    """Certifiable training recipe (METHOD §2): Adam, then projection onto the C-ball each step."""

    epochs: int = Field(default=50, ge=1, le=500)
    lr: float = Field(default=1e-3, gt=0, le=10, description="Adam learning rate.")
    weight_decay: float = Field(
        default=5e-4, ge=0, le=10, description="wd of the objective's (wd/2)·‖w‖² term (METHOD §1)."
    )
    batch_size: int = Field(default=128, ge=1, le=1_000_000)
    radius: float = Field(default=20.0, gt=0, le=1e6,
                          description="C: training keeps ‖w‖₂ ≤ C (METHOD §2).")
    seed: int = Field(
        default=0, ge=0, le=2**63 - 1, description="Initialisation and shuffling seed."
    )
    hidden: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [32, 32],
        min_length=1,
        max_length=16,
        description="Hidden layer widths of the MLP; ignored for logreg.",
    )
    width: int | None = Field(
        default=None, ge=1, le=1024,
        description="First-stage channels of allcnn (paper: 96) or resnet18 (paper: 64); null = "
        "the paper's. Ignored by the other architectures.",
    )


class ConstantsSpec(RequestBody):
    """Constants of METHOD §5 declared by the model owner; ``None`` = unknown (estimated)."""

    lipschitz_hessian: float | None = Field(default=None, ge=0, description="M.")
    hessian_bound: float | None = Field(default=None, ge=0, description="L ≥ ‖H‖.")
    lambda_min: float | None = Field(
        default=None, description="Lower bound on λ_min(H); may be < 0."
    )
    gradient_bound: float | None = Field(
        default=None, ge=0, description="G ≥ ‖∇L(w̃*; D_r)‖ of the retrained model."
    )


class CertificationSpec(RequestBody):
    """How each unlearning release is computed and certified (METHOD §3–6).

    Exactly one of ``noise_std`` (fixed σ; Lethe reports the ε it certifies) and ``target_epsilon``
    (Lethe calibrates σ) is set. Giving ``target_epsilon`` alone clears the default ``noise_std``.
    """

    solver: Solver = "lissa"
    damping: float = Field(default=0.01, gt=0, description="λ, added to the Hessian only.")
    depth: int = Field(default=1000, ge=1, le=1_000_000, description="LiSSA recursion depth s.")
    repeats: int = Field(default=10, ge=1, le=10_000, description="LiSSA independent chains r.")
    batch_size: int = Field(default=10, ge=1, le=1_000_000, description="LiSSA minibatch size |B|.")
    scale: float | None = Field(
        default=1000.0, gt=0, description="LiSSA scale S ≥ ‖H + λI‖; None = power iteration."
    )
    cg_rtol: float = Field(default=1e-4, gt=0, lt=1, description="CG relative residual tolerance.")
    cg_max_iter: int = Field(default=200, ge=1, le=1_000_000)
    # 1e12: a million times the largest radius C, so such a release is noise only; far larger σ
    # (near 1e38) would overflow float32 weights, which noisy_release refuses.
    noise_std: float | None = Field(default=0.01, ge=0, le=1e12, description="σ per released weight.")
    target_epsilon: float | None = Field(default=None, gt=0, description="Target ε per release.")
    delta: float = Field(default=1e-5, gt=0, lt=1, description="δ per release.")
    rho: float = Field(default=1e-6, gt=0, lt=1, description="LiSSA failure probability ρ (§5).")
    chunk_size: int = Field(default=8192, ge=1, le=1_000_000,
                            description="Samples per gradient/HVP chunk.")
    curvature_dtype: Literal["float32", "float64"] = Field(
        default="float32", description="Precision of the unlearning step's gradient, Hessian-vector "
        "products and solve: float32, or float64 for small models (twice the memory and, on most "
        "GPUs, many times the time).")
    constants: ConstantsSpec = Field(default_factory=ConstantsSpec)
    auto_damping: bool = Field(
        default=False,
        description="Estimate λ_min (Lanczos) and ‖H‖ (power iteration) on the retain set where "
        "not declared, and use λ = max(λ, −λ_min + 0.01) (METHOD §5).",
    )

    @model_validator(mode="before")
    @classmethod
    def _target_clears_default_noise(cls, data: object) -> object:
        if (
            isinstance(data, dict)
            and data.get("target_epsilon") is not None
            and "noise_std" not in data
        ):
            return {**data, "noise_std": None}
        return data

    @model_validator(mode="after")
    def _one_noise_rule(self) -> CertificationSpec:
        if self.target_epsilon is not None and self.noise_std is not None:
            raise ValueError(
                "set either noise_std (a fixed σ) or target_epsilon (σ calibrated to reach it), "
                "not both: when target_epsilon is given, noise_std must be null"
            )
        if self.target_epsilon is None and self.noise_std is None:
            raise ValueError("one of noise_std or target_epsilon is required")
        return self


class BatchingSpec(RequestBody):
    """When pending deletion requests are sealed into one batch: whichever rule fires first."""

    max_samples: int = Field(default=1000, ge=1, le=10_000_000,
                             description="Seal at this many distinct samples.")
    max_wait_seconds: float = Field(
        default=60.0, ge=0, le=86400, description="Seal once the oldest pending request is this old."
    )


class BudgetCaps(RequestBody):
    """Caps on a lineage (the releases since the last exact retrain), METHOD §7.

    A release that would break any cap is not published: its batch is served by an exact retrain,
    which starts a new lineage. The defaults fit the paper's fixed-σ regime (σ = 0.01 with Δ = 2C
    certifies ε ≈ 8·10⁶ per release on the MNIST MLP), so that the demo can run several sequential
    batches; an owner who wants a meaningful ε sets ``certification.target_epsilon`` and a cap here.
    """

    max_epsilon: float = Field(default=1e8, gt=0, description="Cap on cumulative ε of the lineage.")
    max_delta: float = Field(default=1e-3, gt=0, lt=1, description="Cap on cumulative δ.")
    max_releases: int = Field(default=10, ge=1, le=100_000, description="Unlearning releases per lineage.")
    max_forgotten_fraction: float = Field(
        default=0.1, gt=0, le=1, description="Cap on the fraction of D removed by unlearning in a lineage."
    )


class ModelCreate(RequestBody):
    """Create a model and queue its training (``POST /v1/models``)."""

    name: str = Field(min_length=1, max_length=200)
    dataset_id: str = Field(min_length=1, max_length=64)
    architecture: Architecture
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    certification: CertificationSpec = Field(default_factory=CertificationSpec)
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    budget: BudgetCaps = Field(default_factory=BudgetCaps)


class ModelPublic(PublicModel):
    """A model: ``status`` is ``training``, ``ready`` or ``failed``."""

    id: str
    name: str
    dataset_id: str
    architecture: str
    status: str
    current_version: int | None
    error: str | None
    training: TrainingSpec
    certification: CertificationSpec
    batching: BatchingSpec
    budget: BudgetCaps
    created_at: UtcDatetime
    train_job_id: str | None = None

