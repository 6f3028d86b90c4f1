#!/usr/bin/env bash
# Checks, in well under a second, what `make demo` / `make test` need before anything is installed, and stops
# with one line naming the Debian package to install. Usage: scripts/prereqs.sh PYTHON [test]
set -u
python=${1:-python3}
want=${2:-demo}
fail() { echo "qtsafe: missing prerequisite: $1" >&2; exit 2; }

command -v "$python" >/dev/null 2>&1 || fail "$python not found (apt-get install -y python3 python3-venv; Python >= 3.11)"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null \
  || fail "Python >= 3.11 needed, $python is $("$python" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo unknown)"
# ensurepip is what Debian leaves out of a python3 without python3-venv: `python3 -m venv` then half-creates a venv.
"$python" -c 'import venv, ensurepip' 2>/dev/null \
  || fail "$python cannot create a virtual environment (apt-get install -y python3-venv)"
if [ "$want" = test ]; then
  command -v redis-server >/dev/null 2>&1 \
    || fail "redis-server not on PATH: the integration tests start a real one (apt-get install -y redis-server)"
  command -v systemd-analyze >/dev/null 2>&1 \
    || fail "systemd-analyze not on PATH: the unit-file tests verify with it (apt-get install -y systemd)"
fi
exit 0
