#!/usr/bin/env bash
# Runbook name (older env-key flow): re-run the gate, back up the env file, set ONE KEY= line, restart, verify,
# roll back by itself on failure.  Usage: sudo ops/model_safety/canary_activate.sh <model> <env_key> <value>
set -u
if [ "$#" -ne 3 ]; then
    echo "usage: $0 <model> <env_key> <value>" >&2
    exit 2
fi
if command -v qtsafe >/dev/null 2>&1; then
    exec qtsafe canary activate --model "$1" --env-key "$2" --value "$3"
fi
exec "${PYTHON:-python3}" -m qtsafe canary activate --model "$1" --env-key "$2" --value "$3"
