"""The feature contract between a model file and the inference path that feeds it.

A model trained on 49 features was fed 22, then 55, and nothing complained: XGBoost boosters without
feature names even predict on too few columns. The contract is written next to the artifact as
``<file>.manifest.json`` (ordered feature names, input shape, dtype, label rule, training-data checksum,
library versions, the artifact's SHA-256) and checked by ``verify`` against the file itself and against
the feature list the inference path produces today.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import json
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qtsafe import __version__
from qtsafe.checks.quality import FAIL, WARN, Finding
from qtsafe.errors import InputError
from qtsafe.fsio import atomic_write_json, sha256_file
from qtsafe.models.artifact import inspect_artifact
from qtsafe.models.inspection import Inspection, LoadSafety
from qtsafe.status import Status
from qtsafe.timeutil import iso, utc_now

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 1
# The fleet's naming: {model}_v{YYYYmmdd_HHMMSS}.{ext}; the engine loads the newest per model.
FLEET_NAME = re.compile(r"^(?P<model>.+?)_v(?P<stamp>\d{8}_\d{6})\.(?P<ext>pkl|pth|json|ubj|txt)$")
_NAMES_KEYS = ("feature_names", "features", "feature_columns")
_TABULAR = ("xgboost-json", "xgboost-ubj", "lightgbm-text")


def manifest_path_for(model_path: Path | str) -> Path:
    path = Path(model_path)
    return path.with_name(path.name + MANIFEST_SUFFIX)


# --- feature lists ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FeatureList:
    """An ordered list of feature names and where it came from (for messages)."""

    names: tuple[str, ...]
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "count": len(self.names), "source": self.source}


def _names_from_mapping(doc: Any) -> list[str] | None:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        if "qtsafe_manifest" in doc and isinstance(doc.get("features"), dict):
            return doc["features"].get("names")
        for key in _NAMES_KEYS:
            if isinstance(doc.get(key), list):
                return doc[key]
    return None


def _validated(names: Sequence[Any], source: str) -> FeatureList:
    if not names:
        raise InputError(f"no feature names in {source}")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise InputError(f"feature names in {source} must be non-empty strings")
    cleaned = tuple(n.strip() for n in names)
    seen: set[str] = set()
    dups = sorted({n for n in cleaned if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if dups:
        raise InputError(f"duplicate feature names in {source}: {', '.join(dups[:5])}")
    return FeatureList(cleaned, source)


def load_feature_list(value: str) -> FeatureList:
    """``--features``: comma-separated names, or a file (one name a line, JSON list/object, an ``.npz``
    built by build-dataset, or a qtsafe manifest)."""
    text = value.strip()
    if not text:
        raise InputError("--features is empty")
    path = Path(text)
    looks_like_path = "/" in text or path.suffix.lower() in (".txt", ".json", ".npz", ".csv", ".lst")
    if path.is_dir():
        raise InputError(f"--features {text}: is a directory, not a feature list")
    if path.is_file():
        return _feature_file(path)
    if looks_like_path and "," not in text:
        raise InputError(f"feature list file not found: {text}")
    return _validated([part for part in text.split(",") if part.strip()] or [""], "--features")


def _feature_file(path: Path) -> FeatureList:
    source = str(path)
    try:
        if path.suffix.lower() == ".npz":
            return _validated(_names_from_npz(path), source)
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read feature list {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"feature list {path} is not UTF-8 text") from exc
    stripped = raw.strip()
    if stripped.startswith(("[", "{")):
        try:
            doc = json.loads(stripped)
        except ValueError as exc:
            raise InputError(f"feature list {path} is not valid JSON: {exc}") from exc
        names = _names_from_mapping(doc)
        if names is None:
            raise InputError(f"feature list {path}: expected a JSON list or an object with 'feature_names'")
        return _validated(names, source)
    lines = [ln.strip() for ln in stripped.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if len(lines) == 1 and "," in lines[0]:
        lines = [part for part in lines[0].split(",") if part.strip()]
    return _validated(lines, source)


def _names_from_npz(path: Path) -> list[str]:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = data["metadata"] if "metadata" in data.files else None
            meta_text = str(meta[()]) if meta is not None else ""
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read {path} as a dataset .npz: {exc}") from exc
    try:
        doc = json.loads(meta_text) if meta_text else {}
    except ValueError as exc:
        raise InputError(f"{path}: metadata is not valid JSON: {exc}") from exc
    names = _names_from_mapping(doc) if isinstance(doc, dict) else None
    if names is None:
        raise InputError(f"{path}: metadata names no features (expected 'feature_names')")
    return list(names)


# --- manifest --------------------------------------------------------------------------------------


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
        names = _validated(feats["names"], f"manifest {where}").names
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
    findings += _compare_to_model(inspection, feature_list, reference_label=f"--features ({feature_list.source})")
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


# --- comparing feature lists ---------------------------------------------------------------------


def compare_names(expected: Sequence[str], actual: Sequence[str], *, expected_label: str, actual_label: str,
                  subject: str, scope: str) -> list[Finding]:
    """Count, then set, then order: the first difference found, in plain words."""
    if len(expected) != len(actual):
        extra = [n for n in actual if n not in set(expected)]
        missing = [n for n in expected if n not in set(actual)]
        detail = []
        if missing:
            detail.append(f"missing {len(missing)}: {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}")
        if extra:
            detail.append(f"extra {len(extra)}: {', '.join(extra[:5])}{', ...' if len(extra) > 5 else ''}")
        more = f" ({'; '.join(detail)})" if detail else ""
        return [Finding("feature_count", FAIL, f"feature count mismatch: {expected_label} has {len(expected)} "
                                               f"features, {actual_label} has {len(actual)}{more}", subject, scope)]
    if set(expected) != set(actual):
        missing = [n for n in expected if n not in set(actual)]
        extra = [n for n in actual if n not in set(expected)]
        return [Finding("feature_names", FAIL, f"feature name mismatch between {expected_label} and {actual_label}: "
                                               f"missing {', '.join(missing[:5])}; unexpected {', '.join(extra[:5])}",
                        subject, scope)]
    for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
        if a != b:
            moved = sum(1 for x, y in zip(expected, actual, strict=True) if x != y)
            return [Finding("feature_order", FAIL, f"feature order mismatch: same {len(expected)} names but "
                                                   f"{moved} in a different position; first at #{i}: "
                                                   f"{expected_label} {a!r}, {actual_label} {b!r}", subject, scope)]
    return []


def _compare_to_model(inspection: Inspection, features: FeatureList, *, reference_label: str) -> list[Finding]:
    subject = inspection.name
    if inspection.feature_names is not None:
        return compare_names(inspection.feature_names, features.names, expected_label="the model",
                             actual_label=reference_label, subject=subject, scope="features")
    if inspection.n_features is not None:
        if inspection.n_features != len(features.names):
            return [Finding("feature_count", FAIL, f"feature count mismatch: the model expects {inspection.n_features} "
                                                   f"features, {reference_label} has {len(features.names)}",
                            subject, "features")]
        return []
    return [Finding("features_unrecorded", WARN, f"{inspection.format_label} does not record its input features; "
                                                 "the count is checked only against a manifest", subject, "features")]


# --- verify ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """``model verify``: FAIL on any broken contract, WAIT when there is nothing to verify against."""

    status: Status
    inspection: Inspection
    manifest_path: str
    manifest_found: bool
    features_source: str | None
    findings: tuple[Finding, ...]

    @property
    def failures(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == FAIL)

    def summary(self) -> str:
        name = self.inspection.name
        if self.status is Status.PASS:
            against = "manifest" if self.manifest_found else f"--features ({self.features_source})"
            feats = self.inspection.n_features
            count = f", {feats} features" if feats is not None else ""
            return f"PASS: {name} matches its {against}{count}"
        if self.status is Status.WAIT:
            return (f"WAIT: {name} has no manifest ({Path(self.manifest_path).name}); "
                    "write one with 'qtsafe model manifest' or pass --features")
        return f"FAIL: {name}: {self.failures[0].message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "model verify",
            "status": self.status.value,
            "model": self.inspection.path,
            "manifest_path": self.manifest_path,
            "manifest_found": self.manifest_found,
            "features_source": self.features_source,
            "findings": [f.to_dict() for f in self.findings],
            "inspection": self.inspection.to_dict(),
        }


def verify_inspection(inspection: Inspection, features: FeatureList | None,
                      manifest_path: Path | None = None) -> VerifyResult:
    """Judge an already inspected artifact against its manifest and/or a feature list."""
    subject = inspection.name
    target = manifest_path or manifest_path_for(inspection.path)
    findings: list[Finding] = [Finding(p.code, p.severity, p.message, subject, "artifact") for p in inspection.problems]
    if inspection.load_safety is LoadSafety.UNSAFE and not inspection.failures:
        findings.append(Finding("unsafe_format", FAIL, f"{inspection.format_label}: the engine cannot load it safely",
                                subject, "artifact"))
    manifest: Manifest | None = None
    found = target.is_file()
    if found:
        try:
            manifest = read_manifest(target)
        except InputError as exc:
            findings.append(Finding("manifest_unreadable", FAIL, str(exc), subject, "manifest"))
    if manifest is not None:
        findings += _check_manifest(inspection, manifest)
        if features is not None:
            findings += compare_names(manifest.feature_names, features.names, expected_label="the manifest",
                                      actual_label=f"--features ({features.source})", subject=subject,
                                      scope="features")
    elif features is not None:
        findings += _compare_to_model(inspection, features, reference_label=f"--features ({features.source})")
    if any(f.severity == FAIL for f in findings):
        status = Status.FAIL
    elif not found and features is None:
        status = Status.WAIT
    else:
        status = Status.PASS
    return VerifyResult(status, inspection, str(target), found, features.source if features else None,
                        tuple(findings))


def _check_manifest(inspection: Inspection, manifest: Manifest) -> list[Finding]:
    subject = inspection.name
    out: list[Finding] = []
    if manifest.artifact_sha256 != inspection.sha256:
        out.append(Finding("hash_mismatch", FAIL, f"artifact changed since its manifest was written: sha256 "
                                                  f"{inspection.sha256[:12]}... is not the manifest's "
                                                  f"{manifest.artifact_sha256[:12]}...", subject, "manifest"))
    if manifest.artifact_format and manifest.artifact_format != inspection.format:
        out.append(Finding("format_mismatch", FAIL, f"manifest describes a {manifest.artifact_format} file, this is "
                                                    f"{inspection.format}", subject, "manifest"))
    model_features = FeatureList(manifest.feature_names, "the manifest")
    out += [dataclasses.replace(f, scope="manifest")
            for f in _compare_to_model(inspection, model_features, reference_label="the manifest")
            if f.severity == FAIL]
    if inspection.input_shape and len(inspection.input_shape) == len(manifest.input_shape):
        # The last dimension is the feature count, already judged above; here only the window etc.
        for got, want in zip(inspection.input_shape[1:-1], manifest.input_shape[1:-1], strict=True):
            if got > 0 and want > 0 and got != want:
                out.append(Finding("input_shape", FAIL, f"the model's input shape {list(inspection.input_shape)} "
                                                        f"does not match the manifest's {list(manifest.input_shape)}",
                                   subject, "manifest"))
                break
    recorded = manifest.library_versions.get(inspection.library or "")
    if inspection.library_version and recorded and recorded.split(".")[0] != inspection.library_version.split(".")[0]:
        out.append(Finding("library_version", WARN, f"manifest records {inspection.library} {recorded}, the file "
                                                    f"says {inspection.library_version}", subject, "manifest"))
    return out


def run_verify(model_path: Path | str, features: str | None = None,
               manifest: str | None = None) -> VerifyResult:
    """``model verify``: inspect, then check the file against its manifest and/or ``--features``."""
    inspection = inspect_artifact(model_path)
    feature_list = load_feature_list(features) if features else None
    manifest_path = Path(manifest) if manifest else None
    if manifest_path is not None and not manifest_path.is_file():
        raise InputError(f"manifest not found: {manifest_path}")
    return verify_inspection(inspection, feature_list, manifest_path)


# --- scan ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScanRow:
    model: str
    newest: str
    stamp: str
    older_versions: int
    format: str
    n_features: int | None
    status: Status
    message: str
    verify: VerifyResult | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "newest": self.newest,
            "stamp": self.stamp,
            "older_versions": self.older_versions,
            "format": self.format,
            "n_features": self.n_features,
            "status": self.status.value,
            "message": self.message,
            "verify": self.verify.to_dict() if self.verify else None,
        }


@dataclasses.dataclass(frozen=True)
class ScanResult:
    status: Status
    directory: str
    rows: tuple[ScanRow, ...]
    ignored: tuple[str, ...]

    def summary(self) -> str:
        bad = [r for r in self.rows if r.status is Status.FAIL]
        waiting = [r for r in self.rows if r.status is Status.WAIT]
        n = len(self.rows)
        if bad:
            return (f"FAIL: the newest file of {len(bad)} of {n} models is unusable: "
                    + ", ".join(r.model for r in bad))
        if waiting:
            return f"WAIT: {len(waiting)} of {n} models have no manifest: " + ", ".join(r.model for r in waiting)
        return f"PASS: the newest file of all {n} models is usable"

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "model scan",
            "status": self.status.value,
            "directory": self.directory,
            "rows": [r.to_dict() for r in self.rows],
            "ignored": list(self.ignored),
        }


def run_scan(directory: Path | str, features: str | None = None) -> ScanResult:
    """Newest file per model by the fleet's naming, each inspected and verified; one verdict."""
    root = Path(directory)
    if not root.exists():
        raise InputError(f"model directory not found: {root}")
    if not root.is_dir():
        raise InputError(f"{root} is not a directory")
    feature_list = load_feature_list(features) if features else None
    groups: dict[str, list[tuple[str, Path]]] = {}
    ignored: list[str] = []
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise InputError(f"cannot list {root}: {exc.strerror or exc}") from exc
    for entry in entries:
        if entry.name.endswith(MANIFEST_SUFFIX) or entry.name.startswith("."):
            continue
        match = FLEET_NAME.match(entry.name)
        if not match or not entry.is_file():
            ignored.append(entry.name)
            continue
        groups.setdefault(match.group("model"), []).append((match.group("stamp"), entry))
    if not groups:
        raise InputError(f"no model files named {{model}}_v{{YYYYmmdd_HHMMSS}}.{{pkl,pth,json,ubj,txt}} in {root}")
    rows = [_scan_one(model, files, feature_list) for model, files in sorted(groups.items())]
    if any(r.status is Status.FAIL for r in rows):
        status = Status.FAIL
    elif any(r.status is Status.WAIT for r in rows):
        status = Status.WAIT
    else:
        status = Status.PASS
    return ScanResult(status, str(root), tuple(rows), tuple(ignored))


