#!/usr/bin/env python3
"""Runbook name for ``qtsafe canary``: activation (default), --rollback, --status. Exit code passed through.

    python3 ops/model_safety/qsc_mode.py --model patchtst --cutover 2026-01-10T05:43:15Z [--dry-run]
    python3 ops/model_safety/qsc_mode.py --dry-run --cutover 2026-01-10T05:43:15Z   # quality gate only
    python3 ops/model_safety/qsc_mode.py --rollback
    python3 ops/model_safety/qsc_mode.py --status
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _qtsafe_shim import Shim, main  # noqa: E402

ACTIVATE = Shim(name="qsc_mode.py", command=("canary", "activate"),
                example="qtsafe canary activate --model MODEL --after CUTOVER [--dry-run]")
ROLLBACK = Shim(name="qsc_mode.py --rollback", command=("canary", "rollback"),
                example="qtsafe canary rollback --yes --reason TEXT")
STATUS = Shim(name="qsc_mode.py --status", command=("canary", "status"), example="qtsafe canary status")
# The runbooks' "Quality Gate Only": a dry run with no model checks the gate and activates nothing.
GATE_ONLY = Shim(name="qsc_mode.py --dry-run", command=("quality-gate",),
                 example="qtsafe quality-gate --mode canary --after CUTOVER",
                 renames={"--cutover": "--after"}, defaults=(("--mode", "canary"),))


def translate(argv: Sequence[str]) -> list[str]:
    argv = list(argv)
    if "--rollback" in argv:
        rest = [a for a in argv if a != "--rollback"]
        return [*ROLLBACK.translate(rest), "--yes", "--reason", "qsc_mode.py --rollback"]
    if "--status" in argv:
        return STATUS.translate([a for a in argv if a != "--status"])
    if "--dry-run" in argv and not any(a == "--model" or a.startswith("--model=") for a in argv):
        return GATE_ONLY.translate([a for a in argv if a != "--dry-run"])
    return ACTIVATE.translate(argv)


if __name__ == "__main__":
    main(ACTIVATE, translate=translate)
