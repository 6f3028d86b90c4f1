"""The ``.npz`` file: arrays that load with ``np.load(allow_pickle=False)`` and metadata as a JSON string.

Nothing in the file needs pickle: timestamps are ``datetime64[ns]`` (UTC), symbol names a unicode
array, the metadata a 0-d unicode array holding JSON.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from qtsafe.dataset.splits import SPLIT_NAMES
from qtsafe.errors import InputError

FORMAT = "qtsafe.patchtst_sequences/1"
ARRAYS = ("X", "y", "timestamps", "label_end", "symbol_index", "split", "symbols", "metadata")
ARRAY_DOCS = {
    "X": "float32 (N, T, F): N windows of T bars (oldest first, the last row is bar t) and F features",
    "y": "int8 (N,): the label of each window (see label_rule_text)",
    "timestamps": "datetime64[ns] (N,), UTC: time of each window's last bar t",
    "label_end": "datetime64[ns] (N,), UTC: time of bar t + h, the last bar the label looks at",
    "symbol_index": "int16 (N,): index into `symbols`",
    "split": "int8 (N,): 0 train, 1 val, 2 test",
    "symbols": "unicode (S,): symbol names",
    "metadata": "0-d unicode: this JSON",
}


def encode_npz(arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> bytes:
    """The compressed ``.npz`` bytes; written by the caller through the atomic writer.

    Overlapping windows repeat each row T times, which deflate removes: the file is far smaller
    than X in memory.
    """
    buffer = io.BytesIO()
    text = json.dumps(metadata, sort_keys=True, allow_nan=False)
    np.savez_compressed(buffer, **arrays, metadata=np.array(text))  # type: ignore[arg-type]
    return buffer.getvalue()


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceFile:
    """A loaded dataset file."""

    X: np.ndarray
    y: np.ndarray
    timestamps: np.ndarray
    label_end: np.ndarray
    symbol_index: np.ndarray
    split: np.ndarray
    symbols: tuple[str, ...]
    metadata: dict[str, Any]

    def rows(self, split: str) -> np.ndarray:
        """Boolean mask of the samples in ``train``, ``val`` or ``test``."""
        if split not in SPLIT_NAMES:
            raise InputError(f"unknown split {split!r} (one of {', '.join(SPLIT_NAMES)})")
        return self.split == SPLIT_NAMES.index(split)


def load_npz(path: Path | str) -> SequenceFile:
    """Read a dataset written by ``build-dataset``; any other file is an InputError, not a crash."""
    target = Path(path)
    try:
        with np.load(target, allow_pickle=False) as data:
            missing = [name for name in ARRAYS if name not in data.files]
            if missing:
                raise InputError(f"{target}: not a qtsafe sequence dataset (missing {', '.join(missing)})")
            arrays = {name: data[name] for name in ARRAYS}
    except FileNotFoundError as exc:
        raise InputError(f"dataset file not found: {target}") from exc
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{target}: not a readable .npz file: {exc}") from exc
    try:
        metadata = json.loads(str(arrays["metadata"]))
    except json.JSONDecodeError as exc:
        raise InputError(f"{target}: metadata is not JSON: {exc}") from exc
    if metadata.get("format") != FORMAT:
        raise InputError(f"{target}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    n = arrays["X"].shape[0]
    if arrays["X"].ndim != 3 or any(arrays[k].shape != (n,) for k in ARRAYS[1:6]):
        raise InputError(f"{target}: array shapes disagree (X {arrays['X'].shape})")
    return SequenceFile(arrays["X"], arrays["y"], arrays["timestamps"], arrays["label_end"], arrays["symbol_index"],
                        arrays["split"], tuple(str(s) for s in arrays["symbols"]), metadata)
