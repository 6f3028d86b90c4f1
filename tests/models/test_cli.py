"""``qtsafe model ...`` through Click: exact exit codes, the first line of output, no tracebacks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from qtsafe.cli import cli
from tests.models.conftest import ARCH_FILE, FEATURES, Artifacts, Data, Malicious

SUBCOMMANDS = ["inspect", "manifest", "verify", "scan", "gate"]


def run(*args: str) -> Result:
    result = CliRunner().invoke(cli, ["model", *args])
    assert "Traceback" not in result.output
    return result


def first_line(result: Result) -> str:
    return result.stdout.splitlines()[0] if result.stdout else ""


def error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    return lines[0]


# --- help ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_every_subcommand_has_a_summary_examples_and_json(sub: str) -> None:
    result = run(sub, "--help")
    assert result.exit_code == 0
    assert "Examples:" in result.stdout
    assert f"qtsafe model {sub}" in result.stdout.split("Examples:")[1]
    assert "--json" in result.stdout


def test_group_help_lists_the_subcommands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for sub in SUBCOMMANDS:
        assert f"  {sub} " in result.stdout


# --- inspect ---------------------------------------------------------------------------------------


def test_inspect_healthy(artifacts: Artifacts) -> None:
    result = run("inspect", str(artifacts.xgb_json))
    assert result.exit_code == 0
    assert first_line(result) == "PASS: xgb_v20260110_120000.json: XGBoost model (JSON), 6 features"
    assert f"  features  6: {', '.join(FEATURES)}" in result.stdout


def test_inspect_pickled_torch_module(artifacts: Artifacts) -> None:
    result = run("inspect", str(artifacts.torch_pickled_module))
    assert result.exit_code == 2
    assert first_line(result).startswith("FAIL: nhits_v20251212_232039.pkl: a PyTorch model pickled instead of saved "
                                         "with torch.save")


def test_inspect_malicious_pickle(malicious: Malicious) -> None:
    result = run("inspect", str(malicious.path))
    assert result.exit_code == 2
    assert first_line(result).startswith(f"FAIL: {malicious.path.name}: pickle would run code when loaded: it calls")
    assert malicious.calls in first_line(result)
    assert f"  imports   {malicious.calls} [dangerous]" in result.stdout
    assert not malicious.canary.exists()


def test_inspect_many_files_json(artifacts: Artifacts) -> None:
    result = run("inspect", str(artifacts.lgbm_txt), str(artifacts.torch_whole_module), "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["status"] == "FAIL"
    assert [f["usable"] for f in doc["files"]] == [True, False]
    assert doc["files"][1]["problems"][0]["code"] == "torch_whole_module"


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "FAIL: bad_v20260101_000000.pkl: empty file (0 bytes)"),
    (b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a", "FAIL: bad_v20260101_000000.pkl: truncated python "
                                                                    "pickle"),
    (b"just some text\n", "FAIL: bad_v20260101_000000.pkl: unknown format"),
])
def test_inspect_damaged_files(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad_v20260101_000000.pkl"
    path.write_bytes(content)
    result = run("inspect", str(path))
    assert result.exit_code == 2
    assert first_line(result).startswith(expected)


def test_inspect_truncated_torch_archive(artifacts: Artifacts, tmp_path: Path) -> None:
    path = tmp_path / "nhits_v20260101_000000.pth"
    path.write_bytes(artifacts.torch_state_dict.read_bytes()[:700])
    result = run("inspect", str(path))
    assert result.exit_code == 2
    assert first_line(result).startswith("FAIL: nhits_v20260101_000000.pth: truncated or corrupt zip archive")


def test_inspect_missing_file_and_directory(tmp_path: Path) -> None:
    missing = run("inspect", str(tmp_path / "nope.pkl"))
    assert missing.exit_code == 2
    assert missing.stdout == ""
    assert error_line(missing) == f"qtsafe: error: model file not found: {tmp_path / 'nope.pkl'}"
    directory = run("inspect", str(tmp_path))
    assert directory.exit_code == 2
    assert error_line(directory) == f"qtsafe: error: {tmp_path} is a directory, not a model file"


def test_inspect_needs_a_file() -> None:
    result = run("inspect")
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr


# --- manifest / verify ------------------------------------------------------------------------------


def test_manifest_then_verify(artifacts: Artifacts, copy_of: Callable[..., Path],
                              feature_file: Callable[[tuple[str, ...]], Path]) -> None:
    model = copy_of(artifacts.lgbm_txt)
    written = run("manifest", str(model), "--features", str(feature_file(FEATURES)), "--label-rule", "up if r12 > 0")
    assert written.exit_code == 0
    assert first_line(written).startswith(f"PASS: wrote {model}.manifest.json (6 features, artifact sha256 ")
    verified = run("verify", str(model))
    assert verified.exit_code == 0
    assert first_line(verified) == f"PASS: {model.name} matches its manifest, 6 features"
    again = run("manifest", str(model), "--features", ",".join(FEATURES))
    assert again.exit_code == 2
    assert error_line(again).startswith("qtsafe: error: manifest already exists")


def test_manifest_refused_on_mismatch(artifacts: Artifacts, copy_of: Callable[..., Path]) -> None:
    model = copy_of(artifacts.xgb_json)
    result = run("manifest", str(model), "--features", ",".join(FEATURES[:5]), "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["written"] is False and doc["findings"][0]["check"] == "feature_count"
    assert not Path(f"{model}.manifest.json").exists()


def test_manifest_requires_features(artifacts: Artifacts) -> None:
    result = run("manifest", str(artifacts.xgb_json))
    assert result.exit_code == 2
    assert "Missing option '--features'" in result.stderr


def test_verify_missing_manifest_is_exit_3(artifacts: Artifacts, copy_of: Callable[..., Path]) -> None:
    model = copy_of(artifacts.xgb_json)
    result = run("verify", str(model))
    assert result.exit_code == 3
    assert first_line(result) == (f"WAIT: {model.name} has no manifest ({model.name}.manifest.json); write one with "
                                  "'qtsafe model manifest' or pass --features")
    assert json.loads(run("verify", str(model), "--json").stdout)["status"] == "WAIT"


def test_verify_49_vs_55(tmp_path: Path, data: Data, feature_file: Callable[[tuple[str, ...]], Path]) -> None:
    import xgboost as xgb

    x = np.random.default_rng(2).normal(size=(100, 49)).astype(np.float32)
    model = tmp_path / "xgboost_v20251213_001403.json"
    xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
              xgb.DMatrix(x, label=(x[:, 0] > 0).astype(int)), 2).save_model(model)
    pipeline = feature_file(tuple(f"f{i}" for i in range(55)))
    result = run("verify", str(model), "--features", str(pipeline))
    assert result.exit_code == 2
    assert first_line(result) == (f"FAIL: {model.name}: feature count mismatch: the model expects 49 features, "
                                  f"--features ({pipeline}) has 55")


def test_verify_unsafe_format_even_with_features(artifacts: Artifacts) -> None:
    result = run("verify", str(artifacts.torch_whole_module), "--features", ",".join(FEATURES))
    assert result.exit_code == 2
    assert first_line(result).startswith("FAIL: tiny_whole.pth: a whole nn.Module saved with torch.save")


def test_verify_bad_inputs(artifacts: Artifacts, tmp_path: Path) -> None:
    empty = tmp_path / "x_v20260101_000000.json"
    empty.write_bytes(b"")
    result = run("verify", str(empty), "--features", "a,b")
    assert result.exit_code == 2
    assert first_line(result).startswith(f"FAIL: {empty.name}: empty file (0 bytes)")
    bad_features = run("verify", str(artifacts.xgb_json), "--features", str(tmp_path / "missing.txt"))
    assert bad_features.exit_code == 2
    assert error_line(bad_features) == f"qtsafe: error: feature list file not found: {tmp_path / 'missing.txt'}"


# --- scan ------------------------------------------------------------------------------------------


def test_scan_table(tmp_path: Path, artifacts: Artifacts) -> None:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copyfile(artifacts.xgb_joblib_pkl, root / "xgboost_v20251213_001403.pkl")
    shutil.copyfile(artifacts.lgbm_txt, root / "lightgbm_v20251213_001447.txt")
    shutil.copyfile(artifacts.torch_pickled_module, root / "patchtst_v20251212_233148.pkl")
    result = run("scan", str(root), "--features", ",".join(FEATURES))
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0] == "FAIL: the newest file of 1 of 3 models is unusable: patchtst"
    assert lines[1].split() == ["model", "newest", "file", "format", "features", "verdict", "detail"]
    assert [line.split()[0] for line in lines[2:5]] == ["lightgbm", "patchtst", "xgboost"]
    (root / "patchtst_v20251212_233148.pkl").unlink()
    healthy = run("scan", str(root), "--features", ",".join(FEATURES))
    assert healthy.exit_code == 0
    assert first_line(healthy) == "PASS: the newest file of all 2 models is usable"
    no_contract = run("scan", str(root), "--json")
    assert no_contract.exit_code == 3
    assert json.loads(no_contract.stdout)["status"] == "WAIT"


def test_scan_not_a_directory(tmp_path: Path) -> None:
    result = run("scan", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert error_line(result) == f"qtsafe: error: model directory not found: {tmp_path / 'nope'}"


# --- gate ------------------------------------------------------------------------------------------


def test_gate_healthy_writes_reports(artifacts: Artifacts, heldout_npz: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    result = run("gate", str(artifacts.xgb_json), "--dataset", str(heldout_npz), "--base-dir", str(base))
    assert result.exit_code == 0
    assert first_line(result).startswith("PASS: xgb: 300 held-out rows, BUY ")
    reports = sorted(p.name for p in (base / "reports" / "safety").iterdir())
    assert len(reports) == 2
    assert reports[0].startswith("model_gate_xgb_") and reports[0].endswith(".json")
    assert reports[1] == reports[0].replace(".json", ".md")


def test_gate_collapsed_model_fails(artifacts: Artifacts, heldout_npz: Path, tmp_path: Path) -> None:
    result = run("gate", str(artifacts.collapsed_torchscript), "--dataset", str(heldout_npz),
                 "--base-dir", str(tmp_path), "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["status"] == "FAIL"
    assert doc["summary"].startswith("FAIL: patchtst: constant output in the held-out test rows (confidence ~0.5239")
    assert Path(doc["report"]["markdown"]).read_text().startswith("# Model gate: patchtst — FAIL")


def test_gate_state_dict_with_architecture(artifacts: Artifacts, heldout_npz: Path, tmp_path: Path) -> None:
    without = run("gate", str(artifacts.torch_state_dict), "--dataset", str(heldout_npz), "--base-dir", str(tmp_path))
    assert without.exit_code == 2
    assert "name its architecture with --architecture" in error_line(without)
    with_arch = run("gate", str(artifacts.torch_state_dict), "--dataset", str(heldout_npz), "--base-dir",
                    str(tmp_path), "--architecture", f"{ARCH_FILE}:TinyNet", "--architecture-kwargs",
                    '{"n_features": 6}')
    assert with_arch.exit_code == 0, with_arch.output
    assert first_line(with_arch).startswith("PASS: tiny: 300 held-out rows")


def test_gate_dataset_with_nan(artifacts: Artifacts, make_npz: Callable[..., Path], data: Data,
                               tmp_path: Path) -> None:
    x = data.x.copy()
    x[-1, -1, 0] = np.nan
    path = make_npz(x=x)
    result = run("gate", str(artifacts.lgbm_txt), "--dataset", str(path), "--base-dir", str(tmp_path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert error_line(result) == (f"qtsafe: error: dataset {path} has 1 NaN/Inf values in its features (1 of 300 rows);"
                                  " the gate refuses to guess them")
    assert not (tmp_path / "reports").exists()


def test_gate_dataset_feature_count_mismatch(artifacts: Artifacts, make_npz: Callable[..., Path], data: Data,
                                             tmp_path: Path) -> None:
    path = make_npz(x=data.x[:, :, :5], names=None)
    result = run("gate", str(artifacts.xgb_json), "--dataset", str(path), "--base-dir", str(tmp_path))
    assert result.exit_code == 2
    assert error_line(result) == (f"qtsafe: error: feature count mismatch: the model expects 6 features, dataset "
                                  f"{path.name} has 5 per step (4 steps)")


def test_gate_unwritable_report_dir(artifacts: Artifacts, heldout_npz: Path, tmp_path: Path) -> None:
    (tmp_path / "reports").write_text("not a directory")
    result = run("gate", str(artifacts.xgb_json), "--dataset", str(heldout_npz), "--base-dir", str(tmp_path))
    assert result.exit_code == 2
    assert error_line(result).startswith(f"qtsafe: error: cannot create directory {tmp_path / 'reports' / 'safety'}")
    assert (tmp_path / "reports").read_text() == "not a directory"


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "{missing}"], "qtsafe: error: dataset not found: {missing}"),
    (["--dataset", "{npz}", "--buy-above", "0.3"], "qtsafe: error: engine rule needs 0 <= sell_below (0.4) <= "
                                                  "buy_above (0.3) <= 1"),
    (["--dataset", "{npz}", "--split", "holdout"], "qtsafe: error: dataset {npz}: no rows with split == 'holdout' "
                                                   "(splits present: test, train, val)"),
])
def test_gate_bad_options(artifacts: Artifacts, heldout_npz: Path, tmp_path: Path, args: list[str],
                          message: str) -> None:
    values = {"missing": str(tmp_path / "none.npz"), "npz": str(heldout_npz)}
    filled = [a.format(**values) for a in args]
    result = run("gate", str(artifacts.xgb_json), *filled, "--base-dir", str(tmp_path))
    assert result.exit_code == 2
    assert error_line(result) == message.format(**values)


def test_gate_requires_a_dataset(artifacts: Artifacts) -> None:
    result = run("gate", str(artifacts.xgb_json))
    assert result.exit_code == 2
    assert "Missing option '--dataset'" in result.stderr


def test_gate_refuses_the_malicious_pickle(malicious: Malicious, heldout_npz: Path, tmp_path: Path) -> None:
    result = run("gate", str(malicious.path), "--dataset", str(heldout_npz), "--base-dir", str(tmp_path))
    assert result.exit_code == 2
    assert error_line(result).startswith(f"qtsafe: error: refusing to run {malicious.path.name}: pickle would run "
                                         "code when loaded")
    assert not malicious.canary.exists()
