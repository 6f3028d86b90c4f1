#!/usr/bin/env bash
# The whole canary loop in a sandbox, no root, no Redis server, no real systemd (make demo-canary):
# simulated telemetry -> gate -> canary activate -> monitor (the canary collapses) -> automatic rollback ->
# canary status -> journal verify. systemctl/journalctl are a stand-in script in <sandbox>/bin that says so;
# every path qtsafe writes (base dir, env file, systemd dir, backups) is inside the sandbox, which is left
# for you to look at. Prints each command, its exit code and report; fails if an exit code is not the expected one.
set -u
here=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-.venv/bin/python}
case "$PYTHON" in /*) ;; *) PYTHON="$PWD/$PYTHON" ;; esac
SANDBOX=${DEMO_DIR:-demo}/canary-sandbox
rm -rf "$SANDBOX"
mkdir -p "$SANDBOX"
SANDBOX=$(cd "$SANDBOX" && pwd)
UNIT=quantum-ai-engine.service
BASE="$SANDBOX/base"
mkdir -p "$BASE/data" "$BASE/logs" "$BASE/reports/safety" "$SANDBOX/etc/systemd/system" "$SANDBOX/etc/quantum" \
         "$SANDBOX/backups" "$SANDBOX/bin"

# The pretend engine: an env file and a unit whose ENSEMBLE_WEIGHTS are the baseline the canary starts from.
printf '# ai-engine environment (demo sandbox)\nREDIS_URL=redis://127.0.0.1:6379/0\nPATCHTST_SHADOW_ONLY=true\n' \
  > "$SANDBOX/etc/quantum/ai-engine.env"
cat > "$SANDBOX/etc/systemd/system/$UNIT" <<UNIT_FILE
[Unit]
Description=AI engine (demo sandbox: never started, the stand-in systemctl only reads this file)
[Service]
EnvironmentFile=$SANDBOX/etc/quantum/ai-engine.env
Environment="ENSEMBLE_WEIGHTS={\"lgbm\":0.25,\"nhits\":0.3,\"patchtst\":0.2,\"xgb\":0.25}"
ExecStart=/bin/false
UNIT_FILE
for name in systemctl journalctl; do
  { echo "#!$PYTHON"; cat "$here/demo_systemctl.py"; } > "$SANDBOX/bin/$name"
  chmod +x "$SANDBOX/bin/$name"
done

# qtsafe sees only the sandbox: settings through QTSAFE_*, the stand-ins first on PATH and named explicitly.
for var in $(env | sed -n 's/^\(QTSAFE_[A-Z0-9_]*\)=.*/\1/p'); do unset "$var"; done
export DEMO_SANDBOX="$SANDBOX" DEMO_SYSTEMD_DIR="$SANDBOX/etc/systemd/system" DEMO_UNIT="$UNIT"
export PATH="$SANDBOX/bin:$PATH" HOME="$SANDBOX"
export QTSAFE_BASE_DIR="$BASE" QTSAFE_SYSTEMD_DIR="$SANDBOX/etc/systemd/system" \
       QTSAFE_ENV_FILE="$SANDBOX/etc/quantum/ai-engine.env" QTSAFE_BACKUP_DIR="$SANDBOX/backups" \
       QTSAFE_UNIT="$UNIT" QTSAFE_SYSTEMCTL="$SANDBOX/bin/systemctl" QTSAFE_JOURNALCTL="$SANDBOX/bin/journalctl" \
       QTSAFE_CANARY_SETTLE_SECONDS=0 QTSAFE_CANARY_RECHECK_SECONDS=0 \
       QTSAFE_FEATURE_SANITY_EXPECTED_CONSTANT=position_size_usd,leverage,total_models
cd "$SANDBOX"
status=0

report_of() {  # the newest report matching a glob, or "-"
  local newest
  newest=$(ls -1t $1 2>/dev/null | head -1)
  echo "${newest:--}"
}

run() {  # run EXPECTED_EXIT DESCRIPTION REPORT_GLOB SHOWN_COMMAND -- ARGV...
  local expected=$1 what=$2 glob=$3 shown=$4; shift 5
  echo
  echo "== $what"
  echo "\$ $shown"
  "$@"
  local rc=$?
  echo "-> exit $rc (expected $expected)  report: $(report_of "$glob")"
  [ "$rc" -eq "$expected" ] || status=1
}

NOW=$("$PYTHON" -c 'import datetime as d; print(d.datetime.now(d.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))')
CUTOVER=$("$PYTHON" -c 'import datetime as d; print((d.datetime.now(d.UTC) - d.timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ"))')
echo "sandbox: $SANDBOX  (cutover $CUTOVER, now $NOW)"
"$PYTHON" -m qtsafe simulate --scenario healthy --count 600 --end "$NOW" --out telemetry.jsonl || exit 2

run 0 "1. quality gate, canary mode, on the simulated telemetry" "base/reports/safety/quality_gate_*.md" \
  "qtsafe quality-gate --mode canary --after $CUTOVER --events telemetry.jsonl" -- \
  "$PYTHON" -m qtsafe quality-gate --mode canary --after "$CUTOVER" --events telemetry.jsonl
run 0 "2. canary activate: re-runs the gate, backs up, patchtst gets 10 % (stand-in systemctl)" \
  "base/data/qsc_canary_weights.json" \
  "qtsafe canary activate --model patchtst --after $CUTOVER --events telemetry.jsonl" -- \
  "$PYTHON" -m qtsafe canary activate --model patchtst --after "$CUTOVER" --events telemetry.jsonl
run 3 "3. canary status: active, no monitor yet" "base/logs/qsc_canary.jsonl" "qtsafe canary status" -- \
  "$PYTHON" -m qtsafe canary status
run 2 "4. monitor, a short watch: PatchTST collapses after 2 s, the monitor rolls it back by itself" \
  "base/reports/safety/qsc_monitor_final_*.md" \
  "qtsafe monitor --duration 2m --interval 1s   (telemetry: an in-memory stream fed live by scripts/demo_canary_watch.py)" -- \
  "$PYTHON" "$here/demo_canary_watch.py" --history telemetry.jsonl --healthy-seconds 2 -- \
  monitor --duration 2m --interval 1s
run 0 "5. canary status: the baseline is back" "base/logs/qsc_canary.jsonl" "qtsafe canary status" -- \
  "$PYTHON" -m qtsafe canary status
run 0 "6. journal verify: the audit trail is intact" "base/logs/qsc_canary.jsonl" "qtsafe journal verify" -- \
  "$PYTHON" -m qtsafe journal verify

echo
echo "What the stand-in systemctl was asked ($SANDBOX/systemd-stand-in/calls.log):"
sed 's/^/  /' "$SANDBOX/systemd-stand-in/calls.log"
echo "Look around: $SANDBOX (base/reports/safety, base/logs/qsc_canary.jsonl, backups/, etc/systemd/system/)"
if [ "$status" -eq 0 ]; then
  echo "demo-canary: every exit code was the one the contract gives"
else
  echo "demo-canary: an exit code differed from the contract" >&2
fi
exit "$status"
