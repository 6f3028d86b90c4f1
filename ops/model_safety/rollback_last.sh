#!/usr/bin/env bash
# Runbook name: restore the newest env file backup not yet restored (run again to walk further back).
# Asks for confirmation on a terminal; pass --yes from scripts.  Usage: sudo ops/model_safety/rollback_last.sh [--yes]
set -u
here=$(cd "$(dirname "$0")" && pwd)
if command -v qtsafe >/dev/null 2>&1; then
    exec qtsafe canary rollback --last-activation --reason "rollback_last.sh" "$@"
fi
exec "${PYTHON:-python3}" "$here/_qtsafe_shim.py" canary rollback --last-activation --reason "rollback_last.sh" "$@"
