"""Turn raw stream entries into numpy columns, accounting for every entry.

The fast path decodes only ``model_breakdown``, ``symbol`` and ``entry_price`` into typed msgspec structs (no
per-event dicts kept).
Anything the fast path refuses (bare ``NaN``/``Infinity`` tokens, odd shapes) goes through the slow,
generic path, which applies exactly the same rules, so a defect is classified the same way whichever
decoder saw it. Nothing is coerced: a confidence given as the string "0.74" is non-numeric.
"""

from __future__ import annotations

import dataclasses
import json
import math
from array import array
from collections.abc import Iterable, Sequence
from itertools import chain
from operator import attrgetter
from typing import Any, Literal

import msgspec
import numpy as np

from qtsafe.telemetry.duplicates import has_duplicate_vote_keys, page_suspect
from qtsafe.votes import ACTION_CODES, VoteDefects

# Kept importable from here for rolling.py; they live in qtsafe.votes. Remove when rolling imports them there.
from qtsafe.votes import BAD_VOTE_KINDS as BAD_VOTE_KINDS
from qtsafe.votes import INVALID_KINDS as INVALID_KINDS

EVENT_TYPE = b"trade.intent"
PSEUDO_MODELS = frozenset({"fallback"})

# Entry-level skip reasons, in the order reports list them.
SKIP_REASONS = ("other_event_type", "no_payload", "bad_json", "payload_not_object", "no_breakdown", "bad_breakdown",
                "duplicate_key")

RawEntry = tuple[bytes, Sequence[bytes]]  # (stream id, [field, value, field, value, ...])


class _Vote(msgspec.Struct, gc=False):
    action: Any = msgspec.UNSET
    confidence: Any = msgspec.UNSET
    inactive: Any = False
    shadow: Any = False


class _Intent(msgspec.Struct, gc=False):
    model_breakdown: (
        dict[str, _Vote | str | int | float | bool | None | list[Any]] | None | msgspec.UnsetType
    ) = msgspec.UNSET
    symbol: Any = None
    entry_price: Any = None


_FAST = msgspec.json.Decoder(_Intent)


class _StrictVote(msgspec.Struct, gc=False):
    """A perfectly well-formed vote. Anything else fails the page's batch decode and takes the careful path."""

    action: Literal["BUY", "SELL", "HOLD"]
    confidence: float
    # UNSET (falsy) when absent, so duplicates.page_suspect can count the flags that were written.
    inactive: bool | msgspec.UnsetType = msgspec.UNSET
    shadow: bool | msgspec.UnsetType = msgspec.UNSET


class _StrictIntent(msgspec.Struct, gc=False):
    model_breakdown: dict[str, _StrictVote] | None = None
    confidence: Any = msgspec.UNSET  # only counted: see duplicates.page_suspect
    # Outcome scoring reads these. Any other type (a price given as a string, a number as symbol) fails the
    # batch decode and the careful path records it as missing, exactly as classify_price/symbol_name do.
    symbol: str | None = None
    entry_price: float | None = None


_BATCH = msgspec.json.Decoder(list[_StrictIntent])
_CONFIDENCE = attrgetter("confidence")
_ACTION = attrgetter("action")
_INACTIVE = attrgetter("inactive")
_SHADOW = attrgetter("shadow")
_TOP_CONFIDENCE = attrgetter("confidence")
_SYMBOL = attrgetter("symbol")
_ENTRY_PRICE = attrgetter("entry_price")
NO_SYMBOL = -1


