"""qtsafe.checks.special against scipy.stats (the oracle), and the verdicts on an install without scipy.

scipy is a test-only dependency: the core install (click, redis, msgspec, numpy, jinja2) runs the gates, promote
and the monitor, and the exact McNemar test used to import scipy there, so a canary gate on a core install ended in
"unexpected error: ModuleNotFoundError" instead of a verdict.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from qtsafe.checks.paired import mcnemar_exact
from qtsafe.checks.special import (
    binomial_cdf,
    binomial_sf,
    regularized_beta,
    student_t_cdf,
    student_t_quantile,
)


def _close(a: float, b: float, rel: float = 1e-8) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-250)  # scipy underflows to 0 before we do


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 200_000), k=st.integers(-2, 200_002), p=st.floats(0.0, 1.0))
def test_binomial_tails_match_scipy(n: int, k: int, p: float) -> None:
    k = min(k, n + 2)
    assert _close(binomial_cdf(k, n, p), float(stats.binom.cdf(k, n, p)))
    assert _close(binomial_sf(k, n, p), float(stats.binom.sf(k, n, p)))


def test_binomial_small_tails_keep_their_precision() -> None:
    # 1 - cdf would give 0 here; the direct tail does not.
    assert _close(binomial_sf(990, 1000, 0.5), float(stats.binom.sf(990, 1000, 0.5)))
    assert 0.0 < binomial_sf(990, 1000, 0.5) < 1e-270


@settings(max_examples=200, deadline=None)
@given(x=st.floats(0.0, 1.0), a=st.floats(0.05, 5000.0), b=st.floats(0.05, 5000.0))
def test_regularized_beta_matches_scipy(x: float, a: float, b: float) -> None:
    from scipy.special import betainc

    assert math.isclose(regularized_beta(x, a, b), float(betainc(a, b, x)), rel_tol=1e-7, abs_tol=1e-12)


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 7, 11, 23, 95, 1000])
@pytest.mark.parametrize("p", [1e-9, 0.01, 0.3, 0.5, 0.9, 0.975, 0.999, 1 - 6.9e-5, 1 - 1e-9])
def test_student_t_quantile_and_cdf_match_scipy(dof: int, p: float) -> None:
    q = student_t_quantile(p, dof)
    assert math.isclose(q, float(stats.t.ppf(p, dof)), rel_tol=1e-7, abs_tol=1e-9)
    assert math.isclose(student_t_cdf(q, dof), p, rel_tol=1e-7)


def test_bad_arguments_are_refused() -> None:
    for call in (lambda: regularized_beta(1.5, 1, 1), lambda: regularized_beta(0.5, 0, 1),
                 lambda: binomial_cdf(1, -1, 0.5), lambda: binomial_sf(1, 3, 1.5),
                 lambda: student_t_cdf(1.0, 0), lambda: student_t_quantile(1.0, 3)):
        with pytest.raises(ValueError):
            call()
    assert student_t_cdf(math.inf, 3) == 1.0 and student_t_cdf(-math.inf, 3) == 0.0


@settings(max_examples=100, deadline=None)
@given(b=st.integers(0, 3000), c=st.integers(0, 3000))
def test_mcnemar_exact_matches_scipy_binomtest(b: int, c: int) -> None:
    two, worse = mcnemar_exact(b, c)
    if b + c == 0:
        assert (two, worse) == (1.0, 1.0)
        return
    reference = stats.binomtest(b, b + c, 0.5)
    assert math.isclose(two, reference.pvalue, rel_tol=1e-7, abs_tol=1e-250)  # scipy underflows to 0 first
    assert math.isclose(worse, float(stats.binom.cdf(b, b + c, 0.5)), rel_tol=1e-7, abs_tol=1e-250)


HIDDEN = ("scipy", "scipy.stats", "scipy.special")
BLOCK_SCIPY = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in HIDDEN)


def test_canary_gate_gives_a_verdict_without_scipy(tmp_path: Path) -> None:
    """A core install has no scipy: the canary gate must still judge (outcomes paired with McNemar) and exit by
    the contract, never 'unexpected error'."""
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(BLOCK_SCIPY)
    events = tmp_path / "events.jsonl"
    run = [sys.executable, "-m", "qtsafe"]
    subprocess.run([*run, "simulate", "--scenario", "healthy", "--count", "1000", "--out", str(events)],
                   check=True, capture_output=True, timeout=120)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "block"), "QTSAFE_CHARTS": "false",
           "HOME": str(tmp_path)}
    probe = subprocess.run([sys.executable, "-c", "import scipy"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0  # the stand-in really hides scipy
    gate = subprocess.run([*run, "quality-gate", "--mode", "canary", "--after", "2020-01-01T00:00:00Z",
                           "--events", str(events), "--model", "patchtst", "--base-dir", str(tmp_path), "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert "unexpected error" not in gate.stderr, gate.stderr
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert '"paired"' in gate.stdout and '"p_two_sided"' in gate.stdout
