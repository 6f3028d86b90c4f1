"""Manifest, verify and scan: the feature contract between a model file and its inference path."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from qtsafe.errors import InputError
from qtsafe.models.features import compare_names, load_feature_list
from qtsafe.models.manifest import manifest_path_for, read_manifest, run_manifest
from qtsafe.models.scan import run_scan
from qtsafe.models.verify import run_verify
from qtsafe.status import Status
from tests.models.conftest import FEATURES, N_FEATURES, Artifacts, Data, Malicious

NOW = dt.datetime(2026, 1, 10, 5, 47, 45, tzinfo=dt.UTC)
PIPELINE_55 = tuple(f"f{i:02d}" for i in range(55))
TRAINED_49 = PIPELINE_55[:49]


def _checks(result: object) -> list[str]:
    return [f.check for f in result.findings if f.severity == "FAIL"]  # type: ignore[attr-defined]


# --- feature lists ---------------------------------------------------------------------------------


def test_feature_list_forms(tmp_path: Path, heldout_npz: Path) -> None:
    assert load_feature_list("a, b,c").names == ("a", "b", "c")
    text = tmp_path / "f.txt"
    text.write_text("# unified features\nret_1\n\nret_5\n")
    assert load_feature_list(str(text)).names == ("ret_1", "ret_5")
    js = tmp_path / "f.json"
    js.write_text(json.dumps({"feature_names": ["x", "y"]}))
    assert load_feature_list(str(js)).names == ("x", "y")
    assert load_feature_list(str(heldout_npz)).names == FEATURES


@pytest.mark.parametrize(("value", "message"), [
    ("a,b,a", "duplicate feature names"),
    ("missing/features.txt", "feature list file not found"),
    ("", "--features is empty"),
])
def test_bad_feature_lists(value: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_feature_list(value)


def test_compare_names_reports_count_then_set_then_order() -> None:
    count = compare_names(TRAINED_49, PIPELINE_55, expected_label="the model", actual_label="inference",
                          subject="m", scope="s")
    assert count[0].check == "feature_count"
    assert "the model has 49 features, inference has 55" in count[0].message
    assert "extra 6: f49, f50, f51, f52, f53, ..." in count[0].message
    renamed = compare_names(("a", "b"), ("a", "c"), expected_label="x", actual_label="y", subject="m", scope="s")
    assert renamed[0].check == "feature_names"
    swapped = compare_names(("a", "b", "c"), ("a", "c", "b"), expected_label="x", actual_label="y", subject="m",
                            scope="s")
    assert swapped[0].check == "feature_order"
    assert "first at #1: x 'b', y 'c'" in swapped[0].message
    assert compare_names(("a",), ("a",), expected_label="x", actual_label="y", subject="m", scope="s") == []


# --- manifest --------------------------------------------------------------------------------------


def test_manifest_records_the_contract(artifacts: Artifacts, copy_of: Callable[..., Path], tmp_path: Path,
                                       heldout_npz: Path) -> None:
    model = copy_of(artifacts.xgb_json)
    result = run_manifest(model, ",".join(FEATURES), label_rule="up if close[t+12] > close[t]",
                          training_data=str(heldout_npz), now=NOW)
    assert result.status is Status.PASS and result.written
    path = manifest_path_for(model)
    assert path.name == "xgb_v20260110_120000.json.manifest.json"
    doc = json.loads(path.read_text())
    assert doc["features"] == {"names": list(FEATURES), "count": N_FEATURES}
    assert doc["input_shape"] == [-1, N_FEATURES]
    assert doc["dtype"] == "float32"
    assert doc["label_rule"] == "up if close[t+12] > close[t]"
    assert doc["training_data"]["file"] == "heldout.npz"
    assert len(doc["training_data"]["sha256"]) == 64
    assert doc["library_versions"]["xgboost"] == ".".join(map(str, json.loads(model.read_text())["version"]))
    assert doc["artifact"]["format"] == "xgboost-json"
    assert doc["created_at"] == "2026-01-10T05:47:45Z"
    assert read_manifest(path).feature_names == FEATURES


def test_manifest_refuses_features_that_contradict_the_model(artifacts: Artifacts,
                                                              copy_of: Callable[..., Path]) -> None:
    model = copy_of(artifacts.lgbm_txt)
    wrong_count = run_manifest(model, ",".join((*FEATURES, "extra")))
    assert wrong_count.status is Status.FAIL and not wrong_count.written
    assert _checks(wrong_count) == ["feature_count"]
    swapped = run_manifest(model, ",".join((FEATURES[1], FEATURES[0], *FEATURES[2:])))
    assert _checks(swapped) == ["feature_order"]
    assert not manifest_path_for(model).exists()


def test_manifest_refuses_an_unusable_file(artifacts: Artifacts, copy_of: Callable[..., Path]) -> None:
    model = copy_of(artifacts.torch_pickled_module)
    result = run_manifest(model, ",".join(FEATURES))
    assert result.status is Status.FAIL
    assert result.summary().startswith("FAIL: no manifest written for nhits_v20251212_232039.pkl: a PyTorch model "
                                       "pickled instead of saved with torch.save")
    assert not manifest_path_for(model).exists()


def test_manifest_does_not_silently_replace_a_contract(artifacts: Artifacts, copy_of: Callable[..., Path]) -> None:
    model = copy_of(artifacts.xgb_json)
    run_manifest(model, ",".join(FEATURES))
    with pytest.raises(InputError, match="manifest already exists"):
        run_manifest(model, ",".join(FEATURES))
    assert run_manifest(model, ",".join(FEATURES), force=True).written


def test_manifest_for_a_state_dict_defaults_to_a_window_shape(artifacts: Artifacts,
                                                              copy_of: Callable[..., Path]) -> None:
    model = copy_of(artifacts.torch_state_dict)
    result = run_manifest(model, ",".join(FEATURES), architecture="pkg.mod:Net", architecture_kwargs='{"n": 6}')
    assert result.manifest is not None
    assert result.manifest["input_shape"] == [-1, -1, N_FEATURES]
    assert result.manifest["architecture"] == {"class": "pkg.mod:Net", "kwargs": {"n": 6}}
    assert "features_unrecorded" in [f.check for f in result.findings]


def test_manifest_input_shape_must_end_in_the_feature_count(artifacts: Artifacts,
                                                            copy_of: Callable[..., Path]) -> None:
    model = copy_of(artifacts.torchscript)
    assert _checks(run_manifest(model, ",".join(FEATURES), input_shape="-1,4,7")) == ["input_shape"]
    with pytest.raises(InputError, match="dimensions must be positive or -1"):
        run_manifest(model, ",".join(FEATURES), input_shape="-1,0,6")


# --- verify ----------------------------------------------------------------------------------------


def test_verify_passes_against_its_manifest(artifacts: Artifacts, copy_of: Callable[..., Path]) -> None:
    model = copy_of(artifacts.xgb_ubj)
    run_manifest(model, ",".join(FEATURES))
    result = run_verify(model)
    assert result.status is Status.PASS
    assert result.summary() == f"PASS: {model.name} matches its manifest, {N_FEATURES} features"


def test_verify_without_manifest_waits_unless_given_features(artifacts: Artifacts,
                                                              copy_of: Callable[..., Path]) -> None:
    model = copy_of(artifacts.lgbm_txt)
    waiting = run_verify(model)
    assert waiting.status is Status.WAIT
    assert waiting.summary().startswith(f"WAIT: {model.name} has no manifest")
    assert run_verify(model, ",".join(FEATURES)).status is Status.PASS


def test_verify_catches_49_trained_vs_55_produced(tmp_path: Path, data: Data) -> None:
    """The fleet's failure: a booster trained on 49 unnamed columns, an inference path producing 55."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 49)).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(x, label=(x[:, 0] > 0).astype(int)), 3)
    model = tmp_path / "xgboost_v20251213_001403.json"
    booster.save_model(model)
    # XGBoost itself accepts too few columns without a word: the reason verify exists.
    assert booster.predict(xgb.DMatrix(x[:5, :22])).shape == (5,)
    pipeline = tmp_path / "inference_features.txt"
    pipeline.write_text("\n".join(PIPELINE_55))
    direct = run_verify(model, str(pipeline))
    assert direct.status is Status.FAIL
    assert direct.summary() == (f"FAIL: {model.name}: feature count mismatch: the model expects 49 features, "
                                f"--features ({pipeline}) has 55")
    run_manifest(model, ",".join(TRAINED_49))
    via_manifest = run_verify(model, str(pipeline))
    assert _checks(via_manifest) == ["feature_count"]
    assert "the manifest has 49 features" in via_manifest.failures[0].message


