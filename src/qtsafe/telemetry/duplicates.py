"""Duplicate keys in a payload: JSON decoders keep the last one silently; qtsafe counts the entry as a defect.

The producer (Python's json.dumps of a dict) never writes a key twice, so a payload that does was written by
something else, and which of its values the engine acted on is unknowable. Two levels of cost:

* ``page_suspect`` — on the reader's batch path, up to five substring counts over the page's joined payloads
  (``"model_breakdown"``, ``"action"``, ``"confidence"``, and ``"inactive"``, ``"shadow"`` when a vote carries
  them) against what the strict decoder kept, and a page with an escaped letter sent to the careful path. A
  repeated model name, a repeated ``model_breakdown`` object or a repeated vote field adds a token the decoded
  structs do not account for. (Repeats elsewhere in the payload do not change a verdict: the batch path reads
  nothing else.)
* ``has_duplicate_vote_keys`` — exact: ``json.loads`` with an ``object_pairs_hook`` that sees every pair, for the
  keys the gate reads. Used on the careful path, one payload at a time, where a page goes anyway when anything
  about it is unusual. ``has_duplicate_keys`` is the same over every key (feature sanity reads them all).
"""

from __future__ import annotations

import json
import re
from typing import Any


class _Duplicate(Exception):
    pass


class _Pairs(dict[str, Any]):
    """A decoded object that remembers which of its keys were written more than once."""

    repeated: frozenset[str] = frozenset()


def _pairs(pairs: list[tuple[str, Any]]) -> _Pairs:
    out = _Pairs(pairs)
    if len(out) != len(pairs):
        keys = [k for k, _ in pairs]
        out.repeated = frozenset(k for k in out if keys.count(k) > 1)
    return out


def _strict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Duplicate
    return out


def has_duplicate_keys(payload: bytes) -> bool:
    """True if any JSON object in ``payload`` names a key twice. Unparseable payloads return False: the
    reader's own decoders classify those (bad_json, payload_not_object, ...)."""
    try:
        json.loads(payload, object_pairs_hook=_strict)
    except _Duplicate:
        return True
    except (ValueError, RecursionError, UnicodeDecodeError):
        return False
    return False


_VOTE_KEYS = frozenset({"action", "confidence", "inactive", "shadow"})


def has_duplicate_vote_keys(payload: bytes) -> bool:
    """True if a key the gate reads is written twice: a top-level ``model_breakdown`` or ``confidence``, a model
    name in the breakdown, or a vote's action, confidence or flags. The same keys :func:`page_suspect` counts,
    so the reader's two paths classify a payload alike."""
    try:
        data = json.loads(payload, object_pairs_hook=_pairs)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return False
    if not isinstance(data, _Pairs):
        return False
    if data.repeated & {"model_breakdown", "confidence"}:
        return True
    breakdown = data.get("model_breakdown")
    if not isinstance(breakdown, _Pairs):
        return False
    if breakdown.repeated:
        return True
    return any(isinstance(vote, _Pairs) and vote.repeated & _VOTE_KEYS for vote in breakdown.values())


# A JSON escape of a character from U+0040 to U+007F (letters, "_"): a key the decoder reads could be written
# "\u0061ction", which the raw counts below do not see. The producer's json.dumps never writes one.
_ESCAPED_ASCII = re.compile(rb"\\u00[4-7][0-9a-fA-F]")


def page_suspect(joined: bytes, votes: int, top_level_confidences: int, inactive: int, shadow: int, *,
                 breakdowns: int) -> bool:
    """True when the page's raw bytes name a vote key more often than the strict decoder kept it: send the page
    to the careful path. The quoted names are counted without their colon, so a key written with space before
    it counts too; a string *value* "action" (never the producer's) only costs a careful pass.

    A flag no decoded vote carries (``inactive``/``shadow`` 0) is not counted: a key written twice in a vote
    leaves it set there, and a repeated model name or ``model_breakdown`` object already adds ``"action"``
    tokens (every strict vote has one). ``model_breakdown`` itself is counted against the entries that name it
    (``breakdowns``): an earlier ``null`` or ``{}`` copy adds no vote token. A page with an escaped letter goes
    to the careful path, whose decoder sees keys as the engine's json.loads does. (Each count is a scan of the
    page: ~0.4-0.6 ms per 1,000 entries.)
    """
    return ((b"\\" in joined and _ESCAPED_ASCII.search(joined) is not None)
            or joined.count(b'"model_breakdown"') != breakdowns
            or joined.count(b'"action"') != votes
            or joined.count(b'"confidence"') != votes + top_level_confidences
            or (inactive > 0 and joined.count(b'"inactive"') != inactive)
            or (shadow > 0 and joined.count(b'"shadow"') != shadow))


def count_keys(value: Any) -> int:
    """Keys in every object of a decoded payload. A decoded payload holding fewer keys than its raw text has
    ``":`` separators has lost some (or writes its separators oddly): only then is the exact check needed."""
    if isinstance(value, dict):
        return len(value) + sum(count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_keys(v) for v in value)
    return 0
