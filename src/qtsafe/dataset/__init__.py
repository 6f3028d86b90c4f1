"""Leak-free PatchTST sequence datasets from OHLCV candles (``qtsafe build-dataset``).

Importing this package imports neither pandas nor torch: the names below load on first use, so
``qtsafe build-dataset --help`` starts fast; :func:`qtsafe.dataset.torch_data.sequence_dataset` imports torch
when called.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DatasetRequest": "qtsafe.dataset.builder",
    "build_arrays": "qtsafe.dataset.builder",
    "DatasetResult": "qtsafe.dataset.run",
    "run_build_dataset": "qtsafe.dataset.run",
    "SequenceFile": "qtsafe.dataset.writer",
    "load_npz": "qtsafe.dataset.writer",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qtsafe.dataset' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
