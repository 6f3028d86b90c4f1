"""What one model-file inspection found: the Inspection record, its problems, and the draft filled while examining."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any

FAIL = "FAIL"
WARN = "WARN"


class LoadSafety(enum.StrEnum):
    """What it takes to load the artifact, from safest to refused."""

    NATIVE = "native"  # a data format parsed by the library; no code in the file can run
    WEIGHTS_ONLY = "weights-only"  # torch archive that torch.load(weights_only=True) accepts
    PROGRAM = "program"  # TorchScript / torch.export: a serialized graph, loaded without unpickling code
    PICKLE_ALLOWLISTED = "pickle-allowlisted"  # a pickle importing only data and known model classes
    UNSAFE = "unsafe"  # loading would run code qtsafe does not trust, or cannot load at all


@dataclasses.dataclass(frozen=True)
class Problem:
    """One finding about an artifact. FAIL makes it unusable; WARN is shown but does not block."""

    code: str
    severity: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclasses.dataclass(frozen=True)
class GlobalInfo:
    name: str
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict}


FORMAT_LABELS = {
    "xgboost-json": "XGBoost model (JSON)",
    "xgboost-ubj": "XGBoost model (UBJSON)",
    "lightgbm-text": "LightGBM model (text)",
    "safetensors": "safetensors tensor file",
    "torch-zip": "PyTorch torch.save archive (zip)",
    "torchscript": "TorchScript archive",
    "torch-export": "torch.export program (.pt2)",
    "torch-legacy": "PyTorch torch.save, legacy format",
    "pickle": "Python pickle",
    "joblib": "joblib pickle",
    "zip": "zip archive",
    "json": "JSON document",
    "empty": "empty file",
    "unknown": "unknown format",
}

# Libraries whose engine loaders qtsafe can name. Used for manifests and the gate.
LIBRARY_OF_FORMAT = {
    "xgboost-json": "xgboost",
    "xgboost-ubj": "xgboost",
    "lightgbm-text": "lightgbm",
    "torch-zip": "torch",
    "torchscript": "torch",
    "torch-export": "torch",
    "torch-legacy": "torch",
    "safetensors": "safetensors",
}


@dataclasses.dataclass(frozen=True)
class Inspection:
    """Everything qtsafe learned about one file without running it."""

    path: str
    size: int
    sha256: str
    format: str
    compression: str | None
    library: str | None
    library_version: str | None  # as recorded in the artifact, never guessed from the installed one
    n_features: int | None
    feature_names: tuple[str, ...] | None
    input_shape: tuple[int, ...] | None  # -1 = any (batch / symbolic dimension)
    tensors: tuple[TensorInfo, ...]
    globals: tuple[GlobalInfo, ...]
    load_safety: LoadSafety
    details: dict[str, Any]
    problems: tuple[Problem, ...]

    @property
    def format_label(self) -> str:
        label = FORMAT_LABELS.get(self.format, self.format)
        return f"{label}, {self.compression}-compressed" if self.compression else label

    @property
    def usable(self) -> bool:
        return not any(p.severity == FAIL for p in self.problems)

    @property
    def failures(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == FAIL)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == WARN)

    @property
    def name(self) -> str:
        return Path(self.path).name

    def headline(self) -> str:
        """One line: the worst problem, or what the file is."""
        if self.failures:
            return self.failures[0].message
        feats = f", {self.n_features} features" if self.n_features is not None else ""
        return f"{self.format_label}{feats}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "format": self.format,
            "format_label": self.format_label,
            "compression": self.compression,
            "library": self.library,
            "library_version": self.library_version,
            "n_features": self.n_features,
            "feature_names": list(self.feature_names) if self.feature_names is not None else None,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "tensors": [t.to_dict() for t in self.tensors],
            "globals": [g.to_dict() for g in self.globals],
            "load_safety": self.load_safety.value,
            "usable": self.usable,
            "details": self.details,
            "problems": [p.to_dict() for p in self.problems],
        }


@dataclasses.dataclass
class Draft:
    """Mutable scratch space while one file is examined; frozen into an Inspection at the end."""

    format: str = "unknown"
    compression: str | None = None
    library: str | None = None
    library_version: str | None = None
    n_features: int | None = None
    feature_names: tuple[str, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    tensors: list[TensorInfo] = dataclasses.field(default_factory=list)
    globals: list[GlobalInfo] = dataclasses.field(default_factory=list)
    load_safety: LoadSafety = LoadSafety.UNSAFE
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    problems: list[Problem] = dataclasses.field(default_factory=list)

    def fail(self, code: str, message: str) -> None:
        self.problems.append(Problem(code, FAIL, message))

    def warn(self, code: str, message: str) -> None:
        self.problems.append(Problem(code, WARN, message))


def draft_has_failure(draft: Draft) -> bool:
    return any(p.severity == FAIL for p in draft.problems)
