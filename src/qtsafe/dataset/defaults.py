"""The dataset builder's named defaults and label rules: plain constants, importable without numpy or pandas.

``qtsafe build-dataset --help`` shows them, so they live apart from the code that computes with them.
"""

from __future__ import annotations

DEFAULT_FEATURES = ("rsi", "ma_cross", "volatility", "returns_1h")

DEFAULT_SPLIT = "0.7,0.15,0.15"

RULES = {
    "close": "y = 1 if close[t+h] / close[t] - 1 >= threshold, else 0",
    "barrier": "y = 1 if max(high[t+1 .. t+h]) >= close[t] * (1 + threshold), else 0",
}
