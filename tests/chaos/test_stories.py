"""Two whole stories on a real redis-server with the fake systemctl, asserting every file, journal record
and systemctl call along the way:

1. a healthy model from an empty stream to 100 %: telemetry -> feature-sanity -> both gates -> scoreboard
   -> activate -> watch -> 25 % -> watch -> 50 % -> watch -> 100 %, the baseline updated (the watches are
   configured to 2 hours instead of 6 to keep the suite fast: 41 checks each, ~20 ms a check);
2. a model that collapses after activation, rolled back by the monitor on its own.

The watches run the real monitor with a fast clock (time moves only when it sleeps; the producer writes
the telemetry of each interval as it passes). Promotions happen at the fast clock's time, so every stage
starts after the telemetry of the one before.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from qtsafe import monitor as mon
from qtsafe.canary import promote as canary_promote
from qtsafe.canary import state as st
from qtsafe.config import Settings
from qtsafe.status import Status
from qtsafe.telemetry import RedisStreamSource, redis_client
from qtsafe.timeutil import parse_utc
from tests.canary.conftest import BASELINE, UNIT, Root, run_qtsafe
from tests.conftest import STREAM
from tests.monitor.conftest import FastClock, write_events

pytestmark = [pytest.mark.integration, pytest.mark.fault("story")]

INTERVAL = 180  # seconds between checks: the longest the monitor accepts (its heartbeat limit)
PER_TICK = 40
WATCH = 2 * 3600
CANARY_WEIGHTS = {"patchtst": 0.1, "xgb": 0.28125, "lgbm": 0.28125, "nhits": 0.3375}
ROLLBACK_CALLS = ["systemctl daemon-reload", "systemctl restart", "systemctl is-active", "systemctl is-active",
                  "systemctl show", "journalctl -u"]
ACTIVATE_CALLS = ["systemctl is-active", "systemctl show", "systemctl show", *ROLLBACK_CALLS]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(root: Root, under: str) -> list[str]:
    top = root.path / under
    return sorted(str(p.relative_to(root.path)) for p in top.rglob("*") if p.is_file()) if top.exists() else []


def _reports(root: Root) -> list[str]:
    return sorted(p.name for p in (root.base / "reports" / "safety").glob("*.md"))


def _watch(settings: Settings, url: str, scenario_at: Callable[[float], str] = lambda elapsed: "healthy"
           ) -> tuple[mon.MonitorResult, FastClock]:
    """Run the real monitor over the current stage with a fast clock; the producer plays the engine."""
    canary = st.active_canary(settings)
    assert canary is not None
    stages = st.load_state(settings)["stages"]
    start = parse_utc(stages[-1]["at"])
    writer = redis_client(settings)

    def producer(clock: FastClock, before: dt.datetime) -> None:
        scenario = scenario_at((clock.t - start).total_seconds())
        write_events(writer, scenario, PER_TICK, before, clock.t, seed=int(clock.t.timestamp()))

    clock = FastClock(start, producer)
    source = RedisStreamSource(redis_client(settings), STREAM, url=url)
    return mon.run_monitor(settings, source, clock=clock, interval=INTERVAL), clock


def _promote_at(monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., Result], when: dt.datetime, to: str
                ) -> Result:
    """``canary promote`` through the CLI, at the fast clock's time (the stage's watch has just ended)."""
    with monkeypatch.context() as m:
        m.setattr(canary_promote, "utc_now", lambda: when)
        return run_cli("canary", "promote", "--to", to, "--reason", f"clean watch before {to}", "--json")


def test_healthy_model_from_an_empty_stream_to_100_percent(
        root: Root, redis_server: Any, real_redis: Any, run_cli: Callable[..., Result],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = redis_server.url
    monkeypatch.setenv("QTSAFE_REDIS_URL", url)
    monkeypatch.setenv("QTSAFE_MONITOR_DURATION", str(WATCH))  # promote checks the watch lasted this long
    settings = dataclasses.replace(root.settings(), redis_url=url)
    settings = dataclasses.replace(settings, monitor=dataclasses.replace(settings.monitor, duration=WATCH))
    live_before = {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")}

    # 0. Nothing has been written yet: every reader refuses, nothing is judged a pass.
    empty = run_cli("quality-gate", "--mode", "canary", "--after", "auto")
    assert empty.exit_code == 2 and empty.stderr == f"qtsafe: error: stream {STREAM} does not exist at {url}\n"
    assert run_cli("feature-sanity", "--after", "auto").exit_code == 2
    assert not (root.base / "reports").exists()

    # 1. The engine publishes (simulated producer, a real XADD stream) after the unit's last start.
    sim = run_cli("simulate", "--scenario", "healthy", "--events", "1000")
    assert sim.exit_code == 0, sim.output
    assert real_redis.xlen(STREAM) == 1000

    # 2. The operator's loop before a canary: inputs alive, evidence collected, the gate, the scoreboard.
    sanity = run_cli("feature-sanity", "--after", "auto", "--json")
    assert sanity.exit_code == 0, sanity.output
    assert json.loads(sanity.stdout)["events"] == 1000
    collection = run_cli("quality-gate", "--mode", "collection", "--after", "auto", "--json")
    assert collection.exit_code == 3 and json.loads(collection.stdout)["status"] == "COLLECTED"
    gate = run_cli("quality-gate", "--mode", "canary", "--after", "auto", "--json")
    assert gate.exit_code == 0, gate.output
    gate_data = json.loads(gate.stdout)
    assert gate_data["reconciliation"]["read"] == 1000 and gate_data["reconciliation"]["balanced"]
    board = run_cli("scoreboard", "--after", "auto", "--json")
    assert board.exit_code == 0 and json.loads(board.stdout)["status"] == "GO", board.stdout
    reports = _reports(root)
    assert [r.split("_2")[0] for r in reports] == ["feature_sanity", "quality_gate", "quality_gate",
                                                   "scoreboard_latest.md"]
    assert any(r.endswith("_collection_post_cutover.md") for r in reports)
    assert set(root.verbs()) == {"systemctl show"}  # --after auto asked the unit's start time, nothing else
    root.clear_calls()

    # 3. Activation through the real entry point (python -m qtsafe): the gate again, backups, 10 %.
    act = run_qtsafe(root, "canary", "activate", "--model", "patchtst", "--redis-url", url, "--json")
    assert act.returncode == 0, act.stdout + act.stderr
    activation = json.loads(act.stdout)
    assert activation["canary_weights"] == CANARY_WEIGHTS
    assert root.verbs() == ACTIVATE_CALLS
    data = root.base / "data"
    assert json.loads((data / "baseline_model_weights.json").read_text()) == BASELINE
    assert json.loads((data / "qsc_canary_weights.json").read_text()) == CANARY_WEIGHTS
    assert root.dropin.read_bytes() == (data / "systemd_overrides" / "qsc_canary.conf").read_bytes()
    backups = _files(root, "backups")
    assert [Path(b).name.split(".")[0] for b in backups] == ["ai-engine", "baseline_model_weights"]
    (record,) = root.records()
    assert record["action"] == "canary_activated" and record["quality_gate_events"] == 1000
    assert {b["path"]: b["sha256"] for b in record["backups"] if "backups" in b["path"]} == {
        str(root.path / b): _sha(root.path / b) for b in backups}
    assert run_cli("canary", "status").exit_code == 3  # active, not yet watched
    root.clear_calls()

    # 4. Three stages, each watched for the configured duration before the next promotion.
    shares = {"0.1": None, "0.25": None, "0.5": None}
    for share, following in (("0.1", "0.25"), ("0.25", "0.5"), ("0.5", "1.0")):
        early = _promote_at(monkeypatch, run_cli, dt.datetime.now(dt.UTC), following)
        assert early.exit_code == 2 and json.loads(early.stdout)["status"] == "BLOCKED"  # not watched yet
        result, clock = _watch(settings, url)
        assert result.status is Status.COMPLETED, result.summary
        assert result.checks == WATCH // INTERVAL + 1 and result.events == (result.checks - 1) * PER_TICK
        assert root.verbs() == []  # a clean watch touches nothing
        assert not mon.monitor_state_path(settings).exists()
        heartbeat = json.loads(st.heartbeat_path(settings).read_text())
        assert heartbeat["checks"] == result.checks and heartbeat["stage"] == float(share)
        assert root.actions()[-2:] == ["monitoring_started", "monitoring_completed"]
        completed = root.records()[-1]
        assert completed["result"] == "safe" and completed["duration_hours"] == 2 and completed["stage"] == float(share)
        promoted = _promote_at(monkeypatch, run_cli, clock.t + dt.timedelta(seconds=1), following)
        assert promoted.exit_code == 0, promoted.output
        shares[share] = json.loads(promoted.stdout)["weights"]
        assert root.verbs() == ROLLBACK_CALLS  # reload, restart, verified twice, environment, journal proof
        root.clear_calls()
        assert root.records()[-1]["action"] == "canary_promoted"
        assert root.records()[-1]["from_stage"] == float(share) and root.records()[-1]["stage"] == float(following)
        if following != "1.0":
            assert f"QSC_CANARY_WEIGHT={float(following)!r}".encode() in root.dropin.read_bytes()
            assert json.loads((data / "qsc_canary_weights.json").read_text())["patchtst"] == float(following)

    # 5. 100 %: the promoted weights are the new baseline; no canary remains.
    final = shares["0.5"]
    assert final["patchtst"] == 1.0 and sum(final.values()) == pytest.approx(1.0)
    assert json.loads((data / "baseline_model_weights.json").read_text()) == final
    baseline_dropin = st.baseline_dropin_path(settings)
    assert baseline_dropin.exists() and not root.dropin.exists()
    assert not root.state_file.exists() and not (data / "qsc_canary_weights.json").exists()
    assert not (data / "systemd_overrides" / "qsc_canary.conf").exists()
    env = root.live_environment()
    assert "QSC_CANARY_MODEL" not in env and '\\"patchtst\\":1.0' in env
    assert root.unit_file.read_bytes() == live_before[str(root.unit_file.relative_to(root.path))]
    last = root.records()[-1]
    assert last["baseline_updated"] is True and last["baseline_sha256"] == _sha(data / "baseline_model_weights.json")
    assert Path(last["previous_baseline_backup"]["path"]).read_text() == (
        json.dumps(dict(sorted(BASELINE.items())), indent=2) + "\n")
    assert root.actions() == ["canary_activated"] + [
        "monitoring_started", "monitoring_completed", "canary_promoted"] * 3
    records = root.records()
    assert all(r["prev_hash"] == p["hash"] for p, r in zip(records, records[1:], strict=False))
    assert {r["canary_id"] for r in records} == {activation["canary_id"]}
    assert run_cli("journal", "verify").exit_code == 0
    status = run_cli("canary", "status", "--json")
    assert status.exit_code == 0 and json.loads(status.stdout)["summary"].startswith("NO CANARY")
    assert len([r for r in _reports(root) if r.startswith("qsc_monitor_final_")]) == 3


def test_collapsing_model_is_rolled_back_by_the_monitor(
        root: Root, redis_server: Any, real_redis: Any, run_cli: Callable[..., Result]) -> None:
    url = redis_server.url
    settings = dataclasses.replace(root.settings(), redis_url=url)
    live_before = {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")}
    env_before = root.live_environment()
    sim = run_qtsafe(root, "simulate", "--scenario", "healthy", "--events", "600", "--redis-url", url)
    assert sim.returncode == 0, sim.stderr
    act = run_qtsafe(root, "canary", "activate", "--model", "patchtst", "--redis-url", url, "--json")
    assert act.returncode == 0, act.stdout + act.stderr
    activation = json.loads(act.stdout)
    backups = {p: _sha(root.path / p) for p in _files(root, "backups")}
    gate_reports = _reports(root)
    root.clear_calls()

    # Healthy for the first 40 minutes, then patchtst collapses to one confidence value.
    result, _ = _watch(settings, url, lambda elapsed: "collapsed" if elapsed > 40 * 60 else "healthy")
    assert result.status is Status.FAIL
    collapse_check = 40 * 60 // INTERVAL + 1
    assert collapse_check < result.checks <= collapse_check + 200 // PER_TICK + 1
    assert result.violations[0].startswith("patchtst: "), result.violations
    assert result.rollback["status"] == "PASS" and result.rollback["trigger"] == "qsc_monitor_violation"
    assert result.summary.startswith(f"FAIL: canary patchtst rolled back at check {result.checks} - patchtst: ")

    # systemctl: the rollback, and nothing else, during the whole watch.
    assert root.verbs() == ROLLBACK_CALLS
    # Files: the live system byte-identical to before the canary; canary files gone; backups untouched.
    assert {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")} == live_before
    assert root.live_environment() == env_before
    data = root.base / "data"
    assert not root.dropin.exists() and not root.state_file.exists()
    assert not (data / "qsc_canary_weights.json").exists()
    assert not (data / "systemd_overrides" / "qsc_canary.conf").exists()
    assert not mon.monitor_state_path(settings).exists()
    assert json.loads((data / "baseline_model_weights.json").read_text()) == BASELINE
    assert {p: _sha(root.path / p) for p in _files(root, "backups")} == backups
    heartbeat = json.loads(st.heartbeat_path(settings).read_text())
    assert heartbeat["checks"] == result.checks and heartbeat["state"] == "violation"
    final = [r for r in _reports(root) if r not in gate_reports]
    assert final == [result.report_path.name] and final[0].startswith("qsc_monitor_final_")
    report = json.loads(result.json_path.read_text())
    assert report["status"] == "FAIL" and report["violations"] == list(result.violations)
    assert report["rollback"]["status"] == "PASS" and report["timeline"][-1]["state"] == "violation"
    assert result.report_path.read_text().startswith("# FAIL: canary patchtst rolled back")

    # Journal: activation, watch, rollback; the chain verifies through the CLI.
    assert root.actions() == ["canary_activated", "monitoring_started", "rollback_executed"]
    activated, started, rolled = root.records()
    assert activated["canary_id"] == started["canary_id"] == rolled["canary_id"] == activation["canary_id"]
    assert started["stage"] == 0.1 and started["interval_seconds"] == INTERVAL
    assert rolled["trigger"] == "qsc_monitor_violation" and rolled["violations"] == list(result.violations)
    assert rolled["reason"] == f"monitor check {result.checks}: {result.violations[0]}"
    assert rolled["baseline_weights"] == BASELINE and rolled["stage"] == 0.1
    assert rolled["journal_proof"] and rolled["prev_hash"] == started["hash"] and started["prev_hash"] == \
        activated["hash"]
    verify = run_cli("journal", "verify")
    assert verify.exit_code == 0 and verify.stdout.startswith("JOURNAL OK: 3 record(s)")
    status = run_cli("canary", "status")
    assert status.exit_code == 0 and status.stdout.startswith(f"NO CANARY: {UNIT} runs its baseline")
