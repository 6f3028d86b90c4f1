"""Issue 10 items 14 and 15 (config parts): garbage config files, TOML types, unit names, narrowed fields."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from qtsafe.config import check_unit_name, load_settings
from qtsafe.doctor import run_doctor
from qtsafe.errors import ConfigError

BINARY = bytes(range(128, 256)) * 2 + b"\xff\xfe\x00garbage"


def _one_error_line(result: Result, *needles: str) -> str:
    """Exit 2, nothing on stdout, exactly one line on stderr holding every needle, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "unexpected error" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---- garbage in the config file ---------------------------------------------------------------------

def test_binary_garbage_is_refused_naming_the_file(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    cfg = tmp_path / "qtsafe.toml"
    cfg.write_bytes(BINARY)
    with pytest.raises(ConfigError, match=r"config file .*qtsafe\.toml is not valid TOML: not UTF-8"):
        load_settings(str(cfg), env={})
    os.chdir(tmp_path)  # found in the working directory, as on the VPS
    _one_error_line(run_cli("doctor"), "qtsafe.toml", "not valid TOML")
    _one_error_line(run_cli("canary", "status"), "qtsafe.toml", "not valid TOML")


def test_deeply_nested_toml_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "q.toml"
    cfg.write_text("x = " + "[" * 5000 + "1" + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(str(cfg), env={})


@pytest.mark.parametrize("name", ["qtsafe.toml", "pyproject.toml"])
@pytest.mark.parametrize("kind", ["directory", "dangling symlink", "symlink to a directory"])
def test_a_config_in_the_working_directory_that_is_not_a_file_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., Result], name: str,
        kind: str) -> None:
    monkeypatch.chdir(tmp_path)
    if kind == "directory":
        (tmp_path / name).mkdir()
    elif kind == "dangling symlink":
        (tmp_path / name).symlink_to(tmp_path / "gone.toml")
    else:
        (tmp_path / "adir").mkdir()
        (tmp_path / name).symlink_to(tmp_path / "adir")
    with pytest.raises(ConfigError, match=name):
        load_settings(env={})
    _one_error_line(run_cli("canary", "status"), name)


def test_a_named_config_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "dangling.toml").symlink_to(tmp_path / "gone.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(str(tmp_path / "adir"), env={})
    with pytest.raises(ConfigError, match="symlink to a missing file"):
        load_settings(None, env={"QTSAFE_CONFIG": str(tmp_path / "dangling.toml")})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(str(tmp_path / "missing.toml"), env={})


def test_a_symlink_to_a_real_file_still_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "real.toml").write_text('unit = "quantum-ai_engine.service"\n')
    (tmp_path / "qtsafe.toml").symlink_to(tmp_path / "real.toml")
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}).unit == "quantum-ai_engine.service"


# ---- TOML values keep their type -----------------------------------------------------------------------

@pytest.mark.parametrize(("toml", "message"), [
    ('[thresholds]\nmajority_max = "0.9"\n', "expected a number, got the TOML string '0.9'"),
    ('[thresholds]\nmin_events_canary = "200"\n', "expected an integer, got the TOML string '200'"),
    ("[thresholds]\nstd_min = true\n", "expected a number, got the TOML boolean True"),
    ("[monitor]\nduration = 2026-01-10\n", "expected a number, got the TOML date/time"),
    ("unit = 5\n", "expected a string, got the TOML integer 5"),
    ("base_dir = [\"/srv\"]\n", "expected a path"),
    ('[feature_sanity]\nexpected_constant = "leverage,total_models"\n', "expected a list of names"),
    ("[feature_sanity]\nexpected_constant = [1, 2]\n", "expected a list of names"),
    ("[monitor]\nduration = nan\n", "must be finite"),
    ("[thresholds]\nmin_events_canary = 200.5\n", "expected an integer"),
])
def test_toml_values_keep_their_type(tmp_path: Path, toml: str, message: str) -> None:
    cfg = tmp_path / "q.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        load_settings(str(cfg), env={})
    assert str(cfg) in str(err.value)  # names the file


def test_what_the_docs_allow_still_converts(tmp_path: Path) -> None:
    cfg = tmp_path / "q.toml"
    cfg.write_text("[thresholds]\nstd_min = 0\nmin_events_canary = 300.0\n[monitor]\nduration = 7200\n")
    s = load_settings(str(cfg), env={})
    assert s.thresholds.std_min == 0.0 and isinstance(s.thresholds.std_min, float)
    assert s.thresholds.min_events_canary == 300 and isinstance(s.thresholds.min_events_canary, int)
    assert s.monitor.duration == 7200.0
    # The environment is text: there a string is converted, as documented.
    s = load_settings(env={"QTSAFE_THRESHOLDS_MAJORITY_MAX": "0.75", "QTSAFE_FEATURE_SANITY_EXPECTED_CONSTANT":
                           "leverage,total_models"})
    assert s.thresholds.majority_max == 0.75 and s.feature_sanity.expected_constant == ("leverage", "total_models")


