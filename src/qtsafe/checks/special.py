"""Special functions the verdicts need, without scipy: the binomial tail and Student's t quantile.

scipy is not part of the core install (a light install is a goal; the gates, canary and monitor run without it),
so the two distribution functions the rules use are written here, on one well-known primitive: the regularized
incomplete beta function I_x(a, b), evaluated by its continued fraction (modified Lentz, as in Press et al.,
*Numerical Recipes*, 3rd ed., section 6.4). The tests hold every function to ``scipy.stats`` as the oracle.

- :func:`binomial_cdf`: P(X <= k) for X ~ Binomial(n, p) = I_{1-p}(n - k, k + 1) (the exact McNemar test).
- :func:`student_t_cdf` / :func:`student_t_quantile`: Student's t with ``dof`` degrees of freedom (batch means);
  the quantile by bisection on the CDF, to 1e-12.
"""

from __future__ import annotations

import math

_EPS = 1e-15
_TINY = 1e-300
_MAX_TERMS = 100_000


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz); converges fast for x < (a + 1) / (a + b + 2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")  # pragma: no cover


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0.0 and b > 0.0) or not 0.0 <= x <= 1.0:
        raise ValueError(f"regularized_beta needs a, b > 0 and 0 <= x <= 1, got x={x}, a={a}, b={b}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return min(max(math.exp(log_front) * _beta_fraction(a, b, x) / a, 0.0), 1.0)
    return min(max(1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b, 0.0), 1.0)


def _check_binomial(name: str, n: int, p: float) -> None:
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} needs n >= 0 and 0 <= p <= 1, got n={n}, p={p}")


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    _check_binomial("binomial_cdf", n, p)
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return regularized_beta(1.0 - p, n - k, k + 1)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X > k) for X ~ Binomial(n, p), computed directly (not 1 - cdf, which loses the small tail)."""
    _check_binomial("binomial_sf", n, p)
    if k < 0:
        return 1.0
    if k >= n:
        return 0.0
    return regularized_beta(p, k + 1, n - k)


def student_t_cdf(t: float, dof: float) -> float:
    """P(T <= t) for Student's t with ``dof`` > 0 degrees of freedom."""
    if not dof > 0.0:
        raise ValueError(f"student_t_cdf needs dof > 0, got {dof}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * regularized_beta(dof / (dof + t * t), dof / 2.0, 0.5)
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, dof: float) -> float:
    """The t such that P(T <= t) = p, for 0 < p < 1 (bisection on :func:`student_t_cdf`, to 1e-12)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a probability strictly between 0 and 1 is needed, got {p!r}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, dof)
    if p == 0.5:
        return 0.0
    low, high = 0.0, 1.0
    while student_t_cdf(high, dof) < p:
        low, high = high, high * 2.0
        if high > 1e300:  # pragma: no cover - p this close to 1 is not a probability the rules use
            return math.inf
    for _ in range(2000):
        mid = (low + high) / 2.0
        if student_t_cdf(mid, dof) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


__all__ = ["binomial_cdf", "binomial_sf", "regularized_beta", "student_t_cdf", "student_t_quantile"]
