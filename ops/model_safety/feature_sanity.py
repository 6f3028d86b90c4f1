#!/usr/bin/env python3
"""Runbook name for ``qtsafe feature-sanity``; the exit code is qtsafe's (0 PASS, 2 FAIL).

    /opt/quantum/venvs/ai-engine/bin/python ops/model_safety/feature_sanity.py --after "$CUTOVER_ISO" --count 200

--count N becomes --last N: the newest N events after the cutover (the old script read the oldest N).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _qtsafe_shim import Shim, main  # noqa: E402

SHIM = Shim(name="feature_sanity.py", command=("feature-sanity",),
            example="qtsafe feature-sanity --after CUTOVER --last 200", renames={"--count": "--last"})

if __name__ == "__main__":
    main(SHIM)
