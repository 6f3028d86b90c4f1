"""Charts: valid PNGs of the stated size, drawn from the report's own numbers, and never evidence (a failure is a
one-line note). The results come from the real commands over simulated telemetry."""

from __future__ import annotations

import copy
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib
import pytest

from qtsafe.reports.charts import WIDTH_PX, draw, figure_for

matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402

CUTOVER = "2026-01-10T05:00:00Z"


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    base = tmp_path_factory.mktemp("charts")
    events = base / "bias.jsonl"
    qtsafe = [sys.executable, "-m", "qtsafe"]
    subprocess.run([*qtsafe, "simulate", "--scenario", "majority-bias", "--events", "800", "--end",
                    "2026-01-10T06:00:00Z", "--out", str(events)], check=True, capture_output=True)
    out = {}
    for kind, args in (("gate", ["quality-gate", "--mode", "canary"]), ("scoreboard", ["scoreboard"])):
        done = subprocess.run([*qtsafe, *args, "--after", CUTOVER, "--events", str(events), "--base-dir", str(base),
                               "--json"], capture_output=True, text=True)
        out[kind] = json.loads(done.stdout)
    return out


@pytest.mark.parametrize("kind", ["gate", "scoreboard"])
def test_a_chart_is_a_png_of_the_stated_size(results: dict[str, dict[str, Any]], kind: str) -> None:
    chart = draw(kind, results[kind])
    assert chart.drawn and chart.note == ""
    assert chart.png is not None and _png_size(chart.png) == (chart.width, chart.height)
    assert chart.width == WIDTH_PX and chart.height == 80 + 260 * len(results[kind]["models"])


def test_the_chart_shows_the_reports_numbers(results: dict[str, dict[str, Any]]) -> None:
    """Feed a copy whose figures were changed: the drawn texts follow the copy, so nothing is recomputed."""
    data = copy.deepcopy(results["gate"])
    xgb = next(m for m in data["models"] if m["name"] == "xgb")
    xgb["whole"]["action_share"]["BUY"] = 0.123
    xgb["whole"]["p90"], xgb["whole"]["p10"] = 0.777, 0.321
    for row in data["thresholds"]:
        if row["rule"] == "majority_max":
            row["value"] = 0.66
    figure, _ = figure_for("gate", data, plt)
    texts = {t.get_text() for ax in figure.axes for t in ax.texts}
    plt.close(figure)
    assert "12 %" in texts and "P90 0.777" in texts and "P10 0.321" in texts and "P90-P10 0.456" in texts
    assert "majority limit 66 %" in texts


