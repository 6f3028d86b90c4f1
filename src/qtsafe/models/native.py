"""Native model formats parsed as data: XGBoost JSON/UBJSON, LightGBM text, safetensors (and JSON that is none)."""

from __future__ import annotations

import json
import re
import struct
from typing import IO, Any

from qtsafe.models import ubjson
from qtsafe.models.inspection import Draft, LoadSafety, TensorInfo


def looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 2 <= header_len < (1 << 31) and header_len >= 2


def examine_safetensors(handle: IO[bytes], size: int, draft: Draft) -> None:
    draft.format = "safetensors"
    draft.load_safety = LoadSafety.NATIVE
    (header_len,) = struct.unpack("<Q", handle.read(8))
    if 8 + header_len > size:
        draft.fail("truncated", f"truncated safetensors file: header says {header_len} bytes, file has {size - 8}")
        return
    try:
        header = json.loads(handle.read(header_len))
    except ValueError as exc:
        draft.fail("corrupt", f"corrupt safetensors header: {exc}")
        return
    if not isinstance(header, dict):
        draft.fail("corrupt", "corrupt safetensors header: not a JSON object")
        return
    meta = header.pop("__metadata__", None)
    if isinstance(meta, dict):
        draft.details["metadata"] = {str(k): str(v) for k, v in list(meta.items())[:20]}
    data_size = size - 8 - header_len
    end = 0
    for name, entry in header.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("shape"), list)
                and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2):
            draft.fail("corrupt", f"corrupt safetensors header: entry {name!r} lacks dtype/shape/data_offsets")
            return
        end = max(end, int(entry["data_offsets"][1]))
        draft.tensors.append(TensorInfo(name, tuple(int(d) for d in entry["shape"]), str(entry.get("dtype"))))
    if end > data_size:
        draft.fail("truncated", f"truncated safetensors file: tensors need {end} data bytes, file has {data_size}")


def examine_ubj(data: bytes, draft: Draft) -> None:
    draft.format = "xgboost-ubj"
    try:
        doc = ubjson.loads(data)
    except ubjson.UbjError as exc:
        if exc.truncated:
            draft.fail("truncated", f"truncated XGBoost UBJSON model: {exc}")
        else:
            draft.format = "unknown"
            draft.fail("unknown_format", f"unknown format: starts like UBJSON but is not ({exc})")
        return
    if not (isinstance(doc, dict) and isinstance(doc.get("learner"), dict)):
        draft.format = "unknown"
        draft.fail("unknown_format", "UBJSON document that is not an XGBoost model (no 'learner')")
        return
    describe_xgboost(doc, draft)


def examine_json(data: bytes, draft: Draft) -> None:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        pos = getattr(exc, "pos", None)
        truncated = isinstance(pos, int) and pos >= len(data.rstrip()) - 1
        draft.format = "json"
        if truncated and b'"learner"' in data[:4096]:
            draft.format = "xgboost-json"
            draft.fail("truncated", f"truncated XGBoost JSON model: the document ends early ({exc})")
        elif truncated:
            draft.fail("truncated", f"truncated JSON document: it ends early ({exc})")
        else:
            draft.format = "unknown"
            draft.fail("unknown_format", f"unknown format: not valid JSON ({exc})")
        return
    if isinstance(doc, dict) and isinstance(doc.get("learner"), dict):
        draft.format = "xgboost-json"
        describe_xgboost(doc, draft)
        return
    draft.format = "json"
    hint = " (a qtsafe manifest)" if isinstance(doc, dict) and "qtsafe_manifest" in doc else ""
    draft.fail("not_a_model", f"JSON document that is not an XGBoost model{hint}")


def describe_xgboost(doc: dict[str, Any], draft: Draft, *, embedded: bool = False) -> None:
    learner = doc.get("learner", {})
    version = doc.get("version")
    if isinstance(version, list) and all(isinstance(v, int) for v in version):
        draft.library_version = ".".join(str(v) for v in version)
    draft.library = "xgboost"
    if not embedded:
        draft.load_safety = LoadSafety.NATIVE
    param = learner.get("learner_model_param", {}) if isinstance(learner, dict) else {}
    try:
        n_features = int(str(param.get("num_feature")))
    except ValueError:
        draft.fail("corrupt", "XGBoost model without a readable learner_model_param.num_feature")
        return
    draft.n_features = n_features
    draft.input_shape = (-1, n_features)
    names = learner.get("feature_names")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        if len(names) != n_features:
            draft.fail("corrupt", f"XGBoost model lists {len(names)} feature names but num_feature is {n_features}")
        draft.feature_names = tuple(names)
    else:
        draft.warn("no_feature_names",
                   f"XGBoost booster without feature names: it takes any {n_features} or fewer columns and "
                   "silently predicts on too few; only a manifest pins the feature order")
    objective = learner.get("objective", {})
    draft.details["objective"] = objective.get("name") if isinstance(objective, dict) else None
    for key in ("num_class", "num_target", "base_score"):
        if key in param:
            draft.details[key] = param[key]
    booster = learner.get("gradient_booster", {})
    trees = booster.get("model", {}).get("trees") if isinstance(booster, dict) else None
    if isinstance(trees, list):
        draft.details["trees"] = len(trees)
    if embedded:
        draft.details["embedded_model"] = "xgboost"


_LGB_HEADER = re.compile(r"^([a-z_]+)=(.*)$")


def examine_lightgbm(data: bytes, draft: Draft) -> None:
    draft.format = "lightgbm-text"
    draft.load_safety = LoadSafety.NATIVE
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        draft.fail("corrupt", f"corrupt LightGBM model: not UTF-8 text ({exc})")
        return
    describe_lightgbm(text, draft)


def describe_lightgbm(text: str, draft: Draft, *, embedded: bool = False) -> None:
    draft.library = "lightgbm"
    header: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        if not line.strip():
            break
        match = _LGB_HEADER.match(line.strip())
        if match:
            header[match.group(1)] = match.group(2)
    if "version" in header:
        draft.details["model_format_version"] = header["version"]
    if "end of trees" not in text:
        draft.fail("truncated", "truncated LightGBM model: no 'end of trees' marker (the save was cut off)")
    try:
        n_features = int(header["max_feature_idx"]) + 1
    except (KeyError, ValueError):
        draft.fail("corrupt", "LightGBM model without a readable max_feature_idx")
        return
    draft.n_features = n_features
    draft.input_shape = (-1, n_features)
    names = tuple(header.get("feature_names", "").split())
    if names:
        if len(names) != n_features:
            draft.fail("corrupt", f"LightGBM model lists {len(names)} feature names but max_feature_idx+1 is "
                                  f"{n_features}")
        draft.feature_names = names
        if all(re.fullmatch(rf"Column_{i}", n) for i, n in enumerate(names)):
            draft.warn("generic_feature_names", "LightGBM model trained without feature names (Column_0, ...): "
                                                "only a manifest pins the feature order")
    draft.details["objective"] = header.get("objective")
    draft.details["num_class"] = header.get("num_class")
    sizes = header.get("tree_sizes", "").split()
    declared = len(sizes)
    found = len(re.findall(r"^Tree=\d+", text, flags=re.MULTILINE))
    draft.details["trees"] = found
    if declared and found != declared and "end of trees" in text:
        draft.fail("corrupt", f"LightGBM model declares {declared} trees but holds {found}")
    if embedded:
        draft.details["embedded_model"] = "lightgbm"