def _scan_one(model: str, files: list[tuple[str, Path]], features: FeatureList | None) -> ScanRow:
    files.sort(key=lambda item: (item[0], item[1].name))
    stamp, newest = files[-1]
    try:
        dt.datetime.strptime(stamp, "%Y%m%d_%H%M%S")
    except ValueError:
        return ScanRow(model, newest.name, stamp, len(files) - 1, "-", None, Status.FAIL,
                       f"timestamp {stamp} in the name is not a real date", None)
    twins = [p.name for s, p in files if s == stamp]
    if len(twins) > 1:
        return ScanRow(model, newest.name, stamp, len(files) - len(twins), "-", None, Status.FAIL,
                       f"{len(twins)} files share the newest timestamp ({', '.join(twins)}): "
                       "which one the engine loads is undefined", None)
    inspection = inspect_artifact(newest)
    result = verify_inspection(inspection, features)
    if result.status is Status.FAIL:
        message = result.failures[0].message
    elif result.status is Status.WAIT:
        message = "no manifest (pass --features, or write one with 'qtsafe model manifest')"
    else:
        message = "ok"
    return ScanRow(model, newest.name, stamp, len(files) - 1, inspection.format, inspection.n_features,
                   result.status, message, result)


# --- inspect (many files) -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InspectResult:
    """``model inspect``: PASS when every file is usable, FAIL when any is not."""

    status: Status
    inspections: tuple[Inspection, ...]

    def summary(self) -> str:
        bad = [i for i in self.inspections if not i.usable]
        if len(self.inspections) == 1:
            only = self.inspections[0]
            return f"{'FAIL' if bad else 'PASS'}: {only.name}: {only.headline()}"
        if bad:
            return f"FAIL: {len(bad)} of {len(self.inspections)} files unusable: " + ", ".join(i.name for i in bad)
        return f"PASS: all {len(self.inspections)} files usable"

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "model inspect",
            "status": self.status.value,
            "files": [i.to_dict() for i in self.inspections],
        }


def run_inspect(paths: Sequence[Path | str]) -> InspectResult:
    if not paths:
        raise InputError("no model files given")
    inspections = tuple(inspect_artifact(p) for p in paths)
    status = Status.PASS if all(i.usable for i in inspections) else Status.FAIL
    return InspectResult(status, inspections)
