"""``canary promote`` to 0.5 and 1.0 needs the canary's outcomes since activation to be no worse than the
baseline ensemble's: a real promote (fake systemctl, fakeredis or a JSONL export) with simulated telemetry."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qtsafe.canary import journal, lifecycle
from qtsafe.canary import promote as canary_promote
from qtsafe.simulate import generate, write_jsonl, write_stream
from qtsafe.status import Status
from qtsafe.timeutil import parse_utc
from tests.canary.conftest import FakeGate, Root

NO_SLEEP = {"sleep": lambda s: None}
SIX_HOURS = dt.timedelta(hours=6)


def _monitor_completed(root: Root) -> None:
    state = json.loads(root.state_file.read_text())
    journal.append_record(root.settings(), "monitoring_completed", canary_id=state["canary_id"],
                          canary_model="patchtst", duration_hours=6, duration_seconds=6 * 3600.0,
                          checks_performed=720, violations=None, result="safe")


def _at_half_stage(root: Root, gate: FakeGate) -> dt.datetime:
    """Activate, watch, promote to 0.25 (the monitor alone decides it), watch again. Returns the activation."""
    activated = lifecycle.activate(root.settings(), model="patchtst", gate=gate, open_source=lambda *a: object(),
                                   **NO_SLEEP)
    assert activated.status is Status.PASS, activated.summary
    _monitor_completed(root)
    quarter = lifecycle.promote(root.settings(), to=0.25, reason="clean watch", **NO_SLEEP)
    assert quarter.status is Status.PASS and quarter.outcomes is None, quarter.summary  # no telemetry needed
    _monitor_completed(root)
    return parse_utc(json.loads(root.state_file.read_text())["activated_at"])


def _entries(scenario: str, events: int, end: dt.datetime) -> Any:
    # 2 s apart: 10,800 events are the six hours since activation; regimes make neighbouring events alike.
    return generate(scenario, events, seed=0, market="regimes", spacing_ms=2000, end=end)


def test_a_healthy_canary_is_promoted_with_its_figures(root: Root, gate: FakeGate, fake_redis: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    now = _at_half_stage(root, gate) + SIX_HOURS + dt.timedelta(minutes=1)
    settings = root.settings()
    write_stream(fake_redis, settings.stream, _entries("healthy", 10_800, now), "healthy", url="fake")
    monkeypatch.setattr(canary_promote, "utc_now", lambda: now)
    result = lifecycle.promote(settings, to=0.5, reason="clean watch at 25 %", **NO_SLEEP)
    assert result.status is Status.PASS, result.summary
    assert result.outcomes is not None and result.outcomes["verdict"]["status"] == "PASS"
    assert result.outcomes["paired"]["pairs"] > 1000 and result.outcomes["prices"] == "stream"
    assert "QSC_CANARY_WEIGHT=0.5" in root.live_environment()


def test_a_backwards_canary_is_refused_with_the_figures(root: Root, gate: FakeGate, tmp_path: Path,
                                                        run_cli: Callable[..., Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    now = _at_half_stage(root, gate) + SIX_HOURS + dt.timedelta(minutes=1)
    events = write_jsonl(tmp_path / "since.jsonl", _entries("backwards", 10_800, now), "backwards").target
    before = root.snapshot()
    monkeypatch.setattr(canary_promote, "utc_now", lambda: now)
    out = run_cli("canary", "promote", "--to", "0.5", "--reason", "r", "--events", events)
    assert out.exit_code == 2, out.output
    assert out.stdout.startswith("PROMOTION BLOCKED (0.25 -> 0.5): outcomes since activation: patchtst is worse "
                                 "than the baseline by more than 3.0 %: canary ")
    assert "patchtst     hit rate" in out.stdout and out.stderr == ""
    assert root.snapshot() == before  # nothing changed


def test_too_short_a_window_waits_and_says_how_many_more(root: Root, gate: FakeGate, tmp_path: Path,
                                                          run_cli: Callable[..., Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    activated = _at_half_stage(root, gate)
    now = activated + dt.timedelta(minutes=20)
    events = write_jsonl(tmp_path / "since.jsonl", _entries("healthy", 300, now), "healthy").target
    before = root.snapshot()
    monkeypatch.setattr(canary_promote, "utc_now", lambda: now)
    out = run_cli("canary", "promote", "--to", "0.5", "--reason", "r", "--events", events, "--json")
    assert out.exit_code == 3, out.output
    data = json.loads(out.stdout)
    assert data["status"] == "WAIT" and data["outcomes"]["verdict"]["status"] == "WAIT"
    more = data["outcomes"]["verdict"]["needed_more"]
    assert isinstance(more, int) and more > 0 and f"needs about {more} more resolved outcomes" in data["summary"]
    assert root.snapshot() == before


def test_unreadable_telemetry_refuses_in_one_line(root: Root, gate: FakeGate, run_cli: Callable[..., Any],
                                                  tmp_path: Path) -> None:
    _at_half_stage(root, gate)
    out = run_cli("canary", "promote", "--to", "0.5", "--reason", "r", "--events", str(tmp_path / "missing.jsonl"))
    assert out.exit_code == 2 and out.stdout.startswith("PROMOTION BLOCKED: ") and "Traceback" not in out.output
    assert len(out.stdout.strip().splitlines()) == 1
