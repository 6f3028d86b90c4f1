"""Where candles come from: the fleet's SQLite ``market_data`` table, per-symbol CSV/Parquet files, or the
seeded synthetic generator. Every source yields the same :class:`Candles` columns and a checksum.

Sources are read, never written: SQLite is opened read-only (``mode=ro``), so a running collector
is not disturbed and a typo in the path cannot create an empty database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from qtsafe.dataset import synthetic
from qtsafe.dataset.candles import COLUMNS, Candles, check_symbol
from qtsafe.errors import ConfigError, InputError, InsufficientDataError
from qtsafe.fsio import sha256_file

KINDS = ("synthetic", "sqlite", "csv", "parquet")
TABLE = "market_data"


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """``synthetic``, ``sqlite:PATH``, ``csv:DIR`` or ``parquet:DIR``."""

    kind: str
    path: Path | None = None

    @property
    def label(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


@dataclasses.dataclass(frozen=True)
class LoadedSource:
    """The candles read, in symbol order, and what identifies the input they came from."""

    spec: SourceSpec
    candles: dict[str, Candles]
    sha256: str  # the SQLite file, a manifest of the files read, or (synthetic) the generated bars
    files: tuple[tuple[str, str], ...]  # (file name, sha256) of every file read
    detail: dict[str, object]


def parse_source(text: str) -> SourceSpec:
    """Parse ``--source``; the path is checked when the source is read."""
    raw = (text or "").strip()
    if raw == "synthetic":
        return SourceSpec("synthetic")
    kind, sep, rest = raw.partition(":")
    if not sep or kind not in KINDS or kind == "synthetic" or not rest.strip():
        raise ConfigError(f"--source: expected synthetic, sqlite:PATH, csv:DIR or parquet:DIR, got {text!r}")
    return SourceSpec(kind, Path(rest.strip()))


def load_source(spec: SourceSpec, symbols: Sequence[str], *, days: int, interval_s: int | None,
                seed: int) -> LoadedSource:
    """Read every requested symbol (all the source has when ``symbols`` is empty)."""
    if spec.kind == "synthetic":
        return _load_synthetic(spec, symbols, days=days, interval_s=interval_s or 3600, seed=seed)
    assert spec.path is not None
    if spec.kind == "sqlite":
        return _load_sqlite(spec, spec.path, symbols)
    return _load_files(spec, spec.path, symbols)


def data_sha256(candles: dict[str, Candles]) -> str:
    """A checksum of the bars themselves, independent of the container they came in."""
    digest = hashlib.sha256()
    for symbol, c in candles.items():
        digest.update(symbol.encode("utf-8") + b"\0")
        for column in (c.ts, c.open, c.high, c.low, c.close, c.volume):
            digest.update(np.ascontiguousarray(column).tobytes())
    return digest.hexdigest()


def _load_synthetic(spec: SourceSpec, symbols: Sequence[str], *, days: int, interval_s: int,
                    seed: int) -> LoadedSource:
    chosen = tuple(symbols) or synthetic.DEFAULT_SYMBOLS
    candles = synthetic.generate(chosen, days=days, interval_s=interval_s, seed=seed)
    detail: dict[str, object] = {"generator": "regime-switching random walk", "seed": seed,
                                 "end": synthetic.DEFAULT_END.isoformat().replace("+00:00", "Z")}
    return LoadedSource(spec, candles, data_sha256(candles), (), detail)


def _load_sqlite(spec: SourceSpec, path: Path, symbols: Sequence[str]) -> LoadedSource:
    if not path.is_file():
        raise InputError(f"SQLite database not found: {path}")
    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InputError(f"cannot open SQLite database {path}: {exc}") from exc
    try:
        try:
            columns = [row[1] for row in con.execute(f"PRAGMA table_info({TABLE})")]
        except sqlite3.DatabaseError as exc:
            raise InputError(f"cannot read SQLite database {path}: {exc}") from exc
        if not columns:
            raise InputError(f"{path}: no table {TABLE!r}")
        missing = [c for c in ("symbol", *COLUMNS) if c not in columns]
        if missing:
            raise InputError(f"{path}: table {TABLE} lacks column(s) {', '.join(missing)}")
        available = [row[0] for row in con.execute(f"SELECT DISTINCT symbol FROM {TABLE} ORDER BY symbol")]
        if not available:
            raise InsufficientDataError(f"no data: table {TABLE} in {path} has no rows")
        chosen = _choose(symbols, [str(s) for s in available], f"{path} ({TABLE})")
        candles: dict[str, Candles] = {}
        for symbol in chosen:
            # One symbol at a time keeps memory to one symbol's history plus the result.
            frame = pd.read_sql_query(
                f"SELECT timestamp, open, high, low, close, volume FROM {TABLE} WHERE symbol = ?",
                con, params=(symbol,),
            )
            candles[symbol] = _to_candles(symbol, frame, f"{path} symbol {symbol}")
    finally:
        con.close()
    digest = sha256_file(path)
    return LoadedSource(spec, candles, digest, ((path.name, digest),), {"table": TABLE})


def _load_files(spec: SourceSpec, directory: Path, symbols: Sequence[str]) -> LoadedSource:
    suffix = f".{spec.kind}"
    if not directory.is_dir():
        raise InputError(f"{spec.kind.upper()} directory not found: {directory}")
    available = sorted(p.stem for p in directory.glob(f"*{suffix}") if p.is_file())
    if not available and not symbols:
        raise InsufficientDataError(f"no data: no *{suffix} files in {directory}")
    chosen = _choose(symbols, available, str(directory))
    candles: dict[str, Candles] = {}
    files: list[tuple[str, str]] = []
    for symbol in chosen:
        path = directory / f"{symbol}{suffix}"
        frame = _read_csv(path) if spec.kind == "csv" else _read_parquet(path)
        if "symbol" in frame.columns:
            others = set(frame["symbol"].dropna().astype(str).unique()) - {symbol}
            if others:
                raise InputError(f"{path}: rows for other symbols ({', '.join(sorted(others)[:3])})")
        candles[symbol] = _to_candles(symbol, frame, str(path))
        files.append((path.name, sha256_file(path)))
    manifest = "".join(f"{digest}  {name}\n" for name, digest in files)  # the format sha256sum prints
    return LoadedSource(spec, candles, hashlib.sha256(manifest.encode("utf-8")).hexdigest(), tuple(files),
                        {"directory": str(directory)})


def _choose(requested: Sequence[str], available: Sequence[str], where: str) -> tuple[str, ...]:
    if not requested:
        return tuple(check_symbol(s) for s in available)
    unknown = [s for s in requested if s not in available]
    if unknown:
        shown = ", ".join(list(available)[:10]) or "none"
        raise InputError(f"symbol(s) {', '.join(unknown)} not found in {where} (available: {shown})")
    return tuple(requested)


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"CSV file not found: {path}")
    try:
        return pd.read_csv(path, dtype={"timestamp": str, "symbol": str})
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: empty CSV file") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: malformed CSV: {exc}") from exc


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"Parquet file not found: {path}")
    try:
        return pd.read_parquet(path)
    except ImportError as exc:  # pragma: no cover - pyarrow is a declared dependency
        raise InputError(f"cannot read Parquet ({exc}); install pyarrow") from exc
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many unrelated types for a bad file
        raise InputError(f"{path}: not a readable Parquet file: {type(exc).__name__}: {exc}") from exc


def _to_candles(symbol: str, frame: pd.DataFrame, where: str) -> Candles:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{where}: missing column(s) {', '.join(missing)} (need {', '.join(COLUMNS)})")
    ts = parse_timestamps(frame["timestamp"], where)
    values = {c: _numeric(frame[c], c, where) for c in COLUMNS[1:]}
    return Candles(symbol, ts, values["open"], values["high"], values["low"], values["close"], values["volume"])


def _numeric(column: pd.Series, name: str, where: str) -> np.ndarray:
    """Numbers or empty cells (NaN, judged later); any other text is malformed input, never coerced."""
    converted = pd.to_numeric(column, errors="coerce")
    bad = converted.isna() & column.notna() & (column.astype(str).str.strip() != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"{where}: column {name} has a non-numeric value {column.iloc[row]!r} at row {row + 1}")
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)


def parse_timestamps(column: pd.Series, where: str) -> np.ndarray:
    """UTC int64 ns from epoch numbers (s, ms, us or ns by magnitude) or ISO 8601 text (naive = UTC)."""
    if column.isna().any():
        row = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise InputError(f"{where}: empty timestamp at row {row + 1}")
    if pd.api.types.is_datetime64_any_dtype(column):  # Parquet timestamps: naive means UTC
        return _utc_ns(pd.to_datetime(column, utc=True))
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        values = numeric.to_numpy(dtype=np.float64)
        magnitude = np.nanmax(np.abs(values)) if len(values) else 0.0
        # Epoch seconds reach 1e10 only in the year 2286; beyond that the unit must be finer.
        scale = 1e9 if magnitude < 1e11 else 1e6 if magnitude < 1e14 else 1e3 if magnitude < 1e17 else 1.0
        return np.rint(values * scale).astype(np.int64)
    try:
        parsed = pd.to_datetime(column.astype(str), utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where}: unreadable timestamp ({exc}); use ISO 8601 or epoch seconds/ms") from exc
    return _utc_ns(parsed)


def _utc_ns(parsed: pd.Series) -> np.ndarray:
    # pandas may pick s/ms/us resolution; pin nanoseconds so every source yields the same integers.
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None).dt.as_unit("ns").to_numpy().astype(np.int64)
