"""What a stream entry and its payload look like: the msgspec structs and decoders, and the rules that classify
one value (a confidence, a price, a symbol) the same way whichever decoder read it.

Nothing is coerced: a confidence given as the string "0.74" is non-numeric, a price given as a string is missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import attrgetter
from typing import Any, Literal

import msgspec

EVENT_TYPE = b"trade.intent"

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
    # UNSET when the key is absent, so duplicates.page_suspect can count the breakdowns that were written.
    model_breakdown: dict[str, _StrictVote] | None | msgspec.UnsetType = msgspec.UNSET
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
_BREAKDOWN = attrgetter("model_breakdown")


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
