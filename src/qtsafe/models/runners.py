"""Load a model the safe way and get raw outputs for a batch: the only module that runs a model.

What runs, and how:

* XGBoost JSON/UBJ and LightGBM text: the library's own loader (a data format, no code).
* A pickled XGBoost/LightGBM booster: its embedded native model is lifted out of the opcode tree and
  handed to the library's loader; the pickle itself is never unpickled.
* TorchScript (``torch.jit.load``) and ``torch.export`` programs (``torch.export.load``).
* A ``state_dict`` (torch zip / legacy / safetensors): only with an architecture the operator names
  (``--architecture module:Class`` or the manifest's ``architecture``); weights via
  ``torch.load(weights_only=True)`` or read straight from the safetensors layout.

torch, xgboost and lightgbm are imported inside functions so ``import qtsafe.models`` stays fast.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from qtsafe.errors import InputError
from qtsafe.extras import require
from qtsafe.models.inspection import Inspection, LoadSafety
from qtsafe.models.pickle_scan import Call, GlobalRef, PDict, iter_calls, scan_pickle

PROBABILITY = "probability"  # binary: one column, P(up)
LOGIT = "logit"  # binary: one column, log-odds of up
MULTICLASS = "multiclass"  # K columns of class probabilities

_TORCH_BATCH = 4096


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model ready to score rows. ``predict`` returns the raw output, float64, (N,) or (N, K)."""

    kind: str  # xgboost, lightgbm, torch
    how: str  # one line: what was loaded and how
    n_features: int | None
    feature_names: tuple[str, ...] | None
    output: str | None  # PROBABILITY / LOGIT / MULTICLASS when the file says; None = decide from the shape
    predict: Callable[[np.ndarray], np.ndarray]


def load_model(inspection: Inspection, *, architecture: dict[str, Any] | None = None) -> LoadedModel:
    """The runner for an inspected artifact, or an InputError saying why qtsafe will not run it."""
    fmt = inspection.format
    if not inspection.usable:
        raise InputError(f"refusing to run {inspection.name}: {inspection.failures[0].message}")
    if fmt in ("xgboost-json", "xgboost-ubj"):
        return _xgboost(inspection, model_file=inspection.path)
    if fmt == "lightgbm-text":
        return _lightgbm(inspection, model_file=inspection.path)
    if fmt in ("pickle", "joblib") and inspection.load_safety is LoadSafety.PICKLE_ALLOWLISTED:
        embedded = inspection.details.get("embedded_model")
        if embedded == "xgboost":
            return _xgboost(inspection, pickled_state=_embedded_state(inspection, "xgboost.core.Booster"))
        if embedded == "lightgbm":
            return _lightgbm(inspection, model_str=_embedded_state(inspection, "lightgbm.basic.Booster"))
        raise InputError(f"{inspection.name}: a pickle without an XGBoost/LightGBM booster inside; qtsafe runs "
                         "only native formats")
    if fmt == "torchscript":
        return _torchscript(inspection)
    if fmt == "torch-export":
        return _torch_export(inspection)
    if fmt in ("torch-zip", "torch-legacy", "safetensors"):
        if architecture is None:
            raise InputError(f"{inspection.name} is a state_dict (weights only): name its architecture with "
                             "--architecture module:Class (or 'architecture' in the manifest), or export "
                             "TorchScript / torch.export")
        return _state_dict(inspection, architecture)
    raise InputError(f"qtsafe cannot run a {inspection.format_label} ({inspection.name})")


# --- gradient boosting ---------------------------------------------------------------------------


def _embedded_state(inspection: Inspection, class_name: str) -> Any:
    """Re-read the pickle's opcodes and return the booster's state value (bytes / model text)."""
    if inspection.compression:
        raise InputError(f"{inspection.name}: compressed pickles are inspected but not run; save the booster "
                         "natively (save_model)")
    with open(inspection.path, "rb") as handle:
        scan = scan_pickle(handle)
    for _path, call in iter_calls(scan.root):
        if isinstance(call.func, GlobalRef) and call.func.dotted == class_name and isinstance(call.state, PDict):
            for key, value in call.state.items:
                if key in ("handle", "_handle"):
                    if isinstance(value, Call) and isinstance(value.args, tuple) and value.args:
                        value = value.args[0]
                    if isinstance(value, (bytes, bytearray, str)):
                        return value
    raise InputError(f"{inspection.name}: no readable {class_name} state inside the pickle")


