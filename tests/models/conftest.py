"""Real tiny models, trained once per session, saved in every format the fleet meets.

Nothing here is a static blob: XGBoost, LightGBM and torch train on a learnable synthetic signal so
the healthy models have a real spread of probabilities, and the collapsed one is a real network whose
weights were zeroed so it always says 0.5239, the PatchTST failure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pytest
import torch
import xgboost as xgb

from tests.models.tiny_arch import TinyNet, collapse

FEATURES = ("ret_1", "ret_5", "rsi_14", "macd_hist", "atr_14", "volume_z")
N_FEATURES = len(FEATURES)
WINDOW = 4
ROWS = {"train": 600, "val": 100, "test": 300}
COLLAPSED_P = 0.5239
ARCH_FILE = Path(__file__).with_name("tiny_arch.py")


@dataclasses.dataclass(frozen=True)
class Data:
    x: np.ndarray  # (N, T, F) float32
    y: np.ndarray  # (N,) int8, 1 = up
    split: np.ndarray  # (N,) '<U5'

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        mask = self.split == name
        return self.x[mask], self.y[mask]


def _make_data(seed: int = 7) -> Data:
    rng = np.random.default_rng(seed)
    n = sum(ROWS.values())
    x = rng.normal(size=(n, WINDOW, N_FEATURES)).astype(np.float32)
    last = x[:, -1, :]
    signal = 1.2 * last[:, 0] + 0.6 * last[:, 1] - 0.5 * last[:, 2] + 0.6 * rng.normal(size=n)
    y = (signal > 0).astype(np.int8)
    split = np.array([name for name, count in ROWS.items() for _ in range(count)], dtype="<U5")
    return Data(x, y, split)


@pytest.fixture(scope="session")
def data() -> Data:
    return _make_data()


def write_npz(path: Path, data: Data, *, x: np.ndarray | None = None, names: tuple[str, ...] | None = FEATURES,
              with_split: bool = True, drop: tuple[str, ...] = ()) -> Path:
    """A build-dataset .npz: X (N, T, F) float32, y, timestamps, label_end, symbol_index, split, metadata."""
    values = data.x if x is None else x
    n = values.shape[0]
    stamps = (np.arange(n, dtype=np.int64) * 300 + 1_767_225_600) * 1000
    meta: dict[str, Any] = {"window": int(values.shape[1]) if values.ndim == 3 else 1,
                            "label_rule": "up if close[t+12] > close[t]"}
    if names is not None:
        meta["feature_names"] = list(names)
    arrays: dict[str, Any] = {
        "X": values,
        "y": data.y[:n],
        "timestamps": stamps,
        "label_end": stamps + 12 * 300_000,
        "symbol_index": np.zeros(n, dtype=np.int16),
        "metadata": np.array(json.dumps(meta)),
    }
    if with_split:
        arrays["split"] = data.split[:n]
    for key in drop:
        arrays.pop(key)
    np.savez(path, **arrays)
    return path


@dataclasses.dataclass(frozen=True)
class Artifacts:
    """Every model file, by what it is."""

    root: Path
    xgb_json: Path  # named features
    xgb_ubj: Path  # named features
    xgb_unnamed_json: Path  # no feature names: the silent-too-few-columns booster
    xgb_unnamed_ubj: Path
    lgbm_txt: Path
    xgb_joblib_pkl: Path  # joblib.dump(booster): the fleet's xgboost_v*.pkl
    lgbm_pickle_pkl: Path  # pickle.dump(lightgbm booster)
    arrays_joblib_z: Path  # joblib.dump(dict of arrays, compress=3)
    arrays_joblib_gz: Path
    torch_state_dict: Path  # torch.save(model.state_dict()) zip
    torch_legacy: Path  # torch.save(..., _use_new_zipfile_serialization=False)
    torchscript: Path
    torch_export: Path  # dynamic batch
    torch_export_static: Path  # batch fixed at 8
    torch_pickled_module: Path  # pickle.dump(nn.Module) into .pkl: the nhits/patchtst failure
    torch_whole_module: Path  # torch.save(nn.Module): needs weights_only=False
    collapsed_torchscript: Path  # constant 0.5239
    collapsed_state_dict: Path
    safetensors: Path
    healthy_net_state: dict[str, Any] = dataclasses.field(default_factory=dict)


def _train_torch(data: Data) -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet(N_FEATURES)
    x_train, y_train = data.part("train")
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(y_train.astype(np.float32))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    loss_fn = torch.nn.BCELoss()
    for _ in range(150):
        optimizer.zero_grad()
        loss = loss_fn(net(xt), yt)
        loss.backward()
        optimizer.step()
    return net.eval()


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    """The documented layout, written by hand (the safetensors package is not a dependency)."""
    header: dict[str, Any] = {}
    blobs = []
    offset = 0
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + b"".join(blobs))
    return path


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory, data: Data) -> Artifacts:
    root = tmp_path_factory.mktemp("artifacts")
    x_train, y_train = data.part("train")
    tab = x_train[:, -1, :]
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1}
    named = xgb.train(params, xgb.DMatrix(tab, label=y_train, feature_names=list(FEATURES)), 15)
    named.save_model(root / "xgb_v20260110_120000.json")
    named.save_model(root / "xgb_v20260110_120000.ubj")
    unnamed = xgb.train(params, xgb.DMatrix(tab, label=y_train), 15)
    unnamed.save_model(root / "xgbnn_v20260110_120000.json")
    unnamed.save_model(root / "xgbnn_v20260110_120000.ubj")
    joblib.dump(named, root / "xgboost_v20251213_001403.pkl")

    booster = lgb.train({"objective": "binary", "num_leaves": 7, "verbose": -1, "min_data_in_leaf": 10,
                         "num_threads": 1}, lgb.Dataset(tab, label=y_train, feature_name=list(FEATURES)), 15)
    booster.save_model(root / "lgbm_v20260110_120000.txt")
    with open(root / "lightgbm_v20251213_001447.pkl", "wb") as handle:
        pickle.dump(booster, handle)
    arrays = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "labels": np.array(["a", "bc"]),
              "objects": np.array([1, None], dtype=object)}
    joblib.dump(arrays, root / "arrays_z.joblib", compress=3)
    joblib.dump(arrays, root / "arrays_gz.joblib", compress=("gzip", 3))

    net = _train_torch(data)
    torch.save(net.state_dict(), root / "tiny_v20260110_120000.pth")
    torch.save(net.state_dict(), root / "tiny_legacy.pth", _use_new_zipfile_serialization=False)
    torch.jit.script(net).save(str(root / "tiny_script.pt"))
    example = (torch.from_numpy(data.x[:8]),)
    batch = torch.export.Dim("batch", min=2)
    torch.export.save(torch.export.export(net, example, dynamic_shapes={"x": {0: batch}}), root / "tiny.pt2")
    torch.export.save(torch.export.export(net, example), root / "tiny_static.pt2")
    with open(root / "nhits_v20251212_232039.pkl", "wb") as handle:
        pickle.dump(net, handle)  # the fleet's mistake, reproduced
    torch.save(net, root / "tiny_whole.pth")
    state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    write_safetensors(root / "tiny.safetensors", state, {"format": "pt"})

    dead = collapse(TinyNet(N_FEATURES), COLLAPSED_P).eval()
    torch.jit.script(dead).save(str(root / "patchtst_v20251212_233148.pt"))
    torch.save(dead.state_dict(), root / "patchtst_dead.pth")
    return Artifacts(
        root=root,
        xgb_json=root / "xgb_v20260110_120000.json",
        xgb_ubj=root / "xgb_v20260110_120000.ubj",
        xgb_unnamed_json=root / "xgbnn_v20260110_120000.json",
        xgb_unnamed_ubj=root / "xgbnn_v20260110_120000.ubj",
        lgbm_txt=root / "lgbm_v20260110_120000.txt",
        xgb_joblib_pkl=root / "xgboost_v20251213_001403.pkl",
        lgbm_pickle_pkl=root / "lightgbm_v20251213_001447.pkl",
        arrays_joblib_z=root / "arrays_z.joblib",
        arrays_joblib_gz=root / "arrays_gz.joblib",
        torch_state_dict=root / "tiny_v20260110_120000.pth",
        torch_legacy=root / "tiny_legacy.pth",
        torchscript=root / "tiny_script.pt",
        torch_export=root / "tiny.pt2",
        torch_export_static=root / "tiny_static.pt2",
        torch_pickled_module=root / "nhits_v20251212_232039.pkl",
        torch_whole_module=root / "tiny_whole.pth",
        collapsed_torchscript=root / "patchtst_v20251212_233148.pt",
        collapsed_state_dict=root / "patchtst_dead.pth",
        safetensors=root / "tiny.safetensors",
        healthy_net_state={k: v.clone() for k, v in net.state_dict().items()},
    )


class _OpenPayload:
    """Unpickling this would call open(target, 'w'): creating the file is the proof it ran."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.target, "w"))


