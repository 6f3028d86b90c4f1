#!/usr/bin/env bash
# Runbook name: immediate rollback of the QSC canary to the recorded baseline, verified and journaled.
# Usage: bash ops/model_safety/qsc_rollback.sh [reason...]   (exit code is qtsafe's: 0 ok, 2 failed)
set -u
reason="${*:-qsc_rollback.sh}"
if command -v qtsafe >/dev/null 2>&1; then
    exec qtsafe canary rollback --yes --reason "$reason"
fi
exec "${PYTHON:-python3}" -m qtsafe canary rollback --yes --reason "$reason"
