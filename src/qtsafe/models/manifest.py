"""``model manifest``: write the feature contract between a model file and the inference path that feeds it.

A model trained on 49 features was fed 22, then 55, and nothing complained: XGBoost boosters without
feature names even predict on too few columns. The contract is written next to the artifact as
``<file>.manifest.json`` (ordered feature names, input shape, dtype, label rule, training-data checksum,
library versions, the artifact's SHA-256) and checked by ``verify`` against the file itself and against
the feature list the inference path produces today (:mod:`qtsafe.models.verify`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import json
import platform
import re
from pathlib import Path
from typing import Any

from qtsafe import __version__
from qtsafe.checks.quality import FAIL, WARN, Finding
from qtsafe.errors import InputError
from qtsafe.fsio import atomic_write_json, sha256_file
from qtsafe.models.artifact import inspect_artifact
from qtsafe.models.features import compare_to_model, load_feature_list, validate_names
from qtsafe.models.inspection import Inspection
from qtsafe.status import Status
from qtsafe.timeutil import iso, utc_now

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 1
_TABULAR = ("xgboost-json", "xgboost-ubj", "lightgbm-text")


def manifest_path_for(model_path: Path | str) -> Path:
    path = Path(model_path)
    return path.with_name(path.name + MANIFEST_SUFFIX)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The contract written next to an artifact."""

    artifact_file: str
    artifact_sha256: str
    artifact_size: int
    artifact_format: str
    feature_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    dtype: str
    label_rule: str | None
    training_data_sha256: str | None
    training_data_file: str | None
    library_versions: dict[str, str]
    architecture: dict[str, Any] | None
    created_at: str
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "qtsafe_manifest": MANIFEST_VERSION,
            "artifact": {"file": self.artifact_file, "sha256": self.artifact_sha256, "size": self.artifact_size,
                         "format": self.artifact_format},
            "features": {"names": list(self.feature_names), "count": len(self.feature_names)},
            "input_shape": list(self.input_shape),
            "dtype": self.dtype,
            "label_rule": self.label_rule,
            "training_data": {"file": self.training_data_file, "sha256": self.training_data_sha256},
            "library_versions": dict(self.library_versions),
            "architecture": self.architecture,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> Manifest:
        """Strict parse: a manifest that does not say exactly what it must is unusable."""
        def need(cond: bool, what: str) -> None:
            if not cond:
                raise InputError(f"manifest {where} is malformed: {what}")

        need(isinstance(doc, dict), "not a JSON object")
        need(doc.get("qtsafe_manifest") == MANIFEST_VERSION, f"qtsafe_manifest must be {MANIFEST_VERSION}")
        art = doc.get("artifact")
        need(isinstance(art, dict) and isinstance(art.get("sha256"), str)
             and re.fullmatch(r"[0-9a-f]{64}", art.get("sha256", "")) is not None, "artifact.sha256 missing")
        feats = doc.get("features")
        need(isinstance(feats, dict) and isinstance(feats.get("names"), list), "features.names missing")
        names = validate_names(feats["names"], f"manifest {where}").names
        need(feats.get("count") == len(names), "features.count does not match features.names")
        shape = doc.get("input_shape")
        need(isinstance(shape, list) and bool(shape) and all(isinstance(d, int) and not isinstance(d, bool)
                                                            for d in shape), "input_shape must be a list of ints")
        need(shape[-1] == len(names), f"input_shape {shape} does not end in the feature count {len(names)}")
        training = doc.get("training_data") or {}
        versions = doc.get("library_versions") or {}
        need(isinstance(versions, dict), "library_versions must be an object")
        arch = doc.get("architecture")
        need(arch is None or (isinstance(arch, dict) and isinstance(arch.get("class"), str)),
             "architecture must be null or {\"class\": \"module:Class\", \"kwargs\": {...}}")
        return cls(
            artifact_file=str(art.get("file", "")),
            artifact_sha256=art["sha256"],
            artifact_size=int(art.get("size", -1)),
            artifact_format=str(art.get("format", "")),
            feature_names=names,
            input_shape=tuple(shape),
            dtype=str(doc.get("dtype", "float32")),
            label_rule=doc.get("label_rule"),
            training_data_sha256=training.get("sha256") if isinstance(training, dict) else None,
            training_data_file=training.get("file") if isinstance(training, dict) else None,
            library_versions={str(k): str(v) for k, v in versions.items()},
            architecture=arch,
            created_at=str(doc.get("created_at", "")),
            created_by=str(doc.get("created_by", "")),
        )


def read_manifest(path: Path) -> Manifest:
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"manifest {path} is not UTF-8 text") from exc
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"manifest {path} is not valid JSON: {exc}") from exc
    return Manifest.from_dict(doc, str(path))


def parse_shape(text: str) -> tuple[int, ...]:
    """``-1,T,F`` / ``[-1, 64, 49]`` into a tuple; -1 means any size."""
    cleaned = text.strip().strip("[]()")
    try:
        dims = tuple(int(part) for part in cleaned.split(",") if part.strip())
    except ValueError as exc:
        raise InputError(f"--input-shape {text!r}: expected integers like -1,64,49") from exc
    if not dims or any(d == 0 or d < -1 for d in dims):
        raise InputError(f"--input-shape {text!r}: dimensions must be positive or -1 (any)")
    return dims