def classify_price(value: Any) -> float:
    """An ``entry_price`` as a float, NaN when missing or unusable (not a JSON number, not finite, <= 0).
    A missing price is missing: never a default, never coerced from a string."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    try:
        number = float(value)
    except OverflowError:
        return math.nan
    return number if math.isfinite(number) and number > 0 else math.nan


def symbol_name(value: Any) -> str | None:
    """A ``symbol`` if it is a non-empty string, else None (missing)."""
    return value if isinstance(value, str) and value else None


def classify_confidence(value: Any) -> tuple[str | None, float]:
    """Return (invalid kind or None, value). A valid value is finite and >= 0 (it may exceed 1)."""
    if value is msgspec.UNSET:
        return "missing", math.nan
    if value is None:
        return "null", math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "non_numeric", math.nan
    try:
        number = float(value)
    except OverflowError:  # a JSON integer beyond the float range
        return "inf", math.nan
    if math.isnan(number):
        return "nan", math.nan
    if math.isinf(number):
        return "inf", math.nan
    if number < 0:
        return "negative", math.nan
    return None, number


def first_fields(fields: Sequence[bytes]) -> tuple[bytes | None, bytes | None]:
    """``event_type`` and ``payload`` of an entry; a field given twice counts by its first value, as the
    page-at-once path (which reads the producer's positions) does."""
    event_type = payload = None
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == b"event_type" and event_type is None:
            event_type = fields[i + 1]
        elif fields[i] == b"payload" and payload is None:
            payload = fields[i + 1]
    return event_type, payload


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


class TelemetryBuilder:
    """Feed pages of raw entries; :meth:`build` returns the columns. Pages are never kept."""

    def __init__(self) -> None:
        self.read = 0
        self.evaluated = 0
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)
        self.skip_examples: dict[str, str] = {}
        self.first_id: bytes | None = None
        self.last_id: bytes | None = None
        self.event_ms = array("q")
        self.votes = array("h")
        self.symbol = array("i")
        self.entry_price = array("d")
        # Codes in order of first appearance while reading; build() renumbers them by sorted name, so the
        # columns do not depend on page size or reader path.
        self._symbol_codes: dict[str | None, int] = {None: NO_SYMBOL, "": NO_SYMBOL}
        self.models: dict[str, _ModelAccumulator] = {}
        self._name_codes: dict[str, int] = {}
        self.pseudo_entries = 0

    def _skip(self, reason: str, entry_id: bytes) -> None:
        self.skipped[reason] += 1
        self.skip_examples.setdefault(reason, entry_id.decode("ascii", "replace"))

    def feed(self, page: Iterable[RawEntry]) -> None:
        """Account for every entry of one page; decode the trade.intent payloads into columns."""
        entries = page if isinstance(page, list) else list(page)
        if not entries:
            return
        self.read += len(entries)
        if self.first_id is None:
            self.first_id = entries[0][0]
        self.last_id = entries[-1][0]
        fields_of = [fields for _, fields in entries]
        try:
            # Common case: every entry is a trade.intent in the producer's field order.
            payloads = [f[3] for f in fields_of
                        if f[0] == b"event_type" and f[1] == EVENT_TYPE and f[2] == b"payload"]
        except IndexError:
            payloads = []
        if len(payloads) == len(entries):
            ids = [entry_id for entry_id, _ in entries]
        else:
            ids, payloads = self._select_intents(entries)
        if not ids:
            return
        joined = b"[" + b",".join(payloads) + b"]"
        try:
            # One decode call for the whole page into strict structs: the common, well-formed case.
            intents = _BATCH.decode(joined)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            # RecursionError: one payload nested deeper than the decoder goes; the careful path finds which.
            intents = None
        if intents is None or len(intents) != len(payloads) or _page_suspect(joined, intents):
            self._feed_careful(ids, payloads)
        else:
            self._feed_batch(ids, intents)

    def _select_intents(self, entries: list[RawEntry]) -> tuple[list[bytes], list[bytes]]:
        """Entry by entry: any field order; other event types and missing payloads are counted."""
        ids: list[bytes] = []
        payloads: list[bytes] = []
        for entry_id, fields in entries:
            event_type, payload = first_fields(fields)
            if event_type != EVENT_TYPE:
                self._skip("other_event_type", entry_id)
            elif payload is None:
                self._skip("no_payload", entry_id)
            else:
                ids.append(entry_id)
                payloads.append(payload)
        return ids, payloads

    def _feed_careful(self, ids: list[bytes], payloads: list[bytes]) -> None:
        """Entry by entry with the lenient decoder and the generic fallback: every defect classified."""
        fast = _FAST.decode
        for entry_id, payload in zip(ids, payloads, strict=True):
            if has_duplicate_vote_keys(payload):
                self._skip("duplicate_key", entry_id)
                continue
            try:
                intent = fast(payload)
                breakdown: Any = intent.model_breakdown
                symbol, price = intent.symbol, intent.entry_price
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
                slow = self._slow_breakdown(payload, entry_id)
                if slow is _SKIPPED:
                    continue
                breakdown, symbol, price = slow
            if breakdown is None or breakdown is msgspec.UNSET:
                self._skip("no_breakdown", entry_id)
                continue
            self._evaluate(entry_id, breakdown)
            self._add_market(symbol_name(symbol), classify_price(price))

    def _add_market(self, symbol: str | None, price: float) -> None:
        codes = self._symbol_codes
        code = codes.get(symbol)
        if code is None:
            code = codes[symbol] = len(codes) - 2
        self.symbol.append(code)
        self.entry_price.append(price)

    def _accumulator(self, name: str) -> _ModelAccumulator:
        acc = self.models.get(name)
        if acc is None:
            acc = self.models[name] = _ModelAccumulator(name)
        return acc

    def _feed_batch(self, ids: list[bytes], intents: list[_StrictIntent]) -> None:
        """A page of well-formed intents, turned into columns with numpy instead of a loop per vote."""
        breakdowns: list[dict[str, _StrictVote]] = []
        event_ids: list[bytes] = []
        kept: list[_StrictIntent] = []
        for entry_id, intent in zip(ids, intents, strict=True):
            if intent.model_breakdown is None:
                self._skip("no_breakdown", entry_id)
            else:
                breakdowns.append(intent.model_breakdown)
                event_ids.append(entry_id)
                kept.append(intent)
        n = len(breakdowns)
        if n == 0:
            return
        base = self.evaluated
        self.evaluated += n
        self.event_ms.extend([int(entry_id.partition(b"-")[0]) for entry_id in event_ids])
        symbols = list(map(_SYMBOL, kept))
        sym_codes = self._symbol_codes
        for symbol in dict.fromkeys(symbols).keys() - sym_codes.keys():
            sym_codes[symbol] = len(sym_codes) - 2
        self.symbol.frombytes(np.fromiter(map(sym_codes.__getitem__, symbols), dtype=np.int32, count=n).tobytes())
        # None (a missing or null price) becomes NaN in fromiter; non-finite and non-positive prices too, below.
        price = np.fromiter(map(_ENTRY_PRICE, kept), dtype=np.float64, count=n)
        price[~(price > 0) | np.isinf(price)] = np.nan
        self.entry_price.frombytes(price.tobytes())
        names = list(chain.from_iterable(breakdowns))
        votes = list(chain.from_iterable(map(dict.values, breakdowns)))
        count = len(votes)
        if not count:
            self.votes.extend([0] * (3 * n))
            return
        codes = self._name_codes
        for name in set(names) - codes.keys():
            codes[name] = len(codes)
        # map() with C-level callables: no Python frame per vote (this loop is the reader's hot path).
        model = np.fromiter(map(codes.__getitem__, names), dtype=np.int32, count=count)
        conf = np.fromiter(map(_CONFIDENCE, votes), dtype=np.float64, count=count)
        action = np.fromiter(map(ACTION_CODES.__getitem__, map(_ACTION, votes)), dtype=np.int8, count=count)
        inactive = np.fromiter(map(_INACTIVE, votes), dtype=bool, count=count)
        shadow = np.fromiter(map(_SHADOW, votes), dtype=bool, count=count)
        event = np.repeat(np.arange(n, dtype=np.int64), [len(bd) for bd in breakdowns])
        pseudo = np.isin(model, [codes[p] for p in PSEUDO_MODELS if p in codes])
        active = ~pseudo & ~inactive
        negative = active & (conf < 0)
        infinite = active & np.isinf(conf)
        valid = active & ~negative & ~infinite
        voting = valid & ~shadow
        per_event = np.bincount(event[voting] * 3 + action[voting], minlength=3 * n)
        self.votes.frombytes(per_event.astype(np.int16).tobytes())
        self.pseudo_entries += int(np.count_nonzero(pseudo))
        names_by_code = {code: name for name, code in codes.items()}
        for code in np.unique(model[~pseudo]).tolist():
            acc = self._accumulator(names_by_code[code])
            mine = model == code
            acc.present += int(np.count_nonzero(mine))
            acc.inactive += int(np.count_nonzero(mine & inactive))
            for kind, mask in (("negative", mine & negative), ("inf", mine & infinite),
                               ("above_one", mine & valid & (conf > 1.0))):
                hits = np.flatnonzero(mask)
                if hits.size:
                    if kind == "above_one":
                        acc.above_one += int(hits.size)
                    else:
                        acc.invalid[kind] += int(hits.size)
                    acc.examples.setdefault(kind, event_ids[int(event[hits[0]])].decode("ascii", "replace"))
            keep = mine & valid
            acc.shadow += int(np.count_nonzero(keep & shadow))
            acc.flush()
            acc.chunks.append((event[keep] + base, action[keep], conf[keep]))

    def _slow_breakdown(self, payload: bytes, entry_id: bytes) -> Any:
        """(breakdown, symbol, entry_price) from the generic decoder, or _SKIPPED (counted)."""
        try:
            data = json.loads(payload.decode("utf-8"))  # strict: JSON is UTF-8; no surrogates
        except (ValueError, UnicodeDecodeError, RecursionError):
            self._skip("bad_json", entry_id)
            return _SKIPPED
        if not isinstance(data, dict):
            self._skip("payload_not_object", entry_id)
            return _SKIPPED
        breakdown = data.get("model_breakdown", msgspec.UNSET)
        symbol, price = data.get("symbol"), data.get("entry_price")
        if breakdown is None or breakdown is msgspec.UNSET:
            return breakdown, symbol, price
        if not isinstance(breakdown, dict):
            self._skip("bad_breakdown", entry_id)
            return _SKIPPED
        return {name: _vote_from_obj(entry) for name, entry in breakdown.items()}, symbol, price

    def _evaluate(self, entry_id: bytes, breakdown: dict[str, Any]) -> None:
        index = self.evaluated
        self.evaluated += 1
        ms = entry_id.split(b"-", 1)[0]
        self.event_ms.append(int(ms) if ms.isdigit() else -1)
        n_buy = n_sell = n_hold = 0
        models = self.models
        for name, vote in breakdown.items():
            if name in PSEUDO_MODELS:
                self.pseudo_entries += 1
                continue
            acc = models.get(name)
            if acc is None:
                acc = self._accumulator(name)
            acc.present += 1
            if not isinstance(vote, _Vote):
                acc.bad["not_an_object"] += 1
                acc.examples.setdefault("not_an_object", entry_id.decode("ascii", "replace"))
                continue
            if not isinstance(vote.inactive, bool) or not isinstance(vote.shadow, bool):
                # "inactive": "true" or 1 is not coerced: the vote cannot be placed, so it is malformed.
                acc.bad["bad_flag"] += 1
                acc.examples.setdefault("bad_flag", entry_id.decode("ascii", "replace"))
                continue
            if vote.inactive is True:
                acc.inactive += 1
                continue
            code = ACTION_CODES.get(vote.action) if isinstance(vote.action, str) else None
            if code is None:
                acc.bad["unknown_action"] += 1
                acc.examples.setdefault("unknown_action", entry_id.decode("ascii", "replace"))
                continue
            kind, conf = classify_confidence(vote.confidence)
            if kind is not None:
                acc.invalid[kind] += 1
                acc.examples.setdefault(kind, entry_id.decode("ascii", "replace"))
                continue
            if conf > 1.0:
                acc.above_one += 1
                acc.examples.setdefault("above_one", entry_id.decode("ascii", "replace"))
            acc.event_idx.append(index)
            acc.action.append(code)
            acc.conf.append(conf)
            if vote.shadow is True:
                acc.shadow += 1
            elif code == 0:
                n_buy += 1
            elif code == 1:
                n_sell += 1
            else:
                n_hold += 1
        self.votes.extend((n_buy, n_sell, n_hold))

    def build(self) -> Telemetry:
        models = {}
        for name, acc in sorted(self.models.items()):
            event_idx, action, conf = acc.columns()
            models[name] = ModelColumns(
                name=name, event_idx=event_idx, action=action, conf=conf, shadow=acc.shadow,
                defects=VoteDefects(present=acc.present, inactive=acc.inactive, invalid_confidence=dict(acc.invalid),
                                    above_one=acc.above_one, bad_votes=dict(acc.bad)),
                examples=dict(acc.examples),
            )
        return Telemetry(
            read=self.read,
            evaluated=self.evaluated,
            skipped=dict(self.skipped),
            skip_examples=dict(self.skip_examples),
            first_id=self.first_id.decode("ascii", "replace") if self.first_id is not None else None,
            last_id=self.last_id.decode("ascii", "replace") if self.last_id is not None else None,
            event_ms=np.frombuffer(self.event_ms, dtype=np.int64).copy(),
            votes=np.frombuffer(self.votes, dtype=np.int16).reshape(-1, 3).copy(),
            models=models,
            pseudo_entries=self.pseudo_entries,
            **_sorted_symbols(np.frombuffer(self.symbol, dtype=np.int32),
                              [name for name, code in self._symbol_codes.items() if code != NO_SYMBOL]),
            entry_price=np.frombuffer(self.entry_price, dtype=np.float64).copy(),
        )


