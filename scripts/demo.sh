#!/usr/bin/env bash
# The operator's loop on simulated telemetry, with no Redis server: a JSONL export stands in for the stream.
# Prints each command's exit code and report path, and fails if any exit code is not the one the contract gives.
set -u
PYTHON=${PYTHON:-.venv/bin/python}
DEMO=${DEMO_DIR:-demo}
mkdir -p "$DEMO"
QTSAFE=("$PYTHON" -m qtsafe)
CUTOVER=2026-01-10T05:00:00Z
status=0

run() {  # run EXPECTED_EXIT DESCRIPTION ARGS...
  local expected=$1 what=$2; shift 2
  echo
  echo "== $what"
  echo "\$ qtsafe $*"
  "${QTSAFE[@]}" "$@"
  local rc=$?
  echo "-> exit $rc (expected $expected)"
  [ "$rc" -eq "$expected" ] || status=1
}

"${QTSAFE[@]}" simulate --scenario healthy --count 1500 --end 2026-01-10T06:00:00Z --out "$DEMO/healthy.jsonl" || exit 2
"${QTSAFE[@]}" simulate --scenario collapsed --count 1500 --end 2026-01-10T06:00:00Z --out "$DEMO/collapsed.jsonl" || exit 2

export QTSAFE_FEATURE_SANITY_EXPECTED_CONSTANT=position_size_usd,leverage,total_models
run 0 "1. feature sanity (inputs alive?)" feature-sanity --after "$CUTOVER" --events "$DEMO/healthy.jsonl" --base-dir "$DEMO"
run 3 "2. quality gate, collection mode (gathers evidence, never promotes)" \
  quality-gate --mode collection --after "$CUTOVER" --events "$DEMO/healthy.jsonl" --base-dir "$DEMO"
run 0 "3. quality gate, canary mode (>= 200 events per model, all green)" \
  quality-gate --mode canary --after "$CUTOVER" --events "$DEMO/healthy.jsonl" --base-dir "$DEMO"
run 0 "4. scoreboard" scoreboard --after "$CUTOVER" --events "$DEMO/healthy.jsonl" --base-dir "$DEMO"
run 2 "5. the same gate on a collapsed PatchTST (stuck at 0.6150) must block" \
  quality-gate --mode canary --after "$CUTOVER" --events "$DEMO/collapsed.jsonl" --base-dir "$DEMO"

echo
echo "Reports written under $DEMO/reports/safety/:"
ls -1 "$DEMO/reports/safety/"
echo
charts=$(cd "$DEMO/reports/safety" && ls -1 ./*.png 2>/dev/null | sed 's#^\./##')
if [ -n "$charts" ]; then
  echo "Charts drawn (open them beside their reports):"
  echo "$charts" | sed "s#^#  $DEMO/reports/safety/#"
else
  echo "Charts: none drawn (QTSAFE_CHARTS=false, --no-charts, or matplotlib missing: each report says which)."
fi
if [ "$status" -eq 0 ]; then
  echo "demo: every exit code was the one the contract gives"
else
  echo "demo: an exit code differed from the contract" >&2
fi
exit "$status"
