"""The reader's result: one model's valid votes as numpy columns with its defect counters (``ModelColumns``), a
whole window's columns, reconciled (``Telemetry``), and the accumulator that grows a model's columns while reading."""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np

from qtsafe.votes import BAD_VOTE_KINDS, INVALID_KINDS, VoteDefects

# Entry-level skip reasons, in the order reports list them.
SKIP_REASONS = ("other_event_type", "no_payload", "bad_json", "payload_not_object", "no_breakdown", "bad_breakdown",
                "duplicate_key")

NO_SYMBOL = -1


class _ModelAccumulator:
    """Growing columns for one model: valid votes only, plus counters for everything else."""

    __slots__ = ("name", "event_idx", "action", "conf", "chunks", "present", "inactive", "shadow", "above_one",
                 "invalid", "bad", "examples")

    def __init__(self, name: str) -> None:
        self.name = name
        # Votes from the careful per-entry path are staged in arrays and flushed into ``chunks`` in
        # order with the batch path's numpy chunks, so the columns stay chronological.
        self.event_idx = array("q")
        self.action = array("b")
        self.conf = array("d")
        self.chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.present = 0
        self.inactive = 0
        self.shadow = 0
        self.above_one = 0
        self.invalid = dict.fromkeys(INVALID_KINDS, 0)
        self.bad = dict.fromkeys(BAD_VOTE_KINDS, 0)
        self.examples: dict[str, str] = {}

    def flush(self) -> None:
        if len(self.action):
            self.chunks.append((np.frombuffer(self.event_idx, dtype=np.int64).copy(),
                                np.frombuffer(self.action, dtype=np.int8).copy(),
                                np.frombuffer(self.conf, dtype=np.float64).copy()))
            self.event_idx, self.action, self.conf = array("q"), array("b"), array("d")

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.flush()
        if not self.chunks:
            return np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.float64)
        return (np.concatenate([c[0] for c in self.chunks]), np.concatenate([c[1] for c in self.chunks]),
                np.concatenate([c[2] for c in self.chunks]))


@dataclasses.dataclass(frozen=True)
class ModelColumns:
    """One model's valid votes as numpy columns (chronological) and its defect counters."""

    name: str
    event_idx: np.ndarray  # index into Telemetry.event_ms of each valid vote
    action: np.ndarray  # int8 codes, see qtsafe.votes.ACTIONS
    conf: np.ndarray  # float64, finite, >= 0
    shadow: int
    defects: VoteDefects
    examples: dict[str, str]  # defect kind -> first stream ID showing it

    @property
    def n_valid(self) -> int:
        return int(self.action.shape[0])


@dataclasses.dataclass(frozen=True)
class Telemetry:
    """Everything read from one window, reconciled: read = evaluated + sum(skipped)."""

    read: int
    evaluated: int
    skipped: dict[str, int]
    skip_examples: dict[str, str]
    first_id: str | None
    last_id: str | None
    event_ms: np.ndarray  # int64 stream-ID milliseconds of each evaluated event
    votes: np.ndarray  # (evaluated, 3) int16: BUY/SELL/HOLD votes among voting models per event
    models: dict[str, ModelColumns]
    pseudo_entries: int  # breakdown entries of pseudo-models (fallback), counted, never judged
    # Per evaluated event, for outcome scoring: the payload's symbol as a code into ``symbol_names`` (sorted;
    # NO_SYMBOL where missing) and its ``entry_price`` (NaN where missing or unusable).
    symbol: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.int32))
    symbol_names: tuple[str, ...] = ()
    entry_price: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.float64))

    def reconciliation(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "evaluated": self.evaluated,
            "skipped": dict(self.skipped),
            "balanced": self.read == self.evaluated + sum(self.skipped.values()),
            "examples": dict(self.skip_examples),
            "pseudo_model_entries": self.pseudo_entries,
        }


def _sorted_symbols(codes: np.ndarray, names: Sequence[str | None]) -> dict[str, Any]:
    """Renumber symbol codes (``names[code]``) by sorted name: the ``symbol``/``symbol_names`` fields."""
    ordered = tuple(sorted(str(name) for name in names))
    index = {name: code for code, name in enumerate(ordered)}
    # The last slot maps NO_SYMBOL (-1) to itself.
    lookup = np.array([index[str(name)] for name in names] + [NO_SYMBOL], dtype=np.int32)
    return {"symbol": lookup[codes], "symbol_names": ordered}
