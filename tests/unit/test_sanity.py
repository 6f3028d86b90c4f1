"""feature-sanity: NaN/Inf, invalid, missing and flatlined features; expected-constant exclusions."""

from __future__ import annotations

import json
from pathlib import Path

from qtsafe.config import load_settings
from qtsafe.sanity import FeatureBuilder, judge_features
from tests.conftest import SAMPLES, STREAM, xadd_entries


def entries(n: int, payload_for) -> list[dict]:
    out = []
    for i in range(n):
        out.append({"id": f"{1_700_000_000_000 + i}-0",
                    "fields": {"event_type": "trade.intent", "payload": payload_for(i)}})
    return out


def feed(payloads: list[str]) -> FeatureBuilder:
    builder = FeatureBuilder(("a", "b", "c", "d"))
    builder.feed([(f"{i + 1}-0".encode(), [b"event_type", b"trade.intent", b"payload", p.encode()])
                  for i, p in enumerate(payloads)])
    return builder


def checks(builder: FeatureBuilder, **env: str) -> set[tuple[str, str, str]]:
    settings = load_settings(env={f"QTSAFE_FEATURE_SANITY_{k.upper()}": v for k, v in env.items()})
    _, findings, *_ = judge_features(builder, settings)
    return {(f.subject, f.check, f.severity) for f in findings}


def test_varied_features_pass() -> None:
    b = feed([json.dumps({"a": i, "b": i * 0.5, "c": -i, "d": i % 7}) for i in range(60)])
    assert checks(b) == set()


def test_nan_and_inf_fail() -> None:
    rows = [json.dumps({"a": i, "b": i, "c": i, "d": i}) for i in range(60)]
    rows[5] = '{"a": NaN, "b": 1, "c": Infinity, "d": 2}'
    found = checks(feed(rows))
    assert ("a", "nan_inf", "FAIL") in found and ("c", "nan_inf", "FAIL") in found


def test_flatline_over_30_percent_fails_and_expected_constant_is_excluded() -> None:
    rows = [json.dumps({"a": i, "b": 5, "c": 200.0, "d": i * 2}) for i in range(60)]
    found = checks(feed(rows))
    assert ("window", "flatline", "FAIL") in found  # 2 of 4 flat = 50 %
    found = checks(feed(rows), expected_constant="c")
    assert ("window", "flatline", "FAIL") in found  # 1 of 3 judged is 33 %: still above 30 %
    found = checks(feed(rows), expected_constant="b,c")
    assert found == set()


def test_missing_key_is_missing_never_a_default() -> None:
    rows = [json.dumps({"a": i, "b": i, "c": i}) for i in range(60)]  # d never present
    found = checks(feed(rows))
    assert ("d", "missing", "FAIL") in found
    rows = [json.dumps({"a": i, "b": i, "c": i, **({"d": i} if i % 10 else {})}) for i in range(60)]
    found = checks(feed(rows))
    assert ("d", "missing", "WARN") in found


def test_null_and_string_values_are_invalid() -> None:
    rows = [json.dumps({"a": i, "b": i, "c": i, "d": i}) for i in range(60)]
    rows[3] = json.dumps({"a": None, "b": "1.0", "c": 1, "d": 1})
    found = checks(feed(rows))
    assert ("a", "invalid_value", "FAIL") in found and ("b", "invalid_value", "FAIL") in found


def test_too_few_events() -> None:
    b = feed([json.dumps({"a": i, "b": i, "c": i, "d": i}) for i in range(49)])
    assert ("window", "insufficient_data", "FAIL") in checks(b)


def test_features_object_is_judged(fake_redis, run_cli, tmp_path: Path) -> None:
    def payload(i: int) -> str:
        return json.dumps({"confidence": 0.8 + i * 0.001, "entry_price": 100 + i, "features":
                           {"rsi_14": 40 + i % 20, "volume_z": None if i == 7 else i * 0.1}})
    xadd_entries(fake_redis, entries(80, payload))
    env = {"QTSAFE_FEATURE_SANITY_NUMERIC_FIELDS": "confidence,entry_price"}
    r = run_cli("feature-sanity", "--base-dir", str(tmp_path), "--json", env=env)
    assert r.exit_code == 2
    data = json.loads(r.stdout)
    assert data["summary"] == ("FAIL: feature sanity - features.volume_z: 1 null and 0 non-numeric values in 80 "
                               "events (+1 more)")
    assert data["findings"][-1]["check"] == "stalled"  # 2023 telemetry read live from Redis: not alive
    assert {f["name"] for f in data["features"]} == {"confidence", "entry_price", "features.rsi_14",
                                                     "features.volume_z"}


def test_healthy_simulation_passes_with_expected_constants(fake_redis, make_stream, run_cli, tmp_path: Path) -> None:
    make_stream(fake_redis, "healthy", 200)
    r = run_cli("feature-sanity", "--base-dir", str(tmp_path))
    assert r.exit_code == 0, r.stdout
    assert r.stdout.startswith("PASS: feature sanity - 200 events, 12 features judged, 3 flatlined")
    r = run_cli("feature-sanity", "--base-dir", str(tmp_path),
                env={"QTSAFE_FEATURE_SANITY_EXPECTED_CONSTANT": "position_size_usd,leverage,total_models"})
    assert r.exit_code == 0
    assert "excluded leverage: declared expected-constant in the config" in r.stdout
    # Both runs may fall in one second: the second report is then feature_sanity_<ts>_2.md, never a replacement.
    report = sorted((tmp_path / "reports" / "safety").glob("feature_sanity_*.md"))[-1].read_text()
    assert "`leverage`: declared expected-constant in the config" in report


def test_sample_file_counts(run_cli, tmp_path: Path) -> None:
    r = run_cli("feature-sanity", "--events", str(SAMPLES), "--json", "--base-dir", str(tmp_path))
    data = json.loads(r.stdout)
    assert r.exit_code == 2
    assert data["read"] == 12 and data["events"] == 10 and data["skipped"]["other_event_type"] == 1
    assert data["skipped"]["bad_json"] == 1
    assert data["findings"][0]["check"] == "insufficient_data"
    assert STREAM  # the export, not the stream, was read


def test_features_that_are_not_an_object_are_counted() -> None:
    rows = [json.dumps({"a": i, "b": i * 2, "c": i * 3, "d": i * 4, **({"features": [1, 2]} if i == 3 else {})})
            for i in range(60)]
    assert ("features", "invalid_value", "FAIL") in checks(feed(rows))
