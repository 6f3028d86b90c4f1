"""Leave-one-out consensus, Fleiss' kappa and the relative hard-disagreement rule.

Oracles: a naive per-event Python loop for the consensus; Fleiss (1971)'s own psychiatric-diagnosis table
(30 patients, 6 raters, 5 categories; kappa 0.4302 as R's irr::kappam.fleiss reports) with kappa computed
here from the textbook formula; scenario ensembles for the rule.
"""

from __future__ import annotations

import types
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qtsafe.checks.consensus import (
    ABSENT,
    AGREE_HOLD,
    AGREE_SIDE,
    FEW_OTHERS,
    HARD,
    NO_VOTE,
    SOFT,
    TIE,
    RelativeRule,
    VoteMatrix,
    fleiss_kappa,
    judge_relative,
    leave_one_out,
    relative_evidence,
    vote_matrix,
)
from qtsafe.checks.quality import FAIL
from qtsafe.simulate import generate
from qtsafe.telemetry.parse import TelemetryBuilder

# --- the consensus against a naive loop -----------------------------------------------------------


def naive_consensus(actions: np.ndarray, voting: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    events, models = actions.shape
    voting = np.broadcast_to(voting, actions.shape)
    codes = np.zeros((models, events), dtype=int)
    consensus = np.full((models, events), NO_VOTE)
    for e in range(events):
        for m in range(models):
            others = [int(actions[e, o]) for o in range(models)
                      if o != m and voting[e, o] and actions[e, o] != NO_VOTE]
            mine = int(actions[e, m])
            winner = None
            if len(others) < 2:
                code = FEW_OTHERS
            else:
                counts = Counter(others).most_common()
                if len(counts) > 1 and counts[0][1] == counts[1][1]:
                    code = TIE
                else:
                    winner = counts[0][0]
                    consensus[m, e] = winner
                    if mine == winner:
                        code = AGREE_SIDE if winner != 2 else AGREE_HOLD
                    elif mine in (0, 1) and winner in (0, 1):
                        code = HARD
                    else:
                        code = SOFT
            codes[m, e] = ABSENT if mine == NO_VOTE else code
    return codes, consensus


@st.composite
def matrices(draw: st.DrawFn) -> VoteMatrix:
    events = draw(st.integers(1, 25))
    models = draw(st.integers(1, 6))
    cells = draw(st.lists(st.integers(-1, 2), min_size=events * models, max_size=events * models))
    actions = np.array(cells, dtype=np.int8).reshape(events, models)
    if draw(st.booleans()):
        voting = np.array(draw(st.lists(st.booleans(), min_size=models, max_size=models)), dtype=bool)
    else:
        flags = draw(st.lists(st.booleans(), min_size=events * models, max_size=events * models))
        voting = np.array(flags, dtype=bool).reshape(events, models)
    return VoteMatrix(tuple(f"m{j}" for j in range(models)), actions, voting)


@settings(max_examples=300, deadline=None)
@given(matrices())
def test_leave_one_out_equals_a_naive_loop(matrix: VoteMatrix) -> None:
    series = leave_one_out(matrix)
    codes, consensus = naive_consensus(matrix.actions, matrix.voting)
    np.testing.assert_array_equal(series.codes, codes)
    np.testing.assert_array_equal(series.consensus, consensus)


def test_a_hand_worked_event_table() -> None:
    # models a, b, c, d vote; s is a shadow (scored, never part of a consensus).
    actions = np.array([
        [0, 0, 1, 2, 1],    # a, b: others tie; c SELL against BUY: hard; d HOLD against BUY: soft; s hard
        [0, 0, 0, 1, 1],    # a, b, c agree on BUY; d and s SELL against BUY: hard
        [2, 2, 0, -1, 2],   # a, b: others tie; c BUY against HOLD: soft; d absent; s agrees on HOLD
        [0, -1, -1, -1, 0],  # a and s: fewer than two others vote
    ], dtype=np.int8)
    matrix = VoteMatrix(("a", "b", "c", "d", "s"), actions, np.array([1, 1, 1, 1, 0], bool))
    series = leave_one_out(matrix)
    # codes[:, e] is event e across a, b, c, d, s.
    assert series.codes[:, 0].tolist() == [TIE, TIE, HARD, SOFT, HARD]
    assert series.codes[:, 1].tolist() == [AGREE_SIDE, AGREE_SIDE, AGREE_SIDE, HARD, HARD]
    assert series.codes[:, 2].tolist() == [TIE, TIE, SOFT, ABSENT, AGREE_HOLD]
    assert series.codes[:, 3].tolist() == [FEW_OTHERS, ABSENT, ABSENT, ABSENT, FEW_OTHERS]
    assert series.consensus[:, 1].tolist() == [0, 0, 0, 0, 0]
    assert series.consensus[4].tolist() == [0, 0, 2, NO_VOTE]
    d = series.figures("d")
    assert (d.present, d.judged, d.sided, d.hard, d.agree) == (2, 2, 1, 1, 0)
    s = series.figures("s")
    assert (s.present, s.few_others, s.ties, s.judged, s.agree, s.sided, s.hard) == (4, 1, 0, 3, 1, 2, 2)
    assert s.hard_rate == 1.0 and s.agreement == pytest.approx(1 / 3)
    # A range: only the last two events.
    a_tail = series.figures("a", 2, 4)
    assert (a_tail.present, a_tail.ties, a_tail.few_others, a_tail.judged) == (2, 1, 1, 0)
    assert np.isnan(a_tail.agreement) and np.isnan(a_tail.hard_rate)
    assert series.recent_start("s", 2) == 2 and series.recent_start("b", 10) == 0


def test_vote_matrix_from_the_reader_agrees_with_its_vote_table() -> None:
    builder = TelemetryBuilder()
    entries = [(e.id.encode(), [k.encode() for kv in e.fields.items() for k in kv])
               for e in generate("inactive-model", 300, seed=4)]
    builder.feed(entries)
    telemetry = builder.build()
    matrix = vote_matrix(telemetry.evaluated, telemetry.models)
    assert matrix.names == ("lgbm", "nhits", "patchtst", "xgb")
    assert matrix.voting.tolist() == [True, True, False, True]  # patchtst is a shadow in the simulator
    counted = np.stack([((matrix.actions == k) & matrix.voting).sum(axis=1) for k in range(3)], axis=1)
    np.testing.assert_array_equal(counted, telemetry.votes)
    assert fleiss_kappa(telemetry.votes).events == int((telemetry.votes.sum(axis=1) >= 2).sum())
    explicit = vote_matrix(telemetry.evaluated, telemetry.models, shadow={"patchtst": False})
    assert explicit.voting.all()


def test_vote_matrix_rejects_a_bad_shape() -> None:
    with pytest.raises(ValueError):
        VoteMatrix(("a",), np.zeros((3, 2), np.int8), np.ones(2, bool))
    with pytest.raises(ValueError):
        VoteMatrix(("a", "b"), np.zeros((3, 2), np.int8), np.ones(3, bool))
    cols = {"a": types.SimpleNamespace(event_idx=np.array([0, 2]), action=np.array([1, 2]), shadow=0)}
    assert vote_matrix(3, cols).actions[:, 0].tolist() == [1, NO_VOTE, 2]


# --- Fleiss' kappa --------------------------------------------------------------------------------

# Fleiss (1971), Table 1: each row is one patient's six diagnoses (1 depression, 2 personality disorder,
# 3 schizophrenia, 4 neurosis, 5 other), as distributed with R's irr package ("diagnoses").
FLEISS_1971 = [
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5], [2, 2, 2, 4, 4, 4],
    [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4], [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5],
    [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4], [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5],
    [3, 3, 3, 3, 3, 5], [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4], [1, 4, 4, 4, 4, 5],
    [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4], [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
]


def textbook_kappa(table: list[list[int]]) -> float:
    """Fleiss' formula written out with Python loops, for equal or unequal raters per subject."""
    subjects = [row for row in table if sum(row) >= 2]
    p_i = [(sum(x * x for x in row) - sum(row)) / (sum(row) * (sum(row) - 1)) for row in subjects]
    total = sum(sum(row) for row in subjects)
    p_j = [sum(row[j] for row in subjects) / total for j in range(len(table[0]))]
    p_bar = sum(p_i) / len(p_i)
    p_e = sum(p * p for p in p_j)
    return (p_bar - p_e) / (1 - p_e)


def test_fleiss_kappa_on_fleiss_1971() -> None:
    counts = [[row.count(c) for c in range(1, 6)] for row in FLEISS_1971]
    assert [sum(col) for col in zip(*counts, strict=True)] == [26, 26, 30, 55, 43]
    result = fleiss_kappa(np.array(counts))
    assert result.kappa == pytest.approx(textbook_kappa(counts), abs=1e-12)
    assert result.kappa == pytest.approx(0.4302445, abs=1e-7)
    assert (result.events, result.raters_min, result.raters_max) == (30, 6, 6)


def test_fleiss_kappa_with_varying_raters_and_degenerate_tables() -> None:
    rng = np.random.default_rng(1)
    table = rng.integers(0, 4, size=(200, 3))
    result = fleiss_kappa(table)
    assert result.kappa == pytest.approx(textbook_kappa(table.tolist()), abs=1e-12)
    assert result.events == int((table.sum(axis=1) >= 2).sum())
    assert fleiss_kappa(np.array([[1, 0, 0], [0, 1, 0]])).events == 0  # one rater per event: no agreement
    assert np.isnan(fleiss_kappa(np.array([[3, 0, 0], [4, 0, 0]])).kappa)  # one category only: undefined
    assert fleiss_kappa(np.array([[3, 0, 0], [0, 3, 0]])).kappa == pytest.approx(1.0)


# --- the relative rule on scenario ensembles ------------------------------------------------------

MODELS = ("lgbm", "nhits", "patchtst", "xgb")


def ensemble(kind: str, events: int = 1000, seed: int = 7, who: tuple[str, ...] = ("patchtst",),
             regime_persistence: float = 0.9, models: tuple[str, ...] = MODELS) -> VoteMatrix:
    """Healthy voters (48 % the market side, 49 % HOLD, 3 % the opposite) in regimes: the side persists
    from event to event with the given probability. The models in ``who`` are broken as ``kind`` says."""
    rng = np.random.default_rng(seed)
    side = np.empty(events, dtype=np.int8)
    side[0] = 0
    flips = rng.random(events) > regime_persistence
    fresh = rng.integers(0, 2, events)
    for i in range(1, events):
        side[i] = fresh[i] if flips[i] else side[i - 1]
    columns = []
    for name in models:
        draw = rng.random(events)
        healthy = np.where(draw < 0.48, side, np.where(draw < 0.97, 2, 1 - side)).astype(np.int8)
        if name in who and kind == "backwards":
            healthy = np.where(healthy == 2, 2, 1 - healthy).astype(np.int8)
        elif name in who and kind == "random":
            healthy = rng.integers(0, 3, events).astype(np.int8)
        elif name in who and kind == "different":  # a sane model with its own view: 10 % opposite, not 3 %
            healthy = np.where(draw < 0.40, side, np.where(draw < 0.90, 2, 1 - side)).astype(np.int8)
        columns.append(healthy)
    return VoteMatrix(models, np.stack(columns, axis=1), np.ones(len(models), bool))


def judge(kind: str, baseline_kind: str | None, **kwargs: object) -> tuple[list, tuple]:
    series = leave_one_out(ensemble(kind, **kwargs))  # type: ignore[arg-type]
    window = {n: series.figures(n) for n in MODELS}
    baseline = None
    if baseline_kind is not None:
        before = leave_one_out(ensemble(baseline_kind, seed=99))
        baseline = {n: before.figures(n) for n in MODELS}
    evidence = relative_evidence(window, baseline)
    return judge_relative(evidence), evidence


@pytest.mark.parametrize(("kind", "baseline_kind", "failed"), [
    ("healthy", "healthy", []),
    ("healthy", None, []),
    ("backwards", "healthy", ["patchtst"]),
    ("backwards", None, ["patchtst"]),
    ("random", "healthy", ["patchtst"]),
    ("random", None, ["patchtst"]),
    ("different", "healthy", []),  # mild disagreement of a sane model is not a failure
    ("different", None, []),
    ("backwards", "backwards", []),  # it always read the signal that way: not a change since the cutover
])
def test_relative_rule_scenarios(kind: str, baseline_kind: str | None, failed: list[str]) -> None:
    findings, _ = judge(kind, baseline_kind)
    assert [f.subject for f in findings] == failed
    assert all(f.severity == FAIL and f.check == "relative_hard_disagree" for f in findings)


def test_relative_finding_reads_like_the_issue() -> None:
    findings, evidence = judge("backwards", "healthy")
    (finding,) = findings
    assert finding.message.startswith("patchtst: BUY/SELL against the others' consensus in ")
    assert "others " in finding.message and "patchtst before the cutover " in finding.message
    (ev,) = [e for e in evidence if e.name == "patchtst"]
    assert ev.violated and ev.low > ev.limit and ev.hard_rate > 0.8
    assert ev.baseline_rate is not None and ev.baseline_rate < 0.15
    assert {n for n, _, _ in ev.others} == {"lgbm", "nhits", "xgb"}
    no_base, _ = judge("backwards", None)
    assert "no baseline before the cutover" in no_base[0].message


def test_one_broken_peer_does_not_shield_another() -> None:
    # Two of six backwards: each is judged against the majority of the others, not the worst of them.
    # (With two of five broken, the healthy models' own consensus is a coin flip and the margin is not
    # reached without a baseline; the ensemble hard-disagreement rule is what catches that fleet.)
    names = (*MODELS, "tcn", "tft")
    series = leave_one_out(ensemble("backwards", who=("lgbm", "patchtst"), models=names))
    findings = judge_relative(relative_evidence({n: series.figures(n) for n in names}, None))
    assert sorted(f.subject for f in findings) == ["lgbm", "patchtst"]


def test_too_little_evidence_is_not_judged_but_said() -> None:
    series = leave_one_out(ensemble("backwards", events=40))
    evidence = relative_evidence({n: series.figures(n) for n in MODELS}, None, RelativeRule(min_sided=30))
    assert not any(e.violated for e in evidence)
    assert all("not judged" in e.note for e in evidence)
    lonely = relative_evidence({"patchtst": leave_one_out(ensemble("backwards")).figures("patchtst")}, None)
    assert not lonely[0].violated and "no other model" in lonely[0].note


def test_the_recent_window_catches_a_late_break() -> None:
    early = ensemble("healthy", events=2000, seed=5).actions
    late = ensemble("backwards", events=2000, seed=6).actions
    actions = np.concatenate([early[:1600], late[1600:]])
    series = leave_one_out(VoteMatrix(MODELS, actions, np.ones(4, bool)))
    whole = {n: series.figures(n) for n in MODELS}
    start = series.recent_start("patchtst", 400)
    recent = {n: series.figures(n, start) for n in MODELS}
    assert not judge_relative(relative_evidence(whole, None))
    assert [f.subject for f in judge_relative(relative_evidence(recent, None), scope="recent 400")] == ["patchtst"]


def test_the_shape_rules_pass_a_backwards_model_that_the_relative_rule_fails() -> None:
    """The gap of issue 12: a healthy shape, the wrong direction. Today's per-model rules see nothing."""
    from qtsafe.checks.quality import judge_stats, model_stats
    from qtsafe.config import Thresholds

    matrix = ensemble("backwards", events=1000)
    patchtst = matrix.actions[:, MODELS.index("patchtst")]
    conf = np.where(patchtst == 2, 0.55, 0.8) + np.random.default_rng(1).uniform(-0.15, 0.15, 1000)
    shape = judge_stats(model_stats(patchtst, conf, Thresholds()), Thresholds(), subject="patchtst",
                        scope="whole window", min_events=200)
    assert shape == []
    series = leave_one_out(matrix)
    findings = judge_relative(relative_evidence({n: series.figures(n) for n in MODELS}, None))
    assert [f.subject for f in findings] == ["patchtst"]
