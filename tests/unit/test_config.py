"""Settings precedence: defaults < config file < QTSAFE_* environment < flags; unknown keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtsafe.config import Settings, load_settings
from qtsafe.errors import ConfigError


def test_defaults_match_the_runbooks() -> None:
    s = load_settings(env={})
    t = s.thresholds
    assert (t.min_events_collection, t.min_events_canary, t.majority_max, t.std_min, t.p10_p90_min,
            t.constant_std, t.hold_dead_zone_max, t.agreement_min, t.agreement_max, t.hard_disagree_max) == (
        100, 200, 0.70, 0.05, 0.12, 0.01, 0.85, 0.55, 0.80, 0.20)
    assert s.feature_sanity.min_events == 50 and s.feature_sanity.flatline_max_fraction == 0.30
    assert s.monitor.duration == 6 * 3600 and s.monitor.interval == 30
    assert s.unit == "quantum-ai-engine.service"
    assert s.loosened() == []


def test_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "q.toml"
    cfg.write_text('stream = "from-file"\nredis_url = "redis://file:1/0"\nunit = "file.service"\n'
                   '[thresholds]\nstd_min = 0.06\n')
    env = {"QTSAFE_REDIS_URL": "redis://env:2/0", "QTSAFE_UNIT": "env.service", "QTSAFE_THRESHOLDS_STD_MIN": "0.07"}
    s = load_settings(str(cfg), {"unit": "flag.service", "stream": None}, env=env)
    assert s.stream == "from-file"  # file only
    assert s.redis_url == "redis://env:2/0"  # env beats file
    assert s.unit == "flag.service"  # flag beats env
    assert s.thresholds.std_min == 0.07
    assert s.config_file == str(cfg)


def test_qtsafe_toml_in_cwd_and_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.qtsafe]\nunit = "quantum-ai_engine.service"\n')
    assert load_settings(env={}).unit == "quantum-ai_engine.service"
    (tmp_path / "qtsafe.toml").write_text('unit = "other.service"\n')
    assert load_settings(env={}).unit == "other.service"


def test_unknown_key_has_a_did_you_mean(tmp_path: Path) -> None:
    cfg = tmp_path / "q.toml"
    cfg.write_text("[thresholds]\nstd_mn = 0.1\n")
    with pytest.raises(ConfigError, match="did you mean 'std_min'"):
        load_settings(str(cfg), env={})
    with pytest.raises(ConfigError, match="did you mean 'redis_url'"):
        load_settings(env={"QTSAFE_REDIS_UR": "x"})


@pytest.mark.parametrize(("env", "message"), [
    ({"QTSAFE_THRESHOLDS_STD_MIN": "abc"}, "expected a number"),
    ({"QTSAFE_THRESHOLDS_STD_MIN": "nan"}, "must be finite"),
    ({"QTSAFE_PAGE_SIZE": "1.5"}, "expected an integer"),
    ({"QTSAFE_THRESHOLDS_MAJORITY_MAX": "1.5"}, "within"),
    ({"QTSAFE_THRESHOLDS_AGREEMENT_MIN": "0.9"}, "must not exceed"),
])
def test_bad_values_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(str(bad), env={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(str(tmp_path / "missing.toml"), env={})


def test_loosened_thresholds_are_listed() -> None:
    s = load_settings(env={"QTSAFE_THRESHOLDS_STD_MIN": "0.01", "QTSAFE_THRESHOLDS_MAJORITY_MAX": "0.9",
                           "QTSAFE_THRESHOLDS_P10_P90_MIN": "0.2"})
    rules = {x["rule"] for x in s.loosened()}
    assert rules == {"thresholds.std_min", "thresholds.majority_max"}  # a stricter p10_p90_min is not "loosened"


def test_expected_constant_list_from_env() -> None:
    s = load_settings(env={"QTSAFE_FEATURE_SANITY_EXPECTED_CONSTANT": "leverage, position_size_usd"})
    assert s.feature_sanity.expected_constant == ("leverage", "position_size_usd")


def test_settings_paths_follow_base_dir() -> None:
    s = Settings(base_dir=Path("/srv/q"))
    assert s.reports_dir == Path("/srv/q/reports/safety")
    assert s.journal_path == Path("/srv/q/logs/qsc_canary.jsonl")
