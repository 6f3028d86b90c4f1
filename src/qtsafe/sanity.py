"""Feature sanity: are the model inputs alive? NaN/Inf, invalid values, missing keys and flatlines.

Judges the numeric payload fields (a setting) and every key of a payload's ``features`` object.
A key absent from an event is counted as missing, never filled with a default.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from array import array
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from qtsafe import __version__
from qtsafe.checks.quality import mean_std
from qtsafe.checks.stall import stall_rule
from qtsafe.config import Settings
from qtsafe.evidence import gc_paused
from qtsafe.findings import FAIL, WARN, Finding
from qtsafe.reports import render, write_new_report
from qtsafe.status import Status
from qtsafe.telemetry.decode import EVENT_TYPE, RawEntry, first_fields
from qtsafe.telemetry.duplicates import count_keys, has_duplicate_keys
from qtsafe.telemetry.read import open_read
from qtsafe.telemetry.sources import Progress, RedisStreamSource, Source
from qtsafe.telemetry.window import Window
from qtsafe.textsafe import visible
from qtsafe.timeutil import file_stamp, iso, utc_now

_decode = msgspec.json.Decoder().decode


class _FeatureAccumulator:
    __slots__ = ("values", "null", "non_numeric", "nan", "inf")

    def __init__(self) -> None:
        self.values = array("d")
        self.null = self.non_numeric = self.nan = self.inf = 0

    def add(self, value: Any) -> None:
        if value is None:
            self.null += 1
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.non_numeric += 1
            return
        try:
            number = float(value)
        except OverflowError:  # a JSON integer beyond the float range
            self.inf += 1
            return
        if math.isnan(number):
            self.nan += 1
        elif math.isinf(number):
            self.inf += 1
        else:
            self.values.append(number)


@dataclasses.dataclass(frozen=True)
class FeatureStat:
    """One feature's counts and spread, and what was concluded about it."""

    name: str
    valid: int
    missing: int
    null: int
    non_numeric: int
    nan: int
    inf: int
    std: float | None
    median: float | None
    minimum: float | None
    maximum: float | None
    flat: bool
    expected_constant: bool
    verdict: str  # ok | flat | invalid | missing | expected-constant

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class SanityResult:
    """Feature-sanity verdict (PASS or FAIL) with per-feature figures."""

    status: Status
    summary: str
    generated_at: dt.datetime
    source: str
    window: Window
    read: int
    events: int
    skipped: dict[str, int]
    features: tuple[FeatureStat, ...]
    findings: tuple[Finding, ...]
    judged: int
    flatlined: int
    excluded: tuple[dict[str, str], ...]
    rules: dict[str, Any]
    loosened: list[dict[str, Any]]
    report_path: Any = None
    json_path: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "feature-sanity",
            "status": self.status.value,
            "summary": self.summary,
            "generated_at": iso(self.generated_at),
            "source": self.source,
            "window": self.window.to_dict(),
            "read": self.read,
            "events": self.events,
            "skipped": self.skipped,
            "features": [f.to_dict() for f in self.features],
            "findings": [f.to_dict() for f in self.findings],
            "judged": self.judged,
            "flatlined": self.flatlined,
            "excluded": list(self.excluded),
            "rules": self.rules,
            "loosened": self.loosened,
            "report_path": str(self.report_path) if self.report_path else None,
            "json_path": str(self.json_path) if self.json_path else None,
            "qtsafe_version": __version__,
        }