def test_verify_catches_name_and_order_changes(artifacts: Artifacts, copy_of: Callable[..., Path]) -> None:
    model = copy_of(artifacts.xgb_json)
    run_manifest(model, ",".join(FEATURES))
    renamed = (*FEATURES[:-1], "volume_zscore")
    assert _checks(run_verify(model, ",".join(renamed))) == ["feature_names"]
    reordered = (FEATURES[2], *FEATURES[:2], *FEATURES[3:])
    assert _checks(run_verify(model, ",".join(reordered))) == ["feature_order"]


def test_verify_catches_a_changed_file(artifacts: Artifacts, copy_of: Callable[..., Path], data: Data) -> None:
    model = copy_of(artifacts.xgb_json)
    run_manifest(model, ",".join(FEATURES))
    other = copy_of(artifacts.xgb_unnamed_json, "other.json")
    shutil.copyfile(other, model)  # replaced by a retrain: same name, different bytes
    result = run_verify(model)
    assert result.status is Status.FAIL
    assert "hash_mismatch" in _checks(result)


def test_verify_manifest_that_contradicts_the_model(artifacts: Artifacts, copy_of: Callable[..., Path]) -> None:
    model = copy_of(artifacts.lgbm_txt)
    run_manifest(model, ",".join(FEATURES))
    path = manifest_path_for(model)
    doc = json.loads(path.read_text())
    doc["features"] = {"names": [*FEATURES, "extra"], "count": N_FEATURES + 1}
    doc["input_shape"] = [-1, N_FEATURES + 1]
    path.write_text(json.dumps(doc))
    assert _checks(run_verify(model)) == ["feature_count"]
    path.write_text("{not json")
    assert _checks(run_verify(model)) == ["manifest_unreadable"]


