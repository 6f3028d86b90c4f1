"""The reader keeps each evaluated event's symbol and entry_price: exact values, any page size, both paths, merges."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qtsafe.simulate import generate
from qtsafe.telemetry.parse import NO_SYMBOL, Telemetry, TelemetryBuilder, merge_telemetry
from tests.unit.test_batch_equivalence import assert_same, pages_of

VOTE = {"xgb": {"action": "BUY", "confidence": 0.7}}


def read(payloads: list[bytes], size: int = 1000) -> Telemetry:
    builder = TelemetryBuilder()
    for page in pages_of(payloads, size=size):
        builder.feed(page)
    return builder.build()


def intent(**fields: object) -> bytes:
    return json.dumps({**fields, "model_breakdown": VOTE}).encode()


def test_symbol_and_price_are_kept_and_a_missing_price_is_missing() -> None:
    payloads = [intent(symbol="ETHUSDT", entry_price=2500.5), intent(symbol="BTCUSDT", entry_price=97000),
                intent(symbol="ETHUSDT"), intent(entry_price=1.5), intent(symbol="", entry_price=None),
                intent(symbol="SOLUSDT", entry_price=-3.0), intent(symbol="SOLUSDT", entry_price=0)]
    t = read(payloads)
    assert t.symbol_names == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert t.symbol.tolist() == [1, 0, 1, NO_SYMBOL, NO_SYMBOL, 2, 2]
    assert t.entry_price[:2].tolist() == [2500.5, 97000.0] and t.entry_price[3] == 1.5
    assert [math.isnan(p) for p in t.entry_price.tolist()] == [False, False, True, False, True, True, True]


def test_a_price_written_as_a_string_is_not_coerced_on_the_careful_path() -> None:
    # The string fails the strict batch decode; the careful path must record it as missing, not 101.5.
    payloads = [intent(symbol="BTCUSDT", entry_price=100.0), intent(symbol="BTCUSDT", entry_price="101.5"),
                b'{"symbol": "BTCUSDT", "entry_price": NaN, "model_breakdown": {"xgb": {"action": "SELL", '
                b'"confidence": 0.8}}}']
    t = read(payloads)
    assert t.evaluated == 3 and t.entry_price[0] == 100.0 and np.isnan(t.entry_price[1:]).all()
    assert t.symbol.tolist() == [0, 0, 0]


def test_skipped_entries_have_no_row() -> None:
    payloads = [intent(symbol="A", entry_price=1.0), json.dumps({"symbol": "B", "entry_price": 2.0}).encode(),
                b"not json", intent(symbol="C", entry_price=3.0)]
    t = read(payloads)
    assert t.evaluated == 2 and t.symbol_names == ("A", "C") and t.entry_price.tolist() == [1.0, 3.0]


def test_simulated_prices_match_the_payloads() -> None:
    entries = list(generate("healthy", 120, seed=3, market="regimes"))
    t = read([e.fields["payload"].encode() for e in entries], size=50)
    decoded = [json.loads(e.fields["payload"]) for e in entries]
    assert [t.symbol_names[c] for c in t.symbol] == [d["symbol"] for d in decoded]
    assert t.entry_price.tolist() == [d["entry_price"] for d in decoded]


market = st.fixed_dictionaries({}, optional={
    "symbol": st.one_of(st.sampled_from(["BTCUSDT", "ETHUSDT", "XRPUSDT", ""]), st.none(), st.just(7)),
    "entry_price": st.one_of(st.floats(-1, 1e5, allow_nan=False), st.none(), st.just("3.5"), st.just(False)),
})
bad = st.sampled_from([b"{", b'{"symbol": "ZZZ", "entry_price": 1, "model_breakdown": {"xgb": {"confidence": NaN}}}'])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(market.map(lambda m: json.dumps({**m, "model_breakdown": VOTE}).encode()), bad),
                min_size=1, max_size=40), st.integers(1, 45), st.integers(1, 39))
def test_any_page_size_and_any_cut_give_the_same_columns(payloads: list[bytes], size: int, cut: int) -> None:
    whole = read(payloads)
    assert_same(whole, read(payloads, size=size))
    entries = [entry for page in pages_of(payloads, size=len(payloads)) for entry in page]
    parts = []
    for lo, hi in ((0, min(cut, len(entries))), (min(cut, len(entries)), len(entries))):
        builder = TelemetryBuilder()
        builder.feed(entries[lo:hi])
        parts.append(builder.build())
    assert_same(whole, merge_telemetry(parts))


def test_merge_rebases_symbol_codes_on_the_union() -> None:
    first = read([intent(symbol="ETHUSDT", entry_price=1.0), intent(symbol="BTCUSDT", entry_price=2.0)])
    second = read([intent(symbol="SOLUSDT", entry_price=3.0), intent(entry_price=4.0),
                   intent(symbol="BTCUSDT", entry_price=5.0)])
    assert second.symbol.tolist() == [1, NO_SYMBOL, 0]
    merged = merge_telemetry([first, second])
    assert merged.symbol_names == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert merged.symbol.tolist() == [1, 0, 2, NO_SYMBOL, 0]
    assert merged.entry_price.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