# ---- narrowing feature_sanity.numeric_fields is loosening -------------------------------------------------

def test_dropping_a_default_numeric_field_is_reported_as_loosened(tmp_path: Path) -> None:
    cfg = tmp_path / "q.toml"
    cfg.write_text('[feature_sanity]\nnumeric_fields = ["confidence", "leverage"]\n')
    loosened = load_settings(str(cfg), env={}).loosened()
    assert [x["rule"] for x in loosened] == ["feature_sanity.numeric_fields"]
    entry = loosened[0]
    assert entry["value"] == ["confidence", "leverage"] and entry["looser_when"] == "fewer"
    assert "funding_rate" in entry["dropped"] and "leverage" not in entry["dropped"] and len(entry["dropped"]) == 10
    # Swapping a default field for another judges the swapped-out one no more: still looser.
    env = {"QTSAFE_FEATURE_SANITY_NUMERIC_FIELDS": "confidence,consensus_count,total_models,position_size_usd,"
           "leverage,entry_price,stop_loss,take_profit,atr_value,volatility_factor,exchange_divergence,my_feature"}
    assert load_settings(env=env).loosened()[0]["dropped"] == ["funding_rate"]


def test_more_or_reordered_numeric_fields_are_not_loosened() -> None:
    from qtsafe.config import DEFAULT_NUMERIC_FIELDS

    wider = ",".join((*reversed(DEFAULT_NUMERIC_FIELDS), "rsi_14"))
    assert load_settings(env={"QTSAFE_FEATURE_SANITY_NUMERIC_FIELDS": wider}).loosened() == []
    assert load_settings(env={}).loosened() == []


def test_doctor_lists_a_narrowed_field_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qtsafe.doctor import WARN

    monkeypatch.setattr("qtsafe.doctor._redis_checks", lambda settings: [])
    monkeypatch.setattr("qtsafe.doctor._systemd_checks", lambda settings: [])
    settings = load_settings(env={"QTSAFE_FEATURE_SANITY_NUMERIC_FIELDS": "confidence",
                                  "QTSAFE_BASE_DIR": str(tmp_path)})
    config = run_doctor(settings).checks[0]
    assert config.severity == WARN and "loosened: feature_sanity.numeric_fields" in config.message


# ---- the engine unit: only names systemd accepts -------------------------------------------------------

VALID_UNITS = ["quantum-ai-engine.service", "quantum-ai_engine.service", "engine@blue.service",
               "foo\\x2dbar.service", "a:b.service", "a" * 247 + ".service"]
HOSTILE_UNITS = {
    "../../tmp/x": "contains '/'",
    "x.service; touch /tmp/p": "contains '/'",
    "x.service;touch p": "';'",
    "x y.service": "' '",
    "$(id).service": "'$'",
    "x.service\nExecStart=bash": r"'\n'",
    "-H.service": "starts with '-'",
    "--host.service": "starts with '-'",
    ".service": "starts with '.'",
    ".hidden.service": "starts with '.'",
    "quantum-ai-engine": "did you mean 'quantum-ai-engine.service'",
    "quantum-ai-engine.socket": "must be a .service unit",
    "a" * 248 + ".service": "256 characters long (at most 255)",
    "x@.service": "template",
    "@x.service": "nothing before '@'",
    "": "empty",
    "x.service\u202e": "'\\u202e'",
}


@pytest.mark.parametrize("name", VALID_UNITS)
def test_valid_unit_names_pass(name: str) -> None:
    assert check_unit_name(name) == name
    assert load_settings(env={"QTSAFE_UNIT": name}).unit == name


@pytest.mark.parametrize("name", list(HOSTILE_UNITS), ids=[repr(n)[:40] for n in HOSTILE_UNITS])
def test_hostile_unit_names_are_refused_from_every_source(tmp_path: Path, name: str) -> None:
    message = HOSTILE_UNITS[name]
    with pytest.raises(ConfigError, match="not a valid systemd unit name") as err:
        check_unit_name(name)
    assert message in str(err.value) and "\n" not in str(err.value)
    cfg = tmp_path / "q.toml"
    cfg.write_text(f"unit = {json.dumps(name)}\n")  # a TOML basic string, escapes included
    for kwargs in ({"config_path": str(cfg), "env": {}}, {"env": {"QTSAFE_UNIT": name}},
                   {"overrides": {"unit": name}, "env": {}}):
        with pytest.raises(ConfigError, match="not a valid systemd unit name"):
            load_settings(**kwargs)  # type: ignore[arg-type]
