"""Per-rule evidence for the gate and the scoreboard: each rule's estimate, its one-sided bounds and its limit."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from qtsafe.checks.dependence import (
    Side,
    beyond_limit,
    effective_sample_size,
    mean_beyond_limit,
    spread_beyond_limit,
    std_beyond_limit,
)
from qtsafe.config import Thresholds
from qtsafe.votes import ACTIONS, HOLD

# Above this a confidence's square overflows float64 in the std bounds; such a model is judged by its point
# figures and the invalid/above-one rules, and its std/spread rows are left out of the evidence.
_SQUARE_SAFE = 1e150


@dataclasses.dataclass(frozen=True)
class RuleEvidence:
    """One rule over one scope: the estimate, each one-sided (1 - alpha) bound, the limit and the verdict.

    ``established`` is the evidence placing the statistic beyond the limit (``low > limit`` for a "max" rule,
    ``high < limit`` for a "min" rule); ``crossed`` is the point estimate alone beyond it.
    """

    rule: str
    scope: str
    estimate: float
    low: float
    high: float
    limit: float
    side: str
    n: int
    n_eff: float
    alpha: float
    established: bool

    @property
    def crossed(self) -> bool:
        return self.estimate > self.limit if self.side == "max" else self.estimate < self.limit

    def bound_text(self, *, percent: bool = True) -> str:
        """'95 % lower bound 64.1 %, n_eff 48 of 200': the bound a rule of this side must move past its limit."""
        bound, word = (self.low, "lower") if self.side == "max" else (self.high, "upper")
        level = f"{(1 - self.alpha) * 100:g} %"
        shown = f"{bound * 100:.1f} %" if percent else f"{bound:.4f}"
        size = f", n_eff {self.n_eff:.0f} of {self.n}" if math.isfinite(self.n_eff) else f", n {self.n}"
        return f"{level} {word} bound {shown}{size}"

    def to_dict(self) -> dict[str, Any]:
        data = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items()}
        data["crossed"] = self.crossed
        return data


def proportion(rule: str, scope: str, indicator: np.ndarray, limit: float, side: Side,
               alpha: float) -> RuleEvidence:
    """Wilson bounds with n_eff of the 0/1 series in event order (checks.dependence.beyond_limit)."""
    x = np.asarray(indicator, dtype=bool)
    n = int(x.shape[0])
    n_eff = effective_sample_size(x)
    ev = beyond_limit(int(np.count_nonzero(x)), n, limit, side, n_eff, alpha)
    return RuleEvidence(rule, scope, ev.estimate, ev.low, ev.high, limit, side, n, n_eff, alpha, ev.violated)


def mean_rule(rule: str, scope: str, values: np.ndarray, limit: float, side: Side, alpha: float) -> RuleEvidence:
    """Normal bounds on the mean of a real series with its n_eff (checks.dependence.mean_beyond_limit)."""
    x = np.asarray(values, dtype=np.float64)
    ev = mean_beyond_limit(x, limit, side, alpha)
    n_eff = effective_sample_size(x) if x.shape[0] else float("nan")
    return RuleEvidence(rule, scope, ev.estimate, ev.low, ev.high, limit, side, int(x.shape[0]), n_eff, alpha,
                        ev.violated)


def model_evidence(actions: np.ndarray, confidences: np.ndarray, thresholds: Thresholds, *, scope: str,
                   alpha: float) -> dict[str, RuleEvidence]:
    """Evidence for one model's proportion and spread rules over one window of valid votes (in event order).

    Keys: ``majority_bias`` (share of its top action), ``hold_share`` and ``dead_zone_share`` (the two halves
    of the HOLD dead-zone rule), ``conf_std`` and ``conf_spread`` (P90 - P10). Empty for no votes.
    """
    t = thresholds
    n = int(actions.shape[0])
    if n == 0:
        return {}
    codes = actions.astype(np.int64, copy=False)
    counts = np.bincount(codes, minlength=3)[:3]
    top = int(np.argmax(counts))  # ties go to the first action, as ModelStats.top_action does
    conf = confidences.astype(np.float64, copy=False)
    out = {
        "majority_bias": proportion(f"majority ({ACTIONS[top]})", scope, codes == top, t.majority_max, "max", alpha),
        "hold_share": proportion("HOLD share (dead zone)", scope, codes == HOLD, t.hold_dead_zone_max, "max",
                                 alpha),
        "dead_zone_share": proportion("confidence in the dead zone", scope,
                                      (conf >= t.dead_zone_low) & (conf <= t.dead_zone_high),
                                      t.dead_zone_fraction, "max", alpha),
    }
    if float(np.max(np.abs(conf))) < _SQUARE_SAFE:
        std = std_beyond_limit(conf, t.std_min, "min", alpha)
        out["conf_std"] = RuleEvidence("confidence std", scope, std.estimate, std.low, std.high, t.std_min, "min", n,
                                       float("nan"), alpha, std.violated)
        spread = spread_beyond_limit(conf, t.p10_p90_min, "min", alpha)
        out["conf_spread"] = RuleEvidence("confidence P90-P10", scope, spread.estimate, spread.low, spread.high,
                                          t.p10_p90_min, "min", n, float("nan"), alpha, spread.violated)
    return out
