from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from qtsafe.canary.weights import (
    canary_weights,
    check_model_name,
    parse_weights_json,
    validate_weights,
    weights_json,
)
from qtsafe.errors import InputError

BASELINE = {"xgb": 0.25, "lgbm": 0.25, "nhits": 0.30, "patchtst": 0.20}


def test_design_example_exactly() -> None:
    assert canary_weights(BASELINE, "patchtst", 0.10) == {
        "patchtst": 0.10, "xgb": 0.28125, "lgbm": 0.28125, "nhits": 0.3375,
    }


def test_model_absent_from_baseline_scales_every_baseline_weight() -> None:
    out = canary_weights(BASELINE, "tft", 0.10)
    assert out == {"tft": 0.1, "xgb": 0.225, "lgbm": 0.225, "nhits": 0.27, "patchtst": 0.18}


def test_all_other_weights_zero_is_refused() -> None:
    with pytest.raises(InputError, match="zero baseline weight"):
        canary_weights({"patchtst": 1.0, "xgb": 0.0}, "patchtst", 0.1)
    with pytest.raises(InputError, match="zero baseline weight"):
        canary_weights({"patchtst": 1.0}, "patchtst", 0.1)


@pytest.mark.parametrize("share", [0.0, -0.1, 0.5000001, 0.6, 1.0, math.nan, math.inf, True])
def test_share_outside_range_is_refused(share: float) -> None:
    with pytest.raises(InputError):
        canary_weights(BASELINE, "patchtst", share)


def test_share_half_is_allowed_and_full_only_for_promotion() -> None:
    assert canary_weights(BASELINE, "patchtst", 0.5)["patchtst"] == 0.5
    assert canary_weights(BASELINE, "patchtst", 1.0, max_share=1.0) == {
        "patchtst": 1.0, "xgb": 0.0, "lgbm": 0.0, "nhits": 0.0}


@pytest.mark.parametrize("name", ["patchtst\nExecStart=/bin/sh", "patch tst", "x%n", 'a"b', "", "-x", "a=b",
                                  "patchtst\n", "é", "a" * 65])
def test_model_names_are_strict(name: str) -> None:
    with pytest.raises(InputError):
        check_model_name(name)


@pytest.mark.parametrize("text, message", [
    ('{"xgb": 0.5, "lgbm": 0.4}', "sum to"),
    ('{"xgb": NaN, "lgbm": 1.0}', "NaN"),
    ('{"xgb": Infinity}', "Infinity"),
    ('{"xgb": -0.5, "lgbm": 1.5}', "negative"),
    ('{"xgb": "0.5", "lgbm": 0.5}', "not a number"),
    ('{"xgb": true}', "not a number"),
    ("[0.5, 0.5]", "JSON object"),
    ("{}", "JSON object"),
    ("not json", "not valid JSON"),
    ('{"bad name": 1.0}', "invalid model name"),
])
def test_bad_weights_are_refused(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_weights_json(text)


def test_weights_json_is_canonical() -> None:
    assert weights_json({"xgb": 0.5, "lgbm": 0.5}) == '{"lgbm":0.5,"xgb":0.5}'


@given(
    hs.dictionaries(hs.sampled_from(["xgb", "lgbm", "nhits", "patchtst", "tft"]),
                    hs.floats(min_value=0.01, max_value=10), min_size=2),
    hs.floats(min_value=0.001, max_value=0.5),
)
def test_canary_weights_invariants(raw: dict[str, float], share: float) -> None:
    total = sum(raw.values())
    baseline = {k: v / total for k, v in raw.items()}
    baseline = validate_weights(baseline)
    model = sorted(baseline)[0]
    out = canary_weights(baseline, model, share)
    assert abs(sum(out.values()) - 1.0) < 1e-9
    assert out[model] == round(share, 12)
    others = [k for k in baseline if k != model]
    # Relative proportions among the other models are preserved.
    for a in others:
        for b in others:
            assert math.isclose(out[a] * baseline[b], out[b] * baseline[a], rel_tol=1e-9, abs_tol=1e-11)
