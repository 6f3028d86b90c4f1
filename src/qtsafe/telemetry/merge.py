"""Join the telemetry of consecutive windows into one, as if the stream had been read at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qtsafe.telemetry.columns import NO_SYMBOL, SKIP_REASONS, ModelColumns, Telemetry
from qtsafe.votes import BAD_VOTE_KINDS, INVALID_KINDS, VoteDefects


def merge_telemetry(parts: Sequence[Telemetry]) -> Telemetry:
    """Join the telemetry of consecutive, non-overlapping windows (oldest first) into one, as if read at once."""
    if not parts:
        # Imported here: parse re-exports merge_telemetry, so a module-level import would be circular.
        from qtsafe.telemetry.parse import TelemetryBuilder

        return TelemetryBuilder().build()
    if len(parts) == 1:
        return parts[0]
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    skip_examples: dict[str, str] = {}
    for part in parts:
        for reason, count in part.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
        for reason, example in part.skip_examples.items():
            skip_examples.setdefault(reason, example)
    offsets = np.cumsum([0] + [p.evaluated for p in parts[:-1]])
    models: dict[str, ModelColumns] = {}
    for name in sorted({n for p in parts for n in p.models}):
        pieces = [(p.models[name], int(off)) for p, off in zip(parts, offsets, strict=True) if name in p.models]
        invalid = dict.fromkeys(INVALID_KINDS, 0)
        bad = dict.fromkeys(BAD_VOTE_KINDS, 0)
        examples: dict[str, str] = {}
        for columns, _ in pieces:
            for kind, count in columns.defects.invalid_confidence.items():
                invalid[kind] = invalid.get(kind, 0) + count
            for kind, count in columns.defects.bad_votes.items():
                bad[kind] = bad.get(kind, 0) + count
            for kind, example in columns.examples.items():
                examples.setdefault(kind, example)
        models[name] = ModelColumns(
            name=name,
            event_idx=_offset_concat([c.event_idx for c, _ in pieces], [off for _, off in pieces]),
            action=np.concatenate([c.action for c, _ in pieces]),
            conf=np.concatenate([c.conf for c, _ in pieces]),
            shadow=sum(c.shadow for c, _ in pieces),
            defects=VoteDefects(
                present=sum(c.defects.present for c, _ in pieces),
                inactive=sum(c.defects.inactive for c, _ in pieces),
                invalid_confidence=invalid,
                above_one=sum(c.defects.above_one for c, _ in pieces),
                bad_votes=bad,
            ),
            examples=examples,
        )
    firsts = [p.first_id for p in parts if p.first_id is not None]
    lasts = [p.last_id for p in parts if p.last_id is not None]
    return Telemetry(
        read=sum(p.read for p in parts),
        evaluated=sum(p.evaluated for p in parts),
        skipped=skipped,
        skip_examples=skip_examples,
        first_id=firsts[0] if firsts else None,
        last_id=lasts[-1] if lasts else None,
        event_ms=np.concatenate([p.event_ms for p in parts]),
        votes=np.concatenate([p.votes for p in parts]).reshape(-1, 3),
        models=models,
        pseudo_entries=sum(p.pseudo_entries for p in parts),
        **_merged_symbols(parts),
        entry_price=np.concatenate([p.entry_price for p in parts]),
    )


def _offset_concat(arrays: Sequence[np.ndarray], offsets: Sequence[int]) -> np.ndarray:
    """``np.concatenate([a + off ...])`` written into one output: no shifted copy of each part (a million-event
    window's event indices are 32 MB)."""
    out = np.empty(sum(a.shape[0] for a in arrays), dtype=np.int64)
    at = 0
    for array, offset in zip(arrays, offsets, strict=True):
        np.add(array, offset, out=out[at:at + array.shape[0]])
        at += array.shape[0]
    return out


def _merged_symbols(parts: Sequence[Telemetry]) -> dict[str, Any]:
    """Each part numbers its own symbols; rebase them on the sorted union of names."""
    ordered = tuple(sorted({name for p in parts for name in p.symbol_names}))
    index = {name: code for code, name in enumerate(ordered)}
    columns = []
    for part in parts:
        lookup = np.array([index[name] for name in part.symbol_names] + [NO_SYMBOL], dtype=np.int32)
        columns.append(lookup[part.symbol])
    return {"symbol": np.concatenate(columns).astype(np.int32), "symbol_names": ordered}
