"""Wire types of datasets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.schemas.common import PublicModel, RequestBody, UtcDatetime

BuiltinSource = Literal["mnist", "digits", "fashion-mnist", "synthetic-cifar10-shape",
                        "synthetic-svhn-shape"]
"""Built-in sources (``app.unlearning.datasets.BUILTIN_DATASETS``); the ``synthetic-*`` ones are
generated stand-ins of CIFAR-10's and SVHN's shapes, for scaling measurements only."""


class DatasetCreate(RequestBody):
    """Register a built-in dataset (``POST /v1/datasets``)."""

    name: str = Field(min_length=1, max_length=200)
    source: BuiltinSource


class DatasetPublic(PublicModel):
    """A registered dataset; ``n`` is the size of the training split. Its sample ids are
    ``"0"``…``n-1`` (``sample_id_scheme`` ``row-index``, built-ins) or the uploaded ones
    (``uploaded``); ``has_subjects`` says whether deletion requests may name ``subject_ids``."""

    id: str
    name: str
    source: str
    n: int
    n_test: int
    num_features: int
    num_classes: int
    input_shape: list[int]
    sample_id_scheme: str
    has_subjects: bool
    checksum_sha256: str
    created_at: UtcDatetime
