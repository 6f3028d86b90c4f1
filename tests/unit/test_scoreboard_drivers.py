"""The scoreboard's ensemble findings name the model behind them, with Fleiss' kappa beside the raw agreement."""

from __future__ import annotations

import datetime as dt
import json

from qtsafe.config import load_settings
from qtsafe.scoreboard import render_scoreboard_text, run_scoreboard
from qtsafe.simulate import generate
from qtsafe.status import Status
from qtsafe.telemetry import RedisStreamSource
from qtsafe.telemetry.window import resolve_window
from tests.conftest import STREAM, xadd_entries

END = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)


def _board(client, tmp_path, scenario: str, target: str | None = None):  # noqa: ANN001, ANN202
    entries = [{"id": e.id, "fields": e.fields} for e in generate(scenario, 1000, seed=6, end=END, target=target)]
    xadd_entries(client, entries, STREAM)
    settings = load_settings(overrides={"base_dir": str(tmp_path)}, env={})
    return run_scoreboard(settings, RedisStreamSource(client, STREAM), resolve_window("2000-01-01"), now=END)


def test_a_backwards_voter_is_named_as_the_driver(fake_redis, tmp_path) -> None:
    board = _board(fake_redis, tmp_path, "backwards", target="xgb")
    assert board.status is Status.NO_GO  # the relative rule fails xgb itself
    (hard,) = [f for f in board.findings if f.check == "hard_disagree"]
    assert hard.severity == "WARN" and "established: 95 % lower bound" in hard.message
    assert "; driven by xgb: BUY/SELL against the others' consensus in " in hard.message, hard.message
    kappa = board.kappa
    assert kappa is not None and kappa.kappa < 0.3
    text = render_scoreboard_text(board)
    assert f"(Fleiss' kappa {kappa.kappa:.2f})" in text
    data = json.loads(board.json_path.read_text())
    assert data["ensemble"]["kappa"] == kappa.kappa
    assert {ev["rule"] for ev in data["ensemble"]["evidence"]} == {"agreement (low)", "agreement (high)",
                                                                   "hard disagree"}
    markdown = board.report_path.read_text()
    assert f"| chance-corrected agreement (Fleiss' kappa over the voting models) | {kappa.kappa:.3f}" in markdown
    assert "| hard disagree | " in markdown and "**established**" in markdown


def test_a_fleet_wide_disagreement_names_no_single_model(fake_redis, tmp_path) -> None:
    board = _board(fake_redis, tmp_path, "disagreeing")
    assert board.status is Status.WAIT
    (hard,) = [f for f in board.findings if f.check == "hard_disagree"]
    assert "no single model stands out" in hard.message and "driven by" not in hard.message


def test_healthy_has_kappa_and_no_ensemble_finding(fake_redis, tmp_path) -> None:
    board = _board(fake_redis, tmp_path, "healthy")
    assert board.status is Status.GO and board.findings == ()
    assert board.kappa is not None and 0.2 < board.kappa.kappa < 0.9
    assert "Fleiss' kappa" in render_scoreboard_text(board)


def test_an_ensemble_breach_by_estimate_alone_is_shown_but_not_a_wait() -> None:
    import numpy as np

    from qtsafe.checks.ensemble import ensemble_evidence, ensemble_figures, judge_ensemble_evidence
    from qtsafe.config import Thresholds

    t = Thresholds()
    rng = np.random.default_rng(2)

    def votes(hard: int, n: int = 300) -> np.ndarray:
        rows = [[2, 1, 0]] * hard + [[3, 0, 0]] * ((n - hard) // 2) + [[2, 0, 1]] * (n - hard - (n - hard) // 2)
        return rng.permutation(np.array(rows, dtype=np.int16))

    mild = votes(66)  # 22 % against the 20 % limit: the estimate is past it, no bound over 300 events is
    figures = ensemble_figures(mild)
    (finding,) = judge_ensemble_evidence(figures, ensemble_evidence(mild, t, alpha=t.evidence_alpha), t)
    assert finding.check == "hard_disagree" and finding.severity == "OK"
    assert "not established: 95 % lower bound" in finding.message
    strong = votes(120)  # 40 %: established
    (finding,) = judge_ensemble_evidence(ensemble_figures(strong), ensemble_evidence(strong, t, alpha=0.05), t)
    assert finding.severity == "WARN" and "established: 95 % lower bound" in finding.message
