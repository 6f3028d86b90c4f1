"""Verdicts and the exit-code contract. This is the only place a status becomes an exit code."""

from __future__ import annotations

import enum


class Status(str, enum.Enum):
    """What a command concluded. The value is what reports and JSON show."""

    PASS = "PASS"  # safe to proceed
    GO = "GO"  # scoreboard: healthy and in range
    COMPLETED = "COMPLETED"  # monitor finished with no violation
    FAIL = "FAIL"  # a blocker
    NO_GO = "NO-GO"  # scoreboard: a blocker
    BLOCKED = "BLOCKED"  # refused before any change
    ERROR = "ERROR"  # bad input, unreachable source, unexpected error
    COLLECTED = "COLLECTED"  # evidence gathered, never a promotion
    WAIT = "WAIT"  # needs a person or more time
    STOPPED = "STOPPED"  # stopped before its end, never "safe"


_EXIT_CODES = {
    Status.PASS: 0,
    Status.GO: 0,
    Status.COMPLETED: 0,
    Status.FAIL: 2,
    Status.NO_GO: 2,
    Status.BLOCKED: 2,
    Status.ERROR: 2,
    Status.COLLECTED: 3,
    Status.WAIT: 3,
    Status.STOPPED: 3,
}

EXIT_PASS = 0
EXIT_FAIL = 2
EXIT_COLLECTED = 3


def exit_code_for(status: Status) -> int:
    """Map a verdict to the DESIGN.md contract: 0 pass, 2 fail/blocked/error, 3 collected/wait."""
    return _EXIT_CODES[status]
