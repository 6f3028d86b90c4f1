"""Charts beside the reports: PNGs drawn from the report's own JSON, so a chart shows exactly the report's numbers.

A chart is never evidence. matplotlib (the ``charts`` extra, Agg backend) is imported only when a chart is drawn;
if it is missing or drawing fails for any reason, :func:`draw` returns the one line the report prints instead, and
the verdict and the exit code do not change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

WIDTH_PX = 1200
DPI = 100
_ACTIONS = ("BUY", "SELL", "HOLD")
_COLOURS = {"BUY": "#2e7d32", "SELL": "#c62828", "HOLD": "#9e9e9e"}
# Titles at a fixed height: left to matplotlib, each is placed by measuring the tick labels under it (~0.2 s of a
# four-model chart's drawing); these axes have nothing above them, so the place is the same.
_TITLE_Y = 1.0
_STATE_COLOURS = {"ok": "#2e7d32", "inactive": "#9e9e9e", "inconclusive": "#f9a825", "error": "#ef6c00",
                  "violation": "#c62828"}


@dataclasses.dataclass(frozen=True)
class Chart:
    """A drawn chart (``png`` bytes of ``width`` x ``height`` pixels) or, when ``png`` is None, why not (``note``)."""

    png: bytes | None
    width: int
    height: int
    note: str

    @property
    def drawn(self) -> bool:
        return self.png is not None


def draw(kind: str, data: Mapping[str, Any]) -> Chart:
    """Draw the chart of ``kind`` ("gate", "scoreboard", "monitor", "replay") from a result's ``to_dict()``.

    Never raises: a chart that cannot be drawn is a note, not an error.
    """
    drawer = _DRAWERS.get(kind)
    if drawer is None:
        return Chart(None, 0, 0, f"charts: no chart for {kind!r}")
    with _quiet():
        return _draw(drawer, kind, data)


def prefetch() -> None:
    """Import matplotlib (Agg) now, while the caller has nothing else to do (a gate waiting on its reader
    workers): the import is about half of a chart's cost. Never raises: :func:`draw` reports any failure."""
    # Any failure here is left for draw(), which imports again and turns it into its note.
    with _quiet(), contextlib.suppress(Exception):
        _figures()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # matplotlib logs (a font cache it cannot save on a full disk, a config dir it cannot create) and warns on
    # stderr: the operator's stderr stays qtsafe's one line, so its logger is quiet while it is imported or draws.
    logger = logging.getLogger("matplotlib")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


class _Figures:
    """The one pyplot call the drawers make (``subplots``), from matplotlib's object API: a Figure on an Agg
    canvas, without importing pyplot (~0.1 s) or registering the figure in its global state."""

    def __init__(self, figure_class: Any, canvas_class: Any) -> None:
        self._figure_class = figure_class
        self._canvas_class = canvas_class

    def subplots(self, nrows: int, ncols: int, *, figsize: tuple[float, float], **kwargs: Any) -> tuple[Any, Any]:
        figure = self._figure_class(figsize=figsize)
        self._canvas_class(figure)
        return figure, figure.subplots(nrows, ncols, **kwargs)


def _figures() -> _Figures:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return _Figures(Figure, FigureCanvasAgg)


