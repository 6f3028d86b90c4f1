"""``model gate``: run a model on held-out data and judge its outputs like the telemetry gate would.

A PatchTST that collapsed to a constant 0.5239 (100 % HOLD) was caught only after it was live. Here the
model is scored offline on the build-dataset ``.npz`` (its ``split == "test"`` rows) or a features table,
its probabilities are turned into BUY/SELL/HOLD with the engine's rule, and the *same* per-model checks
as the telemetry gate (:mod:`qtsafe.checks.quality`) decide PASS or FAIL.

Confidence, defined once: for a binary model with ``p = P(up)``, the action is BUY if ``p > buy_above``
(default 0.6), SELL if ``p < sell_below`` (default 0.4), else HOLD, and the confidence is the probability
of the side the model leans to, ``max(p, 1 - p)``: what the engine reports as the model's confidence.
For a K-class model (``--classes`` gives the output order) the action is the arg-max class and the
confidence its probability.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qtsafe import __version__
from qtsafe.checks.quality import ACTIONS, FAIL, WARN, Finding, ModelStats, judge_stats, model_stats
from qtsafe.config import Settings
from qtsafe.errors import InputError, WriteError
from qtsafe.fsio import atomic_write_text
from qtsafe.models.artifact import inspect_artifact
from qtsafe.models.features import compare_names
from qtsafe.models.heldout import HeldOut, load_heldout
from qtsafe.models.inspection import Inspection
from qtsafe.models.manifest import Manifest, manifest_path_for, parse_architecture, read_manifest
from qtsafe.models.runners import LOGIT, MULTICLASS, PROBABILITY, LoadedModel, load_model
from qtsafe.models.verify import verify_inspection
from qtsafe.status import Status
from qtsafe.timeutil import file_stamp, iso, utc_now

DEFAULT_BUY_ABOVE = 0.6
DEFAULT_SELL_BELOW = 0.4
_PROB_TOLERANCE = 1e-6
# Which failure leads the summary line: contract breaks, then the most specific output defects.
_PRIORITY = ("hash_mismatch", "feature_count", "feature_names", "feature_order", "format_mismatch", "input_shape",
             "manifest_unreadable", "invalid_output", "insufficient_data", "constant_output", "degenerate",
             "collapsed_confidence", "hold_dead_zone", "majority_bias", "narrow_range")
# Any ``{model}_v{YYYYmmdd_HHMMSS}.{ext}`` names the model, whatever the extension.
_VERSIONED_NAME = re.compile(r"^(?P<model>.+?)_v\d{8}_\d{6}\.[A-Za-z0-9]+$")


@dataclasses.dataclass(frozen=True)
class EngineRule:
    """How the engine turns a model's probabilities into an action (configurable per gate run)."""

    buy_above: float = DEFAULT_BUY_ABOVE
    sell_below: float = DEFAULT_SELL_BELOW
    classes: tuple[str, ...] | None = None  # output order of a multi-class model, e.g. SELL,HOLD,BUY

    def __post_init__(self) -> None:
        if not (0.0 <= self.sell_below <= self.buy_above <= 1.0):
            raise InputError(f"engine rule needs 0 <= sell_below ({self.sell_below}) <= buy_above "
                             f"({self.buy_above}) <= 1")
        if self.classes is not None:
            unknown = [c for c in self.classes if c not in ACTIONS]
            if unknown or len(set(self.classes)) != len(self.classes):
                raise InputError(f"--classes must list BUY, SELL, HOLD in output order, got {','.join(self.classes)}")

    @property
    def is_default(self) -> bool:
        return self.buy_above == DEFAULT_BUY_ABOVE and self.sell_below == DEFAULT_SELL_BELOW

    def describe(self) -> str:
        if self.classes:
            return f"arg-max over classes {','.join(self.classes)}; confidence = that class's probability"
        return (f"BUY if p > {self.buy_above}, SELL if p < {self.sell_below}, else HOLD; "
                "confidence = max(p, 1 - p), p = P(up)")

    def to_dict(self) -> dict[str, Any]:
        return {"buy_above": self.buy_above, "sell_below": self.sell_below,
                "classes": list(self.classes) if self.classes else None, "default": self.is_default,
                "rule": self.describe()}


