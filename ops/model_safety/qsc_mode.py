#!/usr/bin/env python3
"""Runbook name for ``qtsafe canary``: activation (default), --rollback, --status. Exit code passed through.

    python3 ops/model_safety/qsc_mode.py --model patchtst --cutover 2026-01-10T05:43:15Z [--dry-run]
    python3 ops/model_safety/qsc_mode.py --rollback
"""

from __future__ import annotations

import os
import shutil
import sys


def main(argv: list[str]) -> int:
    if "--rollback" in argv:
        args = ["canary", "rollback", "--yes", "--reason", "qsc_mode.py --rollback"]
        args += [a for a in argv if a != "--rollback"]
    elif "--status" in argv:
        args = ["canary", "status", *[a for a in argv if a != "--status"]]
    else:
        args = ["canary", "activate", *argv]
    qtsafe = shutil.which("qtsafe")
    command = [qtsafe, *args] if qtsafe else [sys.executable, "-m", "qtsafe", *args]
    os.execvp(command[0], command)  # the shell sees qtsafe's own exit code
    return 2  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
