"""doctor, incident-bundle and --metrics-file against the fake systemd root and fakeredis."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from qtsafe.doctor import run_doctor
from qtsafe.incident import build_incident_bundle
from qtsafe.metrics import write_metrics
from qtsafe.status import Status
from tests.canary.conftest import Root, run_qtsafe


def test_doctor_all_ok(root: Root, fake_redis, make_stream) -> None:
    make_stream(fake_redis, "healthy", 100)
    root.control(initial="active")
    result = run_doctor(root.settings())
    states = {c.check: c.severity for c in result.checks}
    assert result.status is Status.PASS, [c for c in result.checks if c.severity != "OK"]
    assert result.summary == f"OK: all {len(result.checks)} checks pass"
    assert {"redis", "telemetry", "unit", "env-file", "systemd-dir", "journal"} <= states.keys()


def test_doctor_names_what_to_fix(root: Root, fake_redis, make_stream) -> None:
    make_stream(fake_redis, "stalled", 100)  # newest entry 30 minutes old
    root.control(initial="inactive")
    root.env_file.unlink()
    result = run_doctor(root.settings())
    by_name = {c.check: c for c in result.checks}
    assert result.status is Status.FAIL
    assert by_name["telemetry"].severity == "WARN" and "30.0 min old" in by_name["telemetry"].message
    assert by_name["unit"].severity == "FAIL" and "systemctl start" in by_name["unit"].fix
    assert by_name["env-file"].severity == "FAIL"


def test_doctor_cli_redis_down(root: Root) -> None:
    done = run_qtsafe(root, "doctor", "--redis-url", "redis://127.0.0.1:1/0")
    assert done.returncode == 2
    assert done.stdout.startswith("FAIL: ")
    assert "  FAIL redis " in done.stdout and "fix: start redis" in done.stdout


def test_incident_bundle_collects_and_names_what_is_missing(root: Root, activated, fake_redis, make_stream) -> None:
    settings = activated["settings"]
    make_stream(fake_redis, "healthy", 50)
    result = build_incident_bundle(settings)
    assert result.path is not None and result.path.name.startswith("qtsafe_incident_")
    with tarfile.open(result.path) as tar:
        names = tar.getnames()
        prefix = names[0].split("/")[0]
        manifest = json.loads(tar.extractfile(f"{prefix}/MANIFEST.json").read())
        journal = tar.extractfile(f"{prefix}/logs/qsc_canary.jsonl").read()
    assert journal == settings.journal_path.read_bytes()
    for member in ("data/qsc_canary_state.json", "unit/journal.txt", "unit/properties.txt", "canary/status.json",
                   "telemetry/canary_window.jsonl"):
        assert f"{prefix}/{member}" in names, member
    assert all(len(h) == 64 for h in manifest["files"].values())
    assert "ai-engine.env" not in " ".join(names)  # secrets stay out
    # No reports were written in this root: said, not hidden.
    assert result.status is Status.WAIT and manifest["missing"][0]["item"] == "reports"


def test_incident_bundle_unwritable_dir_is_exit_2(root: Root, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = run_qtsafe(root, "incident-bundle", "--out", str(blocker / "sub"))
    assert done.returncode == 2 and done.stderr.startswith("qtsafe: error: cannot")


def test_metrics_keep_other_commands_and_record_errors(tmp_path: Path, run_cli, fake_redis, make_stream) -> None:
    prom = tmp_path / "qtsafe.prom"
    write_metrics(prom, "feature-sanity", Status.PASS, {})
    make_stream(fake_redis, "collapsed", 300)
    r = run_cli("--metrics-file", str(prom), "quality-gate", "--mode", "canary", "--after", "2000-01-01",
                "--base-dir", str(tmp_path))
    assert r.exit_code == 2
    text = prom.read_text()
    assert 'qtsafe_last_exit_code{command="feature-sanity"} 0' in text
    assert 'qtsafe_last_exit_code{command="quality-gate"} 2' in text
    assert 'qtsafe_model_passed{command="quality-gate",model="patchtst"} 0' in text
    assert 'qtsafe_model_passed{command="quality-gate",model="xgb"} 1' in text
    assert "# TYPE qtsafe_model_confidence_std gauge" in text
    r = run_cli("--metrics-file", str(prom), "scoreboard", "--redis-url", "redis://127.0.0.1:1/0")
    assert r.exit_code == 2
    text = prom.read_text()
    assert 'qtsafe_last_exit_code{command="scoreboard"} 2' in text
    assert 'qtsafe_last_exit_code{command="quality-gate"} 2' in text  # kept


def test_incident_bundle_carries_the_charts(root: Root, activated, fake_redis, make_stream) -> None:
    settings = activated["settings"]
    make_stream(fake_redis, "healthy", 50)
    reports = settings.reports_dir
    reports.mkdir(parents=True, exist_ok=True)
    for name in ("quality_gate_20260110_060000_post_cutover.md", "quality_gate_20260110_060000_post_cutover.json",
                 "quality_gate_20260110_060000_post_cutover.png", "stray.txt"):
        (reports / name).write_bytes(b"x")
    result = build_incident_bundle(settings)
    assert result.path is not None
    with tarfile.open(result.path) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"reports/quality_gate_20260110_060000_post_cutover.png",
            "reports/quality_gate_20260110_060000_post_cutover.md"} <= names
    assert "reports/stray.txt" not in names
