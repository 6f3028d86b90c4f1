"""Feature lists: read ``--features`` (names, a file, a dataset, a manifest) and compare two lists in plain words."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qtsafe.checks.quality import FAIL, WARN, Finding
from qtsafe.errors import InputError
from qtsafe.models.inspection import Inspection

_NAMES_KEYS = ("feature_names", "features", "feature_columns")


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


def validate_names(names: Sequence[Any], source: str) -> FeatureList:
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
    return validate_names([part for part in text.split(",") if part.strip()] or [""], "--features")


def _feature_file(path: Path) -> FeatureList:
    source = str(path)
    try:
        if path.suffix.lower() == ".npz":
            return validate_names(_names_from_npz(path), source)
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
        return validate_names(names, source)
    lines = [ln.strip() for ln in stripped.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if len(lines) == 1 and "," in lines[0]:
        lines = [part for part in lines[0].split(",") if part.strip()]
    return validate_names(lines, source)


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


def compare_to_model(inspection: Inspection, features: FeatureList, *, reference_label: str) -> list[Finding]:
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
