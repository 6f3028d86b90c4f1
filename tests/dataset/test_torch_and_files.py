"""The file round trip, the torch Dataset helper with a real DataLoader batch, and the lazy torch import."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qtsafe.config import Settings
from qtsafe.dataset import DatasetRequest, load_npz, run_build_dataset
from qtsafe.errors import InputError


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ds")
    result = run_build_dataset(Settings(base_dir=base), DatasetRequest(days=40, symbols=("ETHUSDT", "SOLUSDT")))
    assert result.dataset_path is not None
    return Path(result.dataset_path)


def test_a_real_dataloader_batch_has_shape_b_64_4(dataset_file: Path) -> None:
    import torch
    from torch.utils.data import DataLoader

    from qtsafe.dataset.torch_data import sequence_dataset

    train = sequence_dataset(dataset_file, "train")
    data = load_npz(dataset_file)
    assert len(train) == int(data.rows("train").sum())
    loader = DataLoader(train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    x, y = next(iter(loader))
    assert x.shape == (32, 64, 4) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.int64 and set(y.tolist()) <= {0, 1}
    loss = torch.nn.functional.cross_entropy(torch.zeros(32, 2), y)  # the types a classifier expects
    assert torch.isfinite(loss)
    test = sequence_dataset(dataset_file, "test")
    first_x, first_y = test[0]
    index = int(np.flatnonzero(data.rows("test"))[0])
    np.testing.assert_array_equal(first_x.numpy(), data.X[index])
    assert int(first_y) == int(data.y[index])


def test_the_metadata_describes_the_arrays(dataset_file: Path) -> None:
    data = load_npz(dataset_file)
    meta = data.metadata
    assert meta["format"] == "qtsafe.patchtst_sequences/1"
    assert data.symbols == ("ETHUSDT", "SOLUSDT") == tuple(meta["symbols"])
    assert meta["split"]["samples"] == {name: int(data.rows(name).sum()) for name in ("train", "val", "test")}
    assert np.all(data.label_end - data.timestamps == np.timedelta64(4, "h"))
    assert data.timestamps[data.rows("train")].max() < np.datetime64(meta["split"]["val_start"].rstrip("Z"))
    assert meta["label_rule_text"].startswith("y = 1 if close[t+h]")


def test_load_npz_refuses_other_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset file not found"):
        load_npz(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .npz file"):
        load_npz(junk)
    other = tmp_path / "other.npz"
    np.savez(other, X=np.zeros((2, 3, 4)))
    with pytest.raises(InputError, match="not a qtsafe sequence dataset"):
        load_npz(other)
    buf = io.BytesIO()
    arrays = {k: np.zeros(1) for k in ("y", "timestamps", "label_end", "symbol_index", "split", "symbols")}
    np.savez(buf, X=np.zeros((1, 2, 2)), metadata=np.array(json.dumps({"format": "v0"})), **arrays)
    (tmp_path / "old.npz").write_bytes(buf.getvalue())
    with pytest.raises(InputError, match="format 'v0'"):
        load_npz(tmp_path / "old.npz")


def test_importing_the_dataset_package_and_command_does_not_import_torch() -> None:
    code = ("import sys, pkgutil, importlib, qtsafe.dataset as d\n"
            "for m in pkgutil.iter_modules(d.__path__):\n"
            "    if m.name != 'torch_data': importlib.import_module('qtsafe.dataset.' + m.name)\n"
            "importlib.import_module('qtsafe.dataset.torch_data')\n"
            "importlib.import_module('qtsafe.cli.dataset')\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