def _draw(drawer: Callable[[Any, Mapping[str, Any]], tuple[Any, int]], kind: str, data: Mapping[str, Any]) -> Chart:
    try:
        figures = _figures()
    except ImportError:
        return Chart(None, 0, 0, "charts: not drawn: matplotlib is not installed (pip install 'qtsafe[charts]')")
    except Exception as exc:  # noqa: BLE001 - e.g. an unusable config or cache directory: a note, not an error
        return Chart(None, 0, 0, f"charts: not drawn: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    try:
        figure, height = drawer(figures, data)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI)
    except Exception as exc:  # noqa: BLE001 - a chart is never evidence: any failure is one line in the report
        return Chart(None, 0, 0, f"charts: not drawn: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    return Chart(buffer.getvalue(), WIDTH_PX, height, "")


def figure_for(kind: str, data: Mapping[str, Any], plt: Any) -> tuple[Any, int]:
    """The matplotlib figure and its height in pixels (tests read its texts to see it shows the report's numbers)."""
    return _DRAWERS[kind](plt, data)


def _rule(data: Mapping[str, Any], name: str) -> float | None:
    for row in data.get("thresholds") or ():
        if row.get("rule") == name:
            value = row.get("value")
            return float(value) if isinstance(value, (int, float)) else None
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _number(value: Any) -> float | None:
    return float(value) if _finite(value) else None


def _windows(model: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [(label, model[key]) for key, label in (("whole", "whole window"), ("recent", "recent window"),
                                                   ("baseline", "before cutover"))
            if isinstance(model.get(key), Mapping) and model[key].get("n")]


def _models_figure(plt: Any, data: Mapping[str, Any], title: str) -> tuple[Any, int]:
    """Per model, two panels: action shares per window (majority limit drawn) and the confidence distribution per
    window as its P10-P90 band with P50 and mean (narrow-range limit and the HOLD dead zone drawn)."""
    models: Sequence[Mapping[str, Any]] = data.get("models") or ()
    if not models:
        raise ValueError("the report has no model to draw")
    majority = _rule(data, "majority_max")
    spread_min = _rule(data, "p10_p90_min")
    dead_low, dead_high = _rule(data, "dead_zone_low"), _rule(data, "dead_zone_high")
    row_px = 260
    height = 80 + row_px * len(models)
    figure, axes = plt.subplots(len(models), 2, figsize=(WIDTH_PX / DPI, height / DPI), squeeze=False)
    figure.suptitle(f"{title}: {str(data.get('summary', ''))[:120]}", fontsize=9)
    for row, model in enumerate(models):
        name = str(model.get("name", "?"))
        status = "PASS" if model.get("passed") else "FAIL"
        windows = _windows(model)
        shares_ax, conf_ax = axes[row][0], axes[row][1]
        for col, (_label, stats) in enumerate(windows):
            for offset, action in zip((-0.27, 0.0, 0.27), _ACTIONS, strict=True):
                share = float((stats.get("action_share") or {}).get(action, 0.0))
                shares_ax.bar(col + offset, share, color=_COLOURS[action], width=0.25,
                              label=action if col == 0 else None)
                shares_ax.text(col + offset, share + 0.01, f"{share * 100:.0f} %", ha="center", va="bottom",
                               fontsize=6)
        shares_ax.set_xticks(range(len(windows)), [f"{label}\n(n={stats.get('n')})" for label, stats in windows],
                             fontsize=7)
        shares_ax.set_ylim(0, 1)
        shares_ax.set_title(f"{name} ({status}): action shares", fontsize=8, y=_TITLE_Y)
        if majority is not None:
            shares_ax.axhline(majority, color="black", linestyle="--", linewidth=0.8)
            shares_ax.text(len(windows) - 0.55, majority, f"majority limit {majority * 100:.0f} %", fontsize=6,
                           va="bottom", ha="right")
        if dead_low is not None and dead_high is not None:
            conf_ax.axhspan(dead_low, dead_high, color="#fff3e0", zorder=0, label="HOLD dead zone")
        for col, (_label, stats) in enumerate(windows):
            p10, p50, p90, mean = (_number(stats.get(k)) for k in ("p10", "p50", "p90", "conf_mean"))
            if p10 is not None and p90 is not None:
                conf_ax.plot([col, col], [p10, p90], color="#1565c0", linewidth=8, solid_capstyle="butt",
                             alpha=0.6)
                conf_ax.text(col + 0.08, p90, f"P90 {p90:.3f}", fontsize=6, va="center")
                conf_ax.text(col + 0.08, p10, f"P10 {p10:.3f}", fontsize=6, va="center")
                spread = p90 - p10
                colour = "#c62828" if spread_min is not None and spread < spread_min else "black"
                conf_ax.text(col, 1.02, f"P90-P10 {spread:.3f}", fontsize=6, ha="center", color=colour)
            if p50 is not None:
                conf_ax.plot(col, p50, marker="_", markersize=18, color="black")
            if mean is not None:
                conf_ax.plot(col, mean, marker="o", markersize=4, color="#6a1b9a")
        conf_ax.set_xticks(range(len(windows)), [label for label, _ in windows], fontsize=7)
        conf_ax.set_xlim(-0.5, max(len(windows), 1) - 0.5 + 0.4)
        conf_ax.set_ylim(0, 1.1)
        limit = f"; narrow-range limit: P90-P10 >= {spread_min:.2f}" if spread_min is not None else ""
        conf_ax.set_title(f"{name}: confidence P10-P90 band, P50 (bar), mean (dot){limit}", fontsize=8,
                          y=_TITLE_Y)
    axes[0][0].legend(fontsize=6, loc="upper left", ncol=3)
    # Fixed margins, not tight_layout: measuring every text to fit them doubled the drawing time.
    figure.subplots_adjust(left=0.05, right=0.98, top=1 - 75 / height, bottom=40 / height, hspace=0.55, wspace=0.15)
    return figure, height


def _gate(plt: Any, data: Mapping[str, Any]) -> tuple[Any, int]:
    mode = data.get("mode")
    return _models_figure(plt, data, f"quality gate ({mode})" if mode else "quality gate")


def _scoreboard(plt: Any, data: Mapping[str, Any]) -> tuple[Any, int]:
    return _models_figure(plt, data, "scoreboard")


def _timeline(plt: Any, data: Mapping[str, Any]) -> tuple[Any, int]:
    """Per check: each model's confidence std and P90-P10 against their limits, the check's state, the errors
    spent; the end of the watch (rollback or completion) marked."""
    rows: Sequence[Mapping[str, Any]] = data.get("timeline") or ()
    if not rows:
        raise ValueError("the watch has no check to draw")
    checks = [int(r.get("index", i + 1)) for i, r in enumerate(rows)]
    names = sorted({name for r in rows for name in (r.get("models") or {})})
    rules = data.get("monitor_rules") or {}
    thresholds = {row.get("rule"): row.get("value") for row in data.get("thresholds") or ()}
    height = 760
    figure, (std_ax, spread_ax, state_ax) = plt.subplots(3, 1, figsize=(WIDTH_PX / DPI, height / DPI), sharex=True,
                                                         gridspec_kw={"height_ratios": [3, 3, 1]})
    figure.suptitle(f"monitor: {str(data.get('summary', ''))[:130]}", fontsize=9)
    for name in names:
        for ax, key in ((std_ax, "std"), (spread_ax, "spread")):
            values = [((r.get("models") or {}).get(name) or {}).get(key) for r in rows]
            ax.plot(checks, [v if _finite(v) else float("nan") for v in values], linewidth=1,
                    label=f"{name}{' (canary)' if name == data.get('model') else ''}")
    for ax, key, what in ((std_ax, "std_min", "confidence std"), (spread_ax, "p10_p90_min", "P90-P10")):
        limit = _number(thresholds.get(key))
        if limit is not None:
            ax.axhline(limit, color="black", linestyle="--", linewidth=0.8)
            ax.text(checks[0], limit, f" limit {limit:.2f}", fontsize=6, va="bottom")
        ax.set_ylabel(what, fontsize=8)
    std_ax.legend(fontsize=6, loc="upper right", ncol=4)
    errors = 0
    budget = rules.get("error_budget") if isinstance(rules, Mapping) else None
    spent = []
    for check, row in zip(checks, rows, strict=True):
        state = str(row.get("state", "ok"))
        errors += state == "error"
        spent.append(errors)
        state_ax.scatter(check, 0.5, color=_STATE_COLOURS.get(state, "black"), s=8, marker="s")
    state_ax.plot(checks, [s / max(max(spent), 1) for s in spent], color="#ef6c00", linewidth=1,
                  label=f"errors spent ({errors}{f' of {budget}' if budget else ''})")
    state_ax.set_yticks([])
    state_ax.set_ylim(0, 1.1)
    state_ax.set_xlabel("check", fontsize=8)
    state_ax.legend(fontsize=6, loc="upper left")
    end = str(data.get("status", ""))
    for ax in (std_ax, spread_ax, state_ax):
        ax.axvline(checks[-1], color="#c62828" if end == "FAIL" else "#2e7d32", linewidth=1.2)
    state_ax.text(checks[-1], 1.05, f"{'rollback' if end == 'FAIL' else end.lower()} ", fontsize=7, va="top",
                  ha="right")
    state_ax.xaxis.get_major_locator().set_params(integer=True)
    figure.subplots_adjust(left=0.07, right=0.98, top=1 - 60 / height, bottom=60 / height, hspace=0.15)
    return figure, height


_DRAWERS: dict[str, Callable[[Any, Mapping[str, Any]], tuple[Any, int]]] = {
    "gate": _gate, "scoreboard": _scoreboard, "monitor": _timeline, "replay": _timeline,
}
