#!/usr/bin/env python3
"""Runbook name for ``qtsafe quality-gate``; the exit code is qtsafe's (0 PASS, 2 FAIL, 3 COLLECTED).

    python3 ops/model_safety/quality_gate.py --after $CUTOVER_TS                 # canary mode, as before
    python3 ops/model_safety/quality_gate.py --mode collection --after "$CUTOVER_ISO"

--mode defaults to canary (the old script's default); every other qtsafe quality-gate option passes through.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _qtsafe_shim import Shim, main  # noqa: E402

SHIM = Shim(name="quality_gate.py", command=("quality-gate",),
            example="qtsafe quality-gate --mode canary --after CUTOVER", defaults=(("--mode", "canary"),))

if __name__ == "__main__":
    main(SHIM)
