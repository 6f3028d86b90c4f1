"""``inspect_artifact``: format by bytes, facts without execution, plain-words diagnoses."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from qtsafe.errors import InputError
from qtsafe.models.artifact import inspect_artifact, run_inspect
from qtsafe.models.inspection import LoadSafety
from qtsafe.models.pickles import TORCH_PICKLED_MESSAGE
from qtsafe.status import Status
from tests.models.conftest import FEATURES, N_FEATURES, Artifacts, Malicious, write_safetensors

# (artifact attribute, format, load safety, usable, features recorded)
FORMAT_TABLE = [
    ("xgb_json", "xgboost-json", LoadSafety.NATIVE, True, N_FEATURES),
    ("xgb_ubj", "xgboost-ubj", LoadSafety.NATIVE, True, N_FEATURES),
    ("xgb_unnamed_json", "xgboost-json", LoadSafety.NATIVE, True, N_FEATURES),
    ("lgbm_txt", "lightgbm-text", LoadSafety.NATIVE, True, N_FEATURES),
    ("xgb_joblib_pkl", "pickle", LoadSafety.PICKLE_ALLOWLISTED, True, N_FEATURES),
    ("lgbm_pickle_pkl", "pickle", LoadSafety.PICKLE_ALLOWLISTED, True, N_FEATURES),
    ("arrays_joblib_z", "joblib", LoadSafety.PICKLE_ALLOWLISTED, True, None),
    ("arrays_joblib_gz", "joblib", LoadSafety.PICKLE_ALLOWLISTED, True, None),
    ("torch_state_dict", "torch-zip", LoadSafety.WEIGHTS_ONLY, True, None),
    ("torch_legacy", "torch-legacy", LoadSafety.WEIGHTS_ONLY, True, None),
    ("torchscript", "torchscript", LoadSafety.PROGRAM, True, None),
    ("torch_export", "torch-export", LoadSafety.PROGRAM, True, N_FEATURES),
    ("safetensors", "safetensors", LoadSafety.NATIVE, True, None),
    ("torch_pickled_module", "pickle", LoadSafety.UNSAFE, False, None),
    ("torch_whole_module", "torch-zip", LoadSafety.UNSAFE, False, None),
]


@pytest.mark.parametrize(("attr", "fmt", "safety", "usable", "n_features"), FORMAT_TABLE)
def test_format_is_identified_by_bytes(artifacts: Artifacts, attr: str, fmt: str, safety: LoadSafety, usable: bool,
                                       n_features: int | None) -> None:
    path: Path = getattr(artifacts, attr)
    result = inspect_artifact(path)
    assert result.format == fmt
    assert result.load_safety is safety
    assert result.usable is usable
    assert result.n_features == n_features
    assert result.size == path.stat().st_size
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("attr", ["xgb_json", "torch_state_dict", "lgbm_txt", "torchscript"])
def test_extension_proves_nothing(artifacts: Artifacts, copy_of: Callable[..., Path], attr: str) -> None:
    original: Path = getattr(artifacts, attr)
    disguised = copy_of(original, "model_v20260101_000000.pkl")
    assert inspect_artifact(disguised).format == inspect_artifact(original).format


def test_xgboost_facts(artifacts: Artifacts) -> None:
    named = inspect_artifact(artifacts.xgb_json)
    assert named.library == "xgboost"
    assert named.library_version is not None and named.library_version.count(".") == 2
    assert named.feature_names == FEATURES
    assert named.input_shape == (-1, N_FEATURES)
    assert named.details["objective"] == "binary:logistic"
    assert named.details["trees"] == 15
    unnamed = inspect_artifact(artifacts.xgb_unnamed_ubj)
    assert unnamed.feature_names is None
    assert [p.code for p in unnamed.warnings] == ["no_feature_names"]
    assert "silently predicts on too few" in unnamed.warnings[0].message


def test_lightgbm_facts(artifacts: Artifacts) -> None:
    result = inspect_artifact(artifacts.lgbm_txt)
    assert result.feature_names == FEATURES
    assert result.details["trees"] == 15
    assert result.details["objective"].startswith("binary")


def test_pickled_boosters_are_described_from_their_embedded_model(artifacts: Artifacts) -> None:
    xgb_pkl = inspect_artifact(artifacts.xgb_joblib_pkl)
    assert xgb_pkl.details["embedded_model"] == "xgboost"
    assert [g.name for g in xgb_pkl.globals] == ["xgboost.core.Booster", "builtins.bytearray"]
    lgb_pkl = inspect_artifact(artifacts.lgbm_pickle_pkl)
    assert lgb_pkl.feature_names == FEATURES
    assert "pickle_format" in [p.code for p in lgb_pkl.warnings]


def test_torch_tensor_shapes(artifacts: Artifacts) -> None:
    expected = {name: tuple(t.shape) for name, t in artifacts.healthy_net_state.items()}
    for attr in ("torch_state_dict", "torch_legacy", "torchscript", "torch_export", "safetensors",
                 "torch_pickled_module", "torch_whole_module"):
        result = inspect_artifact(getattr(artifacts, attr))
        assert {t.name: t.shape for t in result.tensors} == expected, attr
        assert {t.dtype for t in result.tensors} <= {"float32", "F32"}, attr


def test_torch_export_records_its_input(artifacts: Artifacts) -> None:
    dynamic = inspect_artifact(artifacts.torch_export)
    assert dynamic.input_shape == (-1, 4, N_FEATURES)
    assert dynamic.library_version
    static = inspect_artifact(artifacts.torch_export_static)
    assert static.input_shape == (8, 4, N_FEATURES)


def test_pytorch_model_pickled_instead_of_saved_is_named_in_plain_words(artifacts: Artifacts) -> None:
    result = inspect_artifact(artifacts.torch_pickled_module)
    assert result.failures[0].code == "torch_pickled"
    assert result.failures[0].message.startswith(TORCH_PICKLED_MESSAGE)
    assert "Invalid magic number" in result.failures[0].message
    assert result.headline().startswith("a PyTorch model pickled instead of saved with torch.save "
                                        "(nn.Module tests.models.tiny_arch.TinyNet)")


def test_whole_module_saved_with_torch_save(artifacts: Artifacts) -> None:
    result = inspect_artifact(artifacts.torch_whole_module)
    assert [p.code for p in result.failures] == ["torch_whole_module"]
    assert "weights_only=False" in result.failures[0].message


def test_malicious_pickle_flagged_and_never_executed(malicious: Malicious) -> None:
    result = inspect_artifact(malicious.path)
    assert not result.usable
    assert result.load_safety is LoadSafety.UNSAFE
    dangerous = [p for p in result.failures if p.code == "dangerous_globals"]
    assert dangerous and malicious.calls in dangerous[0].message
    assert {g.name: g.verdict for g in result.globals}[malicious.calls] == "dangerous"
    assert not malicious.canary.exists()


def test_malicious_payload_inside_a_torch_archive(tmp_path: Path) -> None:
    import torch

    canary = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self) -> tuple[object, ...]:
            return (open, (str(canary), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "hook": Payload()}, path)
    result = inspect_artifact(path)
    assert result.format == "torch-zip"
    assert "dangerous_globals" in [p.code for p in result.failures]
    assert not canary.exists()


def _cut(path: Path, tmp_path: Path, keep: float) -> Path:
    raw = path.read_bytes()
    target = tmp_path / path.name
    target.write_bytes(raw[: max(1, int(len(raw) * keep))])
    return target


@pytest.mark.parametrize("attr", ["xgb_json", "xgb_ubj", "lgbm_txt", "torch_state_dict", "torchscript", "torch_export",
                                  "torch_legacy", "xgb_joblib_pkl", "torch_pickled_module", "arrays_joblib_z",
                                  "arrays_joblib_gz", "safetensors"])
def test_truncated_file_is_a_clear_failure(artifacts: Artifacts, tmp_path: Path, attr: str) -> None:
    damaged = _cut(getattr(artifacts, attr), tmp_path, 0.6)
    result = inspect_artifact(damaged)
    assert not result.usable
    assert result.failures[0].code == "truncated", result.failures
    assert "truncated" in result.headline()


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "patchtst_v20251212_233148.pkl"
    path.write_bytes(b"")
    result = inspect_artifact(path)
    assert result.format == "empty"
    assert result.headline().startswith("empty file (0 bytes)")


@pytest.mark.parametrize("content", [b"hello, this is not a model\n", b"\x00\x01\x02garbage" * 10, b"GIF89a...."])
def test_unknown_format(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "mystery.pkl"
    path.write_bytes(content)
    result = inspect_artifact(path)
    assert result.format == "unknown"
    assert result.failures[0].code == "unknown_format"


def test_data_files_are_not_models(tmp_path: Path, heldout_npz: Path) -> None:
    npz = inspect_artifact(heldout_npz)
    assert npz.failures[0].code == "not_a_model"
    doc = tmp_path / "config.json"
    doc.write_text('{"a": 1}')
    assert inspect_artifact(doc).failures[0].code == "not_a_model"
    squashed = tmp_path / "notes.gz"
    squashed.write_bytes(gzip.compress(b"plain text, not a pickle"))
    assert inspect_artifact(squashed).failures[0].code == "unknown_format"


def test_compressed_plain_pickles(tmp_path: Path) -> None:
    payload = pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)
    for name, blob in (("z.pkl", zlib.compress(payload)), ("g.pkl", gzip.compress(payload))):
        path = tmp_path / name
        path.write_bytes(blob)
        result = inspect_artifact(path)
        assert result.format == "pickle" and result.compression in ("zlib", "gzip")
        assert result.usable


def test_protocol_0_pickle_without_a_header_is_still_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2]}, protocol=0))
    assert inspect_artifact(path).format == "pickle"


def test_safetensors_header_is_checked(tmp_path: Path) -> None:
    import numpy as np

    good = write_safetensors(tmp_path / "w.safetensors", {"fc.weight": np.ones((2, 3), dtype=np.float32)})
    result = inspect_artifact(good)
    assert result.tensors[0].shape == (2, 3)
    bad = tmp_path / "bad.safetensors"
    raw = good.read_bytes()
    bad.write_bytes(raw[:8] + raw[8:].replace(b'"data_offsets"', b'"data_offsetz"'))
    assert inspect_artifact(bad).failures[0].code == "corrupt"


def test_missing_and_directory_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="model file not found"):
        inspect_artifact(tmp_path / "nope.pkl")
    with pytest.raises(InputError, match="is a directory, not a model file"):
        inspect_artifact(tmp_path)


def test_run_inspect_fails_when_any_file_is_unusable(artifacts: Artifacts) -> None:
    good = run_inspect([artifacts.xgb_json, artifacts.lgbm_txt])
    assert good.status is Status.PASS
    assert good.summary() == "PASS: all 2 files usable"
    mixed = run_inspect([artifacts.xgb_json, artifacts.torch_pickled_module])
    assert mixed.status is Status.FAIL
    assert mixed.summary() == "FAIL: 1 of 2 files unusable: nhits_v20251212_232039.pkl"
    assert mixed.to_dict()["files"][1]["problems"][0]["code"] == "torch_pickled"
