"""Votes as the reader counts them and the checks judge them: action codes and per-model defect counters."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

ACTIONS = ("BUY", "SELL", "HOLD")
BUY, SELL, HOLD = 0, 1, 2
# Action name -> its int8 code in the columns (the index in ACTIONS).
ACTION_CODES = {name: code for code, name in enumerate(ACTIONS)}

# Defect kinds the reader counts, in the order reports list them.
INVALID_KINDS = ("missing", "null", "non_numeric", "nan", "inf", "negative")
BAD_VOTE_KINDS = ("not_an_object", "unknown_action", "bad_flag")


@dataclasses.dataclass(frozen=True)
class VoteDefects:
    """What the reader counted for one model besides its valid votes."""

    present: int  # events in which the model appears in the breakdown
    inactive: int  # entries marked inactive (counted, not used in statistics)
    invalid_confidence: Mapping[str, int]  # kind -> count: nan, inf, negative, non_numeric, null, missing
    above_one: int  # valid votes whose confidence is above 1 (calibration defect)
    bad_votes: Mapping[str, int]  # kind -> count: not_an_object, unknown_action

    @property
    def invalid_total(self) -> int:
        return int(sum(self.invalid_confidence.values()))

    @property
    def bad_total(self) -> int:
        return int(sum(self.bad_votes.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "inactive": self.inactive,
            "invalid_confidence": dict(self.invalid_confidence),
            "invalid_total": self.invalid_total,
            "above_one": self.above_one,
            "bad_votes": dict(self.bad_votes),
        }
