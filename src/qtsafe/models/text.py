"""Human output for the ``model`` commands: the summary line first, then the detail."""

from __future__ import annotations

from qtsafe.checks.quality import ACTIONS
from qtsafe.models.artifact import InspectResult
from qtsafe.models.gate import GateResult
from qtsafe.models.inspection import Inspection, LoadSafety
from qtsafe.models.manifest import ManifestResult
from qtsafe.models.scan import ScanResult
from qtsafe.models.verify import VerifyResult

_SAFETY_WORDS = {
    LoadSafety.NATIVE: "native data format: nothing in the file can run",
    LoadSafety.WEIGHTS_ONLY: "torch.load(weights_only=True) loads it: tensors only",
    LoadSafety.PROGRAM: "serialized torch program: loaded without unpickling Python objects",
    LoadSafety.PICKLE_ALLOWLISTED: "pickle importing only data and known model classes",
    LoadSafety.UNSAFE: "UNSAFE: the engine cannot load it safely",
}


def _names(names: tuple[str, ...] | None, limit: int = 8) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:limit])
    return f": {shown}{', ...' if len(names) > limit else ''}"


def describe_inspection(item: Inspection) -> list[str]:
    lines = [item.path]
    lines.append(f"  format    {item.format_label}")
    lines.append(f"  size      {item.size:,} bytes")
    lines.append(f"  sha256    {item.sha256}")
    if item.library:
        recorded = f" {item.library_version} (recorded in the file)" if item.library_version else ""
        lines.append(f"  library   {item.library}{recorded}")
    if item.n_features is not None:
        named = _names(item.feature_names) if item.feature_names else " (no names recorded)"
        lines.append(f"  features  {item.n_features}{named}")
    elif item.format != "empty":
        lines.append("  features  not recorded in this format")
    if item.input_shape:
        lines.append(f"  input     {list(item.input_shape)}")
    lines.append(f"  loading   {_SAFETY_WORDS[item.load_safety]}")
    for key, label in (("objective", "objective"), ("trees", "trees"), ("content", "content"),
                       ("pickle_protocol", "protocol")):
        if item.details.get(key) is not None:
            lines.append(f"  {label:<9} {item.details[key]}")
    for tensor in item.tensors[:12]:
        lines.append(f"  tensor    {tensor.name} {list(tensor.shape)} {tensor.dtype or '?'}")
    if len(item.tensors) > 12:
        lines.append(f"  tensor    ... {len(item.tensors) - 12} more")
    # Inside a weights-only torch archive the torch rebuild helpers are expected; elsewhere they are news.
    expected = ("data", "model-library", "torch") if item.load_safety is LoadSafety.WEIGHTS_ONLY else (
        "data", "model-library")
    risky = [g for g in item.globals if g.verdict not in expected]
    for glob in risky[:12]:
        lines.append(f"  imports   {glob.name} [{glob.verdict}]")
    for problem in item.problems:
        lines.append(f"  {problem.severity:<9} {problem.message}")
    return lines


def render_inspect_text(result: InspectResult) -> str:
    lines = [result.summary()]
    for item in result.inspections:
        lines.extend(describe_inspection(item))
    return "\n".join(lines)


def render_manifest_text(result: ManifestResult) -> str:
    lines = [result.summary()]
    if result.manifest:
        m = result.manifest
        lines.append(f"  features     {m['features']['count']}{_names(tuple(m['features']['names']))}")
        lines.append(f"  input shape  {m['input_shape']}  dtype {m['dtype']}")
        lines.append(f"  label rule   {m['label_rule'] or '(not given)'}")
        training = m["training_data"]
        lines.append(f"  training     {training['file'] or '(not given)'} {training['sha256'] or ''}".rstrip())
        lines.append("  versions     " + ", ".join(f"{k} {v}" for k, v in m["library_versions"].items()))
        if m["architecture"]:
            lines.append(f"  architecture {m['architecture']['class']} {m['architecture']['kwargs']}")
    for finding in result.findings:
        lines.append(f"  {finding.severity:<5} {finding.message}")
    return "\n".join(lines)


def render_verify_text(result: VerifyResult) -> str:
    lines = [result.summary()]
    lines.append(f"  manifest  {result.manifest_path}{'' if result.manifest_found else ' (missing)'}")
    if result.features_source:
        lines.append(f"  features  {result.features_source}")
    for finding in result.findings:
        lines.append(f"  {finding.severity:<5} {finding.message}")
    return "\n".join(lines)


def render_scan_text(result: ScanResult) -> str:
    lines = [result.summary()]
    header = ("model", "newest file", "format", "features", "verdict", "detail")
    rows = [(r.model, r.newest + (f" (+{r.older_versions} older)" if r.older_versions else ""), r.format,
             "-" if r.n_features is None else str(r.n_features), r.status.value, r.message) for r in result.rows]
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(5)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)) + "  " + header[5])
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[5])
    if result.ignored:
        lines.append(f"ignored (not named {{model}}_v{{YYYYmmdd_HHMMSS}}.ext): {', '.join(result.ignored[:10])}")
    return "\n".join(lines)


def render_gate_text(result: GateResult) -> str:
    s = result.stats
    lines = [result.summary()]
    lines.append(f"  model     {result.model_path} ({result.inspection.format_label}; {result.how_loaded})")
    d = result.dataset
    lines.append(f"  dataset   {d['path']}: split {d['split']}, {d['rows']} of {d['rows_total']} rows, {d['input']}")
    lines.append(f"  rule      {result.rule.describe()}")
    shares = ", ".join(f"{a} {s.action_counts[a]} ({s.action_share[a] * 100:.1f} %)" for a in ACTIONS)
    lines.append(f"  actions   {shares}")
    if s.n:
        lines.append(f"  confidence mean {s.conf_mean:.4f}, std {s.conf_std:.4f}, P10 {s.p10:.4f}, "
                     f"P50 {s.p50:.4f}, P90 {s.p90:.4f}")
    m = result.metrics
    if m.get("available"):
        parts = [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items()
                 if k != "available" and v is not None]
        lines.append("  labels    " + ", ".join(parts))
    else:
        lines.append(f"  labels    {m.get('note')}")
    for finding in result.findings:
        lines.append(f"  {finding.severity:<5} {finding.message}")
    if result.loosened:
        lines.append("  loosened  " + ", ".join(f"{x['rule']}={x['value']} (default {x['default']})"
                                               for x in result.loosened))
    lines.append(f"  report    {result.report_md}")
    return "\n".join(lines)
