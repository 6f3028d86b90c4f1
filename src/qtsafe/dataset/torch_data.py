"""A torch ``Dataset`` over a ``build-dataset`` file. torch is imported when called, not on import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qtsafe.dataset.writer import load_npz


def sequence_dataset(path: Path | str, split: str = "train") -> Any:
    """A ``torch.utils.data.TensorDataset`` of (x float32 (T, F), y int64) for one split.

    ``y`` becomes int64 because that is what ``torch.nn.CrossEntropyLoss`` expects.
    """
    import torch  # lazily: a 1-2 s import that the other qtsafe commands should not pay
    from torch.utils.data import TensorDataset

    data = load_npz(path)
    rows = data.rows(split)
    x = torch.from_numpy(np.ascontiguousarray(data.X[rows]))
    y = torch.from_numpy(data.y[rows].astype(np.int64))
    return TensorDataset(x, y)
