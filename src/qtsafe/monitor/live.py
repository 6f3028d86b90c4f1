"""What the watch and the watchdog need from the live canary: when its stage began, and how to roll it back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from qtsafe.canary import state as canary_state
from qtsafe.config import Settings
from qtsafe.errors import StateError
from qtsafe.timeutil import parse_utc

RollbackFn = Callable[..., Any]


def default_rollback() -> RollbackFn:
    from qtsafe.canary.rollback import rollback

    return rollback


def canary_activated_at(canary: canary_state.ActiveCanary) -> dt.datetime:
    if not canary.activated_at:
        raise StateError("the active canary has no activation time in its state; run 'qtsafe canary status'")
    return parse_utc(canary.activated_at)


def stage_started_at(settings: Settings, canary: canary_state.ActiveCanary) -> dt.datetime:
    """Each stage is watched from when it began: activation, or the promotion to the current share."""
    state = canary_state.read_state(settings)
    stages = state.stages if state is not None else ()
    if stages and isinstance(stages[-1], dict) and stages[-1].get("at") and \
            float(stages[-1].get("share") or -1) == canary.stage:
        return parse_utc(str(stages[-1]["at"]))
    return canary_activated_at(canary)