def _xgboost(inspection: Inspection, *, model_file: str | None = None, pickled_state: Any = None) -> LoadedModel:
    xgb = require("xgboost", "loading an XGBoost model")

    try:
        if pickled_state is not None:
            booster = xgb.Booster()
            # xgboost's own setstate on the *data* the pickle carries; the pickle VM never runs.
            booster.__setstate__({"handle": bytearray(pickled_state)})
            how = "XGBoost booster lifted out of the pickle (not unpickled)"
        else:
            booster = xgb.Booster(model_file=model_file)
            how = "XGBoost native loader"
    except xgb.core.XGBoostError as exc:
        raise InputError(f"XGBoost cannot load {inspection.name}: {_first_line(exc)}") from exc
    objective = str(inspection.details.get("objective") or "")
    if objective in ("binary:logistic", "reg:logistic"):
        output = PROBABILITY
    elif objective == "binary:logitraw":
        output = LOGIT
    elif objective == "multi:softprob":
        output = MULTICLASS
    else:
        raise InputError(f"XGBoost objective {objective or '(unknown)'} does not output class probabilities; "
                         "the gate judges classifiers (binary:logistic, multi:softprob)")
    names = list(inspection.feature_names) if inspection.feature_names else None

    def predict(x: np.ndarray) -> np.ndarray:
        matrix = xgb.DMatrix(x, feature_names=names)
        try:
            return np.asarray(booster.predict(matrix, validate_features=names is not None), dtype=np.float64)
        except xgb.core.XGBoostError as exc:
            raise InputError(f"XGBoost rejected the input: {_first_line(exc)}") from exc

    return LoadedModel("xgboost", how, inspection.n_features, inspection.feature_names, output, predict)


def _lightgbm(inspection: Inspection, *, model_file: str | None = None, model_str: Any = None) -> LoadedModel:
    lgb = require("lightgbm", "loading a LightGBM model")

    try:
        if model_str is not None:
            booster = lgb.Booster(model_str=str(model_str))
            how = "LightGBM booster lifted out of the pickle (not unpickled)"
        else:
            booster = lgb.Booster(model_file=model_file)
            how = "LightGBM native loader"
    except lgb.basic.LightGBMError as exc:
        raise InputError(f"LightGBM cannot load {inspection.name}: {_first_line(exc)}") from exc
    objective = str(inspection.details.get("objective") or "").split(" ")[0]
    if objective in ("binary", "cross_entropy", "xentropy"):
        output = PROBABILITY
    elif objective in ("multiclass", "multiclassova", "softmax", "multiclass_ova", "ova", "ovr"):
        output = MULTICLASS
    else:
        raise InputError(f"LightGBM objective {objective or '(unknown)'} does not output class probabilities; "
                         "the gate judges classifiers (binary, multiclass)")

    def predict(x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(booster.predict(x), dtype=np.float64)
        except lgb.basic.LightGBMError as exc:
            raise InputError(f"LightGBM rejected the input: {_first_line(exc)}") from exc

    return LoadedModel("lightgbm", how, inspection.n_features, inspection.feature_names, output, predict)


# --- torch -----------------------------------------------------------------------------------------


def _torch_predict(module: Any, static_batch: int | None) -> Callable[[np.ndarray], np.ndarray]:
    torch = require("torch", "running a PyTorch model")

    def predict(x: np.ndarray) -> np.ndarray:
        outputs = []
        step = static_batch or _TORCH_BATCH
        with torch.inference_mode():
            for start in range(0, x.shape[0], step):
                chunk = x[start:start + step]
                real = chunk.shape[0]
                if static_batch and real < static_batch:
                    # An export with a fixed batch size: pad with the last row, drop the padding after.
                    pad = np.repeat(chunk[-1:], static_batch - real, axis=0)
                    chunk = np.concatenate([chunk, pad])
                try:
                    out = module(torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)))
                except Exception as exc:  # noqa: BLE001 - a model refusing the input is an input error
                    raise InputError(f"the model failed on input of shape {list(chunk.shape)}: "
                                     f"{_last_line(exc)}") from exc
                if isinstance(out, (tuple, list)):
                    out = out[0]
                if not isinstance(out, torch.Tensor):
                    raise InputError(f"the model returned {type(out).__name__}, not a tensor")
                outputs.append(out.detach().to(torch.float64).cpu().numpy()[:real])
        return np.concatenate(outputs) if outputs else np.zeros((0,), dtype=np.float64)

    return predict


