#!/usr/bin/env python3
"""Runbook name for ``qtsafe scoreboard``; the exit code is qtsafe's (0 GO, 3 WAIT, 2 NO-GO).

    python3 ops/model_safety/scoreboard.py             # writes reports/safety/scoreboard_latest.md
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _qtsafe_shim import Shim, main  # noqa: E402

SHIM = Shim(name="scoreboard.py", command=("scoreboard",), example="qtsafe scoreboard --after CUTOVER")

if __name__ == "__main__":
    main(SHIM)