def parse_architecture(spec: str | None, kwargs_json: str | None) -> dict[str, Any] | None:
    if not spec:
        if kwargs_json:
            raise InputError("--architecture-kwargs needs --architecture")
        return None
    if ":" not in spec:
        raise InputError(f"--architecture {spec!r}: expected module.path:ClassName or path/to/file.py:ClassName")
    kwargs: Any = {}
    if kwargs_json:
        try:
            kwargs = json.loads(kwargs_json)
        except ValueError as exc:
            raise InputError(f"--architecture-kwargs is not valid JSON: {exc}") from exc
        if not isinstance(kwargs, dict):
            raise InputError("--architecture-kwargs must be a JSON object")
    return {"class": spec, "kwargs": kwargs}


def _installed(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions(inspection: Inspection) -> dict[str, str]:
    """Versions that matter for reloading: the artifact's recorded one, else what is installed now."""
    out: dict[str, str] = {"python": platform.python_version(), "qtsafe": __version__}
    numpy_version = _installed("numpy")
    if numpy_version:
        out["numpy"] = numpy_version
    lib = inspection.library
    if lib and lib != "safetensors":
        version = inspection.library_version or _installed(lib)
        if version:
            out[lib] = version
    return out


@dataclasses.dataclass(frozen=True)
class ManifestResult:
    """``model manifest``: PASS with the manifest written, or FAIL with why it was refused."""

    status: Status
    model: str
    manifest_path: str
    written: bool
    manifest: dict[str, Any] | None
    findings: tuple[Finding, ...]

    def summary(self) -> str:
        if self.written and self.manifest:
            count = self.manifest["features"]["count"]
            digest = self.manifest["artifact"]["sha256"][:12]
            return f"PASS: wrote {self.manifest_path} ({count} features, artifact sha256 {digest}...)"
        first = self.findings[0].message if self.findings else "refused"
        return f"FAIL: no manifest written for {Path(self.model).name}: {first}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "model manifest",
            "status": self.status.value,
            "model": self.model,
            "manifest_path": self.manifest_path,
            "written": self.written,
            "manifest": self.manifest,
            "findings": [f.to_dict() for f in self.findings],
        }


def run_manifest(
    model_path: Path | str,
    features: str,
    *,
    input_shape: str | None = None,
    dtype: str = "float32",
    label_rule: str | None = None,
    training_data: str | None = None,
    architecture: str | None = None,
    architecture_kwargs: str | None = None,
    force: bool = False,
    now: dt.datetime | None = None,
) -> ManifestResult:
    """Write ``<file>.manifest.json`` after checking the given features against what the file records."""
    inspection = inspect_artifact(model_path)
    target = manifest_path_for(inspection.path)
    feature_list = load_feature_list(features)
    arch = parse_architecture(architecture, architecture_kwargs)
    subject = inspection.name
    findings: list[Finding] = [Finding(p.code, FAIL, p.message, subject, "artifact") for p in inspection.failures]
    findings += compare_to_model(inspection, feature_list, reference_label=f"--features ({feature_list.source})")
    shape = parse_shape(input_shape) if input_shape else _default_shape(inspection, len(feature_list.names))
    if shape[-1] != len(feature_list.names):
        findings.append(Finding("input_shape", FAIL, f"--input-shape {list(shape)} ends in {shape[-1]}, but "
                                                     f"{len(feature_list.names)} features were given",
                                subject, "contract"))
    if dtype not in ("float32", "float64", "float16", "bfloat16", "int64", "int32"):
        raise InputError(f"--dtype {dtype!r}: expected float32, float64, float16, bfloat16, int32 or int64")
    train_sha = train_file = None
    if training_data:
        train_path = Path(training_data)
        if not train_path.is_file():
            raise InputError(f"training data file not found: {training_data}")
        train_sha, train_file = sha256_file(train_path), train_path.name
    fails = [f for f in findings if f.severity == FAIL]
    if fails:
        return ManifestResult(Status.FAIL, inspection.path, str(target), False, None, tuple(fails))
    if target.exists() and not force:
        raise InputError(f"manifest already exists: {target} (pass --force to replace the contract)")
    manifest = Manifest(
        artifact_file=inspection.name,
        artifact_sha256=inspection.sha256,
        artifact_size=inspection.size,
        artifact_format=inspection.format,
        feature_names=feature_list.names,
        input_shape=shape,
        dtype=dtype,
        label_rule=label_rule,
        training_data_sha256=train_sha,
        training_data_file=train_file,
        library_versions=library_versions(inspection),
        architecture=arch,
        created_at=iso(now or utc_now()) or "",
        created_by=f"qtsafe {__version__}",
    )
    atomic_write_json(target, manifest.to_dict())
    warnings = tuple(f for f in findings if f.severity == WARN)
    return ManifestResult(Status.PASS, inspection.path, str(target), True, manifest.to_dict(), warnings)


def _default_shape(inspection: Inspection, count: int) -> tuple[int, ...]:
    if inspection.format in _TABULAR or inspection.library in ("xgboost", "lightgbm"):
        return (-1, count)
    if inspection.input_shape:
        return (-1, *inspection.input_shape[1:-1], count)
    # Sequence models see (batch, window, features); the window is not recorded in a state_dict.
    return (-1, -1, count)
