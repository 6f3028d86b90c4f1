"""Held-out data for ``model gate``: a build-dataset ``.npz`` or a CSV/Parquet features table, split and checked."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qtsafe.errors import InputError
from qtsafe.extras import require

_NON_FEATURE_COLUMNS = ("label", "y", "split", "timestamp", "timestamps", "symbol", "symbol_index", "label_end")


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """The rows the model is judged on."""

    x: np.ndarray  # (N, T, F) or (N, F), float32, all finite
    y: np.ndarray | None
    feature_names: tuple[str, ...] | None
    source: str
    kind: str  # npz / csv / parquet
    split: str  # the split used, or "all"
    rows_total: int
    split_present: bool


def load_heldout(path: Path | str, *, split: str = "test", columns: Sequence[str] | None = None) -> HeldOut:
    """The build-dataset ``.npz`` or a CSV/Parquet features table, reduced to the requested split."""
    target = Path(path)
    if not target.exists():
        raise InputError(f"dataset not found: {target}")
    if target.is_dir():
        raise InputError(f"dataset {target} is a directory, not a file")
    if target.stat().st_size == 0:
        raise InputError(f"dataset {target} is empty (0 bytes)")
    with open(target, "rb") as handle:
        head = handle.read(4)
    suffix = target.suffix.lower()
    if suffix == ".npz" or head.startswith(b"PK\x03\x04"):
        held = _load_npz(target, split)
    elif suffix in (".parquet", ".pq") or head == b"PAR1":
        held = _load_table(target, split, columns, kind="parquet")
    elif suffix in (".csv", ".txt", ".tsv"):
        held = _load_table(target, split, columns, kind="csv")
    else:
        raise InputError(f"dataset {target}: expected a build-dataset .npz or a .csv/.parquet features table")
    bad = ~np.isfinite(held.x)
    if bad.any():
        rows = int(bad.reshape(bad.shape[0], -1).any(axis=1).sum())
        raise InputError(f"dataset {target} has {int(bad.sum())} NaN/Inf values in its features "
                         f"({rows} of {held.x.shape[0]} rows); the gate refuses to guess them")
    return held


def _split_mask(labels: np.ndarray, split: str, meta: dict[str, Any], where: str) -> np.ndarray:
    if labels.dtype.kind in "US":
        values = labels.astype(str)
    elif labels.dtype.kind in "iu":
        split_meta = meta.get("split")
        nested: dict[str, Any] = split_meta if isinstance(split_meta, dict) else {}
        names = next((meta[k] for k in ("split_names", "split_labels", "splits")
                      if isinstance(meta.get(k), list)), None)
        if names is None and isinstance(nested.get("names"), list):
            names = nested["names"]  # what build-dataset writes: metadata["split"]["names"]
        if names is None:
            raise InputError(f"{where}: integer split codes without 'split_names' in the metadata")
        if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise InputError(f"{where}: split codes outside 0..{len(names) - 1}")
        values = np.asarray(names, dtype=str)[labels]
    else:
        raise InputError(f"{where}: split labels of type {labels.dtype} are not understood")
    mask = values == split
    if not mask.any():
        present = ", ".join(sorted(set(values.tolist()))[:6])
        raise InputError(f"{where}: no rows with split == {split!r} (splits present: {present or 'none'})")
    return mask


def _load_npz(path: Path, split: str) -> HeldOut:
    where = f"dataset {path}"
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            if "X" not in files:
                raise InputError(f"{where} has no 'X' array (keys: {', '.join(sorted(files)) or 'none'})")
            x = data["X"]
            y = data["y"] if "y" in files else None
            labels = data["split"] if "split" in files else None
            meta_raw = data["metadata"] if "metadata" in files else None
    except InputError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read {where} as a .npz archive: {' '.join(str(exc).split())}") from exc
    meta: dict[str, Any] = {}
    if meta_raw is not None:
        try:
            loaded = json.loads(str(meta_raw[()]) if meta_raw.ndim == 0 else str(meta_raw))
            meta = loaded if isinstance(loaded, dict) else {}
        except ValueError as exc:
            raise InputError(f"{where}: metadata is not valid JSON: {exc}") from exc
    if x.ndim not in (2, 3) or x.dtype.kind not in "fiu":
        raise InputError(f"{where}: X must be a numeric (N, T, F) or (N, F) array, got {x.dtype} {list(x.shape)}")
    n = x.shape[0]
    for name, arr in (("y", y), ("split", labels)):
        if arr is not None and arr.shape[0] != n:
            raise InputError(f"{where}: {name} has {arr.shape[0]} rows, X has {n}")
    names = next((meta[k] for k in ("feature_names", "features", "feature_columns") if isinstance(meta.get(k), list)),
                 None)
    if names is not None and len(names) != x.shape[-1]:
        raise InputError(f"{where}: metadata lists {len(names)} feature names but X has {x.shape[-1]} features")
    used, present = "all", labels is not None
    if labels is not None and split != "all":
        mask = _split_mask(labels, split, meta, where)
        x = x[mask]
        y = y[mask] if y is not None else None
        used = split
    if x.shape[0] == 0:
        raise InputError(f"{where} has no rows")
    return HeldOut(x.astype(np.float32, copy=False), y, tuple(str(n) for n in names) if names else None,
                   str(path), "npz", used, n, present)


def _load_table(path: Path, split: str, columns: Sequence[str] | None, *, kind: str) -> HeldOut:
    pd = require("pandas", "reading a CSV or Parquet dataset")  # only tables need pandas

    where = f"dataset {path}"
    try:
        frame = pd.read_parquet(path) if kind == "parquet" else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parser failure is one line for the operator
        raise InputError(f"cannot read {where} as {kind}: {' '.join(str(exc).split())[:200]}") from exc
    total = len(frame)
    present = "split" in frame.columns
    used = "all"
    if present and split != "all":
        frame = frame[_split_mask(frame["split"].to_numpy().astype(str), split, {}, where)]
        used = split
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InputError(f"{where} lacks {len(missing)} of the model's {len(columns)} features: "
                             f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}")
        names = list(columns)
    else:
        names = [c for c in frame.columns if str(c).lower() not in _NON_FEATURE_COLUMNS]
    non_numeric = [c for c in names if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise InputError(f"{where}: feature columns are not numeric: {', '.join(map(str, non_numeric[:5]))}")
    if not names or frame.empty:
        raise InputError(f"{where} has no feature columns or no rows")
    x = frame[names].to_numpy(dtype=np.float32)
    y = frame["label"].to_numpy(dtype=np.float64) if "label" in frame.columns else None
    return HeldOut(x, y, tuple(str(n) for n in names), str(path), kind, used, total, present)
