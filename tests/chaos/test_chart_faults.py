"""Charts under faults (charts on, the real ``python -m qtsafe``): a chart is never evidence, and never the reason a
run loses or half-writes a report. ENOSPC on the PNG alone, a file-size limit that the PNG runs into, and a
matplotlib that cannot keep its caches (read-only HOME and MPLCONFIGDIR) each leave the one-line contract intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chaos.conftest import no_traceback, qtsafe, qtsafe_env, tree
from tests.chaos.test_disk_faults import AFTER, file_size_limit, injecting
from tests.conftest import healthy_events_file


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return healthy_events_file(tmp_path_factory, 600)


GATE = ("quality-gate", "--mode", "canary", "--after", AFTER)


def _charts_on(base: Path) -> dict[str, str]:
    return qtsafe_env(base, QTSAFE_CHARTS="true")


@pytest.mark.fault("disk-full")
def test_enospc_on_the_chart_writes_no_part_of_the_report(tmp_path: Path, events: Path) -> None:
    base = tmp_path / "base"
    proc = qtsafe(*GATE, "--events", str(events), env=injecting(_charts_on(base), "link:*.png"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    assert proc.stderr.startswith("qtsafe: error: cannot write ") and ".png" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert not [name for name in tree(base) if "quality_gate_" in name], "a run that exited 2 left a report"


@pytest.mark.fault("disk-full")
def test_a_file_size_limit_the_chart_runs_into_leaves_the_previous_reports(tmp_path: Path, events: Path) -> None:
    base = tmp_path / "base"
    first = qtsafe(*GATE, "--events", str(events), "--no-charts", env=_charts_on(base))
    assert first.returncode == 0, first.stderr
    before = tree(base)
    # JSON and Markdown fit in 64 KiB; a 1200-px chart does not.
    proc = qtsafe(*GATE, "--events", str(events), env=_charts_on(base), preexec_fn=file_size_limit(64 * 1024))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    assert proc.stderr.startswith("qtsafe: error: cannot write ") and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert tree(base) == before


@pytest.mark.fault("disk-full")
def test_matplotlib_without_a_writable_cache_is_a_quiet_chart(tmp_path: Path, events: Path) -> None:
    """Its font cache and config dir unwritable: the chart is drawn or noted, stderr stays empty, the verdict stands."""
    base, cache = tmp_path / "base", tmp_path / "cache-is-a-file"
    cache.write_bytes(b"not a directory\n")
    env = {**_charts_on(base), "MPLCONFIGDIR": str(cache / "mpl"), "HOME": str(cache / "home"),
           "XDG_CACHE_HOME": str(cache / "xdg")}
    proc = qtsafe(*GATE, "--events", str(events), "--json", env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    data = json.loads(proc.stdout)
    assert data["status"] == "PASS"
    (report,) = (base / "reports" / "safety").glob("*.json")
    saved = json.loads(report.read_text())
    assert "chart" in saved or saved["chart_note"].startswith("charts: not drawn")
