"""Model artifact checks: inspect without executing, verify the feature contract, gate offline.

Importing this package is cheap: torch, xgboost and lightgbm are imported only inside the functions
that run a model (:mod:`qtsafe.models.runners`), so ``qtsafe model inspect`` starts fast.
"""

from __future__ import annotations

from qtsafe.models.artifact import inspect_artifact
from qtsafe.models.contract import run_inspect, run_manifest, run_scan, run_verify
from qtsafe.models.gate import evaluate_model_gate, run_model_gate
from qtsafe.models.inspection import Inspection, LoadSafety

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
