"""Real tiny inputs made on the spot: synthetic candles, and the same bars written as a SQLite table,
CSV files and Parquet files in tmp_path."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qtsafe.dataset.candles import NS_PER_SECOND, Candles
from qtsafe.dataset.synthetic import generate

HOUR = 3600


def make_candles(symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"), *, days: int = 30, interval_s: int = HOUR,
                 seed: int = 1, outages: bool = False) -> dict[str, Candles]:
    return generate(symbols, days=days, interval_s=interval_s, seed=seed, outages=outages)


def frame_of(c: Candles, ts_format: str = "iso") -> pd.DataFrame:
    """The bars as a table, timestamps spelled the way a given source would store them."""
    if ts_format == "iso":
        ts: object = [str(np.datetime64(int(v), "ns").astype("datetime64[s]")) + "Z" for v in c.ts]
    elif ts_format == "naive":
        ts = [str(np.datetime64(int(v), "ns").astype("datetime64[s]")).replace("T", " ") for v in c.ts]
    elif ts_format == "ms":
        ts = c.ts // 1_000_000
    elif ts_format == "s":
        ts = c.ts // NS_PER_SECOND
    elif ts_format == "datetime":
        ts = pd.to_datetime(c.ts, utc=True)
    else:  # pragma: no cover - a typo in a test
        raise ValueError(ts_format)
    return pd.DataFrame({"timestamp": ts, "open": c.open, "high": c.high, "low": c.low, "close": c.close,
                         "volume": c.volume})


@pytest.fixture
def write_sqlite(tmp_path: Path) -> Callable[..., Path]:
    def write(candles: dict[str, Candles], ts_format: str = "iso", name: str = "market.db") -> Path:
        path = tmp_path / name
        with sqlite3.connect(path) as con:
            con.execute("CREATE TABLE IF NOT EXISTS market_data (symbol TEXT, timestamp, open REAL, high REAL, "
                        "low REAL, close REAL, volume REAL)")
            for symbol, c in candles.items():
                frame = frame_of(c, ts_format)
                frame.insert(0, "symbol", symbol)
                frame.to_sql("market_data", con, if_exists="append", index=False)
        return path

    return write


@pytest.fixture
def write_files(tmp_path: Path) -> Callable[..., Path]:
    def write(kind: str, candles: dict[str, Candles], ts_format: str = "iso", name: str = "universe") -> Path:
        directory = tmp_path / name
        directory.mkdir(exist_ok=True)
        for symbol, c in candles.items():
            frame = frame_of(c, ts_format)
            if kind == "csv":
                frame.to_csv(directory / f"{symbol}.csv", index=False)
            else:
                frame.to_parquet(directory / f"{symbol}.parquet", index=False)
        return directory

    return write


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""