def test_the_monitor_timeline_marks_the_end(tmp_path: Path) -> None:
    data = {"status": "FAIL", "summary": "FAIL: canary patchtst rolled back at check 3", "model": "patchtst",
            "thresholds": [{"rule": "std_min", "value": 0.05}, {"rule": "p10_p90_min", "value": 0.12}],
            "monitor_rules": {"error_budget": 5},
            "timeline": [{"index": i, "state": s, "models": {"patchtst": {"n": 200, "std": sd, "spread": sp}}}
                         for i, s, sd, sp in ((1, "ok", 0.15, 0.4), (2, "error", 0.14, 0.38),
                                              (3, "violation", 0.004, 0.01))]}
    chart = draw("monitor", data)
    assert chart.png is not None and _png_size(chart.png) == (WIDTH_PX, chart.height)
    figure, _ = figure_for("monitor", data, plt)
    texts = {t.get_text().strip() for ax in figure.axes for t in ax.texts}
    legends = {t.get_text() for ax in figure.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
    plt.close(figure)
    assert "rollback" in texts and "errors spent (1 of 5)" in legends and "patchtst (canary)" in legends


def test_a_chart_that_cannot_be_drawn_is_a_note_not_an_error() -> None:
    chart = draw("gate", {"status": "PASS", "models": []})
    assert not chart.drawn and chart.note.startswith("charts: not drawn: ValueError")
    assert len(chart.note.splitlines()) == 1
    assert draw("nonsense", {}).note == "charts: no chart for 'nonsense'"


def test_without_matplotlib_the_note_names_the_extra() -> None:
    probe = ("import sys; sys.modules['matplotlib'] = None\n"
             "from qtsafe.reports.charts import draw\n"
             "print(draw('gate', {'models': [{'name': 'x'}]}).note)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "charts: not drawn: matplotlib is not installed (pip install 'qtsafe[charts]')"


def test_prefetch_never_raises_and_the_draw_still_notes_the_failure() -> None:
    """The gate imports matplotlib ahead while its workers read; an import that fails there is silent, and the
    draw that follows reports it as before (one line, no traceback, nothing on stderr)."""
    probe = ("import sys; sys.modules['matplotlib'] = None\n"
             "from qtsafe.reports.charts import draw, prefetch\n"
             "prefetch()\n"
             "print(draw('gate', {'models': [{'name': 'x'}]}).note)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip() == "charts: not drawn: matplotlib is not installed (pip install 'qtsafe[charts]')"
    loaded = subprocess.run([sys.executable, "-c", "import sys\nfrom qtsafe.reports.charts import prefetch\n"
                             "prefetch()\nprint(sorted(m for m in sys.modules if m in ('matplotlib.figure', "
                             "'matplotlib.backends.backend_agg', 'matplotlib.pyplot')))"],
                            capture_output=True, text=True, timeout=60)
    # What a draw needs, and not pyplot (its import and global figure registry are not used).
    assert loaded.stdout.strip() == "['matplotlib.backends.backend_agg', 'matplotlib.figure']"
    assert loaded.stderr == ""


# ---- wired into the reports ------------------------------------------------------------------------------------

def _gate(base: Path, events: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "qtsafe", "quality-gate", "--mode", "canary", "--after", CUTOVER,
                           "--events", str(events), "--base-dir", str(base), *extra],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


@pytest.fixture(scope="module")
def healthy_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "healthy.jsonl"
    subprocess.run([sys.executable, "-m", "qtsafe", "simulate", "--scenario", "healthy", "--events", "600", "--end",
                    "2026-01-10T06:00:00Z", "--out", str(path)], check=True, capture_output=True)
    return path


def test_the_gate_report_links_its_chart(tmp_path: Path, healthy_events: Path) -> None:
    done = _gate(tmp_path, healthy_events, env={"QTSAFE_CHARTS": "true"})
    assert done.returncode == 0, done.stderr
    (md,) = (tmp_path / "reports" / "safety").glob("*.md")
    png, js = md.with_suffix(".png"), md.with_suffix(".json")
    assert f"]({png.name})" in md.read_text()
    data = json.loads(js.read_text())
    assert data["chart"] == str(png) and data["status"] == "PASS"
    assert _png_size(png.read_bytes())[0] == WIDTH_PX


def test_no_charts_and_a_failed_chart_leave_the_verdict_alone(tmp_path: Path, healthy_events: Path) -> None:
    off = _gate(tmp_path / "off", healthy_events, "--no-charts", env={"QTSAFE_CHARTS": "true"})
    assert off.returncode == 0
    (md,) = (tmp_path / "off" / "reports" / "safety").glob("*.md")
    assert not md.with_suffix(".png").exists() and "charts: off" in md.read_text()
    # matplotlib unimportable: the report says so in one line, the exit code and verdict are the same.
    probe = ("import sys; sys.modules['matplotlib'] = None\n"
             "from qtsafe.cli import cli\n"
             "sys.exit(cli.main(args=sys.argv[1:], standalone_mode=False))")
    import os

    broken = subprocess.run([sys.executable, "-c", probe, "quality-gate", "--mode", "canary", "--after", CUTOVER,
                             "--events", str(healthy_events), "--base-dir", str(tmp_path / "broken")],
                            capture_output=True, text=True, env={**os.environ, "QTSAFE_CHARTS": "true"}, timeout=120)
    assert broken.returncode == 0 and broken.stderr == ""
    (md,) = (tmp_path / "broken" / "reports" / "safety").glob("*.md")
    assert "charts: not drawn: matplotlib is not installed" in md.read_text()
    assert not md.with_suffix(".png").exists()


def test_the_scoreboard_chart_is_replaced_with_its_report(tmp_path: Path, healthy_events: Path) -> None:
    import os

    env = {**os.environ, "QTSAFE_CHARTS": "true"}
    args = [sys.executable, "-m", "qtsafe", "scoreboard", "--after", CUTOVER, "--events", str(healthy_events),
            "--base-dir", str(tmp_path)]
    assert subprocess.run(args, capture_output=True, env=env, timeout=120).returncode == 0
    png = tmp_path / "reports" / "safety" / "scoreboard_latest.png"
    assert _png_size(png.read_bytes())[0] == WIDTH_PX
    # The next run cannot draw: the old PNG must not pass for the new report's chart.
    assert subprocess.run([*args, "--no-charts"], capture_output=True, env=env, timeout=120).returncode == 0
    assert not png.exists() and "charts: off" in png.with_suffix(".md").read_text()


@pytest.mark.parametrize(("charts", "write", "expected"), [(True, True, True), (False, True, False),
                                                           (True, False, False)])
def test_the_gate_imports_ahead_only_for_a_chart_it_will_draw(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              healthy_events: Path, charts: bool, write: bool,
                                                              expected: bool) -> None:
    import qtsafe.gate as gate_module
    from qtsafe.config import load_settings
    from qtsafe.reports.charts import prefetch
    from qtsafe.telemetry.sources import JsonlSource
    from qtsafe.telemetry.window import resolve_window

    seen: list[object] = []
    real = gate_module.gather

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("idle"))
        return real(*args, **kwargs)

    monkeypatch.setattr(gate_module, "gather", spy)
    settings = load_settings(overrides={"base_dir": str(tmp_path), "charts": charts}, env={})
    gate_module.run_quality_gate(settings, JsonlSource(healthy_events), resolve_window(CUTOVER), mode="canary",
                                 write_report=write)
    assert seen == [prefetch if expected else None]
