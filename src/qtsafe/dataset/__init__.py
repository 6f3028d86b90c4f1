"""Leak-free PatchTST sequence datasets from OHLCV candles (``qtsafe build-dataset``).

Importing this package does not import torch; :func:`qtsafe.dataset.torch_data.sequence_dataset`
does, when called.
"""

from __future__ import annotations

from qtsafe.dataset.builder import DatasetRequest, build_arrays
from qtsafe.dataset.run import DatasetResult, run_build_dataset
from qtsafe.dataset.writer import SequenceFile, load_npz

__all__ = ["DatasetRequest", "DatasetResult", "SequenceFile", "build_arrays", "load_npz", "run_build_dataset"]