def parse_classes(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    return tuple(part.strip().upper() for part in text.split(",") if part.strip())


def actions_from_probability(p: np.ndarray, rule: EngineRule) -> tuple[np.ndarray, np.ndarray]:
    """Binary: the engine's thresholds on p = P(up); confidence max(p, 1 - p)."""
    actions = np.full(p.shape[0], 2, dtype=np.int8)  # HOLD
    actions[p > rule.buy_above] = 0  # BUY
    actions[p < rule.sell_below] = 1  # SELL
    return actions, np.maximum(p, 1.0 - p)


def actions_from_classes(probs: np.ndarray, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """K-class: arg-max class, its probability as the confidence."""
    codes = np.array([ACTIONS.index(c) for c in classes], dtype=np.int8)
    best = np.argmax(probs, axis=1)
    return codes[best], probs[np.arange(probs.shape[0]), best]


# --- shaping inputs and outputs -------------------------------------------------------------------


def _model_input(held: HeldOut, model: LoadedModel, manifest: Manifest | None) -> tuple[np.ndarray, str]:
    """Fit the dataset to what the model takes, or say exactly why it does not fit."""
    expected_names = model.feature_names or (manifest.feature_names if manifest else None)
    expected_count = model.n_features or (len(expected_names) if expected_names else None)
    x = held.x
    per_step = x.shape[-1]
    where = f"dataset {Path(held.source).name}"
    if model.kind in ("xgboost", "lightgbm"):
        assert expected_count is not None  # tabular models always record num_feature
        if x.ndim == 3 and per_step == expected_count:
            x, note = x[:, -1, :], f"last step of each {held.x.shape[1]}-step window"
        elif x.ndim == 3 and x.shape[1] * per_step == expected_count:
            x, note = x.reshape(x.shape[0], -1), f"flattened {held.x.shape[1]}x{per_step} windows"
        elif x.ndim == 2 and per_step == expected_count:
            note = "rows as given"
        else:
            raise InputError(f"feature count mismatch: the model expects {expected_count} features, {where} has "
                             f"{per_step}{f' per step ({x.shape[1]} steps)' if x.ndim == 3 else ''}")
    else:
        shape = manifest.input_shape if manifest else None
        if shape is not None and len(shape) == 2 and x.ndim == 3:
            x, note = x[:, -1, :], f"last step of each {held.x.shape[1]}-step window (manifest input {list(shape)})"
        elif shape is not None and len(shape) != x.ndim:
            raise InputError(f"the manifest's input shape {list(shape)} has {len(shape)} dimensions, {where} has "
                             f"{x.ndim} ({list(x.shape)})")
        else:
            note = f"input {['N', *x.shape[1:]]}"
        if shape is not None:
            for got, want in zip(x.shape[1:], shape[1:], strict=True):
                if want > 0 and got != want:
                    raise InputError(f"{where} gives input {list(x.shape)}, the manifest requires {list(shape)}")
        if expected_count is not None and per_step != expected_count:
            raise InputError(f"feature count mismatch: the model expects {expected_count} features, {where} has "
                             f"{per_step}")
    if expected_names and held.feature_names and len(held.feature_names) == len(expected_names):
        problems = compare_names(expected_names, held.feature_names, expected_label="the model",
                                 actual_label=where, subject="", scope="")
        if problems:
            raise InputError(problems[0].message)
    return np.ascontiguousarray(x, dtype=np.float32), note


def _to_probabilities(raw: np.ndarray, model: LoadedModel, output: str) -> tuple[np.ndarray, str]:
    """Raw outputs to P(up) (binary, shape (N,)) or class probabilities (N, K)."""
    logits = output == LOGIT or model.output == LOGIT
    out = raw
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim == 1:
        return (1.0 / (1.0 + np.exp(-out)) if logits else out), PROBABILITY
    if out.ndim != 2 or out.shape[1] < 2:
        raise InputError(f"model output has shape {list(raw.shape)}; expected (N,), (N, 1) or (N, K)")
    if logits:
        shifted = out - np.nanmax(out, axis=1, keepdims=True)
        out = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    if out.shape[1] == 2:
        return out[:, 1], PROBABILITY
    return out, MULTICLASS


# --- metrics against labels ------------------------------------------------------------------------


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Mann-Whitney AUC with average ranks for ties; None when one class is absent."""
    n1 = int(labels.sum())
    n0 = labels.shape[0] - n1
    if n1 == 0 or n0 == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    first = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], scores.shape[0]]
    avg_rank = (starts + ends - 1) / 2.0 + 1.0
    ranks = np.empty(scores.shape[0])
    ranks[order] = avg_rank[group]
    return float((ranks[labels == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def label_metrics(prob: np.ndarray, kind: str, actions: np.ndarray, y: np.ndarray | None,
                  classes: Sequence[str] | None) -> dict[str, Any]:
    if y is None:
        return {"available": False, "note": "no labels in the dataset"}
    labels = np.asarray(y, dtype=np.float64)
    known = np.isfinite(labels)
    if not known.any():
        return {"available": False, "note": "labels are all missing"}
    values = set(np.unique(labels[known]).tolist())
    if kind == PROBABILITY and values <= {0.0, 1.0}:
        lab = labels[known].astype(np.int64)
        p = prob[known]
        act = actions[known]
        decisive = act != 2
        correct = ((act == 0) & (lab == 1)) | ((act == 1) & (lab == 0))
        return {
            "available": True,
            "rows": int(known.sum()),
            "unlabelled_rows": int((~known).sum()),
            "up_share": float(lab.mean()),
            "accuracy_at_0_5": float(((p > 0.5).astype(np.int64) == lab).mean()),
            "auc": roc_auc(p, lab),
            "decisive_rows": int(decisive.sum()),
            "decisive_accuracy": float(correct[decisive].mean()) if decisive.any() else None,
        }
    # Class-index labels only when every class occurs: binary 0/1 labels next to a 3-class model would
    # be compared index-to-index, a number with no meaning.
    if kind == MULTICLASS and classes and values == set(map(float, range(len(classes)))):
        lab = labels[known].astype(np.int64)
        return {
            "available": True,
            "rows": int(known.sum()),
            "unlabelled_rows": int((~known).sum()),
            "accuracy": float((np.argmax(prob[known], axis=1) == lab).mean()),
            "auc": None,
        }
    shown = ", ".join(f"{v:g}" for v in sorted(values)[:6])
    return {"available": False, "note": f"labels ({shown}) do not match the model's outputs; metrics skipped"}


# --- the gate --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GateResult:
    """One offline gate verdict with everything the report shows."""

    status: Status
    model_name: str
    model_path: str
    inspection: Inspection
    how_loaded: str
    dataset: dict[str, Any]
    rule: EngineRule
    stats: ModelStats
    findings: tuple[Finding, ...]
    metrics: dict[str, Any]
    thresholds: tuple[dict[str, Any], ...]
    loosened: tuple[dict[str, Any], ...]
    generated_at: str
    min_rows: int
    report_md: str | None = None
    report_json: str | None = None

    @property
    def failures(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == FAIL)

    def headline_failure(self) -> Finding | None:
        """The failure that best explains the verdict (a constant model is 'constant', not 'biased')."""
        if not self.failures:
            return None
        return min(self.failures, key=lambda f: _PRIORITY.index(f.check) if f.check in _PRIORITY else len(_PRIORITY))

    def summary(self) -> str:
        s = self.stats
        first = self.headline_failure()
        if first is not None:
            more = f" (+{len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
            text = first.message if first.message.startswith(f"{self.model_name}:") else (
                f"{self.model_name}: {first.message}")
            return f"FAIL: {text}{more}"
        shares = " / ".join(f"{a} {s.action_share[a] * 100:.1f} %" for a in ACTIONS)
        return (f"PASS: {self.model_name}: {s.n} held-out rows, {shares}, "
                f"confidence std {s.conf_std:.4f}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "model gate",
            "status": self.status.value,
            "summary": self.summary(),
            "model": {"name": self.model_name, "path": self.model_path, "format": self.inspection.format,
                      "format_label": self.inspection.format_label, "sha256": self.inspection.sha256,
                      "size": self.inspection.size, "loaded_with": self.how_loaded},
            "dataset": self.dataset,
            "engine_rule": self.rule.to_dict(),
            "confidence_definition": self.rule.describe(),
            "stats": self.stats.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "metrics": _json_safe(self.metrics),
            "min_rows": self.min_rows,
            "thresholds": list(self.thresholds),
            "loosened": list(self.loosened),
            "generated_at": self.generated_at,
            "report": {"markdown": self.report_md, "json": self.report_json},
            "qtsafe_version": __version__,
        }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def model_name_for(path: Path | str, explicit: str | None = None) -> str:
    """The fleet's ``{model}_v{ts}`` prefix, else the file stem; safe for a file name."""
    raw = explicit or (m.group("model") if (m := _VERSIONED_NAME.match(Path(path).name)) else Path(path).stem)
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", raw).strip("._")
    if not cleaned:
        raise InputError(f"cannot derive a model name from {path}; pass --name")
    return cleaned


def evaluate_model_gate(
    settings: Settings,
    model_path: Path | str,
    dataset_path: Path | str,
    *,
    split: str = "test",
    rule: EngineRule | None = None,
    output: str = PROBABILITY,
    architecture: str | None = None,
    architecture_kwargs: str | None = None,
    min_rows: int | None = None,
    name: str | None = None,
    now: dt.datetime | None = None,
) -> GateResult:
    """Compute the verdict (no files written). Bad inputs raise InputError; bad models FAIL."""
    rule = rule or EngineRule()
    if output not in (PROBABILITY, LOGIT):
        raise InputError(f"--output must be {PROBABILITY} or {LOGIT}, got {output!r}")
    inspection = inspect_artifact(model_path)
    model_name = model_name_for(inspection.path, name)
    findings: list[Finding] = []
    manifest_file = manifest_path_for(inspection.path)
    manifest = read_manifest(manifest_file) if manifest_file.is_file() else None
    if manifest is not None:
        contract = verify_inspection(inspection, None, manifest_file)
        findings += [dataclasses.replace(f, subject=model_name) for f in contract.failures]
    arch = parse_architecture(architecture, architecture_kwargs) or (manifest.architecture if manifest else None)
    loaded = load_model(inspection, architecture=arch)
    held = load_heldout(dataset_path, split=split,
                        columns=loaded.feature_names or (manifest.feature_names if manifest else None))
    x, input_note = _model_input(held, loaded, manifest)
    raw = loaded.predict(x)
    if raw.shape[0] != x.shape[0]:
        raise InputError(f"the model returned {raw.shape[0]} outputs for {x.shape[0]} rows")
    probs, kind = _to_probabilities(raw, loaded, output)
    finite = np.isfinite(probs) if probs.ndim == 1 else np.isfinite(probs).all(axis=1)
    if not finite.all():
        findings.append(Finding("invalid_output", FAIL, f"{model_name}: {int((~finite).sum())} of {finite.shape[0]} "
                                                        "outputs are NaN/Inf", model_name, "held-out rows"))
    valid = probs[finite]
    if valid.size and (valid.min() < -_PROB_TOLERANCE or valid.max() > 1 + _PROB_TOLERANCE):
        raise InputError(f"model outputs lie outside [0, 1] (min {valid.min():.4g}, max {valid.max():.4g}); "
                         "if it emits logits, pass --output logit")
    valid = np.clip(valid, 0.0, 1.0)
    if kind == MULTICLASS:
        if rule.classes is None or len(rule.classes) != valid.shape[1]:
            raise InputError(f"the model outputs {probs.shape[1]} class probabilities: pass --classes with "
                             f"{probs.shape[1]} of BUY,SELL,HOLD in the model's output order")
        actions, confidence = actions_from_classes(valid, rule.classes)
    else:
        actions, confidence = actions_from_probability(valid, rule)
    thresholds = settings.thresholds
    rows_needed = min_rows if min_rows is not None else thresholds.min_events_canary
    scope = f"held-out {held.split} rows" if held.split != "all" else "held-out rows"
    stats = model_stats(actions, confidence, thresholds)
    findings += judge_stats(stats, thresholds, subject=model_name, scope=scope, min_events=rows_needed)
    if not held.split_present:
        findings.append(Finding("no_split", WARN, f"{Path(held.source).name} has no split labels: judged on all "
                                                  f"{held.rows_total} rows, which may include training rows",
                                model_name, "dataset"))
    metrics = label_metrics(valid, kind, actions, held.y[finite] if held.y is not None else None, rule.classes)
    status = Status.FAIL if any(f.severity == FAIL for f in findings) else Status.PASS
    dataset = {
        "path": held.source, "kind": held.kind, "split": held.split, "rows": int(x.shape[0]),
        "rows_total": held.rows_total, "input": input_note, "input_shape": list(x.shape),
        "feature_names_known": held.feature_names is not None, "manifest": str(manifest_file) if manifest else None,
    }
    return GateResult(
        status=status,
        model_name=model_name,
        model_path=inspection.path,
        inspection=inspection,
        how_loaded=loaded.how,
        dataset=dataset,
        rule=rule,
        stats=stats,
        findings=tuple(findings),
        metrics=metrics,
        thresholds=tuple(settings.thresholds_table()),
        loosened=tuple(settings.loosened()),
        generated_at=iso(now or utc_now()) or "",
        min_rows=rows_needed,
    )


def report_paths(settings: Settings, model_name: str, now: dt.datetime) -> tuple[Path, Path]:
    stem = f"model_gate_{model_name}_{file_stamp(now)}"
    return settings.reports_dir / f"{stem}.md", settings.reports_dir / f"{stem}.json"


def write_gate_report(settings: Settings, result: GateResult, now: dt.datetime) -> GateResult:
    """Render both reports first, then write them atomically; never leave one without the other."""
    from qtsafe.models.report import render_gate_markdown  # noqa: PLC0415 - jinja only when writing

    md_path, json_path = report_paths(settings, result.model_name, now)
    final = dataclasses.replace(result, report_md=str(md_path), report_json=str(json_path))
    markdown = render_gate_markdown(final)
    payload = json.dumps(final.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
    existed = md_path.exists()
    atomic_write_text(md_path, markdown)
    try:
        atomic_write_text(json_path, payload)
    except WriteError:
        if not existed:
            md_path.unlink(missing_ok=True)
        raise
    return final


def run_model_gate(settings: Settings, model_path: Path | str, dataset_path: Path | str, *,
                   now: dt.datetime | None = None, **options: Any) -> GateResult:
    """``model gate``: evaluate, then write ``reports/safety/model_gate_<model>_<UTC ts>.md`` + ``.json``."""
    moment = now or utc_now()
    result = evaluate_model_gate(settings, model_path, dataset_path, now=moment, **options)
    return write_gate_report(settings, result, moment)
