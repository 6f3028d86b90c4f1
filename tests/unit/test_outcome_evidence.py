"""Outcome evidence from the reader's columns: per-model records, the paired verdict, --prices, the settings."""

from __future__ import annotations

import builtins
import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qtsafe.config import Outcomes, load_settings
from qtsafe.errors import ConfigError, InputError, QtsafeError
from qtsafe.outcome_evidence import outcome_evidence, outcome_evidence_for
from qtsafe.simulate import generate
from qtsafe.status import Status
from qtsafe.telemetry.parse import Telemetry, TelemetryBuilder
from tests.conftest import intent_entry


@functools.cache
def simulated(scenario: str, events: int, seed: int = 0, market: str = "regimes") -> Telemetry:
    builder = TelemetryBuilder()
    entries = [(e.id.encode(), [b"event_type", b"trade.intent", b"payload", e.fields["payload"].encode()])
               for e in generate(scenario, events, seed=seed, market=market, spacing_ms=2000)]
    for i in range(0, len(entries), 1000):
        builder.feed(entries[i:i + 1000])
    return builder.build()


@pytest.mark.parametrize("scenario, expected", [("healthy", Status.PASS), ("backwards", Status.FAIL),
                                                ("random", Status.FAIL)])
def test_canary_against_the_baseline_over_six_hours(scenario: str, expected: Status) -> None:
    evidence = outcome_evidence(simulated(scenario, 10_800), Outcomes(), canary="patchtst")
    assert evidence.verdict is not None and evidence.verdict.status is expected, evidence.verdict.message
    mine = evidence.models["patchtst"]
    assert mine.scored > 1000 and mine.hit_low <= mine.hit_rate <= mine.hit_high
    assert evidence.paired is not None and evidence.paired.pairs >= Outcomes().min_resolved
    if scenario == "backwards":
        assert mine.hit_high < 0.5 < evidence.models["xgb"].hit_low
        assert "worse than the baseline" in evidence.verdict.message


def test_a_short_window_waits_and_says_how_many_more() -> None:
    # 200 events 2 s apart: only the first ~100 s of votes have a 5-minute outcome yet.
    evidence = outcome_evidence(simulated("healthy", 200), Outcomes(), canary="patchtst")
    assert evidence.paired is not None and evidence.paired.pairs < Outcomes().min_resolved
    assert evidence.verdict is not None and evidence.verdict.status is Status.WAIT
    assert evidence.verdict.needed_more is not None and evidence.verdict.needed_more > 0
    assert f"needs about {evidence.verdict.needed_more} more" in evidence.verdict.message


def test_votes_whose_horizon_has_not_passed_are_pending_never_guessed() -> None:
    t = simulated("healthy", 400)
    evidence = outcome_evidence(t, Outcomes(horizon=300), now_ms=int(t.event_ms[0]) + 299_000)
    assert all(m.scored == 0 and m.pending == m.sided_votes for m in evidence.models.values())
    assert evidence.directions["pending"] == t.evaluated
    # The last 5 minutes of a window are pending whatever the clock: no later price can have come yet.
    late = outcome_evidence(t, Outcomes(horizon=300))
    assert late.directions["pending"] == int(np.count_nonzero(t.event_ms > t.event_ms[-1] - 300_000))


T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC in ms


def _payload(symbol: str | None, price: float | None, action: str, ms: int) -> tuple[bytes, list[bytes]]:
    return intent_entry(T0 + ms, symbol, price, dict.fromkeys(("xgb", "lgbm", "nhits", "patchtst"), action))


def _telemetry(rows: list[tuple[bytes, list[bytes]]]) -> Telemetry:
    builder = TelemetryBuilder()
    builder.feed(rows)
    return builder.build()


def test_an_event_without_symbol_or_price_is_never_scored() -> None:
    minute = 60_000
    rows = [_payload("BTCUSDT", 100.0, "BUY", 0), _payload(None, 100.0, "BUY", 1),
            _payload("BTCUSDT", None, "BUY", 2), _payload("BTCUSDT", 101.0, "SELL", 10 * minute)]
    evidence = outcome_evidence(_telemetry(rows), Outcomes(horizon=300))
    assert evidence.directions["up"] == 1 and evidence.directions["no_price"] == 2
    assert evidence.models["xgb"].scored == 1 and evidence.models["xgb"].hits == 1
    assert evidence.models["xgb"].unscorable == 2 and evidence.models["xgb"].pending == 1


