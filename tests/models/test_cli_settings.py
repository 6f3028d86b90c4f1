"""Every ``qtsafe model`` command reads the settings like the other commands: ``--config`` / ``QTSAFE_CONFIG`` /
``./qtsafe.toml`` (a broken or missing config file is an error, never ignored) and ``--base-dir`` /
``QTSAFE_BASE_DIR`` (only ``gate`` writes under it; model files are read from the paths given)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from qtsafe.cli import cli
from tests.models.conftest import FEATURES, Artifacts

BAD_CONFIG = "[thresholds]\nmajority_maxx = 0.7\n"
BAD_CONFIG_ERROR = "unknown setting 'majority_maxx' (did you mean 'majority_max'?)"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def command_lines(artifacts: Artifacts, heldout_npz: Path, copy_of: Callable[[Path], Path],
                  tmp_path: Path) -> dict[str, list[str]]:
    """One healthy invocation of each subcommand (exit 0 with the default settings)."""
    models = tmp_path / "models"
    models.mkdir()
    scanned = models / artifacts.xgb_json.name
    scanned.write_bytes(artifacts.xgb_json.read_bytes())
    features = ",".join(FEATURES)
    return {
        "inspect": ["inspect", str(artifacts.xgb_json)],
        "manifest": ["manifest", str(copy_of(artifacts.xgb_json)), "--features", features],
        "verify": ["verify", str(artifacts.xgb_json), "--features", features],
        "scan": ["scan", str(models), "--features", features],
        "gate": ["gate", str(artifacts.xgb_json), "--dataset", str(heldout_npz), "--base-dir",
                 str(tmp_path / "gate-base")],
    }


SUBCOMMANDS = ["inspect", "manifest", "verify", "scan", "gate"]


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_a_broken_config_file_stops_every_model_command(sub: str, command_lines: dict[str, list[str]],
                                                         tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text(BAD_CONFIG)
    result = invoke("--config", str(config), "model", *command_lines[sub])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"qtsafe: error: config {config} [thresholds]: {BAD_CONFIG_ERROR}\n"
    assert not any(p.name.endswith(".manifest.json") for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_a_missing_config_file_is_an_error_not_ignored(sub: str, command_lines: dict[str, list[str]],
                                                       tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    via_env = invoke("model", *command_lines[sub], env={"QTSAFE_CONFIG": str(missing)})
    assert via_env.exit_code == 2, via_env.output
    assert via_env.stderr == f"qtsafe: error: config file not found: {missing}\n"


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_a_valid_config_file_is_accepted(sub: str, command_lines: dict[str, list[str]], tmp_path: Path) -> None:
    config = tmp_path / "qtsafe.toml"
    config.write_text('unit = "quantum-ai_engine.service"\n[thresholds]\nmajority_max = 0.7\n')
    result = invoke("--config", str(config), "model", *command_lines[sub])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("PASS: ")


def test_gate_takes_its_thresholds_from_the_config(command_lines: dict[str, list[str]], tmp_path: Path) -> None:
    config = tmp_path / "qtsafe.toml"
    config.write_text("[thresholds]\nmin_events_canary = 100000\n")
    result = invoke("--config", str(config), "model", *command_lines["gate"], "--json")
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert doc["status"] == "FAIL"
    assert "100000" in doc["summary"]


@pytest.mark.parametrize("sub", ["inspect", "manifest", "verify", "scan"])
def test_base_dir_is_accepted_and_nothing_is_written_under_it(sub: str, command_lines: dict[str, list[str]],
                                                              tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    result = invoke("model", *command_lines[sub], "--base-dir", str(base), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "PASS"
    assert list(base.iterdir()) == []
    from_env = invoke("model", *command_lines[sub], "--json", env={"QTSAFE_BASE_DIR": str(base)})
    # A second manifest needs --force; every other command gives the same verdict again.
    assert from_env.exit_code == (2 if sub == "manifest" else 0), from_env.output
    assert list(base.iterdir()) == []


def test_manifest_is_written_beside_the_model_not_under_the_base_dir(artifacts: Artifacts,
                                                                     copy_of: Callable[[Path], Path],
                                                                     tmp_path: Path) -> None:
    model = copy_of(artifacts.xgb_json)
    base = tmp_path / "base"
    result = invoke("model", "manifest", str(model), "--features", ",".join(FEATURES), "--base-dir", str(base))
    assert result.exit_code == 0, result.output
    assert (model.parent / (model.name + ".manifest.json")).is_file()
    assert not base.exists()


def test_gate_writes_its_reports_under_the_base_dir_from_the_config(command_lines: dict[str, list[str]],
                                                                    tmp_path: Path) -> None:
    base = tmp_path / "configured-base"
    config = tmp_path / "qtsafe.toml"
    config.write_text(f'base_dir = "{base}"\n')
    gate = [a for a in command_lines["gate"] if a != "--base-dir" and not a.endswith("gate-base")]
    result = invoke("--config", str(config), "model", *gate)
    assert result.exit_code == 0, result.output
    written = sorted(p.suffix for p in (base / "reports" / "safety").iterdir())
    assert written == [".json", ".md"]
