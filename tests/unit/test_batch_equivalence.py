"""The page-at-once decoder and the careful per-entry decoder must produce identical columns."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qtsafe.simulate import generate
from qtsafe.telemetry import parse
from qtsafe.telemetry.parse import TelemetryBuilder


def pages_of(payloads: list[bytes], size: int = 7) -> list[list[tuple[bytes, list[bytes]]]]:
    entries = [(f"{i + 1}-0".encode(), [b"event_type", b"trade.intent", b"payload", p]) for i, p in enumerate(payloads)]
    return [entries[i:i + size] for i in range(0, len(entries), size)]


def both_ways(payloads: list[bytes]):
    fast = TelemetryBuilder()
    careful = TelemetryBuilder()
    for page in pages_of(payloads):
        fast.feed(page)
        ids = [e[0] for e in page]
        careful.read += len(page)
        careful._feed_careful(ids, [e[1][3] for e in page])
    return fast.build(), careful.build()


def assert_same(a, b) -> None:
    assert a.evaluated == b.evaluated and a.skipped == b.skipped and a.pseudo_entries == b.pseudo_entries
    assert np.array_equal(a.votes, b.votes) and np.array_equal(a.event_ms, b.event_ms)
    # The outcome columns: symbol codes into sorted names, prices with NaN exactly where missing.
    assert a.symbol_names == b.symbol_names and np.array_equal(a.symbol, b.symbol)
    assert a.symbol.dtype == b.symbol.dtype == np.int32 and a.symbol.shape == a.entry_price.shape == a.event_ms.shape
    assert np.array_equal(a.entry_price, b.entry_price, equal_nan=True)
    assert a.models.keys() == b.models.keys()
    for name in a.models:
        x, y = a.models[name], b.models[name]
        assert x.defects == y.defects, name
        assert x.shadow == y.shadow and x.examples == y.examples, name
        for col in ("event_idx", "action", "conf"):
            assert np.array_equal(getattr(x, col), getattr(y, col)), (name, col)


def test_simulated_scenarios_decode_identically() -> None:
    for scenario in ("healthy", "inactive-model", "disagreeing"):
        payloads = [e.fields["payload"].encode() for e in generate(scenario, 300, seed=5)]
        assert_same(*both_ways(payloads))


vote = st.fixed_dictionaries(
    {"action": st.sampled_from(["BUY", "SELL", "HOLD"]),
     "confidence": st.one_of(st.floats(-1, 2, allow_nan=False), st.integers(-2, 3), st.just(1e999))},
    optional={"inactive": st.booleans(), "shadow": st.booleans(), "model": st.text(max_size=3)},
)
breakdown = st.dictionaries(st.sampled_from(["xgb", "lgbm", "nhits", "fallback", "tft"]), vote, max_size=5)


# What the producer writes beside the breakdown that outcome scoring reads, well-formed or not.
market = st.fixed_dictionaries({}, optional={
    "symbol": st.one_of(st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDT", ""]), st.none(), st.integers(0, 3)),
    "entry_price": st.one_of(st.floats(-10, 1e6, allow_nan=False), st.integers(-5, 10**6), st.none(),
                             st.just("101.5"), st.just(True), st.just(0), st.just(1e999)),
})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.one_of(breakdown.map(lambda b: {"model_breakdown": b}),
                                    st.just({"model_breakdown": None}), st.just({})), market).map(
    lambda pair: {**pair[1], **pair[0]}), min_size=1, max_size=30))
def test_well_formed_payloads_decode_identically(intents) -> None:
    payloads = [json.dumps(i).replace("Infinity", "1e999").encode() for i in intents]
    fast, careful = both_ways(payloads)
    assert_same(fast, careful)


def test_injection_across_the_page_join_takes_the_careful_path() -> None:
    # One payload holding two objects must not shift the page's intents: the count check catches it.
    good = json.dumps({"model_breakdown": {"xgb": {"action": "BUY", "confidence": 0.7}}})
    sneaky = good + "," + good
    t = TelemetryBuilder()
    t.feed(pages_of([good.encode(), sneaky.encode(), good.encode()], size=3)[0])
    built = t.build()
    assert built.evaluated == 2 and built.skipped["bad_json"] == 1


def test_strict_decoder_is_actually_used_for_clean_pages(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(parse.TelemetryBuilder, "_feed_careful", lambda self, ids, p: calls.append(len(ids)))
    payloads = [e.fields["payload"].encode() for e in generate("healthy", 50, seed=1)]
    TelemetryBuilder().feed(pages_of(payloads, size=50)[0])
    assert calls == []


def test_merged_slices_equal_one_read() -> None:
    from qtsafe.telemetry.parse import merge_telemetry
    from tests.conftest import load_samples

    samples = [(e["id"].encode(), [x for kv in e["fields"].items() for x in (kv[0].encode(), kv[1].encode())])
               for e in load_samples()]
    healthy = [(f"{i + 1}-0".encode(), [b"event_type", b"trade.intent", b"payload", e.fields["payload"].encode()])
               for i, e in enumerate(generate("inactive-model", 200, seed=4))]
    entries = healthy + samples
    whole = TelemetryBuilder()
    whole.feed(entries)
    parts = []
    for cut in ((0, 50), (50, 150), (150, 205), (205, len(entries))):
        builder = TelemetryBuilder()
        builder.feed(entries[cut[0]:cut[1]])
        parts.append(builder.build())
    assert_same(whole.build(), merge_telemetry(parts))