def _torchscript(inspection: Inspection) -> LoadedModel:
    torch = require("torch", "running a PyTorch model")

    try:
        module = torch.jit.load(inspection.path, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any loader failure is reported in one line
        raise InputError(f"torch.jit.load cannot load {inspection.name}: {_first_line(exc)}") from exc
    module.eval()
    return LoadedModel("torch", "TorchScript (torch.jit.load)", None, None, None, _torch_predict(module, None))


def _torch_export(inspection: Inspection) -> LoadedModel:
    torch = require("torch", "running a PyTorch model")

    try:
        module = torch.export.load(inspection.path).module()
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"torch.export.load cannot load {inspection.name}: {_first_line(exc)}") from exc
    shape = inspection.input_shape
    static_batch = shape[0] if shape and shape[0] > 0 else None
    how = "torch.export program (torch.export.load)" + (f", fixed batch {static_batch}" if static_batch else "")
    return LoadedModel("torch", how, inspection.n_features, None, None, _torch_predict(module, static_batch))


def import_architecture(spec: str) -> Any:
    """``package.module:Class`` or ``path/to/file.py:Class``: the class the operator named."""
    target, _, class_name = spec.rpartition(":")
    if not target or not class_name:
        raise InputError(f"architecture {spec!r}: expected module.path:ClassName or path/to/file.py:ClassName")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise InputError(f"architecture file not found: {target}")
            name = f"qtsafe_arch_{abs(hash(str(path.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            if module_spec is None or module_spec.loader is None:
                raise InputError(f"cannot import architecture file {target}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the operator's module failing to import is an input error
        raise InputError(f"cannot import architecture {spec}: {type(exc).__name__}: {_first_line(exc)}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise InputError(f"architecture {spec}: {target} has no {class_name}")
    return cls


_SAFETENSORS_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    """The documented layout: u64 header length, JSON header, raw little-endian tensor bytes."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        data = handle.read()
    header.pop("__metadata__", None)
    out = {}
    for name, entry in header.items():
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise InputError(f"safetensors dtype {entry['dtype']} of {name} is not supported by the gate")
        begin, end = entry["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=np.dtype(dtype).newbyteorder("<")).reshape(entry["shape"])
    return out


def _state_dict(inspection: Inspection, architecture: dict[str, Any]) -> LoadedModel:
    torch = require("torch", "running a PyTorch model")

    spec = str(architecture.get("class", ""))
    kwargs = architecture.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise InputError("architecture kwargs must be a JSON object")
    cls = import_architecture(spec)
    try:
        module = cls(**kwargs)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot build {spec}(**{kwargs}): {type(exc).__name__}: {_first_line(exc)}") from exc
    if inspection.format == "safetensors":
        state = {k: torch.from_numpy(v.copy()) for k, v in _read_safetensors(inspection.path).items()}
    else:
        try:
            state = torch.load(inspection.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"torch.load(weights_only=True) refuses {inspection.name}: {_first_line(exc)}") from exc
    if not isinstance(state, dict):
        raise InputError(f"{inspection.name} does not hold a state_dict (a mapping of tensors)")
    try:
        module.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - shape/key mismatch: the architecture does not fit the weights
        raise InputError(f"the weights do not fit {spec}: {_first_line(exc)}") from exc
    module.eval()
    return LoadedModel("torch", f"state_dict into {spec} (weights_only=True)", None, None, None,
                       _torch_predict(module, None))


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__


def _last_line(exc: BaseException) -> str:
    """TorchScript wraps the cause in a serialized traceback; its last line is the cause."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]
