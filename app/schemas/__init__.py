"""Pydantic v2 wire types shared by the API, the workers and ``lethe verify``.

One family per entity: ``…Create`` for request bodies (unknown fields refused), ``…Public`` for
answers.
"""

from app.schemas.budget import BudgetPublic, LedgerRowPublic
from app.schemas.datasets import DatasetCreate, DatasetPublic
from app.schemas.deletion_requests import DeletionRequestCreate, DeletionRequestPublic
from app.schemas.jobs import JobPublic, RetrainAccepted
from app.schemas.models import (BatchingSpec, CertificationSpec, ConstantsSpec, ModelCreate,
                                ModelPublic, TrainingSpec)
from app.schemas.problem import PROBLEM_MEDIA_TYPE, Problem
from app.schemas.receipts import ProofStep, ReceiptPublic, SampleProof, SigningKeyPublic
from app.schemas.versions import VersionPublic

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "BatchingSpec",
    "BudgetPublic",
    "CertificationSpec",
    "ConstantsSpec",
    "DatasetCreate",
    "DatasetPublic",
    "DeletionRequestCreate",
    "DeletionRequestPublic",
    "JobPublic",
    "LedgerRowPublic",
    "ModelCreate",
    "ModelPublic",
    "Problem",
    "ProofStep",
    "ReceiptPublic",
    "RetrainAccepted",
    "SampleProof",
    "SigningKeyPublic",
    "TrainingSpec",
    "VersionPublic",
]
