#!/usr/bin/env bash
# Runbook name (older env-key flow): re-run the gate, back up the env file, set ONE KEY= line, restart, verify,
# roll back by itself on failure.  Usage: sudo ops/model_safety/canary_activate.sh <model> <env_key> <value>
# The old two-argument form (<model> <env_key>) never said which value it wrote, so it is refused with the
# qtsafe command to use instead (exit 2).  Exit code otherwise qtsafe's: 0 verified, 2 refused or failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
if [ "$#" -eq 2 ]; then
    echo "canary_activate.sh: cannot map '<model> <env_key>' without a value; use the qtsafe command instead:" \
         "qtsafe canary activate --model $1 --env-key $2 --value VALUE" >&2
    exit 2
fi
if [ "$#" -ne 3 ]; then
    echo "canary_activate.sh: usage: $0 <model> <env_key> <value> (or: qtsafe canary activate --model MODEL --env-key KEY --value VALUE)" >&2
    exit 2
fi
if command -v qtsafe >/dev/null 2>&1; then
    exec qtsafe canary activate --model "$1" --env-key "$2" --value "$3"
fi
exec "${PYTHON:-python3}" "$here/_qtsafe_shim.py" canary activate --model "$1" --env-key "$2" --value "$3"