def _csv_prices(directory: Path, symbol: str, rows: list[tuple[int, float]]) -> None:
    directory.mkdir(exist_ok=True)
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{T0 + ms},{p},{p},{p},{p},1" for ms, p in rows]  # epoch milliseconds
    (directory / f"{symbol}.csv").write_text("\n".join(lines) + "\n")


def test_market_data_decides_the_direction_when_given(tmp_path: Path) -> None:
    minute = 60_000
    rows = [_payload("BTCUSDT", 100.0, "BUY", minute), _payload("BTCUSDT", 101.0, "BUY", 20 * minute)]
    t = _telemetry(rows)
    settings = load_settings(None, {"outcomes.horizon": 300}, env={})
    from_stream = outcome_evidence_for(settings, t)
    assert from_stream.models["xgb"].hits == 1 and from_stream.prices == "stream"
    # The market says the price fell 5 minutes after the first vote (and ends before the second's horizon).
    _csv_prices(tmp_path / "bars", "BTCUSDT", [(0, 100.0), (minute, 100.0), (6 * minute, 99.0),
                                               (21 * minute, 98.0)])
    _csv_prices(tmp_path / "bars", "ETHUSDT", [(0, 5.0)])
    from_market = outcome_evidence_for(settings, t, prices=f"csv:{tmp_path / 'bars'}")
    assert from_market.prices == f"csv:{tmp_path / 'bars'}"
    xgb = from_market.models["xgb"]
    assert xgb.scored == 1 and xgb.hits == 0 and xgb.pending == 1


@pytest.mark.parametrize("text", ["synthetic", "bogus", "csv:"])
def test_bad_prices_option_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError, match="--prices"):
        outcome_evidence_for(load_settings(None, {}, env={}), simulated("healthy", 400), prices=text)


def test_prices_without_the_dataset_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    real_import = builtins.__import__

    def no_pandas(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'", name="pandas")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m == "qtsafe.dataset.sources" or m.startswith("pandas")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(QtsafeError, match=r"qtsafe\[dataset\]") as caught:
        outcome_evidence_for(load_settings(None, {}, env={}), simulated("healthy", 400), prices=f"csv:{tmp_path}")
    assert "--prices" in str(caught.value)


def test_an_unknown_canary_is_refused() -> None:
    with pytest.raises(InputError, match="tft"):
        outcome_evidence(simulated("healthy", 400), Outcomes(), canary="tft")


def test_outcome_settings_follow_the_precedence_and_are_checked(tmp_path: Path) -> None:
    settings = load_settings(None, {}, env={"QTSAFE_OUTCOMES_HORIZON": "900", "QTSAFE_OUTCOMES_MARGIN": "0.05"})
    assert settings.outcomes.horizon == 900.0 and settings.outcomes.margin == 0.05
    assert any(row["rule"] == "outcomes.margin" for row in settings.loosened())
    assert load_settings(None, {"outcomes.horizon": 60}, env={"QTSAFE_OUTCOMES_HORIZON": "900"}).outcomes.horizon == 60
    config = tmp_path / "qtsafe.toml"
    config.write_text("[outcomes]\nmin_resolved = 100\nconfidence = 0.99\n")
    from_file = load_settings(str(config), {}, env={})
    assert from_file.outcomes.min_resolved == 100 and from_file.outcomes.confidence == 0.99
    for key, value, message in (("horizon", "14401", "4 h|14400"), ("horizon", "0", "1..14400"),
                                ("margin", "0", "margin"), ("confidence", "0.5", "confidence"),
                                ("min_resolved", "0", "min_resolved")):
        with pytest.raises(ConfigError, match=message):
            load_settings(None, {}, env={f"QTSAFE_OUTCOMES_{key.upper()}": value})
    config.write_text("[outcomes]\nhorizn = 60\n")
    with pytest.raises(ConfigError, match="did you mean 'horizon'"):
        load_settings(str(config), {}, env={})
