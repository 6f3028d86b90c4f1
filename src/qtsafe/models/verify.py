"""``model verify``: judge a model file against its manifest and/or the features the inference path produces."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from qtsafe.checks.quality import FAIL, WARN, Finding
from qtsafe.errors import InputError
from qtsafe.models.artifact import inspect_artifact
from qtsafe.models.features import FeatureList, compare_names, compare_to_model, load_feature_list
from qtsafe.models.inspection import Inspection, LoadSafety
from qtsafe.models.manifest import Manifest, manifest_path_for, read_manifest
from qtsafe.status import Status


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
        findings += compare_to_model(inspection, features, reference_label=f"--features ({features.source})")
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
            for f in compare_to_model(inspection, model_features, reference_label="the manifest")
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
