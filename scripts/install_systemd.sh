#!/usr/bin/env bash
# Install the monitor and watchdog units with this machine's python and base directory, verify, reload.
# Usage: scripts/install_systemd.sh PYTHON BASE_DIR [UNIT_DIR] [SYSTEMCTL]
set -euo pipefail
python=${1:?python interpreter, e.g. /opt/quantum/venvs/ai-engine/bin/python}
base=${2:?base directory, e.g. /home/qt/quantum_trader}
unit_dir=${3:-/etc/systemd/system}
systemctl=${4:-systemctl}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$unit_dir"
for unit in quantum-qsc-monitor.service quantum-qsc-watchdog.service quantum-qsc-watchdog.timer; do
  tmp=$(mktemp "$unit_dir/.$unit.XXXXXX")
  sed -e "s|/opt/quantum/venvs/ai-engine/bin/python|$python|g" -e "s|/home/qt/quantum_trader|$base|g" \
    "$here/systemd/$unit" > "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$unit_dir/$unit"
done
systemd-analyze verify "$unit_dir/quantum-qsc-monitor.service" "$unit_dir/quantum-qsc-watchdog.service" \
  "$unit_dir/quantum-qsc-watchdog.timer"
"$systemctl" daemon-reload
"$systemctl" enable --now quantum-qsc-watchdog.timer
echo "installed into $unit_dir; start the monitor after an activation: $systemctl start quantum-qsc-monitor.service"
