#!/usr/bin/env bash
''':'
# Runbook name: immediate rollback of the QSC canary to the recorded baseline, verified and journaled.
# Usage: bash ops/model_safety/qsc_rollback.sh [reason...]   (exit code is qtsafe's: 0 ok, 2 failed)
# The old tool printed its rollback command as "python3 ops/model_safety/qsc_rollback.sh", so this file is
# also valid Python: bash runs the lines up to "exit", python3 skips them as a string and runs the part below.
set -u
here=$(cd "$(dirname "$0")" && pwd)
reason="${*:-qsc_rollback.sh}"
if command -v qtsafe >/dev/null 2>&1; then
    exec qtsafe canary rollback --yes --reason "$reason"
fi
exec "${PYTHON:-python3}" "$here/_qtsafe_shim.py" canary rollback --yes --reason "$reason"
exit 2
: <<'#END_OF_PYTHON'
'''
import os  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _qtsafe_shim import run  # noqa: E402

run(["canary", "rollback", "--yes", "--reason", " ".join(sys.argv[1:]) or "qsc_rollback.sh"], name="qsc_rollback.sh")
#END_OF_PYTHON
