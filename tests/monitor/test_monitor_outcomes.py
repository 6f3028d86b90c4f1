"""Outcomes in the watch: the rolling outcome state against the window function, pending never guessed, resume,
the monitor's outcome violation (one stated comparison, shared with promote) and the final report's section."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qtsafe import monitor as mon
from qtsafe import outcome_evidence as oe
from qtsafe.config import Outcomes, Settings, load_settings
from qtsafe.monitor import Watch, run_replay
from qtsafe.monitor import outcomes as mo
from qtsafe.monitor.outcomes import RollingOutcomes
from qtsafe.simulate import generate
from qtsafe.status import Status
from qtsafe.telemetry import RedisStreamSource
from qtsafe.telemetry.parse import Telemetry, TelemetryBuilder
from tests.canary.conftest import Root
from tests.conftest import STREAM, intent_entry, xadd_entries
from tests.monitor.conftest import FastClock, write_events

END = dt.datetime(2026, 1, 10, 6, 0, tzinfo=dt.UTC)
RAW = tuple[bytes, list[bytes]]


@functools.cache
def raw_entries(scenario: str, events: int, seed: int, onset: float | None = None) -> tuple[RAW, ...]:
    target = "patchtst" if scenario != "healthy" else None
    return tuple((e.id.encode(), [b"event_type", b"trade.intent", b"payload", e.fields["payload"].encode()])
                 for e in generate(scenario, events, seed=seed, end=END, spacing_ms=2000, market="regimes",
                                   onset=onset, target=target))


def telemetry(rows: Any) -> Telemetry:
    builder = TelemetryBuilder()
    builder.feed(list(rows))
    return builder.build()


def fold_in_batches(state: RollingOutcomes, rows: tuple[RAW, ...], seed: int, start: int = 0,
                    stop: int | None = None) -> None:
    rng = np.random.default_rng(seed)
    i, stop = start, len(rows) if stop is None else stop
    while i < stop:
        k = min(int(rng.integers(1, 300)), stop - i)
        state.fold(telemetry(rows[i:i + k]))
        i += k


def fresh() -> RollingOutcomes:
    return RollingOutcomes("patchtst", 300_000, 600_000, 1000)


@pytest.mark.parametrize(("scenario", "seed", "onset"), [("healthy", 1, None), ("backwards", 2, 0.4),
                                                         ("random", 3, 0.0)])
def test_the_rolling_state_equals_the_window_function(scenario: str, seed: int, onset: float | None) -> None:
    """A simulated stream folded in random batch sizes gives the same paired cells and per-model counts as
    outcome_evidence over the whole window (whose last 5 minutes are pending in both)."""
    rows = raw_entries(scenario, 2400, seed, onset)
    rolling = fresh()
    fold_in_batches(rolling, rows, seed)
    window = oe.outcome_evidence(telemetry(rows), Outcomes(), canary="patchtst")
    assert window.paired is not None and window.paired.pairs > 300
    cmp = rolling.comparison()
    assert (cmp.both, cmp.canary_only, cmp.baseline_only, cmp.neither) == (
        window.paired.both, window.paired.canary_only, window.paired.baseline_only, window.paired.neither)
    assert cmp.p_two_sided == window.paired.p_two_sided
    for name, expected in window.models.items():
        got = rolling.model(name)
        assert (got.votes, got.sided_votes, got.scored, got.hits, got.pending, got.unscorable) == (
            expected.votes, expected.sided_votes, expected.scored, expected.hits, expected.pending,
            expected.unscorable), name
        assert got.brier == pytest.approx(expected.brier, abs=1e-6)  # confidences kept as float32
    # Under 1,000 pairs the n_eff is the series' own; resolution order differs from event order only across
    # symbols, so it is close, not equal.
    assert cmp.n_eff == pytest.approx(window.paired.n_eff, rel=0.25)


T0 = 1_767_225_600_000


def _row(ms: int, symbol: str | None, price: float | None, canary: str, others: str) -> RAW:
    return intent_entry(T0 + ms, symbol, price, {"xgb": others, "lgbm": others, "nhits": others, "patchtst": canary})


def test_pending_votes_are_never_guessed_and_resolve_on_their_own_symbols_later_price() -> None:
    s = 1000
    rolling = fresh()
    rolling.fold(telemetry([_row(0, "BTC", 100.0, "BUY", "SELL"), _row(1 * s, "ETH", 10.0, "SELL", "BUY")]))
    rolling.fold(telemetry([_row(299 * s, "BTC", 200.0, "HOLD", "HOLD")]))  # before t + H: no end price
    assert rolling.model("patchtst").scored == 0 and rolling.model("patchtst").pending == 2
    rolling.fold(telemetry([_row(400 * s, "SOL", 1.0, "HOLD", "HOLD")]))  # past t + H, another symbol: awaiting
    assert rolling.model("patchtst").scored == 0 and rolling.model("patchtst").pending == 2
    rolling.fold(telemetry([_row(401 * s, "BTC", 90.0, "HOLD", "HOLD"), _row(402 * s, "BTC", 300.0, "HOLD", "HOLD")]))
    # BTC's first price at or after 0 + 300 s is 90 (not 200, which came earlier; not 300, which came later).
    canary = rolling.model("patchtst")
    assert (canary.scored, canary.hits, canary.pending) == (1, 0, 1)
    assert rolling.cells == [0, 0, 1, 0]  # the others' SELL was right, the canary's BUY was not
    # ETH never trades again: dropped once H + the stall margin have passed, counted, never scored.
    rolling.fold(telemetry([_row(902 * s, "BTC", 95.0, "HOLD", "HOLD")]))
    assert rolling.model("patchtst").pending == 0 and rolling.tallies["patchtst"].expired == 1
    assert rolling.model("patchtst").scored == 1


def test_an_event_without_symbol_or_price_is_unscorable_at_once() -> None:
    rolling = fresh()
    rolling.fold(telemetry([_row(0, None, 100.0, "BUY", "BUY"), _row(1, "BTC", None, "SELL", "SELL"),
                            _row(2, "BTC", 100.0, "HOLD", "BUY")]))
    assert rolling.model("patchtst").unscorable == 2 and rolling.model("patchtst").pending == 0
    assert rolling.model("xgb").pending == 1


def settings_for(tmp_path: Path) -> Settings:
    return load_settings(overrides={"base_dir": str(tmp_path)}, env={})


def test_a_resumed_watch_counts_what_an_uninterrupted_one_does(tmp_path: Path) -> None:
    rows = raw_entries("backwards", 2400, 2, 0.4)
    settings = settings_for(tmp_path)
    since = END - dt.timedelta(hours=2)
    cuts = [0, *sorted(np.random.default_rng(7).choice(np.arange(1, len(rows)), 20, replace=False)), len(rows)]
    batches = [telemetry(rows[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    straight = Watch(settings, "c1", "patchtst", since)
    first = Watch(settings, "c1", "patchtst", since)
    for batch in batches:
        straight.fold(batch)
    for batch in batches[:11]:
        first.fold(batch)
    saved = json.loads(json.dumps(first.to_state()))  # the crash: only what was saved survives
    again = Watch(settings, "c1", "patchtst", since, saved)
    assert again.outcomes.pending["ms"].shape[0] > 0  # it resumes with votes still pending
    for batch in batches[11:]:
        again.fold(batch)
    assert again.outcomes.cells == straight.outcomes.cells
    for name in straight.outcomes.names:
        a, b = again.outcomes.model(name), straight.outcomes.model(name)
        assert (a.scored, a.hits, a.pending, a.unscorable) == (b.scored, b.hits, b.pending, b.unscorable)
        assert a.brier == pytest.approx(b.brier, rel=1e-12)
    assert again.outcomes.report(Outcomes(), 0.95) == straight.outcomes.report(Outcomes(), 0.95)


def test_an_old_state_file_without_outcomes_resumes_and_starts_them_fresh(tmp_path: Path) -> None:
    rows = raw_entries("healthy", 1200, 1)
    settings = settings_for(tmp_path)
    watch = Watch(settings, "c1", "patchtst", END - dt.timedelta(hours=2))
    watch.fold(telemetry(rows[:600]))
    saved = json.loads(json.dumps(watch.to_state()))
    del saved["outcomes"]  # written by a qtsafe from before outcomes were kept
    again = Watch(settings, "c1", "patchtst", END - dt.timedelta(hours=2), saved)
    assert again.resumed and again.events == 600 and again.outcomes.since_event == 600
    assert again.outcomes.comparison().pairs == 0
    again.fold(telemetry(rows[600:]))
    again.checks = 10
    violations, _, _ = again.judge(END)
    assert not any("baseline ensemble" in v for v in violations)
    assert again.outcomes.comparison().pairs > 0
    assert again.outcomes_report()["since_event"] == 600
    # A section that is there but unreadable is refused, never silently restarted: the evidence since
    # activation would be lost (run_monitor turns this into a one-line StateError naming the file).
    for broken in ({"canary": "patchtst"}, "garbage"):
        saved["outcomes"] = broken
        with pytest.raises(ValueError, match="outcome section"):
            Watch(settings, "c1", "patchtst", END - dt.timedelta(hours=2), saved)


def _cells(state: RollingOutcomes, cells: list[int]) -> RollingOutcomes:
    state.cells = cells
    rng = np.random.default_rng(0)
    both, c_only, b_only, neither = cells
    state.recent_diffs = rng.permutation(np.repeat(np.array([0, 1, -1, 0], np.int8), cells))[-1000:]
    return state


MESSAGE = re.compile(r"^patchtst: right on \d+\.\d % of \d+ resolved outcomes vs the others' consensus \d+\.\d % "
                     r"\(difference -\d+\.\d pts, bound -\d+\.\d pts, margin 3\.0 %\): "
                     r"worse than the baseline ensemble$")


def test_only_an_established_fail_is_a_violation() -> None:
    rules = Outcomes()
    alpha = 0.05 / 730
    worse = _cells(fresh(), [150, 40, 130, 80])  # 47.5 % vs 70 % on 400 pairs
    [message] = worse.violations(rules, alpha=alpha)
    assert MESSAGE.match(message), message
    assert worse.verdict(rules, 1 - alpha).status is Status.FAIL
    assert worse.violations(rules, alpha=0.0) == []  # past the planned checks nothing is established
    unclear = _cells(fresh(), [150, 60, 75, 80])  # -3.6 pts: beyond the margin, not established
    assert unclear.verdict(rules, 1 - alpha).status is Status.WAIT and unclear.violations(rules, alpha=alpha) == []
    fine = _cells(fresh(), [300, 60, 62, 100])
    assert fine.violations(rules, alpha=alpha) == []
    few = _cells(fresh(), [2, 1, 20, 2])  # far worse, but fewer than min_resolved pairs: WAIT
    assert few.violations(rules, alpha=alpha) == []


def test_promote_and_the_monitor_make_the_one_stated_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    """One function decides both: promote (through outcome_evidence, at [outcomes] confidence) and the watch
    (at 1 - the check's alpha); the same margin and minimum pairs."""
    calls: list[float] = []
    real = oe.canary_against_baseline

    def spy(comparison: Any, rules: Outcomes, *, confidence: float) -> Any:
        calls.append(confidence)
        return real(comparison, rules, confidence=confidence)

    monkeypatch.setattr(oe, "canary_against_baseline", spy)
    monkeypatch.setattr(mo, "canary_against_baseline", spy)
    rows = raw_entries("backwards", 2400, 2, 0.4)
    window = oe.outcome_evidence(telemetry(rows), Outcomes(), canary="patchtst")
    assert calls == [Outcomes().confidence] and window.verdict is not None
    rolling = fresh()
    fold_in_batches(rolling, rows, 2)
    rolling.violations(Outcomes(), alpha=0.001)  # the estimate is beyond the margin: the verdict is asked for
    assert len(calls) == 2 and calls[-1] == pytest.approx(0.999)
    assert mo.canary_against_baseline is spy and oe.CANARY_COMPARISON in rolling.report(Outcomes(), 0.95)["comparison"]


def replay(tmp_path: Path, client: Any, entries: list[Any]) -> Any:
    xadd_entries(client, [{"id": e.id, "fields": e.fields} for e in entries], STREAM)
    return run_replay(settings_for(tmp_path), RedisStreamSource(client, STREAM), entries[0].id, entries[-1].id,
                      model="patchtst", interval=30)


def test_a_backwards_canary_is_established_worse_than_the_baseline(tmp_path: Path, fake_redis: Any) -> None:
    """Backwards from activation: the relative rule is first (from check ~5-12) and the outcome rule follows once
    enough 5-minute outcomes have resolved; each alone would roll it back."""
    entries = list(generate("backwards", 1200, seed=1, end=END, spacing_ms=2000, market="regimes", onset=0.0,
                            target="patchtst"))
    result = replay(tmp_path, fake_redis, entries)
    assert result.status is Status.FAIL
    outcome = [f for f in result.firings if any(v.endswith("worse than the baseline ensemble")
                                                for v in f["violations"])]
    assert outcome, [f["check"] for f in result.firings][:5]  # seed 1: the outcome rule at check 56 of 80
    # The report is the state at the end of the range (its bounds move with n_eff as more regimes resolve).
    assert result.outcomes is not None and result.outcomes["paired"]["difference"] < -0.2
    assert result.outcomes["models"]["patchtst"]["hit_rate"] < 0.5 < result.outcomes["models"]["xgb"]["hit_rate"]


def test_a_healthy_canary_over_a_full_watch_is_not_fired_on(tmp_path: Path, fake_redis: Any) -> None:
    entries = list(generate("healthy", 10_800, seed=11, end=END, spacing_ms=2000, market="regimes"))
    result = replay(tmp_path, fake_redis, entries)
    assert not [v for f in result.firings for v in f["violations"] if "baseline ensemble" in v]
    assert result.outcomes is not None and result.outcomes["paired"]["pairs"] > 2000
    assert result.outcomes["verdict"]["status"] in ("PASS", "WAIT")


def test_the_live_monitor_rolls_back_on_the_outcome_violation_and_reports_outcomes(root: Root, activated,
                                                                                    fake_redis) -> None:
    """A canary that ignores its inputs (seed 10: the outcome rule is established before the relative one),
    written as the producer would, a check every 30 s: rolled back with the outcome violation, and the final
    report has the Outcomes section (Markdown and JSON)."""
    start = activated["at"]
    entries = list(generate("random", 1500, seed=10, end=start + dt.timedelta(seconds=1500 * 2), spacing_ms=2000,
                            market="regimes", target="patchtst"))
    written = {"n": 0}

    def produce(clock: FastClock, before: dt.datetime) -> None:
        upto = int(clock.t.timestamp() * 1000)
        fresh_rows = [e for e in entries[written["n"]:] if int(e.id.split("-")[0]) <= upto]
        if fresh_rows:
            xadd_entries(fake_redis, [{"id": e.id, "fields": e.fields} for e in fresh_rows], STREAM)
            written["n"] += len(fresh_rows)

    clock = FastClock(start, produce)
    # The producer ran before the canary (the gate needed its events): not judged.
    write_events(fake_redis, "healthy", 5, start - dt.timedelta(hours=2), start - dt.timedelta(hours=1), seed=99)
    result = mon.run_monitor(activated["settings"], RedisStreamSource(fake_redis, STREAM), clock=clock, interval=30)
    assert result.status is Status.FAIL, result.summary
    assert result.violations[0].endswith("worse than the baseline ensemble"), result.violations
    assert result.rollback is not None and result.rollback["status"] == "PASS"
    report = result.report_path.read_text()
    assert "## Outcomes" in report and "**FAIL**" in report and "McNemar p" in report
    data = json.loads(result.json_path.read_text())
    assert data["outcomes"]["verdict"]["status"] == "FAIL" and data["outcomes"]["prices"] == "stream"
    assert set(data["outcomes"]["models"]) == {"lgbm", "nhits", "patchtst", "xgb"}


def test_outcomes_in_the_saved_state_stay_small_at_the_producers_rate(tmp_path: Path) -> None:
    rows = raw_entries("healthy", 1200, 1)
    watch = Watch(settings_for(tmp_path), "c1", "patchtst", END - dt.timedelta(hours=2))
    watch.fold(telemetry(rows))
    size = len(json.dumps(watch.to_state()["outcomes"]))
    assert watch.outcomes.pending["ms"].shape[0] <= 160  # the last 5 minutes at one event every 2 s
    assert size < 80_000, size  # mostly the 1,000-outcome series per model kept for n_eff


def test_the_report_shape_matches_the_window_evidence() -> None:
    rows = raw_entries("healthy", 1200, 1)
    rolling = fresh()
    rolling.fold(telemetry(rows))
    report = rolling.report(Outcomes(), 0.95)
    window = oe.outcome_evidence(telemetry(rows), Outcomes(), canary="patchtst").to_dict()
    assert set(window) - {"directions"} <= set(report)
    assert set(report["models"]["xgb"]) == set(window["models"]["xgb"])
    assert dataclasses.is_dataclass(rolling.comparison())
