"""A torch ``Dataset`` over a ``build-dataset`` file. torch is imported when called, not on import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qtsafe.dataset.writer import load_npz
from qtsafe.extras import require


def sequence_dataset(path: Path | str, split: str = "train") -> Any:
    """A ``torch.utils.data.TensorDataset`` of (x float32 (T, F), y int64) for one split.

    ``y`` becomes int64 because that is what ``torch.nn.CrossEntropyLoss`` expects.
    """
    # lazily: a 1-2 s import that the other qtsafe commands should not pay, and absent from a core install
    torch = require("torch", "a torch Dataset")
    TensorDataset = require("torch.utils.data", "a torch Dataset").TensorDataset

    data = load_npz(path)
    rows = data.rows(split)
    x = torch.from_numpy(np.ascontiguousarray(data.X[rows]))
    y = torch.from_numpy(data.y[rows].astype(np.int64))
    return TensorDataset(x, y)
