"""``qtsafe build-dataset`` through the real group: exact exit codes, first lines, files, fail-closed input."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from qtsafe.dataset.writer import load_npz
from tests.dataset.conftest import first_line, make_candles

SUMMARY = re.compile(r"PASS: (?P<n>[\d,]+) samples \(64 x 4\) from (?P<k>\d+) symbols? written to (?P<path>\S+\.npz)")


def build(run_cli, base: Path, *args: str):
    return run_cli("build-dataset", "--base-dir", str(base), *args)


def passed(result) -> Path:
    assert result.exit_code == 0, result.output
    match = SUMMARY.fullmatch(first_line(result.stdout))
    assert match, first_line(result.stdout)
    path = Path(match["path"])
    data = load_npz(path)
    assert data.X.shape[0] == int(match["n"].replace(",", ""))
    return path


def test_default_run_writes_a_dataset_and_a_report(run_cli, tmp_path: Path) -> None:
    r = build(run_cli, tmp_path)
    path = passed(r)
    assert re.fullmatch(r"patchtst_sequences_\d{8}_\d{6}\.npz", path.name)
    assert path.parent == tmp_path / "data"
    with np.load(path, allow_pickle=False) as raw:  # nothing in the file needs pickle
        assert set(raw.files) >= {"X", "y", "timestamps", "label_end", "symbol_index", "split", "metadata"}
        assert raw["X"].dtype == np.float32 and raw["X"].shape[1:] == (64, 4)
        assert raw["timestamps"].dtype == np.dtype("datetime64[ns]")
        meta = json.loads(str(raw["metadata"]))
    assert meta["features"] == ["rsi", "ma_cross", "volatility", "returns_1h"]
    assert (meta["lookback"], meta["horizon"], meta["label_rule"], meta["threshold"]) == (64, "4h", "close", 0.01)
    assert meta["symbols"] == ["BTCUSDT", "ETHUSDT", "BNBUSDT", "ADAUSDT", "SOLUSDT"]
    assert meta["interval"] == "1h" and meta["source"]["spec"] == "synthetic"
    assert len(meta["source"]["sha256"]) == 64 and meta["qtsafe_version"]
    assert len(meta["normalization"]["mean"]) == 4 and meta["normalization"]["mode"] == "train"
    assert all(check["passed"] for check in meta["leakage_checks"])
    stamp = path.name.removeprefix("patchtst_sequences_").removesuffix(".npz")
    report = (tmp_path / "reports" / "safety" / f"patchtst_sequence_dataset_{stamp}.md").read_text()
    assert report.startswith("# PASS: PatchTST sequence dataset")
    for heading in ("## Coverage per symbol", "## Samples and class balance per split", "## Leakage checks"):
        assert heading in report
    assert "| BTCUSDT | ok |" in report and "**FAILED**" not in report
    assert "7/7 leakage checks passed" in r.stdout


def test_json_output(run_cli, tmp_path: Path) -> None:
    r = build(run_cli, tmp_path, "--json", "--symbols", "ETHUSDT", "--days", "30")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["status"] == "PASS" and data["summary"].startswith("PASS: ")
    assert [s["name"] for s in data["splits"]] == ["train", "val", "test"]
    assert sum(s["samples"] for s in data["splits"]) == data["shape"][0]
    assert Path(data["dataset_path"]).is_file() and Path(data["report_path"]).is_file()


def test_same_seed_same_data(run_cli, tmp_path: Path) -> None:
    a = load_npz(passed(build(run_cli, tmp_path / "a", "--seed", "3", "--days", "30")))
    b = load_npz(passed(build(run_cli, tmp_path / "b", "--seed", "3", "--days", "30")))
    c = load_npz(passed(build(run_cli, tmp_path / "c", "--seed", "4", "--days", "30")))
    np.testing.assert_array_equal(a.X, b.X)
    assert a.metadata["source"]["sha256"] == b.metadata["source"]["sha256"] != c.metadata["source"]["sha256"]


@pytest.mark.parametrize(("kind", "ts_format"), [("sqlite", "iso"), ("sqlite", "ms"), ("csv", "s"),
                                                 ("csv", "naive"), ("parquet", "datetime"), ("parquet", "iso")])
def test_every_source_yields_the_same_dataset(run_cli, tmp_path: Path, write_sqlite, write_files, kind: str,
                                              ts_format: str) -> None:
    candles = make_candles(("BTCUSDT", "ETHUSDT"), outages=True, seed=11)
    reference = load_npz(passed(build(run_cli, tmp_path / "ref", "--symbols", "BTCUSDT,ETHUSDT", "--days", "30",
                                      "--seed", "11")))
    location = write_sqlite(candles, ts_format) if kind == "sqlite" else write_files(kind, candles, ts_format)
    data = load_npz(passed(build(run_cli, tmp_path / "out", "--source", f"{kind}:{location}", "--days", "30")))
    np.testing.assert_array_equal(data.X, reference.X)
    np.testing.assert_array_equal(data.timestamps, reference.timestamps)
    np.testing.assert_array_equal(data.y, reference.y)
    assert data.symbols == ("BTCUSDT", "ETHUSDT")
    assert data.metadata["source"]["data_sha256"] == reference.metadata["source"]["data_sha256"]
    assert data.metadata["source"]["kind"] == kind


def test_imbalance_waits_and_writes_no_dataset(run_cli, tmp_path: Path) -> None:
    r = build(run_cli, tmp_path, "--threshold", "0.2", "--days", "30")
    assert r.exit_code == 3, r.output
    assert first_line(r.stdout).startswith("WAIT: train split is 100.0% class 0 (limit 90%) over ")
    assert first_line(r.stdout).endswith("dataset not written (pass --allow-imbalance to write it anyway)")
    assert not (tmp_path / "data").exists()
    (report,) = (tmp_path / "reports" / "safety").iterdir()
    assert report.read_text().startswith("# WAIT: PatchTST sequence dataset")
    r = build(run_cli, tmp_path, "--threshold", "0.2", "--days", "30", "--allow-imbalance")
    passed(r)


def test_a_failed_leakage_check_exits_2_without_a_dataset(run_cli, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from qtsafe.dataset import windows

    original = windows.assign
    monkeypatch.setattr(windows, "assign", lambda t, cut, purge_ns, embargo_ns: original(t, cut, 0, embargo_ns))
    r = build(run_cli, tmp_path, "--days", "30")
    assert r.exit_code == 2, r.output
    assert first_line(r.stdout).startswith("FAIL: leakage check failed: labels end before the next split's cutoff")
    assert not (tmp_path / "data").exists()


def test_mask_invalid_masks_corrupt_bars_and_reports_them(run_cli, tmp_path: Path, write_files) -> None:
    candles = make_candles(("BTCUSDT",))
    candles["BTCUSDT"].close[200] = 0.0
    directory = write_files("csv", candles)
    r = build(run_cli, tmp_path, "--source", f"csv:{directory}", "--mask-invalid")
    passed(r)
    (report,) = (tmp_path / "reports" / "safety").iterdir()
    row = next(line for line in report.read_text().splitlines() if line.startswith("| BTCUSDT | ok |"))
    assert row.endswith("| 1 |")  # one invalid bar, counted


# -- fail-closed input: one line on stderr, exit 2, no traceback, nothing written -------------------------


def fails(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.fullmatch(message, result.stderr.strip()), result.stderr


def test_missing_sqlite_file(run_cli, tmp_path: Path) -> None:
    fails(build(run_cli, tmp_path, "--source", f"sqlite:{tmp_path}/nope.db"),
          rf"qtsafe: error: SQLite database not found: {tmp_path}/nope\.db")
    assert not (tmp_path / "nope.db").exists()  # read-only: a typo must not create an empty database


def test_missing_directory(run_cli, tmp_path: Path) -> None:
    fails(build(run_cli, tmp_path, "--source", "parquet:/no/such/dir"),
          r"qtsafe: error: PARQUET directory not found: /no/such/dir")


def test_missing_symbol_file(run_cli, tmp_path: Path, write_files) -> None:
    directory = write_files("csv", make_candles(("BTCUSDT",)))
    fails(build(run_cli, tmp_path, "--source", f"csv:{directory}", "--symbols", "BTCUSDT,XRPUSDT"),
          rf"qtsafe: error: symbol\(s\) XRPUSDT not found in {directory} \(available: BTCUSDT\)")


def test_empty_table(run_cli, tmp_path: Path, write_sqlite) -> None:
    path = write_sqlite({})
    fails(build(run_cli, tmp_path, "--source", f"sqlite:{path}"),
          rf"qtsafe: error: no data: table market_data in {path} has no rows")


def test_not_a_database(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("this is not sqlite\n" * 100)
    fails(build(run_cli, tmp_path, "--source", f"sqlite:{path}"),
          rf"qtsafe: error: cannot read SQLite database {path}: file is not a database")


def test_table_missing(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE candles (x)")
    fails(build(run_cli, tmp_path, "--source", f"sqlite:{path}"), rf"qtsafe: error: {path}: no table 'market_data'")


@pytest.mark.parametrize(
    ("content", "message"),
    [("timestamp,open,high,low,close,volume\n2025-01-01T00:00:00Z,1,2,0.5,1.5,10\n2025-01-01T01:00:00Z,1,2\n"
      "2025-01-01T02:00:00Z,1,2,0.5,1.5,10,7,8\n", r".*BTCUSDT\.csv: malformed CSV: Error tokenizing data.*"),
     ("timestamp,open,high,low,close,volume\n2025-01-01T00:00:00Z,1,2,0.5,abc,10\n",
      r".*BTCUSDT\.csv: column close has a non-numeric value 'abc' at row 1"),
     ("time,open,high,low,close\n2025-01-01T00:00:00Z,1,2,0.5,1.5\n",
      r".*BTCUSDT\.csv: missing column\(s\) timestamp, volume .*"),
     ("timestamp,open,high,low,close,volume\nlast tuesday,1,2,0.5,1.5,10\n",
      r".*BTCUSDT\.csv: unreadable timestamp .*"),
     ("", r".*BTCUSDT\.csv: empty CSV file")],
)
def test_malformed_csv(run_cli, tmp_path: Path, content: str, message: str) -> None:
    directory = tmp_path / "csv"
    directory.mkdir()
    (directory / "BTCUSDT.csv").write_text(content)
    fails(build(run_cli, tmp_path, "--source", f"csv:{directory}"), "qtsafe: error: " + message)


def test_unreadable_parquet(run_cli, tmp_path: Path) -> None:
    directory = tmp_path / "pq"
    directory.mkdir()
    (directory / "BTCUSDT.parquet").write_bytes(b"PAR1 not really")
    fails(build(run_cli, tmp_path, "--source", f"parquet:{directory}"),
          r"qtsafe: error: .*BTCUSDT\.parquet: not a readable Parquet file: .*")


@pytest.mark.parametrize(("column", "value", "what"), [("close", 0.0, "non-positive prices"),
                                                       ("low", -3.0, "non-positive prices"),
                                                       ("close", float("nan"), "NaN prices"),
                                                       ("high", 1.0, "high < low")])
def test_corrupt_prices(run_cli, tmp_path: Path, write_sqlite, column: str, value: float, what: str) -> None:
    candles = make_candles(("BTCUSDT", "ETHUSDT"))
    getattr(candles["ETHUSDT"], column)[100] = value
    path = write_sqlite(candles)
    fails(build(run_cli, tmp_path, "--source", f"sqlite:{path}"),
          rf"qtsafe: error: ETHUSDT: 1 corrupt bar\(s\): 1 with {what} \(first at \S+Z\); fix the source, .*"
          r"--mask-invalid to drop such bars like gaps")
    assert not (tmp_path / "data").exists() and not (tmp_path / "reports").exists()


def test_every_symbol_too_short(run_cli, tmp_path: Path, write_files) -> None:
    directory = write_files("parquet", make_candles(("BTCUSDT", "ETHUSDT"), days=5))
    fails(build(run_cli, tmp_path, "--source", f"parquet:{directory}"),
          r"qtsafe: error: every symbol is too short: need at least 180 1h bars \(warm-up 112 \+ lookback 64 \+ "
          r"horizon 4\); most: 120 \(BTCUSDT\)")


def test_every_window_dropped(run_cli, tmp_path: Path, write_files) -> None:
    c = make_candles(("BTCUSDT",))["BTCUSDT"]
    directory = write_files("csv", {"BTCUSDT": c.select(np.arange(len(c)) % 150 != 149)})
    fails(build(run_cli, tmp_path, "--source", f"csv:{directory}"),
          r"qtsafe: error: every window dropped: [\d,]+ touch a gap, [\d,]+ fall in the features' warm-up, 0 purged "
          r"at split cutoffs \(of [\d,]+ candidates\)")


def test_interval_that_does_not_match_the_data(run_cli, tmp_path: Path, write_files) -> None:
    directory = write_files("csv", make_candles(("BTCUSDT",)))
    fails(build(run_cli, tmp_path, "--source", f"csv:{directory}", "--interval", "5m"),
          r"qtsafe: error: BTCUSDT: bars are 1h apart \(most common spacing\), not 5m as --interval says")


def test_horizon_that_is_not_whole_bars(run_cli, tmp_path: Path) -> None:
    fails(build(run_cli, tmp_path, "--horizon", "90m", "--days", "30"),
          r"qtsafe: error: --horizon 90m is not a whole number of 1h bars")


@pytest.mark.parametrize(("args", "option"), [(["--horizon", "4"], "--horizon"), (["--split", "0.5,0.6"], "--split"),
                                              (["--source", "mysql:db"], "--source"),
                                              (["--label-rule", "median"], "--label-rule"),
                                              (["--threshold", "0"], "--threshold"),
                                              (["--embargo", "soon"], "--embargo")])
def test_bad_option_values_are_usage_errors(run_cli, tmp_path: Path, args: list[str], option: str) -> None:
    r = build(run_cli, tmp_path, *args)
    assert r.exit_code == 2
    assert f"Invalid value for '{option}'" in r.stderr
    assert "Traceback" not in r.output and not (tmp_path / "data").exists()


def test_unwritable_data_directory_leaves_previous_files_intact(run_cli, tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "reports" / "safety").mkdir(parents=True)
    old_report = base / "reports" / "safety" / "patchtst_sequence_dataset_20250101_000000.md"
    old_report.write_text("old report\n")
    (base / "data").write_text("not a directory\n")  # works as root too, unlike chmod
    fails(build(run_cli, base, "--days", "30"), rf"qtsafe: error: cannot create directory {base}/data: .*")
    assert (base / "data").read_text() == "not a directory\n"
    assert old_report.read_text() == "old report\n"
    assert sorted(p.name for p in (base / "reports" / "safety").iterdir()) == [old_report.name]


def test_unwritable_report_directory_takes_the_new_dataset_back(run_cli, tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "data").mkdir(parents=True)
    old = base / "data" / "patchtst_sequences_20250101_000000.npz"
    old.write_bytes(b"previous dataset")
    (base / "reports").mkdir()
    (base / "reports" / "safety").write_text("a file where the report directory should be\n")
    fails(build(run_cli, base, "--days", "30"), rf"qtsafe: error: cannot create directory {base}/reports/safety: .*")
    assert sorted(p.name for p in (base / "data").iterdir()) == [old.name]  # no temp files, no orphan dataset
    assert old.read_bytes() == b"previous dataset"
