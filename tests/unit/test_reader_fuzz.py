"""Any bytes in any field: the reader never crashes and every entry is accounted for."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qtsafe.sanity import FeatureBuilder
from qtsafe.telemetry.parse import TelemetryBuilder

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
votes = st.dictionaries(
    st.sampled_from(["action", "confidence", "inactive", "shadow", "model"]),
    json_values | st.sampled_from(["BUY", "SELL", "HOLD", "buy"]),
    max_size=5,
)
payloads = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["xgb", "lgbm", "fallback", "tft"]), votes | json_values, max_size=4).map(
        lambda b: json.dumps({"model_breakdown": b}).encode()),
)
entries = st.lists(
    st.tuples(st.sampled_from([b"trade.intent", b"other", b""]), payloads, st.booleans()), max_size=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries)
def test_every_entry_is_counted(rows) -> None:
    builder = TelemetryBuilder()
    features = FeatureBuilder(("confidence",))
    page = []
    for i, (event_type, payload, with_payload) in enumerate(rows):
        fields = [b"event_type", event_type] + ([b"payload", payload] if with_payload else [])
        page.append((f"{i + 1}-0".encode(), fields))
    builder.feed(page)
    features.feed(page)
    t = builder.build()
    assert t.read == len(rows)
    assert t.reconciliation()["balanced"]
    for m in t.models.values():
        d = m.defects
        assert d.present == m.n_valid + d.inactive + d.invalid_total + d.bad_total
        assert (m.conf >= 0).all() and (m.conf == m.conf).all()
    assert features.read == features.events + sum(features.skipped.values())
