"""``model scan``: the newest file of every model in a directory (the one the engine loads), inspected and verified."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any

from qtsafe.errors import InputError
from qtsafe.models.artifact import inspect_artifact
from qtsafe.models.features import FeatureList, load_feature_list
from qtsafe.models.manifest import MANIFEST_SUFFIX
from qtsafe.models.verify import VerifyResult, verify_inspection
from qtsafe.status import Status

# The fleet's naming: {model}_v{YYYYmmdd_HHMMSS}.{ext}; the engine loads the newest per model.
FLEET_NAME = re.compile(r"^(?P<model>.+?)_v(?P<stamp>\d{8}_\d{6})\.(?P<ext>pkl|pth|json|ubj|txt)$")


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
