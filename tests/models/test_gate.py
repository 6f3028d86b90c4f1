"""``model gate``: real models on held-out data, judged by the telemetry gate's own checks."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qtsafe.checks.quality import ACTIONS
from qtsafe.config import Settings, load_settings
from qtsafe.errors import InputError, WriteError
from qtsafe.models.gate import (
    EngineRule,
    actions_from_classes,
    actions_from_probability,
    evaluate_model_gate,
    label_metrics,
    model_name_for,
    roc_auc,
    run_model_gate,
)
from qtsafe.models.manifest import run_manifest
from qtsafe.status import Status
from tests.models.conftest import ARCH_FILE, COLLAPSED_P, FEATURES, N_FEATURES, ROWS, Artifacts, Data, Malicious

NOW = dt.datetime(2026, 1, 10, 6, 0, 0, tzinfo=dt.UTC)
ARCH = f"{ARCH_FILE}:TinyNet"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(None, {"base_dir": str(tmp_path / "base")}, env={})


# --- the engine rule, pure ---------------------------------------------------------------------------


def test_engine_rule_maps_probabilities() -> None:
    p = np.array([0.9, 0.61, 0.6, 0.5, 0.4, 0.39, 0.05])
    actions, confidence = actions_from_probability(p, EngineRule())
    assert [ACTIONS[a] for a in actions] == ["BUY", "BUY", "HOLD", "HOLD", "HOLD", "SELL", "SELL"]
    np.testing.assert_allclose(confidence, [0.9, 0.61, 0.6, 0.5, 0.6, 0.61, 0.95])


def test_multiclass_rule_is_argmax_in_the_declared_order() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    actions, confidence = actions_from_classes(probs, ("SELL", "HOLD", "BUY"))
    assert [ACTIONS[a] for a in actions] == ["SELL", "BUY", "HOLD"]
    np.testing.assert_allclose(confidence, [0.7, 0.6, 0.5])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"buy_above": 0.3, "sell_below": 0.4}, "sell_below"),
    ({"classes": ("BUY", "UP", "HOLD")}, "--classes"),
    ({"classes": ("BUY", "BUY", "HOLD")}, "--classes"),
])
def test_engine_rule_rejects_nonsense(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        EngineRule(**kwargs)  # type: ignore[arg-type]


def test_auc_matches_a_pairwise_count() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(60), 1)  # many ties on purpose
    labels = (rng.random(60) > 0.5).astype(np.int64)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(scores, labels) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert roc_auc(scores, np.ones(60, dtype=np.int64)) is None


def test_label_metrics_skip_labels_that_do_not_fit() -> None:
    p = np.array([0.7, 0.2])
    actions = np.array([0, 1], dtype=np.int8)
    assert label_metrics(p, "probability", actions, np.array([3.0, 4.0]), None)["available"] is False
    ok = label_metrics(p, "probability", actions, np.array([1.0, 0.0]), None)
    assert ok["accuracy_at_0_5"] == 1.0 and ok["decisive_accuracy"] == 1.0 and ok["auc"] == 1.0


def test_model_name_from_the_fleet_naming() -> None:
    assert model_name_for("/app/models/patchtst_v20251212_233148.pth") == "patchtst"
    assert model_name_for("weird name!.json") == "weird_name"
    assert model_name_for("x.json", "nhits") == "nhits"


# --- healthy models pass -----------------------------------------------------------------------------

HEALTHY = [
    ("xgb_json", {}),
    ("xgb_ubj", {}),
    ("xgb_unnamed_json", {}),
    ("lgbm_txt", {}),
    ("xgb_joblib_pkl", {}),
    ("lgbm_pickle_pkl", {}),
    ("torchscript", {}),
    ("torch_export", {}),
    ("torch_export_static", {}),
    ("torch_state_dict", {"architecture": ARCH}),
    ("torch_legacy", {"architecture": ARCH, "architecture_kwargs": '{"n_features": 6}'}),
    ("safetensors", {"architecture": ARCH}),
]


@pytest.mark.parametrize(("attr", "options"), HEALTHY)
def test_healthy_model_passes(settings: Settings, artifacts: Artifacts, heldout_npz: Path, attr: str,
                              options: dict[str, str]) -> None:
    result = evaluate_model_gate(settings, getattr(artifacts, attr), heldout_npz, now=NOW, **options)
    assert result.status is Status.PASS, result.findings
    assert result.stats.n == ROWS["test"]
    assert result.dataset["split"] == "test"
    assert result.metrics["available"] and result.metrics["auc"] > 0.8
    shares = result.stats.action_share
    assert max(shares.values()) <= 0.7 and shares["HOLD"] > 0


def test_the_same_model_scores_the_same_in_every_format(settings: Settings, artifacts: Artifacts,
                                                        heldout_npz: Path) -> None:
    """Native file vs booster lifted from a pickle vs TorchScript vs export vs state_dict: same actions."""
    def counts(attr: str, **options: str) -> dict[str, int]:
        return evaluate_model_gate(settings, getattr(artifacts, attr), heldout_npz, **options).stats.action_counts

    assert counts("xgb_json") == counts("xgb_ubj") == counts("xgb_joblib_pkl")
    assert counts("lgbm_txt") == counts("lgbm_pickle_pkl")
    torch_counts = counts("torchscript")
    assert torch_counts == counts("torch_export") == counts("torch_export_static")
    assert torch_counts == counts("torch_state_dict", architecture=ARCH) == counts("safetensors", architecture=ARCH)


# --- collapsed models fail ---------------------------------------------------------------------------


def test_constant_0_5239_model_fails(settings: Settings, artifacts: Artifacts, heldout_npz: Path) -> None:
    result = run_model_gate(settings, artifacts.collapsed_torchscript, heldout_npz, now=NOW)
    assert result.status is Status.FAIL
    checks = {f.check for f in result.failures}
    assert {"constant_output", "degenerate", "hold_dead_zone", "majority_bias", "collapsed_confidence"} <= checks
    assert result.stats.action_share["HOLD"] == 1.0
    assert result.stats.conf_mean == pytest.approx(COLLAPSED_P, abs=1e-6)
    assert result.summary().startswith("FAIL: patchtst: constant output in the held-out test rows "
                                       "(confidence ~0.5239")
    report = json.loads(Path(result.report_json or "").read_text())
    assert report["status"] == "FAIL"
    assert report["stats"]["action_share"]["HOLD"] == 1.0


def test_collapsed_state_dict_fails_too(settings: Settings, artifacts: Artifacts, heldout_npz: Path) -> None:
    result = evaluate_model_gate(settings, artifacts.collapsed_state_dict, heldout_npz, architecture=ARCH)
    assert result.status is Status.FAIL
    assert "degenerate" in {f.check for f in result.failures}


def test_too_few_rows_fails_closed(settings: Settings, artifacts: Artifacts, make_npz: Callable[..., Path],
                                   data: Data) -> None:
    small = make_npz(x=data.x[:750])  # 600 train, 100 val, 50 test
    result = evaluate_model_gate(settings, artifacts.xgb_json, small)
    assert result.status is Status.FAIL
    assert [f.check for f in result.failures] == ["insufficient_data"]
    assert evaluate_model_gate(settings, artifacts.xgb_json, small, min_rows=50).status is Status.PASS


# --- reports ---------------------------------------------------------------------------------------


def test_report_files_markdown_and_json(settings: Settings, artifacts: Artifacts, heldout_npz: Path) -> None:
    result = run_model_gate(settings, artifacts.lgbm_txt, heldout_npz, now=NOW)
    md = Path(result.report_md or "")
    js = Path(result.report_json or "")
    assert md == settings.reports_dir / "model_gate_lgbm_20260110_060000.md"
    assert js == settings.reports_dir / "model_gate_lgbm_20260110_060000.json"
    text = md.read_text()
    assert text.startswith("# Model gate: lgbm — PASS\n\nPASS: lgbm: 300 held-out rows")
    assert "BUY if p > 0.6, SELL if p < 0.4, else HOLD; confidence = max(p, 1 - p)" in text
    assert "| majority_max | 0.7 | 0.7 |" in text
    assert "No threshold is loosened past its default." in text
    doc = json.loads(js.read_text())
    assert doc["status"] == "PASS"
    assert doc["generated_at"] == "2026-01-10T06:00:00Z"
    assert doc["model"]["sha256"] == result.inspection.sha256
    assert doc["engine_rule"] == {"buy_above": 0.6, "sell_below": 0.4, "classes": None, "default": True,
                                  "rule": EngineRule().describe()}
    assert doc["metrics"]["rows"] == ROWS["test"]
    assert {row["rule"] for row in doc["thresholds"]} >= {"majority_max", "degenerate_action_max"}


def test_report_shows_loosened_thresholds_and_rule(tmp_path: Path, artifacts: Artifacts, heldout_npz: Path) -> None:
    loose = load_settings(None, {"base_dir": str(tmp_path), "thresholds.majority_max": 0.9}, env={})
    result = run_model_gate(loose, artifacts.xgb_json, heldout_npz, now=NOW, rule=EngineRule(0.55, 0.45))
    text = Path(result.report_md or "").read_text()
    assert "**Loosened past the default:** `thresholds.majority_max` = 0.9 (default 0.7)" in text
    assert "(**not the default** BUY > 0.6 / SELL < 0.4)" in text


def test_unwritable_report_leaves_previous_reports_intact(settings: Settings, artifacts: Artifacts,
                                                          heldout_npz: Path) -> None:
    earlier = run_model_gate(settings, artifacts.xgb_json, heldout_npz, now=NOW - dt.timedelta(hours=1))
    before = {p.name: p.read_bytes() for p in settings.reports_dir.iterdir()}
    # The next report's JSON path is occupied by a directory: the atomic rename must fail.
    (settings.reports_dir / "model_gate_xgb_20260110_060000.json").mkdir()
    with pytest.raises(WriteError):
        run_model_gate(settings, artifacts.xgb_json, heldout_npz, now=NOW)
    after = {p.name: p.read_bytes() for p in settings.reports_dir.iterdir() if p.is_file()}
    assert after == before  # no half report (its .md was rolled back), the earlier one untouched
    assert Path(earlier.report_md or "").exists()


def test_reports_dir_that_cannot_be_created(tmp_path: Path, artifacts: Artifacts, heldout_npz: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "reports").write_text("a file where a directory should be")
    blocked = load_settings(None, {"base_dir": str(base)}, env={})
    with pytest.raises(WriteError, match="cannot create directory"):
        run_model_gate(blocked, artifacts.xgb_json, heldout_npz, now=NOW)


# --- datasets --------------------------------------------------------------------------------------


def test_features_table_csv_and_parquet(settings: Settings, artifacts: Artifacts, data: Data, tmp_path: Path) -> None:
    x_test, y_test = data.part("test")
    frame = pd.DataFrame(x_test[:, -1, :], columns=list(FEATURES))
    frame = frame[list(reversed(FEATURES))]  # column order must not matter: the model's names pick them
    frame["label"] = y_test
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    npz = evaluate_model_gate(settings, artifacts.xgb_json, tmp_path / "t.csv")
    assert npz.status is Status.PASS and npz.stats.n == ROWS["test"]
    assert npz.metrics["auc"] > 0.8
    assert evaluate_model_gate(settings, artifacts.xgb_json, tmp_path / "t.parquet").stats == npz.stats


def test_table_missing_model_features(settings: Settings, artifacts: Artifacts, data: Data, tmp_path: Path) -> None:
    x_test, _ = data.part("test")
    pd.DataFrame(x_test[:, -1, :5], columns=list(FEATURES[:5])).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match="lacks 1 of the model's 6 features: volume_z"):
        evaluate_model_gate(settings, artifacts.lgbm_txt, tmp_path / "t.csv")


def test_dataset_with_nan_is_refused(settings: Settings, artifacts: Artifacts, make_npz: Callable[..., Path],
                                     data: Data) -> None:
    x = data.x.copy()
    x[-1, 2, 3] = np.nan
    x[-2, 0, 0] = np.inf
    with pytest.raises(InputError, match=r"has 2 NaN/Inf values in its features \(2 of 300 rows\)"):
        evaluate_model_gate(settings, artifacts.xgb_json, make_npz(x=x))


def test_dataset_feature_count_mismatch(settings: Settings, artifacts: Artifacts, make_npz: Callable[..., Path],
                                        data: Data) -> None:
    wide = np.concatenate([data.x, data.x[:, :, :1]], axis=2)
    with pytest.raises(InputError, match="feature count mismatch: the model expects 6 features, dataset .* has 7 per "
                                         "step"):
        evaluate_model_gate(settings, artifacts.xgb_unnamed_json, make_npz(x=wide, names=None))
    # TorchScript records no input width: the mismatch surfaces when it runs, with torch's own cause.
    with pytest.raises(InputError, match=r"the model failed on input of shape \[300, 4, 7\]: .*cannot be multiplied"):
        evaluate_model_gate(settings, artifacts.torchscript, make_npz(x=wide, names=None))


def test_torch_count_is_checked_against_the_manifest(settings: Settings, artifacts: Artifacts,
                                                     copy_of: Callable[..., Path], make_npz: Callable[..., Path],
                                                     data: Data) -> None:
    model = copy_of(artifacts.torchscript)
    run_manifest(model, ",".join(FEATURES), input_shape="-1,4,6")
    assert evaluate_model_gate(settings, model, make_npz()).status is Status.PASS
    with pytest.raises(InputError, match="feature count mismatch|requires"):
        evaluate_model_gate(settings, model, make_npz(x=data.x[:, :, :5], names=None))
    with pytest.raises(InputError, match=r"gives input \[300, 3, 6\], the manifest requires \[-1, 4, 6\]"):
        evaluate_model_gate(settings, model, make_npz(x=data.x[:, 1:, :]))


def test_dataset_feature_order_mismatch(settings: Settings, artifacts: Artifacts,
                                        make_npz: Callable[..., Path]) -> None:
    swapped = (FEATURES[1], FEATURES[0], *FEATURES[2:])
    with pytest.raises(InputError, match="feature order mismatch"):
        evaluate_model_gate(settings, artifacts.lgbm_txt, make_npz(names=swapped))


def test_dataset_splits(settings: Settings, artifacts: Artifacts, make_npz: Callable[..., Path]) -> None:
    everything = evaluate_model_gate(settings, artifacts.xgb_json, make_npz(), split="all")
    assert everything.stats.n == sum(ROWS.values())
    val = evaluate_model_gate(settings, artifacts.xgb_json, make_npz(), split="val", min_rows=50)
    assert val.stats.n == ROWS["val"]
    with pytest.raises(InputError, match=r"no rows with split == 'holdout' \(splits present: test, train, val\)"):
        evaluate_model_gate(settings, artifacts.xgb_json, make_npz(), split="holdout")
    unsplit = evaluate_model_gate(settings, artifacts.xgb_json, make_npz(with_split=False))
    assert unsplit.stats.n == sum(ROWS.values())
    assert "no_split" in [f.check for f in unsplit.findings if f.severity == "WARN"]


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"PK\x03\x04 truncated zip", "cannot read dataset"),
    (b"x", "expected a build-dataset .npz"),
])
def test_bad_dataset_files(settings: Settings, artifacts: Artifacts, tmp_path: Path, content: bytes,
                           message: str) -> None:
    path = tmp_path / ("data.bin" if content == b"x" else "data.npz")
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        evaluate_model_gate(settings, artifacts.xgb_json, path)


def test_dataset_without_x_and_missing_dataset(settings: Settings, artifacts: Artifacts,
                                               make_npz: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="has no 'X' array"):
        evaluate_model_gate(settings, artifacts.xgb_json, make_npz(drop=("X",)))
    with pytest.raises(InputError, match="dataset not found"):
        evaluate_model_gate(settings, artifacts.xgb_json, tmp_path / "none.npz")
    with pytest.raises(InputError, match="is a directory"):
        evaluate_model_gate(settings, artifacts.xgb_json, tmp_path)


# --- models the gate will not run ------------------------------------------------------------------


@pytest.mark.parametrize(("attr", "message"), [
    ("torch_pickled_module", "refusing to run nhits_v20251212_232039.pkl: a PyTorch model pickled instead"),
    ("torch_whole_module", "refusing to run tiny_whole.pth: a whole nn.Module saved with torch.save"),
    ("torch_state_dict", "is a state_dict \\(weights only\\): name its architecture"),
    ("arrays_joblib_z", "compressed pickles are inspected but not run|without an XGBoost/LightGBM booster"),
])
def test_models_that_are_not_run(settings: Settings, artifacts: Artifacts, heldout_npz: Path, attr: str,
                                 message: str) -> None:
    with pytest.raises(InputError, match=message):
        evaluate_model_gate(settings, getattr(artifacts, attr), heldout_npz)


def test_malicious_pickle_is_refused_and_never_run(settings: Settings, malicious: Malicious,
                                                   heldout_npz: Path) -> None:
    with pytest.raises(InputError, match="refusing to run"):
        evaluate_model_gate(settings, malicious.path, heldout_npz)
    assert not malicious.canary.exists()


def test_architecture_errors(settings: Settings, artifacts: Artifacts, heldout_npz: Path) -> None:
    with pytest.raises(InputError, match="has no NoSuchNet"):
        evaluate_model_gate(settings, artifacts.torch_state_dict, heldout_npz, architecture=f"{ARCH_FILE}:NoSuchNet")
    with pytest.raises(InputError, match="the weights do not fit"):
        evaluate_model_gate(settings, artifacts.torch_state_dict, heldout_npz, architecture=ARCH,
                            architecture_kwargs='{"hidden": 4}')
    with pytest.raises(InputError, match="cannot import architecture"):
        evaluate_model_gate(settings, artifacts.torch_state_dict, heldout_npz, architecture="no_such_pkg.mod:Net")


def test_architecture_from_the_manifest(settings: Settings, artifacts: Artifacts, copy_of: Callable[..., Path],
                                        heldout_npz: Path) -> None:
    model = copy_of(artifacts.torch_state_dict)
    run_manifest(model, ",".join(FEATURES), input_shape=f"-1,4,{N_FEATURES}",
                 architecture="tests.models.tiny_arch:TinyNet")
    result = evaluate_model_gate(settings, model, heldout_npz)
    assert result.status is Status.PASS
    assert result.dataset["manifest"] is not None


def test_changed_file_fails_the_gate_through_its_manifest(settings: Settings, artifacts: Artifacts,
                                                          copy_of: Callable[..., Path], heldout_npz: Path) -> None:
    model = copy_of(artifacts.xgb_json)
    run_manifest(model, ",".join(FEATURES))
    model.write_bytes(artifacts.xgb_unnamed_json.read_bytes())
    result = evaluate_model_gate(settings, model, heldout_npz)
    assert result.status is Status.FAIL
    assert result.summary().startswith("FAIL: xgb: artifact changed since its manifest was written")


def test_logit_outputs(settings: Settings, tmp_path: Path, heldout_npz: Path) -> None:
    import torch

    from tests.models.tiny_arch import TinyNet

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = TinyNet(N_FEATURES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.logit(self.net(x) * 0.98 + 0.01)

    torch.manual_seed(1)
    path = tmp_path / "logits.pt"
    torch.jit.script(Logits()).save(str(path))
    with pytest.raises(InputError, match="outside \\[0, 1\\].*--output logit"):
        evaluate_model_gate(settings, path, heldout_npz)
    result = evaluate_model_gate(settings, path, heldout_npz, output="logit")
    assert result.stats.n == ROWS["test"]


def test_multiclass_needs_the_class_order(settings: Settings, tmp_path: Path, data: Data,
                                          heldout_npz: Path) -> None:
    import lightgbm as lgb

    x_train, _ = data.part("train")
    tab = x_train[:, -1, :]
    y3 = np.digitize(tab[:, 0], [-0.4, 0.4])  # 0 = SELL, 1 = HOLD, 2 = BUY
    booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1, "num_leaves": 5,
                         "num_threads": 1}, lgb.Dataset(tab, label=y3, feature_name=list(FEATURES)), 10)
    path = tmp_path / "lgbm3_v20260110_120000.txt"
    booster.save_model(path)
    with pytest.raises(InputError, match="outputs 3 class probabilities: pass --classes"):
        evaluate_model_gate(settings, path, heldout_npz)
    result = evaluate_model_gate(settings, path, heldout_npz, rule=EngineRule(classes=("SELL", "HOLD", "BUY")))
    assert sum(result.stats.action_counts.values()) == ROWS["test"]
    assert result.metrics["available"] is False  # binary labels vs a 3-class model: not compared
