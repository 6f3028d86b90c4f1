"""Model artifact checks: inspect without executing, verify the feature contract, gate offline.

Importing this package is cheap: torch, xgboost and lightgbm are imported only inside the functions
that run a model (:mod:`qtsafe.models.runners`), so ``qtsafe model inspect`` starts fast.
"""

from __future__ import annotations

from qtsafe.models.artifact import inspect_artifact, run_inspect
from qtsafe.models.gate import evaluate_model_gate, run_model_gate
from qtsafe.models.inspection import Inspection, LoadSafety
from qtsafe.models.manifest import run_manifest
from qtsafe.models.scan import run_scan
from qtsafe.models.verify import run_verify

__all__ = [
    "Inspection",
    "LoadSafety",
    "evaluate_model_gate",
    "inspect_artifact",
    "run_inspect",
    "run_manifest",
    "run_model_gate",
    "run_scan",
    "run_verify",
]
