"""Turn raw stream entries into numpy columns, accounting for every entry.

The fast path decodes only ``model_breakdown``, ``symbol`` and ``entry_price`` into typed msgspec structs (no
per-event dicts kept).
Anything the fast path refuses (bare ``NaN``/``Infinity`` tokens, odd shapes) goes through the slow,
generic path, which applies exactly the same rules, so a defect is classified the same way whichever
decoder saw it. Nothing is coerced: a confidence given as the string "0.74" is non-numeric.

This module is the builder. The payload structs, decoders and value rules are in ``decode``, the result
columns in ``columns`` and the joining of windows in ``merge``; their public names stay importable from here.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable
from itertools import chain
from typing import Any

import msgspec
import numpy as np

from qtsafe.telemetry.columns import NO_SYMBOL as NO_SYMBOL
from qtsafe.telemetry.columns import SKIP_REASONS as SKIP_REASONS
from qtsafe.telemetry.columns import ModelColumns as ModelColumns
from qtsafe.telemetry.columns import Telemetry as Telemetry
from qtsafe.telemetry.columns import _ModelAccumulator, _sorted_symbols
from qtsafe.telemetry.decode import (
    _ACTION,
    _BATCH,
    _BREAKDOWN,
    _CONFIDENCE,
    _ENTRY_PRICE,
    _FAST,
    _INACTIVE,
    _SHADOW,
    _SYMBOL,
    _TOP_CONFIDENCE,
    _StrictIntent,
    _Vote,
    _vote_from_obj,
)
from qtsafe.telemetry.decode import EVENT_TYPE as EVENT_TYPE
from qtsafe.telemetry.decode import RawEntry as RawEntry
from qtsafe.telemetry.decode import classify_confidence as classify_confidence
from qtsafe.telemetry.decode import classify_price as classify_price
from qtsafe.telemetry.decode import first_fields as first_fields
from qtsafe.telemetry.decode import symbol_name as symbol_name
from qtsafe.telemetry.duplicates import has_duplicate_vote_keys, page_suspect
from qtsafe.telemetry.merge import merge_telemetry as merge_telemetry
from qtsafe.votes import ACTION_CODES, VoteDefects

# Kept importable from here for rolling.py; they live in qtsafe.votes. Remove when rolling imports them there.
from qtsafe.votes import BAD_VOTE_KINDS as BAD_VOTE_KINDS
from qtsafe.votes import INVALID_KINDS as INVALID_KINDS

PSEUDO_MODELS = frozenset({"fallback"})
_SKIPPED = object()  # what _slow_breakdown returns for an entry it counted as skipped


def _json_array(payloads: list[bytes]) -> bytes:
    """``b"[" + b",".join(payloads) + b"]"`` in one copy of the page, not three (~1 MB a page)."""
    if len(payloads) == 1:
        return b"[" + payloads[0] + b"]"
    return b",".join([b"[" + payloads[0], *payloads[1:-1], payloads[-1] + b"]"])


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
        try:
            # Common case: every entry is a trade.intent in the producer's field order.
            payloads = [f[3] for _, f in entries
                        if f[0] == b"event_type" and f[1] == EVENT_TYPE and f[2] == b"payload"]
        except IndexError:
            payloads = []
        if len(payloads) == len(entries):
            ids = [entry_id for entry_id, _ in entries]
        else:
            ids, payloads = self._select_intents(entries)
        if not ids:
            return
        joined = _json_array(payloads)
        try:
            # One decode call for the whole page into strict structs: the common, well-formed case.
            intents = _BATCH.decode(joined)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            # RecursionError: one payload nested deeper than the decoder goes; the careful path finds which.
            intents = None
        if intents is None or len(intents) != len(payloads) or not self._feed_batch(ids, intents, joined):
            self._feed_careful(ids, payloads)

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

    def _feed_batch(self, ids: list[bytes], intents: list[_StrictIntent], joined: bytes) -> bool:
        """A page of well-formed intents, turned into columns with numpy instead of a loop per vote.

        Returns False, having fed nothing, when the page's raw text names a vote key more often than the decoder
        kept it (``duplicates.page_suspect``): the careful path then finds and counts the entry.
        """
        breakdowns: list[Any] = list(map(_BREAKDOWN, intents))
        written = len(breakdowns) - breakdowns.count(msgspec.UNSET)  # entries that name model_breakdown
        missing: list[bytes] = []
        kept: list[_StrictIntent] = intents
        event_ids = ids
        if written < len(breakdowns) or None in breakdowns:  # absent or null: counted as no_breakdown
            present = [isinstance(bd, dict) for bd in breakdowns]
            missing = [entry_id for entry_id, ok in zip(ids, present, strict=True) if not ok]
            kept = [intent for intent, ok in zip(intents, present, strict=True) if ok]
            event_ids = [entry_id for entry_id, ok in zip(ids, present, strict=True) if ok]
            breakdowns = [bd for bd, ok in zip(breakdowns, present, strict=True) if ok]
        votes = list(chain.from_iterable(map(dict.values, breakdowns)))
        inactive_flags = list(map(_INACTIVE, votes))
        shadow_flags = list(map(_SHADOW, votes))
        count = len(votes)
        n_inactive = count - inactive_flags.count(msgspec.UNSET)
        n_shadow = count - shadow_flags.count(msgspec.UNSET)
        top = len(intents) - list(map(_TOP_CONFIDENCE, intents)).count(msgspec.UNSET)
        if page_suspect(joined, count, top, n_inactive, n_shadow, breakdowns=written):
            return False
        for entry_id in missing:
            self._skip("no_breakdown", entry_id)
        n = len(kept)
        if n == 0:
            return True
        base = self.evaluated
        self.evaluated += n
        self.event_ms.extend([int(entry_id.partition(b"-")[0]) for entry_id in event_ids])
        self._batch_market(kept, n)
        if not count:
            self.votes.extend([0] * (3 * n))
            return True
        codes = self._name_codes
        names = list(chain.from_iterable(breakdowns))
        for name in set(names) - codes.keys():
            codes[name] = len(codes)
        # map() with C-level callables: no Python frame per vote (this loop is the reader's hot path).
        model = np.fromiter(map(codes.__getitem__, names), dtype=np.int32, count=count)
        conf = np.fromiter(map(_CONFIDENCE, votes), dtype=np.float64, count=count)
        action = np.fromiter(map(ACTION_CODES.__getitem__, map(_ACTION, votes)), dtype=np.int8, count=count)
        # UNSET (an absent flag) is falsy; a page where no vote writes a flag skips its column.
        inactive = np.fromiter(inactive_flags, dtype=bool, count=count) if n_inactive else np.zeros(count, bool)
        shadow = np.fromiter(shadow_flags, dtype=bool, count=count) if n_shadow else np.zeros(count, bool)
        event = np.repeat(np.arange(n, dtype=np.int64), list(map(len, breakdowns)))
        pseudo_codes = [codes[p] for p in PSEUDO_MODELS if p in codes]
        pseudo = np.isin(model, pseudo_codes) if pseudo_codes else np.zeros(count, bool)
        active = ~pseudo & ~inactive
        negative = active & (conf < 0)
        infinite = active & np.isinf(conf)
        valid = active & ~negative & ~infinite
        voting = valid & ~shadow
        per_event = np.bincount(event[voting] * 3 + action[voting], minlength=3 * n)
        self.votes.frombytes(per_event.astype(np.int16).tobytes())
        self.pseudo_entries += int(np.count_nonzero(pseudo))
        self._batch_models(event_ids, base, model, event, action, conf, inactive, shadow, negative, infinite, valid)
        return True

    def _batch_market(self, kept: list[_StrictIntent], n: int) -> None:
        """The page's symbols (as codes) and entry prices, for outcome scoring."""
        symbols = list(map(_SYMBOL, kept))
        sym_codes = self._symbol_codes
        for symbol in dict.fromkeys(symbols).keys() - sym_codes.keys():
            sym_codes[symbol] = len(sym_codes) - 2
        self.symbol.frombytes(np.fromiter(map(sym_codes.__getitem__, symbols), dtype=np.int32, count=n).tobytes())
        # None (a missing or null price) becomes NaN in fromiter; non-finite and non-positive prices too, below.
        price = np.fromiter(map(_ENTRY_PRICE, kept), dtype=np.float64, count=n)
        price[~(price > 0) | np.isinf(price)] = np.nan
        self.entry_price.frombytes(price.tobytes())

    def _batch_models(self, event_ids: list[bytes], base: int, model: np.ndarray, event: np.ndarray,
                      action: np.ndarray, conf: np.ndarray, inactive: np.ndarray, shadow: np.ndarray,
                      negative: np.ndarray, infinite: np.ndarray, valid: np.ndarray) -> None:
        """One page's votes split by model: counters from bincounts, each model's valid votes as one chunk."""
        names_by_code = {code: name for name, code in self._name_codes.items()}
        size = len(names_by_code)
        pseudo = {self._name_codes[p] for p in PSEUDO_MODELS if p in self._name_codes}
        present = np.bincount(model, minlength=size)
        inactive_by = np.bincount(model[inactive], minlength=size)
        shadow_by = np.bincount(model[valid & shadow], minlength=size)
        above = valid & (conf > 1.0)
        flagged = negative | infinite | above
        if flagged.any():  # rare: defects are counted and an example kept, model by model
            for code in np.unique(model[flagged]).tolist():
                acc = self._accumulator(names_by_code[code])
                mine = model == code
                kinds = (("negative", mine & negative), ("inf", mine & infinite), ("above_one", mine & above))
                for kind, mask in kinds:
                    hits = np.flatnonzero(mask)
                    if hits.size:
                        if kind == "above_one":
                            acc.above_one += int(hits.size)
                        else:
                            acc.invalid[kind] += int(hits.size)
                        acc.examples.setdefault(kind, event_ids[int(event[hits[0]])].decode("ascii", "replace"))
        # Each model's valid votes in event order: one stable sort of the page's valid votes by model code.
        rows = np.flatnonzero(valid)
        by_model = model[rows]
        order = np.argsort(by_model, kind="stable")
        rows, by_model = rows[order], by_model[order]
        bounds = np.searchsorted(by_model, np.arange(size + 1))
        for code in np.flatnonzero(present).tolist():
            if code in pseudo:
                continue
            acc = self._accumulator(names_by_code[code])
            acc.present += int(present[code])
            acc.inactive += int(inactive_by[code])
            acc.shadow += int(shadow_by[code])
            acc.flush()
            mine = rows[bounds[code]:bounds[code + 1]]
            acc.chunks.append((event[mine] + base, action[mine], conf[mine]))

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