@pytest.mark.parametrize("attr", ["torch_pickled_module", "torch_whole_module"])
def test_verify_fails_formats_the_engine_cannot_load_safely(artifacts: Artifacts, attr: str) -> None:
    result = run_verify(getattr(artifacts, attr), ",".join(FEATURES))
    assert result.status is Status.FAIL


def test_verify_malicious_pickle_without_running_it(malicious: Malicious) -> None:
    result = run_verify(malicious.path, ",".join(FEATURES))
    assert result.status is Status.FAIL
    assert "dangerous_globals" in _checks(result)
    assert not malicious.canary.exists()


def test_verify_explicit_manifest_must_exist(artifacts: Artifacts, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="manifest not found"):
        run_verify(artifacts.xgb_json, None, str(tmp_path / "none.json"))


# --- scan ------------------------------------------------------------------------------------------


def _fleet(tmp_path: Path, artifacts: Artifacts) -> Path:
    """The 2025-12-13 checklist's /app/models: two good boosters, two torch modules pickled into .pkl."""
    root = tmp_path / "app_models"
    root.mkdir()
    shutil.copyfile(artifacts.xgb_json, root / "xgboost_v20251212_000000.json")
    shutil.copyfile(artifacts.xgb_joblib_pkl, root / "xgboost_v20251213_001403.pkl")
    shutil.copyfile(artifacts.lgbm_txt, root / "lightgbm_v20251213_001447.txt")
    shutil.copyfile(artifacts.torch_state_dict, root / "nhits_v20251210_101010.pth")
    shutil.copyfile(artifacts.torch_pickled_module, root / "nhits_v20251212_232039.pkl")
    shutil.copyfile(artifacts.torch_pickled_module, root / "patchtst_v20251212_233148.pkl")
    (root / "README.txt").write_text("not a model")
    return root


def test_scan_judges_the_newest_file_of_each_model(tmp_path: Path, artifacts: Artifacts) -> None:
    root = _fleet(tmp_path, artifacts)
    result = run_scan(root, ",".join(FEATURES))
    rows = {r.model: r for r in result.rows}
    assert set(rows) == {"xgboost", "lightgbm", "nhits", "patchtst"}
    assert rows["xgboost"].newest == "xgboost_v20251213_001403.pkl" and rows["xgboost"].older_versions == 1
    assert rows["xgboost"].status is Status.PASS
    assert rows["lightgbm"].status is Status.PASS
    # An older, healthy nhits does not save it: the engine loads the newest.
    assert rows["nhits"].newest == "nhits_v20251212_232039.pkl"
    assert rows["nhits"].status is Status.FAIL
    assert rows["nhits"].message.startswith("a PyTorch model pickled instead of saved with torch.save")
    assert result.status is Status.FAIL
    assert result.summary() == "FAIL: the newest file of 2 of 4 models is unusable: nhits, patchtst"
    assert result.ignored == ("README.txt",)


def test_scan_without_manifests_waits(tmp_path: Path, artifacts: Artifacts) -> None:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copyfile(artifacts.lgbm_txt, root / "lightgbm_v20251213_001447.txt")
    result = run_scan(root)
    assert result.status is Status.WAIT
    run_manifest(root / "lightgbm_v20251213_001447.txt", ",".join(FEATURES))
    assert run_scan(root).status is Status.PASS


def test_scan_catches_a_feature_mismatch_across_the_fleet(tmp_path: Path, artifacts: Artifacts) -> None:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copyfile(artifacts.lgbm_txt, root / "lightgbm_v20251213_001447.txt")
    result = run_scan(root, ",".join((*FEATURES, "funding_rate")))
    assert result.status is Status.FAIL
    assert "feature count mismatch" in result.rows[0].message


def test_scan_flags_twins_and_bad_timestamps(tmp_path: Path, artifacts: Artifacts) -> None:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copyfile(artifacts.xgb_json, root / "xgboost_v20251213_001403.json")
    shutil.copyfile(artifacts.xgb_ubj, root / "xgboost_v20251213_001403.ubj")
    shutil.copyfile(artifacts.lgbm_txt, root / "lightgbm_v20251399_001447.txt")
    rows = {r.model: r for r in run_scan(root, ",".join(FEATURES)).rows}
    assert "share the newest timestamp" in rows["xgboost"].message
    assert "not a real date" in rows["lightgbm"].message


def test_scan_bad_directories(tmp_path: Path, artifacts: Artifacts) -> None:
    with pytest.raises(InputError, match="model directory not found"):
        run_scan(tmp_path / "nope")
    with pytest.raises(InputError, match="is not a directory"):
        run_scan(artifacts.xgb_json)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no model files named"):
        run_scan(empty)