class FeatureBuilder:
    """Feed pages; count every entry (read = events + skipped) and every value of every feature."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields
        self.read = 0
        self.events = 0
        self.skipped = {"other_event_type": 0, "no_payload": 0, "bad_json": 0, "payload_not_object": 0,
                        "duplicate_key": 0}
        self.features: dict[str, _FeatureAccumulator] = {}
        self.features_not_object = 0  # events whose `features` is present but not an object
        self.newest_ms: int | None = None  # stream time of the newest trade.intent event

    def feed(self, page: list[RawEntry]) -> None:
        for _entry_id, fields in page:
            self.read += 1
            event_type, payload = first_fields(fields)
            if event_type != EVENT_TYPE:
                self.skipped["other_event_type"] += 1
                continue
            if payload is None:
                self.skipped["no_payload"] += 1
                continue
            try:
                data = _decode(payload)
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                try:
                    data = json.loads(payload.decode("utf-8"))  # strict: JSON is UTF-8; no surrogates
                except (ValueError, RecursionError):
                    self.skipped["bad_json"] += 1
                    continue
            if not isinstance(data, dict):
                self.skipped["payload_not_object"] += 1
                continue
            if count_keys(data) != payload.count(b'":') and has_duplicate_keys(payload):
                # Which of two values the engine used is unknowable; `":` counts each key once in the
                # producer's compact or spaced-after-colon style, so only odd payloads pay the exact check.
                self.skipped["duplicate_key"] += 1
                continue
            self.events += 1
            self.newest_ms = int(_entry_id.partition(b"-")[0])
            for name in self.fields:
                if name in data:
                    self._acc(name).add(data[name])
            extra = data.get("features")
            if isinstance(extra, dict):
                for key, value in extra.items():
                    self._acc(f"features.{key}").add(value)
            elif "features" in data:
                self.features_not_object += 1

    def _acc(self, name: str) -> _FeatureAccumulator:
        acc = self.features.get(name)
        if acc is None:
            acc = self.features[name] = _FeatureAccumulator()
        return acc


def judge_features(builder: FeatureBuilder, settings: Settings) -> tuple[list[FeatureStat], list[Finding], int, int,
                                                                           list[dict[str, str]]]:
    """Per-feature verdicts and findings; returns (stats, findings, judged, flatlined, excluded)."""
    rules = settings.feature_sanity
    n = builder.events
    stats: list[FeatureStat] = []
    findings: list[Finding] = []
    excluded: list[dict[str, str]] = []
    judged = flatlined = 0
    names = list(dict.fromkeys([*builder.fields, *sorted(builder.features)]))
    for name in names:
        acc = builder.features.get(name, _FeatureAccumulator())
        values = np.frombuffer(acc.values, dtype=np.float64) if len(acc.values) else np.empty(0)
        counted = values.shape[0] + acc.null + acc.non_numeric + acc.nan + acc.inf
        missing = n - counted
        std = median = lo = hi = None
        flat = False
        if values.shape[0]:
            std, median = mean_std(values)[1], float(np.median(values))
            lo, hi = float(values.min()), float(values.max())
            flat = values.shape[0] >= 2 and std <= rules.flatline_rel_tol * max(abs(median), 1.0)
        expected = name in rules.expected_constant
        verdict = "ok"
        if acc.nan or acc.inf:
            verdict = "invalid"
            findings.append(Finding("nan_inf", FAIL, f"{name}: {acc.nan} NaN and {acc.inf} Inf values in {n} events",
                                    name, "window"))
        if acc.null or acc.non_numeric:
            verdict = "invalid"
            findings.append(Finding("invalid_value", FAIL,
                                    f"{name}: {acc.null} null and {acc.non_numeric} non-numeric values in {n} events",
                                    name, "window"))
        if n and missing / n > rules.missing_max_fraction:
            verdict = "missing"
            findings.append(Finding("missing", FAIL, f"{name}: missing from {missing} of {n} events", name, "window"))
            excluded.append({"feature": name, "reason": f"missing from {missing} of {n} events"})
        elif missing:
            findings.append(Finding("missing", WARN, f"{name}: missing from {missing} of {n} events", name, "window"))
        if verdict != "missing":
            if expected:
                excluded.append({"feature": name, "reason": "declared expected-constant in the config"
                                 + ("" if flat else " (but it varies)")})
                verdict = "expected-constant" if verdict == "ok" else verdict
            elif values.shape[0] >= 2:
                judged += 1
                if flat:
                    flatlined += 1
                    verdict = "flat" if verdict == "ok" else verdict
            elif verdict == "ok":
                excluded.append({"feature": name, "reason": "fewer than 2 valid values"})
        stats.append(FeatureStat(name, int(values.shape[0]), int(missing), acc.null, acc.non_numeric, acc.nan, acc.inf,
                                 std, median, lo, hi, bool(flat), expected, verdict))
    if builder.features_not_object:
        findings.append(Finding("invalid_value", FAIL, f"features: not an object in {builder.features_not_object} "
                                                       f"of {n} events", "features", "window"))
    if n < rules.min_events:
        findings.insert(0, Finding("insufficient_data", FAIL,
                                   f"only {n} trade.intent events in the window, need {rules.min_events}",
                                   "window", "window"))
    if judged == 0 and n >= rules.min_events:
        findings.append(Finding("no_features", FAIL, "no feature could be judged", "window", "window"))
    elif judged and flatlined / judged > rules.flatline_max_fraction:
        flat_names = ", ".join(s.name for s in stats if s.verdict == "flat")
        findings.append(Finding("flatline", FAIL,
                                f"{flatlined} of {judged} judged features flatlined ({flatlined / judged * 100:.0f} %, "
                                f"limit {rules.flatline_max_fraction * 100:.0f} %): {flat_names}", "window", "window"))
    elif flatlined:
        flat_names = ", ".join(s.name for s in stats if s.verdict == "flat")
        findings.append(Finding("flatline", WARN, f"{flatlined} of {judged} judged features flatlined: {flat_names}",
                                "window", "window"))
    return stats, findings, judged, flatlined, excluded


def run_feature_sanity(
    settings: Settings,
    source: Source,
    window: Window,
    *,
    write_report_files: bool = True,
    progress: Progress | None = None,
    now: dt.datetime | None = None,
) -> SanityResult:
    """Read the window, judge every feature, write ``reports/safety/feature_sanity_<ts>.md`` + JSON."""
    now = now or utc_now()
    read = open_read(source, window)
    builder = FeatureBuilder(tuple(settings.feature_sanity.numeric_fields))
    with gc_paused():
        for page in read.pages(progress):
            builder.feed(page)
    stats, findings, judged, flatlined, excluded = judge_features(builder, settings)
    # Inputs that stopped arriving are not alive, however healthy the old ones looked.
    stalled = stall_rule(builder.newest_ms, window.until, now, settings.monitor.stall_limit) if isinstance(
        source, RedisStreamSource) else None
    if stalled is not None:
        findings.append(stalled)
    failed = [f for f in findings if f.severity == FAIL]
    status = Status.FAIL if failed else Status.PASS
    if failed:
        more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
        summary = f"FAIL: feature sanity - {failed[0].message}{more}"
    else:
        summary = (f"PASS: feature sanity - {builder.events:,} events, {judged} features judged, "
                   f"{flatlined} flatlined, no NaN/Inf")
    rules = dataclasses.asdict(settings.feature_sanity)
    result = SanityResult(status, summary, now, source.describe(), window, builder.read, builder.events,
                          dict(builder.skipped), tuple(stats), tuple(findings), judged, flatlined, tuple(excluded),
                          rules, settings.loosened())
    if not write_report_files:
        return result
    stamp = file_stamp(now)
    pending = result

    def render_pair(md: Path, js: Path) -> tuple[str, dict[str, Any]]:
        named = dataclasses.replace(pending, report_path=md, json_path=js)
        return render("feature_sanity.md.j2", r=named, generated=iso(now),
                      cutover=iso(window.after) or "none (whole retained stream)"), named.to_dict()

    md, js = write_new_report(settings.reports_dir, lambda n: f"feature_sanity_{stamp}{n}", render_pair)
    return dataclasses.replace(result, report_path=md, json_path=js)


def render_sanity_text(result: SanityResult) -> str:
    lines = [result.summary,
             f"  events {result.events:,} (read {result.read:,}), features judged {result.judged}, "
             f"flatlined {result.flatlined}"]
    for f in result.findings:
        lines.append(f"  - {f.severity}: {f.message}")
    for x in result.excluded:
        lines.append(f"  excluded {x['feature']}: {x['reason']}")
    if result.report_path:
        lines.append(f"  report: {result.report_path}")
    # Names come from telemetry or the command line: each line shows them escaped, so none adds a line.
    return "\n".join(visible(line) for line in lines)
