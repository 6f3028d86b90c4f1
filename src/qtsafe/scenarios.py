"""The simulator's named scenarios, markets and models: plain tables, importable without numpy.

``qtsafe simulate --help`` lists them, and the tests' verdict tables are keyed by them.
"""

from __future__ import annotations

SCENARIOS: dict[str, str] = {
    "healthy": "four models (patchtst in shadow) reading one noisy market signal: agreeing, not identical",
    "collapsed": "patchtst stuck at confidence 0.6150 (the fleet's collapsed PatchTST)",
    "late-collapse": "healthy for the first 62.5 % of events, then patchtst stuck at 0.6150",
    "constant": "patchtst says HOLD at probability 0.5239 every time (the fleet's stuck model)",
    "majority-bias": "xgb says BUY in ~90 % of events",
    "hold-dead-zone": "nhits says HOLD in ~92 % of events with confidence in [0.45, 0.55]",
    "narrow": "lgbm confidence mostly within 0.70-0.78 (P90-P10 below 0.12, std above 0.05)",
    "nan-burst": "xgb emits NaN confidence in ~5 % of events",
    "inactive-model": "nhits marked inactive (fallback_rules) in ~80 % of events",
    "disagreeing": "voting models pick actions independently: frequent BUY-vs-SELL events",
    "backwards": "patchtst reads its signal backwards: BUY where the others see SELL, healthy shape",
    "random": "patchtst ignores its inputs: random actions, a wide spread of confidences",
    "stalled": "healthy output, but the newest event is 30 minutes old",
    "copies": "lgbm and nhits repeat xgb's votes (one model file copied into every slot): agreement ~100 %",
    "shared-bias": "every model says BUY in ~80 % of events (a broken shared feature pushes all of them one way)",
}
# The model each defect hits unless --target says otherwise ("disagreeing" hits every voting model).
DEFAULT_TARGET = {"collapsed": "patchtst", "late-collapse": "patchtst", "constant": "patchtst",
                  "majority-bias": "xgb", "hold-dead-zone": "nhits", "narrow": "lgbm", "nan-burst": "xgb",
                  "inactive-model": "nhits", "backwards": "patchtst", "random": "patchtst"}
# "copies" and "shared-bias" hit every voting model (--target names the one the others copy, or the one biased).
MARKETS: dict[str, str] = {
    "plain": "each symbol's signal decorrelates within about a minute (AR(1), 60 s); no market-wide moves",
    "regimes": "each symbol's signal persists for minutes (AR(1), 5 min) and market-wide regimes (direction "
               "15 min, volatility 20 min) move every model's action shares together by 15-20 points",
}
MODELS = ("xgb", "lgbm", "nhits", "patchtst")
