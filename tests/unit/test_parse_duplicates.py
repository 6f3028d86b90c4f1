"""Duplicate keys in a payload are a counted defect, never "the last one wins" (issue 10 item 15).

Every place a key can repeat, on the reader's batch path and its careful path, in feature sanity, and through
the CLI of the gate, scoreboard and feature-sanity. The producer's own payloads never trip the check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qtsafe.sanity import FeatureBuilder
from qtsafe.simulate import generate
from qtsafe.telemetry.duplicates import has_duplicate_keys
from qtsafe.telemetry.parse import TelemetryBuilder
from tests.conftest import xadd_entries

AFTER = "2000-01-01T00:00:00Z"
VOTES = '"lgbm": {"action": "SELL", "confidence": 0.7}'
DUPLICATED = {
    "vote_confidence": '{"confidence": 0.9, "model_breakdown": {"xgb": {"action": "BUY", "confidence": 0.2, '
                       '"confidence": 0.8}, ' + VOTES + '}}',
    "vote_action": '{"confidence": 0.9, "model_breakdown": {"xgb": {"action": "BUY", "action": "SELL", '
                   '"confidence": 0.8}, ' + VOTES + '}}',
    "model_name": '{"confidence": 0.9, "model_breakdown": {"xgb": {"action": "BUY", "confidence": 0.8}, '
                  '"xgb": {"action": "SELL", "confidence": 0.6}, ' + VOTES + '}}',
    "breakdown": '{"confidence": 0.9, "model_breakdown": {"xgb": {"action": "BUY", "confidence": 0.8}}, '
                 '"model_breakdown": {"xgb": {"action": "SELL", "confidence": 0.6}, ' + VOTES + '}}',
    "flag": '{"confidence": 0.9, "model_breakdown": {"xgb": {"action": "BUY", "confidence": 0.8, '
            '"inactive": true, "inactive": false}, ' + VOTES + '}}',
    "top_level": '{"confidence": 0.9, "confidence": 0.1, "leverage": 5, "model_breakdown": {"xgb": '
                 '{"action": "BUY", "confidence": 0.8}, ' + VOTES + '}}',
    "spaced_colon": '{"confidence": 0.9, "model_breakdown": {"xgb": {"action": "BUY", "confidence" : 0.2, '
                    '"confidence": 0.8}, ' + VOTES + '}}',
    # A key written with a JSON escape is the same key to every decoder, but not to a count of raw bytes.
    "escaped_action": '{"confidence": 0.9, "model_breakdown": {"xgb": {"action": "BUY", "\\u0061ction": "SELL", '
                      '"confidence": 0.8}, ' + VOTES + '}}',
    "escaped_flag": '{"confidence": 0.9, "model_breakdown": {"xgb": {"action": "BUY", "confidence": 0.8, '
                    '"shadow": true, "sh\\u0061dow": false}, ' + VOTES + '}}',
    "escaped_top_level": '{"confidence": 0.9, "c\\u006Fnfidence": 0.1, "model_breakdown": {"xgb": '
                         '{"action": "BUY", "confidence": 0.8}, ' + VOTES + '}}',
    # An earlier null or empty breakdown adds no vote token: only a count of "model_breakdown" itself sees it.
    "breakdown_null_first": '{"confidence": 0.9, "model_breakdown": null, "model_breakdown": {"xgb": '
                            '{"action": "BUY", "confidence": 0.8}, ' + VOTES + '}}',
    "breakdown_empty_first": '{"confidence": 0.9, "model_breakdown": {}, "model_breakdown": {"xgb": '
                             '{"action": "BUY", "confidence": 0.8}, ' + VOTES + '}}',
    # One vote's key escaped (no repeat there) hides one raw "action" while another vote repeats its own:
    # the raw count came out right and the repeat passed (found by a differential fuzz of the reader).
    "escape_offsets_a_repeat": '{"confidence": 0.9, "model_breakdown": {"xgb": {"\\u0061ction": "BUY", '
                               '"confidence": 0.8}, "lgbm": {"action": "SELL", "action": "BUY", "confidence": 0.7}}}',
}


def _flat(fields: dict[str, str]) -> list[bytes]:
    return [part.encode() for pair in fields.items() for part in pair]


def _page(payload: str, position: int, good: int = 30) -> list[tuple[bytes, list[bytes]]]:
    entries: list[tuple[bytes, list[bytes]]] = [(e.id.encode(), _flat(e.fields)) for e in generate("healthy", good)]
    entries.insert(position, (b"9999999999999-0", [b"event_type", b"trade.intent", b"payload", payload.encode()]))
    return entries


def test_the_producers_payloads_have_no_duplicates() -> None:
    for entry in generate("healthy", 200, seed=3):
        assert not has_duplicate_keys(entry.fields["payload"].encode())
    builder = TelemetryBuilder()
    builder.feed([(e.id.encode(), _flat(e.fields)) for e in generate("healthy", 500, seed=4)])
    assert builder.build().skipped["duplicate_key"] == 0


@pytest.mark.parametrize("position", [0, 15, 30])
@pytest.mark.parametrize("where", list(DUPLICATED))
def test_a_duplicated_key_is_one_counted_entry(where: str, position: int) -> None:
    builder = TelemetryBuilder()
    builder.feed(_page(DUPLICATED[where], position))
    t = builder.build()
    assert t.read == 31 and t.evaluated == 30
    assert t.skipped["duplicate_key"] == 1 and t.skip_examples["duplicate_key"] == "9999999999999-0"
    assert t.reconciliation()["balanced"]


@pytest.mark.parametrize("where", ["top_level", "vote_confidence"])
def test_feature_sanity_counts_it_too(where: str) -> None:
    builder = FeatureBuilder(("confidence", "leverage"))
    builder.feed(_page(DUPLICATED[where], 10))
    assert builder.read == 31 and builder.events == 30 and builder.skipped["duplicate_key"] == 1


@pytest.fixture
def duplicated_stream(fake_redis: Any) -> list[dict[str, Any]]:
    entries = [{"id": e.id, "fields": e.fields} for e in generate("healthy", 600)]
    ms = int(entries[299]["id"].split("-")[0])
    entries.insert(300, {"id": f"{ms}-1", "fields": {"event_type": "trade.intent",
                                                     "payload": DUPLICATED["model_name"]}})
    xadd_entries(fake_redis, entries)
    return entries


@pytest.mark.parametrize(("command", "key"), [
    (("quality-gate", "--mode", "canary", "--after", AFTER), "reconciliation"),
    (("scoreboard", "--after", AFTER), "reconciliation"),
    (("feature-sanity", "--after", AFTER), None),
])
def test_cli_reports_the_duplicate(duplicated_stream: list[dict[str, Any]], run_cli: Any, tmp_path: Path,
                                   command: tuple[str, ...], key: str | None) -> None:
    r = run_cli(*command, "--base-dir", str(tmp_path), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    skipped = data[key]["skipped"] if key else data["skipped"]
    assert skipped["duplicate_key"] == 1


def test_both_reader_paths_classify_alike() -> None:
    """A repeat the gate does not read (a top-level "leverage") is ignored by both paths; one it reads is counted
    by both. The careful path is forced by a NaN token elsewhere on the page."""
    unread = '{"leverage": 5, "leverage": 6, "model_breakdown": {"xgb": {"action": "BUY", "confidence": 0.8}}}'
    read = DUPLICATED["vote_action"]
    nan_entry = '{"model_breakdown": {"xgb": {"action": "BUY", "confidence": NaN}}}'
    for payload, expected in ((unread, 0), (read, 1)):
        batch, careful = TelemetryBuilder(), TelemetryBuilder()
        batch.feed(_page(payload, 5))
        page = _page(payload, 5)
        page.append((b"9999999999999-1", [b"event_type", b"trade.intent", b"payload", nan_entry.encode()]))
        careful.feed(page)
        assert batch.build().skipped["duplicate_key"] == expected
        assert careful.build().skipped["duplicate_key"] == expected


def test_a_flag_no_vote_writes_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch path counts "shadow"/"inactive" only when a decoded vote carries the flag: a page where none
    does stays on the batch path even with the word elsewhere; once a vote writes it, the stray word no longer
    reconciles and the page goes the careful way (which finds no duplicate)."""
    careful: list[int] = []
    original = TelemetryBuilder._feed_careful

    def spy(self: TelemetryBuilder, ids: list[bytes], payloads: list[bytes]) -> None:
        careful.append(len(ids))
        original(self, ids, payloads)

    monkeypatch.setattr(TelemetryBuilder, "_feed_careful", spy)

    def page(vote_flag: str) -> list[tuple[bytes, list[bytes]]]:
        text = ('{"confidence": 0.9, "note": "shadow", "model_breakdown": {"xgb": {"action": "BUY", '
                '"confidence": 0.8' + vote_flag + '}, ' + VOTES + '}}')
        return [(f"{1000 + i}-0".encode(), [b"event_type", b"trade.intent", b"payload", text.encode()])
                for i in range(20)]

    for flag, expected_careful in (("", []), (', "shadow": true', [20])):
        careful.clear()
        builder = TelemetryBuilder()
        builder.feed(page(flag))
        t = builder.build()
        assert careful == expected_careful
        assert t.evaluated == 20 and t.skipped["duplicate_key"] == 0
        assert t.models["xgb"].n_valid == 20 and t.models["xgb"].shadow == (20 if flag else 0)


