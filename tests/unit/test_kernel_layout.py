"""The kernel's one-home rules (issue 11): stream IDs, votes, findings, the cutover route, written once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys

import pytest

from qtsafe.errors import InputError


def test_stream_ids_have_one_home_and_step_across_the_max_sequence() -> None:
    from qtsafe.telemetry import ids

    assert ids.MAX_SEQ == 2**64 - 1
    assert ids.prev_id("5-0") == f"4-{2**64 - 1}"
    assert ids.prev_id("5-3") == "5-2"
    assert ids.prev_id("0-0") is None
    assert ids.next_id(b"7-9") == "7-10"
    assert ids.last_id_of_ms(12) == f"12-{2**64 - 1}"
    moment = dt.datetime(2026, 1, 10, 5, 47, 45, 847000, tzinfo=dt.UTC)
    assert ids.stream_id_for(moment) == "1768024065847-0"
    assert ids.end_id_for(moment) == "1768024065847"
    assert ids.stream_id_time("1768024065847-3") == moment
    with pytest.raises(InputError):
        ids.parse_stream_id("12-x")


def test_the_id_helpers_have_one_home() -> None:
    import qtsafe.timeutil
    from qtsafe.telemetry import sources

    for name in ("stream_id_for", "parse_stream_id", "stream_id_time"):
        assert not hasattr(qtsafe.timeutil, name), f"timeutil.{name}: the ID helpers live in telemetry.ids"
    assert not hasattr(sources, "_next_id")


def test_max_sequence_is_written_once_in_the_library() -> None:
    from pathlib import Path

    import qtsafe

    root = Path(qtsafe.__file__).parent
    holders = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
               if "18446744073709551615" in p.read_text(encoding="utf-8")]
    assert holders == ["telemetry/ids.py"]


def _imports_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_timeutil_does_not_load_the_telemetry_package() -> None:
    loaded = _imports_after("import qtsafe.timeutil")
    assert "qtsafe.telemetry" not in loaded


def _library_sources(package: str) -> dict[str, str]:
    from pathlib import Path

    import qtsafe

    root = Path(qtsafe.__file__).parent / package
    return {p.name: p.read_text(encoding="utf-8") for p in root.rglob("*.py")}


def test_telemetry_never_reaches_up_into_the_live_system() -> None:
    offenders = [name for name, text in _library_sources("telemetry").items() if "qtsafe.canary" in text]
    assert offenders == []


def test_after_auto_is_answered_by_the_callable_the_caller_passes() -> None:
    from qtsafe.telemetry.window import resolve_window

    started = dt.datetime(2026, 1, 10, 5, 40, tzinfo=dt.UTC)
    asked: list[int] = []

    def active_since() -> dt.datetime:
        asked.append(1)
        return started

    window = resolve_window(" AUTO ", "2026-01-10T06:00:00Z", 50, auto=active_since, auto_origin="auto (unit X)")
    assert asked == [1]
    assert (window.after, window.start_id, window.after_origin, window.last) == (
        started, "1768023600000-0", "auto (unit X)", 50)
    assert window.end_id == "1768024800000"
    with pytest.raises(InputError, match="auto"):
        resolve_window("auto")


def test_one_route_takes_text_or_datetimes_alike() -> None:
    from qtsafe.telemetry.window import resolve_window, window_between

    moment = dt.datetime(2026, 1, 10, 5, 40, tzinfo=dt.UTC)
    by_text = resolve_window("2026-01-10T05:40:00Z", "2026-01-10T06:00:00Z")
    by_datetime = resolve_window(moment, moment + dt.timedelta(minutes=20))
    assert (by_text.start_id, by_text.end_id) == (by_datetime.start_id, by_datetime.end_id)
    assert (by_text.after_origin, by_datetime.after_origin) == ("--after", "caller")
    assert window_between(moment) == resolve_window(moment)
    assert resolve_window(None).after_origin == "none (whole retained stream)"
    with pytest.raises(InputError, match="required"):
        resolve_window("  ", require_after=True)
    with pytest.raises(InputError, match="not after the cutover"):
        resolve_window(moment, moment)


def test_the_gate_takes_a_window_and_canary_keeps_its_cutover_wrapper() -> None:
    import inspect

    from qtsafe.canary import preflight
    from qtsafe.gate import run_quality_gate, run_quality_gate_after

    params = inspect.signature(run_quality_gate).parameters
    assert params["window"].default is inspect.Parameter.empty
    assert not {"after", "until", "last"} & set(params)
    assert preflight._default_gate() is run_quality_gate_after


def test_action_codes_are_encoded_once_and_telemetry_does_not_import_checks() -> None:
    from qtsafe import votes
    from qtsafe.checks import quality
    from qtsafe.telemetry import parse

    assert votes.ACTION_CODES == {"BUY": votes.BUY, "SELL": votes.SELL, "HOLD": votes.HOLD} == {
        "BUY": 0, "SELL": 1, "HOLD": 2}
    assert quality.ACTIONS is votes.ACTIONS and quality.VoteDefects is votes.VoteDefects
    assert parse.INVALID_KINDS is votes.INVALID_KINDS and parse.BAD_VOTE_KINDS is votes.BAD_VOTE_KINDS
    offenders = [name for name, text in _library_sources("telemetry").items() if "qtsafe.checks" in text]
    assert offenders == []
    encodings = [f"{package}/{name}" for package in ("checks", "telemetry")
                 for name, text in _library_sources(package).items()
                 if "BUY, SELL, HOLD = 0, 1, 2" in text or '{"BUY": 0' in text]
    assert encodings == []


# ---- one Finding type ---------------------------------------------------------------------------------


def test_gate_sanity_doctor_model_and_dataset_checks_share_one_finding_type() -> None:
    import typing

    from qtsafe import doctor, findings
    from qtsafe.checks import quality
    from qtsafe.dataset import checks as dataset_checks
    from qtsafe.dataset import run as dataset_run

    assert quality.Finding is findings.Finding
    assert (quality.FAIL, quality.WARN) == (findings.FAIL, findings.WARN)
    hints = typing.get_type_hints(doctor.DoctorResult)
    assert hints["checks"] == tuple[findings.Finding, ...]
    assert typing.get_type_hints(dataset_checks.leakage_checks)["return"] == tuple[findings.Finding, ...]
    assert typing.get_type_hints(dataset_run.DatasetResult)["checks"] == tuple[findings.Finding, ...]
    assert not hasattr(doctor, "Check") and not hasattr(dataset_checks, "Check")
    assert [f.name for f in dataclasses.fields(findings.Finding)] == [
        "check", "severity", "message", "subject", "scope", "fix"]


def test_a_finding_keeps_each_outputs_json_keys() -> None:
    from qtsafe.dataset.checks import check_dict
    from qtsafe.doctor import check_dict as doctor_dict
    from qtsafe.findings import FAIL, OK, WARN, Finding

    gate = Finding("stalled", FAIL, "telemetry stalled", "window", "whole window")
    assert gate.to_dict() == {"check": "stalled", "severity": FAIL, "message": "telemetry stalled",
                              "subject": "window", "scope": "whole window"}
    assert Finding("x", WARN, "m", fix="do y").to_dict()["fix"] == "do y"
    assert doctor_dict(Finding("unit", FAIL, "down", fix="start it")) == {
        "name": "unit", "state": FAIL, "detail": "down", "fix": "start it"}
    assert check_dict(Finding("each (symbol, time) appears once", OK, "0 duplicate samples")) == {
        "name": "each (symbol, time) appears once", "passed": True, "detail": "0 duplicate samples"}
    assert check_dict(Finding("c", FAIL, "d"))["passed"] is False


# ---- typed errors, not message text ------------------------------------------------------------------


def test_doctor_advises_by_the_errors_type_not_by_words_in_it(tmp_path, fake_redis, monkeypatch) -> None:
    # A stream whose name holds "unreachable" and "timed out" is still a missing stream, not a Redis down.
    from qtsafe.config import load_settings
    from qtsafe.doctor import _redis_checks

    settings = load_settings(env={"QTSAFE_BASE_DIR": str(tmp_path),
                                  "QTSAFE_STREAM": "unreachable:timed out:intents"})
    [check] = _redis_checks(settings)
    assert check.severity == "FAIL" and "does not exist" in check.message
    assert check.fix == "check stream (QTSAFE_STREAM) and the engine's producer"


def test_an_unreachable_redis_is_a_typed_error(tmp_path) -> None:
    from qtsafe.config import load_settings
    from qtsafe.doctor import _redis_checks
    from qtsafe.errors import RedisUnreachableError, TelemetryError
    from qtsafe.telemetry.sources import open_source

    settings = load_settings(env={"QTSAFE_BASE_DIR": str(tmp_path), "QTSAFE_REDIS_URL": "redis://127.0.0.1:1/0"})
    with pytest.raises(RedisUnreachableError) as caught:
        open_source(settings).check()
    assert isinstance(caught.value, TelemetryError) and "unreachable" in str(caught.value)
    [check] = _redis_checks(settings)
    assert check.fix.startswith("start redis")


# ---- written once -------------------------------------------------------------------------------------


def _library_files_containing(needle: str) -> list[str]:
    from pathlib import Path

    import qtsafe

    root = Path(qtsafe.__file__).parent
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py")
                  if needle in p.read_text(encoding="utf-8"))


def test_the_writability_probe_and_the_directory_fsync_are_written_once(tmp_path) -> None:
    from qtsafe.fsio import probe_writable

    assert _library_files_containing("mkstemp(prefix=\".qtsafe-") == ["fsio.py"]
    assert _library_files_containing("os.O_RDONLY") == ["fsio.py"]
    assert probe_writable(tmp_path / "not" / "yet") is None
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert probe_writable(blocker / "below") == f"{blocker} is not a directory"
    assert list(tmp_path.iterdir()) == [blocker]  # the probe left nothing behind


def test_resolving_last_and_paging_is_written_once() -> None:
    assert _library_files_containing(".first_id_of_last(") == ["telemetry/read.py"]


def test_the_stall_rule_lives_in_checks_and_gate_keeps_its_wrapper() -> None:
    from qtsafe.checks.stall import stall_rule
    from qtsafe.gate import stall_check
    from qtsafe.telemetry.window import resolve_window

    now = dt.datetime(2026, 1, 10, 6, 0, tzinfo=dt.UTC)
    newest = int((now - dt.timedelta(minutes=20)).timestamp() * 1000)
    finding = stall_rule(newest, None, now, 600.0)
    assert finding is not None and finding.check == "stalled" and "20.0 min old (limit 10 min)" in finding.message
    assert stall_rule(newest, now - dt.timedelta(minutes=15), now, 600.0) is None  # judged at --until
    assert stall_rule(None, None, now, 600.0) is None
    assert _library_files_containing("telemetry stalled: the newest") == ["checks/stall.py"]

    class _Monitor:
        stall_limit = 600.0

    class _Settings:
        monitor = _Monitor()

    window = resolve_window(now - dt.timedelta(hours=1))
    assert stall_check(newest, window, _Settings(), now, live=True) == finding  # type: ignore[arg-type]
    assert stall_check(newest, window, _Settings(), now, live=False) is None  # type: ignore[arg-type]
