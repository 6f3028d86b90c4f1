"""The gauges the Grafana dashboard needed and qtsafe did not write: the last verdict, the canary's weight and
the monitor heartbeat's age from the every-minute watchdog (issue 13, section 5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result
from prometheus_client.parser import text_string_to_metric_families

from qtsafe.canary import state as st
from qtsafe.metrics import write_metrics
from qtsafe.status import Status
from tests.canary.conftest import FakeGate, Root, patch_default_gate  # noqa: F401 - fixture re-exported

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(prom: Path) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(prom.read_text()) for s in family.samples}


def find(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_the_last_verdict_tells_a_blocker_from_a_broken_run(tmp_path: Path) -> None:
    """Exit code 2 is both; before, the file said only 2 for each."""
    prom = tmp_path / "qtsafe.prom"
    write_metrics(prom, "quality-gate", Status.FAIL, {})
    write_metrics(prom, "scoreboard", Status.ERROR, {})
    found = samples(prom)
    assert find(found, "qtsafe_last_verdict", command="quality-gate", verdict="FAIL") == 1
    assert find(found, "qtsafe_last_verdict", command="scoreboard", verdict="ERROR") == 1
    assert find(found, "qtsafe_last_exit_code", command="quality-gate") == find(
        found, "qtsafe_last_exit_code", command="scoreboard") == 2
    write_metrics(prom, "quality-gate", Status.PASS, {})
    verdicts = {dict(labels)["verdict"] for (name, labels) in samples(prom)
                if name == "qtsafe_last_verdict" and ("command", "quality-gate") in labels}
    assert verdicts == {"PASS"}, "a command has one verdict: its last"


def test_canary_status_writes_the_canarys_weight(root: Root, patch_default_gate: FakeGate,  # noqa: F811
                                                 run_cli: Callable[..., Result], tmp_path: Path) -> None:
    prom = tmp_path / "qtsafe.prom"
    assert run_cli("canary", "activate", "--model", "patchtst", "--share", "0.15").exit_code == 0
    run_cli("--metrics-file", str(prom), "canary", "status")
    found = samples(prom)
    assert find(found, "qtsafe_canary_active", command="canary status", model="patchtst") == 1
    assert find(found, "qtsafe_canary_weight", command="canary status", model="patchtst") == 0.15
    assert run_cli("canary", "rollback", "--yes", "--reason", "test").exit_code == 0
    run_cli("--metrics-file", str(prom), "canary", "status")
    found = samples(prom)
    assert find(found, "qtsafe_canary_active", command="canary status", model="") == 0
    assert not [key for key in found if key[0] == "qtsafe_canary_weight"], "no canary, no weight"


def test_the_watchdog_writes_the_heartbeat_age(root: Root, patch_default_gate: FakeGate,  # noqa: F811
                                               run_cli: Callable[..., Result], tmp_path: Path) -> None:
    """The watchdog is what a timer runs every minute; before, only a hand-run canary status wrote the age."""
    prom = tmp_path / "qtsafe.prom"
    assert run_cli("canary", "activate", "--model", "patchtst").exit_code == 0
    canary = st.active_canary(root.settings())
    assert canary is not None
    st.write_heartbeat(root.settings(), canary_id=canary.canary_id, canary_model=canary.model, checks=1)
    result = run_cli("--metrics-file", str(prom), "monitor", "--watchdog")
    assert result.exit_code == 0, result.output
    age = find(samples(prom), "qtsafe_monitor_heartbeat_age_seconds", command="monitor watchdog")
    assert age is not None and 0 <= age < 60


def test_the_watchdog_with_no_canary_writes_no_age(root: Root, run_cli: Callable[..., Result],
                                                   tmp_path: Path) -> None:
    prom = tmp_path / "qtsafe.prom"
    assert run_cli("--metrics-file", str(prom), "monitor", "--watchdog").exit_code == 0
    assert not [key for key in samples(prom) if key[0] == "qtsafe_monitor_heartbeat_age_seconds"]
