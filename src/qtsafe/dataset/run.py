"""``build-dataset``'s one entry point: load, build, check, judge, then write (only a PASS writes data).

Compute, then act: :func:`run_build_dataset` builds the arrays and the verdict first; files are written
last, each atomically. A WAIT (imbalance) or FAIL (a leakage check) writes the report but no dataset,
so nobody trains on data that did not pass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from qtsafe import __version__
from qtsafe.config import Settings
from qtsafe.dataset.builder import BuiltDataset, DatasetRequest, SymbolReport, build_arrays
from qtsafe.dataset.candles import format_span, iso_ns
from qtsafe.dataset.checks import check_dict, leakage_checks
from qtsafe.dataset.defaults import RULES
from qtsafe.dataset.features import REGISTRY
from qtsafe.dataset.report import render_report
from qtsafe.dataset.sources import LoadedSource, data_sha256, load_source
from qtsafe.dataset.splits import SPLIT_NAMES
from qtsafe.dataset.windows import SampleCounts
from qtsafe.dataset.writer import ARRAY_DOCS, FORMAT, encode_npz
from qtsafe.findings import Finding
from qtsafe.fsio import atomic_write_bytes, atomic_write_text
from qtsafe.status import Status
from qtsafe.timeutil import file_stamp, iso, utc_now

IMBALANCE_MAX = 0.90  # one class above this share of the train split needs a person (exit 3)


@dataclasses.dataclass(frozen=True)
class SplitSummary:
    name: str
    samples: int
    positives: int
    first: str  # ISO time of the earliest window end, "-" when empty
    last: str

    @property
    def positive_share(self) -> float:
        return self.positives / self.samples if self.samples else 0.0

    @property
    def majority_share(self) -> float:
        return max(self.positive_share, 1.0 - self.positive_share) if self.samples else 0.0


@dataclasses.dataclass(frozen=True)
class DatasetResult:
    """What ``build-dataset`` concluded; ``status`` maps to the exit code."""

    status: Status
    reason: str
    dataset_path: str | None  # None unless PASS
    report_path: str
    shape: tuple[int, int, int]
    splits: tuple[SplitSummary, ...]
    symbols: tuple[SymbolReport, ...]
    checks: tuple[Finding, ...]
    counts: SampleCounts
    metadata: dict[str, Any]

    def summary_line(self) -> str:
        n, lookback, width = self.shape
        if self.status is Status.PASS:
            used = sum(1 for s in self.symbols if s.status == "ok")
            return (f"PASS: {n:,} samples ({lookback} x {width}) from {used} symbol{'s' * (used != 1)} "
                    f"written to {self.dataset_path}")
        return f"{self.status.value}: {self.reason}"

    def render_text(self) -> str:
        meta = self.metadata
        src = meta["source"]
        train = self.splits[0]
        lines = [
            self.summary_line(),
            f"  report:  {self.report_path}",
            f"  source:  {src['spec']} (sha256 {src['sha256'][:12]}), {meta['interval']} bars, "
            f"{meta['range']['start']} .. {meta['range']['end']}",
            f"  labels:  {meta['label_rule']} rule, +{meta['threshold']:.2%} within {meta['horizon']} "
            f"({meta['horizon_bars']} bars); train {train.positive_share:.1%} positive",
            "  splits:  " + " | ".join(f"{s.name} {s.samples:,}" for s in self.splits)
            + f" (purge {meta['split']['purge']}, embargo {meta['split']['embargo']})",
            f"  dropped: {self.counts.dropped_gap:,} touching a gap, {self.counts.dropped_warmup:,} in warm-up, "
            f"{self.counts.purged:,} purged (of {self.counts.candidates:,} candidates)",
        ]
        skipped = [s.symbol for s in self.symbols if s.status != "ok"]
        if skipped:
            lines.append(f"  skipped: {', '.join(skipped)} (too short or no samples; see the report)")
        passed = sum(c.passed for c in self.checks)
        lines.append(f"  checks:  {passed}/{len(self.checks)} leakage checks passed")
        lines.extend(f"  FAILED:  {c.check}: {c.message}" for c in self.checks if not c.passed)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "summary": self.summary_line(),
            "reason": self.reason,
            "dataset_path": self.dataset_path,
            "report_path": self.report_path,
            "shape": list(self.shape),
            "splits": [dict(dataclasses.asdict(s), positive_share=s.positive_share) for s in self.splits],
            "symbols": [_symbol_dict(s) for s in self.symbols],
            "dropped": dataclasses.asdict(self.counts),
            "checks": [check_dict(c) for c in self.checks],
            "metadata": self.metadata,
        }


def run_build_dataset(settings: Settings, request: DatasetRequest, *, now: dt.datetime | None = None) -> DatasetResult:
    """Build, check and judge a PatchTST sequence dataset; write it (PASS only) and its report."""
    created = now or utc_now()
    loaded = load_source(request.source, request.symbols, days=request.days, interval_s=request.interval_s,
                         seed=request.seed)
    built = build_arrays(loaded.candles, request)
    checks = leakage_checks(built)
    splits = _split_summaries(built)
    status, reason = _verdict(checks, splits[0], request.allow_imbalance)
    metadata = _metadata(built, loaded, checks, splits, created)

    stamp = file_stamp(created)
    dataset_path = settings.data_dir / f"patchtst_sequences_{stamp}.npz"
    report_path = settings.reports_dir / f"patchtst_sequence_dataset_{stamp}.md"
    result = DatasetResult(
        status=status, reason=reason, dataset_path=str(dataset_path) if status is Status.PASS else None,
        report_path=str(report_path), shape=(int(built.X.shape[0]), int(built.X.shape[1]), int(built.X.shape[2])),
        splits=splits, symbols=built.reports, checks=checks, counts=built.counts, metadata=metadata,
    )
    report = render_report(result)
    if status is Status.PASS:
        arrays = {
            "X": built.X, "y": built.y, "timestamps": built.timestamps.astype("datetime64[ns]"),
            "label_end": built.label_end.astype("datetime64[ns]"), "symbol_index": built.symbol_index,
            "split": built.split, "symbols": np.array(built.symbols),
        }
        atomic_write_bytes(dataset_path, encode_npz(arrays, metadata))
        try:
            atomic_write_text(report_path, report)
        except Exception:
            # A dataset without its report is unaccounted for: take it back before failing.
            with contextlib.suppress(OSError):
                Path(dataset_path).unlink()
            raise
    else:
        atomic_write_text(report_path, report)
    return result


def _verdict(checks: tuple[Finding, ...], train: SplitSummary, allow_imbalance: bool) -> tuple[Status, str]:
    failed = [c for c in checks if not c.passed]
    if failed:
        return Status.FAIL, (f"leakage check failed: {failed[0].check} ({failed[0].message}); dataset not written")
    if train.majority_share > IMBALANCE_MAX:
        majority = 1 if train.positive_share > 0.5 else 0
        text = (f"train split is {train.majority_share:.1%} class {majority} (limit {IMBALANCE_MAX:.0%}) "
                f"over {train.samples:,} samples")
        if not allow_imbalance:
            return Status.WAIT, f"{text}; dataset not written (pass --allow-imbalance to write it anyway)"
        return Status.PASS, f"{text}; allowed by --allow-imbalance"
    return Status.PASS, "all leakage checks passed and the train classes are within the imbalance limit"


def _split_summaries(built: BuiltDataset) -> tuple[SplitSummary, ...]:
    out = []
    for code, name in enumerate(SPLIT_NAMES):
        rows = built.split == code
        times = built.timestamps[rows]
        out.append(SplitSummary(
            name=name, samples=int(rows.sum()), positives=int(built.y[rows].sum(dtype=np.int64)),
            first=iso_ns(int(times.min())) if times.shape[0] else "-",
            last=iso_ns(int(times.max())) if times.shape[0] else "-",
        ))
    return tuple(out)


def _metadata(built: BuiltDataset, loaded: LoadedSource, checks: tuple[Finding, ...],
              splits: tuple[SplitSummary, ...], created: dt.datetime) -> dict[str, Any]:
    request = built.request
    params = dataclasses.asdict(built.feature_params)
    norm = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in built.normalization.items()}
    return {
        "format": FORMAT,
        "qtsafe_version": __version__,
        "created_at": iso(created),
        "arrays": ARRAY_DOCS,
        "sample_order": "by symbol (symbol_index), then by time",
        "features": list(request.features),
        "feature_docs": {name: REGISTRY[name].doc for name in request.features},
        "feature_params": params,
        "warmup_bars": built.warmup,
        "lookback": request.lookback,
        "interval": format_span(built.interval_s),
        "interval_seconds": built.interval_s,
        "horizon": format_span(request.horizon_s),
        "horizon_bars": built.horizon_bars,
        "label_rule": request.label_rule,
        "label_rule_text": RULES[request.label_rule],
        "threshold": request.threshold,
        "classes": {"0": "threshold not reached", "1": "threshold reached"},
        "symbols": list(built.symbols),
        "source": {
            "spec": loaded.spec.label, "kind": loaded.spec.kind, "sha256": loaded.sha256,
            "files": [{"name": n, "sha256": d} for n, d in loaded.files], "data_sha256": data_sha256(loaded.candles),
            **{k: v for k, v in loaded.detail.items()},
        },
        "range": {"start": iso_ns(built.range_start), "end": iso_ns(built.range_end), "days": request.days},
        "split": {
            "spec": request.split.label, "names": list(SPLIT_NAMES), "val_start": iso_ns(built.cut.val_start),
            "test_start": iso_ns(built.cut.test_start), "purge": format_span(request.purge),
            "embargo": format_span(request.embargo_s),
            "samples": {s.name: s.samples for s in splits},
            "positives": {s.name: s.positives for s in splits},
        },
        "normalization": norm,
        "imbalance_max": IMBALANCE_MAX,
        "allow_imbalance": request.allow_imbalance,
        "mask_invalid": request.mask_invalid,
        "seed": request.seed if loaded.spec.kind == "synthetic" else None,
        "leakage_checks": [check_dict(c) for c in checks],
    }


def _symbol_dict(report: SymbolReport) -> dict[str, Any]:
    quality = dataclasses.asdict(report.quality)
    for key in ("first", "last", "first_invalid"):
        quality[key] = iso_ns(quality[key]) if quality[key] is not None else None
    return {"symbol": report.symbol, "status": report.status, "coverage": report.quality.coverage, **quality,
            **dataclasses.asdict(report.counts), "samples": dict(zip(SPLIT_NAMES, report.split_samples, strict=True))}
