"""OHLCV candles as plain numpy columns, and the bar-interval arithmetic every other module shares.

Timestamps are int64 nanoseconds since the Unix epoch, UTC. Integers, never strings: the old builder
compared timestamps as text and sorted ``2025-1-10`` after ``2025-1-1 23:00``.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from qtsafe.errors import ConfigError

NS_PER_SECOND = 1_000_000_000
SECONDS_PER_YEAR = 365 * 86400  # crypto trades every day of the year, so a year is 365 full days
PRICE_COLUMNS = ("open", "high", "low", "close")
COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")

_SPAN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")


@dataclasses.dataclass(frozen=True, eq=False)
class Candles:
    """One symbol's bars as loaded: not yet sorted, deduplicated or checked."""

    symbol: str
    ts: np.ndarray  # int64 ns UTC
    open: np.ndarray  # float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def select(self, keep: np.ndarray) -> Candles:
        """The rows where ``keep`` (a boolean mask or an index array) selects."""
        return Candles(self.symbol, self.ts[keep], self.open[keep], self.high[keep], self.low[keep],
                       self.close[keep], self.volume[keep])


def iso_ns(ns: int | None) -> str:
    """``2025-12-31T23:00:00Z`` for an int64 ns timestamp; ``-`` for None (an empty split)."""
    if ns is None:
        return "-"
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")) + "Z"


def parse_span(text: str, what: str, *, allow_zero: bool = False) -> int:
    """Seconds from ``30s``, ``5m``, ``4h``, ``1d`` or ``1w``. A bare number is refused (seconds? bars?)."""
    raw = str(text).strip()
    if allow_zero and raw in {"0", "0s", "0m", "0h", "0d"}:
        return 0
    match = _SPAN.match(raw)
    if not match or int(match.group(1)) == 0:
        example = "0, 30m or 4h" if allow_zero else "5m, 1h or 4h"
        raise ConfigError(f"{what}: not a duration: {text!r} (use e.g. {example})")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_span(seconds: int) -> str:
    """The shortest exact spelling: 300 -> ``5m``, 3600 -> ``1h``, 5400 -> ``90m``, 0 -> ``0``."""
    if seconds == 0:
        return "0"
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: every integer is a multiple of one second")  # pragma: no cover


def check_symbol(symbol: str) -> str:
    """Refuse names that could escape a data directory or break a report table."""
    if not _SYMBOL.match(symbol):
        raise ConfigError(f"--symbols: not a symbol name: {symbol!r} (letters, digits, '.', '_' or '-')")
    return symbol


def parse_symbols(text: str | None) -> tuple[str, ...]:
    """``BTCUSDT,ETHUSDT`` (spaces allowed) into a tuple without duplicates, order kept."""
    if text is None or not text.strip():
        return ()
    out: list[str] = []
    for part in re.split(r"[,\s]+", text.strip()):
        if part and check_symbol(part) not in out:
            out.append(part)
    return tuple(out)
