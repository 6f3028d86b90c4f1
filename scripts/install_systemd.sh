#!/usr/bin/env bash
# Install the monitor and watchdog units with this machine's python and base directory: render them into a
# temp dir, verify them there (warnings included), then move them into place and reload systemd.
# Usage: scripts/install_systemd.sh PYTHON BASE_DIR [UNIT_DIR] [SYSTEMCTL]
set -euo pipefail
python=${1:?python interpreter, e.g. /opt/quantum/venvs/ai-engine/bin/python}
base=${2:?base directory, e.g. /home/qt/quantum_trader}
unit_dir=${3:-/etc/systemd/system}
systemctl=${4:-systemctl}
here=$(cd "$(dirname "$0")/.." && pwd)
units=(quantum-qsc-monitor.service quantum-qsc-watchdog.service quantum-qsc-watchdog.timer)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for unit in "${units[@]}"; do
  sed -e "s|/opt/quantum/venvs/ai-engine/bin/python|$python|g" -e "s|/home/qt/quantum_trader|$base|g" \
    "$here/systemd/$unit" > "$stage/$unit"
done
# systemd-analyze exits 0 on keys it ignores, so its warnings about our units count as failures too.
if ! report=$(cd "$stage" && SYSTEMD_UNIT_PATH="$stage:" systemd-analyze verify "${units[@]/#/$stage/}" 2>&1) \
   || grep -q "quantum-qsc" <<<"$report"; then
  echo "$report" >&2
  echo "install-systemd: the rendered units do not verify; nothing installed" >&2
  exit 2
fi
mkdir -p "$unit_dir"
for unit in "${units[@]}"; do
  tmp=$(mktemp "$unit_dir/.$unit.XXXXXX")
  cp "$stage/$unit" "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$unit_dir/$unit"
done
"$systemctl" daemon-reload
"$systemctl" enable --now quantum-qsc-watchdog.timer
echo "installed into $unit_dir; start the monitor after an activation: $systemctl start quantum-qsc-monitor.service"
