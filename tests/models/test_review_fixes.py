"""Two defects a review found: a pickle calling an object it built, and the gate on build-dataset's own .npz."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xgboost as xgb

from qtsafe.models.pickle_scan import scan_pickle_bytes


def test_calling_an_object_the_pickle_built_is_refused(tmp_path: Path, run_cli) -> None:
    # Booster() is allowlisted; calling the *instance* it returns is code nobody vetted.
    payload = b'\x80\x02cxgboost.core\nBooster\n)R(S"x"\ntR.'
    assert scan_pickle_bytes(payload).indirect_calls == 1
    path = tmp_path / "p_v20250101_000000.pkl"
    path.write_bytes(payload)
    r = run_cli("model", "inspect", str(path))
    assert r.exit_code == 2, r.output
    assert "not named imports" in r.output


def test_gate_reads_the_split_names_build_dataset_writes(tmp_path: Path, run_cli) -> None:
    built = run_cli("build-dataset", "--base-dir", str(tmp_path), "--json")
    assert built.exit_code == 0, built.output
    npz = next((tmp_path / "data").glob("patchtst_sequences_*.npz"))
    with np.load(npz, allow_pickle=False) as held:
        x, y, split = held["X"], held["y"], held["split"]
        meta = json.loads(str(held["metadata"]))
    features = [f["name"] if isinstance(f, dict) else f for f in meta["features"]]
    flat = x[:, -1, :]  # the newest bar of each window as a flat feature row
    train = split == 0
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3},
                        xgb.DMatrix(flat[train], label=y[train], feature_names=[str(f) for f in features]),
                        num_boost_round=8)
    path = tmp_path / "xgb_v20250101_000000.json"
    booster.save_model(str(path))
    r = run_cli("model", "gate", str(path), "--dataset", str(npz), "--json", "--base-dir", str(tmp_path))
    assert "split_names" not in r.output, r.output  # the test split is found from metadata["split"]["names"]
    data = json.loads(r.stdout)
    assert data["status"] in ("PASS", "FAIL") and r.exit_code == (0 if data["status"] == "PASS" else 2)
