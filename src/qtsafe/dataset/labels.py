"""Labels: did the price rise by ``threshold`` within ``horizon`` bars after the window's last bar t?

The rule is explicit and written into the dataset's metadata. Both rules look only at bars after t;
the builder drops any sample whose label span (t, t + h] touches a missing bar.
"""

from __future__ import annotations

import numpy as np

from qtsafe.dataset.defaults import RULES
from qtsafe.errors import ConfigError


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ConfigError(f"--label-rule: unknown rule {rule!r} (known: {', '.join(RULES)})")
    return rule


def label_values(close: np.ndarray, high: np.ndarray, horizon_bars: int, threshold: float, rule: str) -> np.ndarray:
    """float64 per bar t: 1.0 or 0.0, NaN where t + h is past the end or a price involved is missing."""
    n = close.shape[0]
    out = np.full(n, np.nan)
    if n <= horizon_bars:
        return out
    base = close[: n - horizon_bars]
    if rule == "close":
        future = close[horizon_bars:]
    elif rule == "barrier":
        # The trailing max over h bars, read at t+h, is the max of high[t+1 .. t+h]; NaN if one is missing.
        import pandas as pd  # lazily: `build-dataset --help` must not pay for pandas

        future = pd.Series(high).rolling(horizon_bars, min_periods=horizon_bars).max().to_numpy()[horizon_bars:]
    else:
        raise ConfigError(f"unknown label rule {rule!r}")
    with np.errstate(invalid="ignore"):
        hit = future / base - 1.0 >= threshold if rule == "close" else future >= base * (1.0 + threshold)
    known = np.isfinite(future) & np.isfinite(base)
    out[: n - horizon_bars] = np.where(known, hit.astype(np.float64), np.nan)
    return out
