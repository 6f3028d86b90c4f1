"""CLI contract: exact exit codes, the first line of output, and one-line errors (never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, STREAM

AFTER = "2000-01-01T00:00:00Z"


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def test_canary_gate_passes_healthy(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    make_stream(fake_redis, "healthy", 600)
    r = run_cli("quality-gate", "--mode", "canary", "--after", AFTER, "--base-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert first_line(r.stdout) == "PASS: quality gate (canary) - 600 events, models lgbm, nhits, patchtst, xgb: " \
                                   "all checks green"
    reports = sorted(p.name for p in (tmp_path / "reports" / "safety").iterdir())
    assert len(reports) == 2 and reports[0].endswith("_post_cutover.json") and "_collection" not in reports[0]
    md = (tmp_path / "reports" / "safety" / reports[1]).read_text()
    assert md.startswith("# PASS: quality gate (canary)")


def test_collection_mode_never_exits_0(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    make_stream(fake_redis, "healthy", 600)
    r = run_cli("quality-gate", "--mode", "collection", "--after", AFTER, "--base-dir", str(tmp_path))
    assert r.exit_code == 3
    assert first_line(r.stdout).startswith("COLLECTED: quality gate (collection)")
    names = [p.name for p in (tmp_path / "reports" / "safety").iterdir()]
    assert all(n.endswith("_collection_post_cutover.md") or n.endswith("_collection_post_cutover.json")
               for n in names)


def test_collection_needs_100_canary_needs_200(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    make_stream(fake_redis, "healthy", 150)
    r = run_cli("quality-gate", "--mode", "collection", "--after", AFTER, "--base-dir", str(tmp_path))
    assert r.exit_code == 3
    r = run_cli("quality-gate", "--mode", "canary", "--after", AFTER, "--base-dir", str(tmp_path))
    assert r.exit_code == 2
    assert first_line(r.stdout) == "FAIL: quality gate (canary) - lgbm: only 150 evaluated events in the whole " \
                                   "window, need 200 (+3 more)"


def test_cutover_excludes_older_events(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    entries = make_stream(fake_redis, "healthy", 600)
    cutover_ms = int(entries[300]["id"].split("-")[0])
    import datetime as dt
    cutover = dt.datetime.fromtimestamp(cutover_ms / 1000, tz=dt.UTC).isoformat()
    r = run_cli("quality-gate", "--mode", "canary", "--after", cutover, "--base-dir", str(tmp_path), "--json")
    data = json.loads(r.stdout)
    assert data["reconciliation"]["read"] == 300
    assert data["window"]["start_id"] == f"{cutover_ms}-0"


def test_model_filter_and_unknown_model(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    make_stream(fake_redis, "collapsed", 600)
    ok = run_cli("quality-gate", "--mode", "canary", "--after", AFTER, "--model", "xgb", "--base-dir", str(tmp_path))
    assert ok.exit_code == 0
    bad = run_cli("quality-gate", "--mode", "canary", "--after", AFTER, "--model", "tft", "--base-dir", str(tmp_path))
    assert bad.exit_code == 2
    assert "tft: no entries for this model in the window" in first_line(bad.stdout)


def test_json_is_the_same_result(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    make_stream(fake_redis, "nan-burst", 400)
    r = run_cli("quality-gate", "--mode", "canary", "--after", AFTER, "--base-dir", str(tmp_path), "--json")
    assert r.exit_code == 2
    data = json.loads(r.stdout)
    assert data["status"] == "FAIL"
    assert any(f["check"] == "invalid_confidence" and f["subject"] == "xgb" for f in data["findings"])
    twin = json.loads(Path(data["json_path"]).read_text())
    assert twin["findings"] == data["findings"]


def test_baseline_window(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    entries = make_stream(fake_redis, "healthy", 800)
    cut = int(entries[400]["id"].split("-")[0]) / 1000
    import datetime as dt
    after = dt.datetime.fromtimestamp(cut, tz=dt.UTC).isoformat()
    r = run_cli("quality-gate", "--mode", "canary", "--after", after, "--baseline-window", "--json",
                "--base-dir", str(tmp_path))
    data = json.loads(r.stdout)
    assert data["baseline_events"] == 400
    assert all(m["baseline"]["n"] > 0 for m in data["models"])
    md = Path(data["report_path"]).read_text()
    assert "## Before the cutover (baseline window)" in md


def test_after_is_required(run_cli) -> None:
    r = run_cli("quality-gate", "--mode", "canary")
    assert r.exit_code == 2
    assert r.stderr.startswith("qtsafe: error: --after is required")


@pytest.mark.parametrize(("args", "message"), [
    (["quality-gate", "--mode", "canary", "--after", "yesterday"],
     "Invalid value for '--after': not an ISO 8601 timestamp"),
    (["quality-gate", "--mode", "canary", "--after", AFTER, "--until", "1999-01-01"], "is not after the cutover"),
    (["quality-gate", "--mode", "nope", "--after", AFTER], "Usage:"),
    (["quality-gate", "--mode", "canary", "--after", AFTER, "--events", "/nonexistent.jsonl"],
     "qtsafe: error: events file not found"),
])
def test_bad_input_is_one_line_exit_2(run_cli, args: list[str], message: str) -> None:
    r = run_cli(*args)
    assert r.exit_code == 2
    assert message in r.stderr
    assert "Traceback" not in r.output


def test_redis_down(run_cli, tmp_path: Path) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    url = f"redis://user:s3cret@127.0.0.1:{port}/0"
    for command in (["quality-gate", "--mode", "canary", "--after", AFTER], ["feature-sanity"], ["scoreboard"]):
        r = run_cli(*command, "--redis-url", url, "--base-dir", str(tmp_path))
        assert r.exit_code == 2
        assert r.stderr.startswith(f"qtsafe: error: Redis at redis://user:***@127.0.0.1:{port}/0")
        assert "unreachable" in r.stderr and "s3cret" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "reports").exists()


def test_missing_stream_and_wrong_type(fake_redis, run_cli) -> None:
    r = run_cli("quality-gate", "--mode", "canary", "--after", AFTER)
    assert r.exit_code == 2
    assert r.stderr == f"qtsafe: error: stream {STREAM} does not exist at redis://127.0.0.1:6379/0\n"
    fake_redis.set(STREAM, "oops")
    r = run_cli("scoreboard")
    assert r.exit_code == 2
    assert "is a string, not a stream" in r.stderr


def test_empty_window_fails(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    make_stream(fake_redis, "healthy", 50)
    r = run_cli("quality-gate", "--mode", "collection", "--after", "2099-01-01", "--base-dir", str(tmp_path))
    assert r.exit_code == 2
    assert first_line(r.stdout) == "FAIL: quality gate (collection) - no model votes in the window " \
                                   "(0 entries read, 0 evaluated)"


def test_unwritable_reports_dir_keeps_old_report(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    make_stream(fake_redis, "healthy", 400)
    reports = tmp_path / "reports" / "safety"
    reports.mkdir(parents=True)
    (reports / "scoreboard_latest.md").write_text("previous")
    (reports / "scoreboard_latest.json").mkdir()  # a directory where the JSON twin must go: os.replace fails
    r = run_cli("scoreboard", "--base-dir", str(tmp_path))
    assert r.exit_code == 2
    assert r.stderr.startswith("qtsafe: error: cannot write")
    assert (reports / "scoreboard_latest.md").read_text() == "previous"


def test_samples_file_through_every_read_command(run_cli, tmp_path: Path) -> None:
    for command, code in ((["quality-gate", "--mode", "canary", "--after", AFTER], 2), (["scoreboard"], 2),
                          (["feature-sanity"], 2)):
        r = run_cli(*command, "--events", str(SAMPLES), "--base-dir", str(tmp_path))
        assert r.exit_code == code
        assert r.stdout.startswith("FAIL" if command[0] != "scoreboard" else "NO-GO")


def test_malformed_export_line(run_cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(SAMPLES.read_text().splitlines()[0] + "\n{not json\n")
    r = run_cli("scoreboard", "--events", str(bad), "--base-dir", str(tmp_path))
    assert r.exit_code == 2
    assert r.stderr.startswith(f"qtsafe: error: {bad} line 2: not a JSON object")


def test_unexpected_error_is_one_line(monkeypatch, run_cli) -> None:
    def boom(*a, **k):
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr("qtsafe.gate.run_quality_gate", boom)
    r = run_cli("quality-gate", "--mode", "canary", "--after", AFTER)
    assert r.exit_code == 2
    assert r.stderr == "qtsafe: unexpected error: RuntimeError: kaboom second line (run with --debug for a traceback)\n"


def test_simulate_and_export_roundtrip(fake_redis, run_cli, tmp_path: Path) -> None:
    r = run_cli("simulate", "--scenario", "healthy", "--events", "300", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["events"] == 300
    out = tmp_path / "x.jsonl"
    r = run_cli("export", "--out", str(out))
    assert r.exit_code == 0 and r.stdout.startswith("exported 300 entries")
    r = run_cli("quality-gate", "--mode", "canary", "--after", AFTER, "--events", str(out),
                "--base-dir", str(tmp_path))
    assert r.exit_code == 0


def test_last_n(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    make_stream(fake_redis, "healthy", 500)
    r = run_cli("scoreboard", "--last", "250", "--json", "--base-dir", str(tmp_path))
    assert json.loads(r.stdout)["reconciliation"]["read"] == 250


def test_every_command_has_help_with_an_example(run_cli) -> None:
    from qtsafe.cli import cli
    for name in cli.list_commands(None):  # type: ignore[arg-type]
        r = run_cli(name, "--help")
        assert r.exit_code == 0
        assert "Example" in r.stdout, name


def test_loosened_threshold_is_visible(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    make_stream(fake_redis, "healthy", 400)
    r = run_cli("quality-gate", "--mode", "canary", "--after", AFTER, "--base-dir", str(tmp_path),
                env={"QTSAFE_THRESHOLDS_STD_MIN": "0.001"})
    assert "loosened thresholds: thresholds.std_min=0.001 (default 0.05)" in r.stdout
    md = next((tmp_path / "reports" / "safety").glob("*.md")).read_text()
    assert "**Loosened past the default:** `thresholds.std_min` = 0.001" in md


def test_after_auto_asks_systemd_in_utc(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    entries = make_stream(fake_redis, "healthy", 600)
    started_ms = int(entries[100]["id"].split("-")[0])
    import datetime as dt
    started = dt.datetime.fromtimestamp(started_ms // 1000, tz=dt.UTC)
    calls = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n'
                    f'echo "ActiveEnterTimestamp={started.strftime("%a %Y-%m-%d %H:%M:%S")} UTC"\n')
    fake.chmod(0o755)
    r = run_cli("quality-gate", "--mode", "collection", "--after", "auto", "--json", "--base-dir", str(tmp_path),
                env={"QTSAFE_SYSTEMCTL": str(fake), "QTSAFE_UNIT": "quantum-ai_engine.service"})
    data = json.loads(r.stdout)
    assert data["window"]["after_origin"] == "auto (quantum-ai_engine.service ActiveEnterTimestamp)"
    assert data["window"]["start_id"] == f"{int(started.timestamp() * 1000)}-0"
    assert calls.read_text().split() == ["show", "quantum-ai_engine.service", "-p", "ActiveEnterTimestamp",
                                         "--timestamp=utc"]
    fake.write_text('#!/bin/sh\necho "ActiveEnterTimestamp="\n')
    r = run_cli("quality-gate", "--mode", "canary", "--after", "auto", env={"QTSAFE_SYSTEMCTL": str(fake)})
    assert r.exit_code == 2
    assert r.stderr.startswith("qtsafe: error: quantum-ai-engine.service has no usable ActiveEnterTimestamp")
    fake.write_text('#!/bin/sh\necho "ActiveEnterTimestamp=Sat 2026-01-10 06:40:00 CET"\n')
    r = run_cli("quality-gate", "--mode", "canary", "--after", "auto", env={"QTSAFE_SYSTEMCTL": str(fake)})
    assert r.exit_code == 2 and "is not in UTC" in r.stderr


def test_after_auto_on_old_systemd_without_timestamp_option(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    make_stream(fake_redis, "healthy", 300)
    fake = tmp_path / "systemctl"
    # systemd < 248 rejects --timestamp=; asked plainly it prints local time, here UTC, then a non-UTC zone.
    fake.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = "--timestamp=utc" ] && { echo "unknown option" >&2; '
                    'exit 1; }; done\necho "ActiveEnterTimestamp=Sat 2000-01-01 00:00:00 UTC"\n')
    fake.chmod(0o755)
    r = run_cli("scoreboard", "--after", "auto", "--json", "--base-dir", str(tmp_path),
                env={"QTSAFE_SYSTEMCTL": str(fake)})
    assert json.loads(r.stdout)["window"]["start_id"] == "946684800000-0"
    fake.write_text(fake.read_text().replace(" UTC\"", " CET\""))
    r = run_cli("scoreboard", "--after", "auto", env={"QTSAFE_SYSTEMCTL": str(fake)})
    assert r.exit_code == 2 and "is not in UTC" in r.stderr


def test_json_on_error_is_an_object_on_stdout(run_cli) -> None:
    r = run_cli("scoreboard", "--redis-url", "redis://127.0.0.1:1/0", "--json")
    assert r.exit_code == 2
    data = json.loads(r.stdout)
    assert data["status"] == "ERROR" and data["exit_code"] == 2 and "unreachable" in data["error"]


def test_scoreboard_needs_ensemble_evidence(run_cli, tmp_path: Path) -> None:
    # 210 events but voters never overlap enough: per-model checks pass, agreement cannot be judged.
    entries = []
    for i in range(260):
        model = ("xgb", "lgbm")[i % 2]
        votes = {model: {"action": ("BUY", "SELL", "HOLD")[i % 3], "confidence": 0.5 + (i % 40) / 100}}
        entries.append({"id": f"{1_700_000_000_000 + i}-0", "fields": {
            "event_type": "trade.intent", "payload": json.dumps({"model_breakdown": votes})}})
    f = tmp_path / "e.jsonl"
    f.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    env = {"QTSAFE_THRESHOLDS_MIN_EVENTS_CANARY": "100"}
    r = run_cli("scoreboard", "--events", str(f), "--base-dir", str(tmp_path), env=env)
    assert r.exit_code == 3, r.stdout
    assert r.stdout.startswith("WAIT: all 2 models pass, ensemble out of range - ensemble: only 0 events with two")