def _sorted_symbols(codes: np.ndarray, names: Sequence[str | None]) -> dict[str, Any]:
    """Renumber symbol codes (``names[code]``) by sorted name: the ``symbol``/``symbol_names`` fields."""
    ordered = tuple(sorted(str(name) for name in names))
    index = {name: code for code, name in enumerate(ordered)}
    # The last slot maps NO_SYMBOL (-1) to itself.
    lookup = np.array([index[str(name)] for name in names] + [NO_SYMBOL], dtype=np.int32)
    return {"symbol": lookup[codes], "symbol_names": ordered}


_SKIPPED = object()


def _page_suspect(joined: bytes, intents: list[_StrictIntent]) -> bool:
    votes = list(chain.from_iterable(i.model_breakdown.values() for i in intents if i.model_breakdown))
    top = len(intents) - list(map(_TOP_CONFIDENCE, intents)).count(msgspec.UNSET)
    inactive = len(votes) - list(map(_INACTIVE, votes)).count(msgspec.UNSET)
    shadow = len(votes) - list(map(_SHADOW, votes)).count(msgspec.UNSET)
    return page_suspect(joined, len(votes), top, inactive, shadow)


def _vote_from_obj(entry: Any) -> Any:
    """The slow path's equivalent of the fast decoder's union: an object becomes a _Vote, else kept."""
    if not isinstance(entry, dict):
        return entry
    return _Vote(
        action=entry.get("action", msgspec.UNSET),
        confidence=entry.get("confidence", msgspec.UNSET),
        inactive=entry.get("inactive", False),
        shadow=entry.get("shadow", False),
    )


def merge_telemetry(parts: Sequence[Telemetry]) -> Telemetry:
    """Join the telemetry of consecutive, non-overlapping windows (oldest first) into one, as if read at once."""
    if not parts:
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
            event_idx=np.concatenate([c.event_idx + off for c, off in pieces]),
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


def _merged_symbols(parts: Sequence[Telemetry]) -> dict[str, Any]:
    """Each part numbers its own symbols; rebase them on the sorted union of names."""
    ordered = tuple(sorted({name for p in parts for name in p.symbol_names}))
    index = {name: code for code, name in enumerate(ordered)}
    columns = []
    for part in parts:
        lookup = np.array([index[name] for name in part.symbol_names] + [NO_SYMBOL], dtype=np.int32)
        columns.append(lookup[part.symbol])
    return {"symbol": np.concatenate(columns).astype(np.int32), "symbol_names": ordered}
