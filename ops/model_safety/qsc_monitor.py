#!/usr/bin/env python3
"""Runbook name for ``qtsafe monitor``; the exit code is qtsafe's (0 completed, 2 violation/rolled back, 3 stopped).

    python3 ops/model_safety/qsc_monitor.py                      # 6 h, every 30 s
    python3 ops/model_safety/qsc_monitor.py --duration 3         # hours, as the runbooks mean it (qtsafe: 3h)
    nohup python3 ops/model_safety/qsc_monitor.py > logs/qsc_monitor.log 2>&1 &   # $! is the monitor itself

A bare --duration is hours (qtsafe alone would read seconds); 90m, 2h pass as they are. A bare --interval is
refused: the runbooks never gave it a unit.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _qtsafe_shim import Shim, main  # noqa: E402

SHIM = Shim(name="qsc_monitor.py", command=("monitor",), example="qtsafe monitor --duration 3h --interval 30s",
            units={"--duration": "h"},
            no_bare_numbers={"--interval": "no unit: give one, e.g. 30s"})

if __name__ == "__main__":
    main(SHIM)