class _SystemPayload:
    """Unpickling this would run a shell command that creates the file."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.target}",))


@dataclasses.dataclass(frozen=True)
class Malicious:
    path: Path
    canary: Path  # the file the payload would create; must never exist
    calls: str  # the global the scan must name


@pytest.fixture(params=["open-p2", "open-p4", "system-p4", "system-in-model-dict"])
def malicious(request: pytest.FixtureRequest, tmp_path: Path) -> Malicious:
    """A pickle whose payload would create a file when loaded (several disguises)."""
    canary = tmp_path / "PWNED"
    kind = request.param
    path = tmp_path / "xgboost_v20260101_000000.pkl"
    if kind.startswith("open"):
        payload: Any = _OpenPayload(str(canary))
        calls = f"{open.__module__}.open"  # io.open on Python 3
    else:
        payload = _SystemPayload(str(canary))
        calls = f"{os.system.__module__}.system"
    if kind == "system-in-model-dict":
        payload = {"weights": np.ones((2, 3), dtype=np.float32), "feature_names": list(FEATURES), "hook": payload}
    protocol = 2 if kind.endswith("p2") else 4
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    assert not canary.exists()
    return Malicious(path, canary, calls)


@pytest.fixture
def make_npz(tmp_path: Path, data: Data) -> Callable[..., Path]:
    """Factory: write a build-dataset .npz variant into this test's tmp dir."""
    counter = iter(range(1000))

    def factory(**kwargs: Any) -> Path:
        return write_npz(tmp_path / f"dataset_{next(counter)}.npz", data, **kwargs)

    return factory


@pytest.fixture(scope="session")
def heldout_npz(tmp_path_factory: pytest.TempPathFactory, data: Data) -> Path:
    return write_npz(tmp_path_factory.mktemp("datasets") / "heldout.npz", data)


@pytest.fixture
def feature_file(tmp_path: Path) -> Callable[[tuple[str, ...]], Path]:
    def factory(names: tuple[str, ...]) -> Path:
        path = tmp_path / f"features_{len(names)}.txt"
        path.write_text("\n".join(names) + "\n")
        return path

    return factory


@pytest.fixture
def copy_of(tmp_path: Path) -> Callable[[Path], Path]:
    """A private copy of a session artifact (tests that write manifests or damage files use this)."""

    def factory(source: Path, name: str | None = None) -> Path:
        target = tmp_path / (name or source.name)
        target.write_bytes(source.read_bytes())
        return target

    return factory