def test_an_escaped_letter_that_is_no_key_is_not_a_defect() -> None:
    """A page with an escape goes the careful way, which classifies it like the batch path would have."""
    text = ('{"confidence": 0.9, "reason": "caf\\u00e9 \\u0041", "model_breakdown": {"xgb": {"action": "BUY", '
            '"confidence": 0.8}, ' + VOTES + '}}')
    builder = TelemetryBuilder()
    builder.feed(_page(text, 7))
    t = builder.build()
    assert t.evaluated == 31 and t.skipped["duplicate_key"] == 0
    assert t.models["xgb"].action[7] == 0 and t.models["lgbm"].action[7] == 1


def test_the_verdict_on_an_entry_does_not_depend_on_its_page() -> None:
    """The same entry alone on a page, beside healthy entries, or beside a page-breaking NaN (the careful path)
    is classified alike: a page's size or a worker's slice cannot change what is judged."""
    entry = DUPLICATED["breakdown_null_first"]
    nan_entry = '{"model_breakdown": {"xgb": {"action": "BUY", "confidence": NaN}}}'
    pages = {
        "alone": [(b"9999999999999-0", [b"event_type", b"trade.intent", b"payload", entry.encode()])],
        "beside healthy": _page(entry, 4),
        "beside NaN": [*_page(entry, 4), (b"9999999999999-1", [b"event_type", b"trade.intent", b"payload",
                                                                  nan_entry.encode()])],
    }
    for where, page in pages.items():
        builder = TelemetryBuilder()
        builder.feed(page)
        t = builder.build()
        assert t.skipped["duplicate_key"] == 1, where
        assert t.skip_examples["duplicate_key"] == "9999999999999-0", where
