"""Each line of the producer-format samples is counted exactly as the contract says."""

from __future__ import annotations

import pytest

from qtsafe.telemetry.parse import TelemetryBuilder
from tests.conftest import load_samples

SAMPLES = load_samples()


def build(lines: list[int]):
    builder = TelemetryBuilder()
    builder.feed([(SAMPLES[i - 1]["id"].encode(), _flat(SAMPLES[i - 1]["fields"])) for i in lines])
    return builder.build()


def _flat(fields: dict[str, str]) -> list[bytes]:
    out: list[bytes] = []
    for key, value in fields.items():
        out += [key.encode(), value.encode()]
    return out


def test_all_samples_reconcile() -> None:
    t = build(list(range(1, 13)))
    assert t.read == 12
    assert t.evaluated == 9
    assert t.skipped == {"other_event_type": 1, "no_payload": 0, "bad_json": 1, "payload_not_object": 0,
                         "no_breakdown": 1, "bad_breakdown": 0, "duplicate_key": 0}
    assert t.reconciliation()["balanced"] is True
    assert sorted(t.models) == ["lgbm", "nhits", "patchtst", "tft", "xgb"]
    for m in t.models.values():
        d = m.defects
        assert d.present == m.n_valid + d.inactive + d.invalid_total + d.bad_total


# (line, model, what must be counted): one row per awkward case in shared/samples/README.md
CASES = [
    (1, "patchtst", {"valid": 1, "shadow": 1}),
    (2, "lgbm", {"valid": 1, "above_one": 1}),
    (3, "nhits", {"valid": 0, "inactive": 1}),
    (4, "xgb", {"valid": 0, "nan": 1}),
    (5, "xgb", {"valid": 0, "inf": 1}),
    (5, "lgbm", {"valid": 0, "negative": 1}),
    (6, "xgb", {"valid": 0, "unknown_action": 1}),  # lower-case "buy" is not coerced to BUY
    (6, "lgbm", {"valid": 0, "null": 1}),
    (7, "tft", {"valid": 1}),
    (11, "xgb", {"valid": 0, "not_an_object": 1}),
    (11, "lgbm", {"valid": 0, "unknown_action": 1}),
    (12, "nhits", {"valid": 1}),
]


@pytest.mark.parametrize(("line", "model", "expected"), CASES)
def test_sample_line_is_counted(line: int, model: str, expected: dict[str, int]) -> None:
    t = build([line])
    assert t.evaluated == 1
    m = t.models[model]
    d = m.defects
    counts = {"valid": m.n_valid, "shadow": m.shadow, "above_one": d.above_one, "inactive": d.inactive,
              **d.invalid_confidence, **d.bad_votes}
    for key, value in expected.items():
        assert counts[key] == value, (line, model, key)
    for kind in set(expected) - {"valid", "shadow", "inactive"}:
        assert m.examples[kind] == SAMPLES[line - 1]["id"]


def test_string_confidence_is_non_numeric_not_coerced() -> None:
    builder = TelemetryBuilder()
    payload = b'{"model_breakdown": {"xgb": {"action": "BUY", "confidence": "0.74"}}}'
    builder.feed([(b"1-0", [b"event_type", b"trade.intent", b"payload", payload])])
    t = builder.build()
    assert t.models["xgb"].defects.invalid_confidence["non_numeric"] == 1
    assert t.models["xgb"].n_valid == 0


@pytest.mark.parametrize(("line", "reason"), [(8, "bad_json"), (9, "other_event_type"), (10, "no_breakdown")])
def test_skipped_lines_name_their_reason(line: int, reason: str) -> None:
    t = build([line])
    assert t.evaluated == 0
    assert t.skipped[reason] == 1
    assert t.skip_examples[reason] == SAMPLES[line - 1]["id"]


def test_fallback_is_not_a_model() -> None:
    t = build([3])
    assert "fallback" not in t.models
    assert t.pseudo_entries == 1


@pytest.mark.parametrize(("payload", "reason"), [
    (b"[1, 2]", "payload_not_object"),
    (b'"text"', "payload_not_object"),
    (b'{"model_breakdown": [1]}', "bad_breakdown"),
    (b'{"model_breakdown": "x"}', "bad_breakdown"),
    (b'{"model_breakdown": null}', "no_breakdown"),
    (b"\xff\xfe", "bad_json"),
])
def test_odd_payload_shapes(payload: bytes, reason: str) -> None:
    builder = TelemetryBuilder()
    builder.feed([(b"5-0", [b"event_type", b"trade.intent", b"payload", payload])])
    assert builder.build().skipped[reason] == 1


def test_entry_without_payload_field() -> None:
    builder = TelemetryBuilder()
    builder.feed([(b"5-0", [b"event_type", b"trade.intent"])])
    assert builder.build().skipped["no_payload"] == 1


def test_votes_count_only_voting_models() -> None:
    # line 1: xgb/lgbm/nhits BUY, patchtst BUY but shadow -> 3 BUY votes
    t = build([1, 3])
    assert t.votes.tolist()[0] == [3, 0, 0]
    # line 3: xgb BUY, lgbm HOLD, nhits inactive, patchtst shadow, fallback pseudo -> BUY 1, HOLD 1
    assert t.votes.tolist()[1] == [1, 0, 1]
