"""Hostile payloads are counted, never crash the reader: nesting deeper than any decoder goes
(issue 10 item 8). Library (both decoders, feature sanity) and the CLI of gate, scoreboard, feature-sanity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qtsafe.sanity import FeatureBuilder
from qtsafe.simulate import generate
from qtsafe.telemetry.parse import TelemetryBuilder
from tests.conftest import xadd_entries

AFTER = "2000-01-01T00:00:00Z"
DEPTH = 100_000
DEEP = "[" * DEPTH + "]" * DEPTH

# Where the nesting sits: inside a vote (an unread field), as a vote, as the breakdown, beside it, in features.
HOSTILE = {
    "in_vote": '{"model_breakdown": {"xgb": {"action": "BUY", "confidence": 0.8, "x": ' + DEEP + "}}}",
    "as_vote": '{"model_breakdown": {"xgb": ' + DEEP + "}}",
    "as_breakdown": '{"model_breakdown": ' + DEEP + "}",
    "beside": '{"regime": ' + DEEP + ', "model_breakdown": {"xgb": {"action": "BUY", "confidence": 0.8}}}',
    "objects": '{"features": ' + '{"a": ' * DEPTH + "1" + "}" * DEPTH + "}",
}


def _flat(fields: dict[str, str]) -> list[bytes]:
    return [part.encode() for pair in fields.items() for part in pair]


def _page(where: str, position: int, good: int = 20) -> list[tuple[bytes, list[bytes]]]:
    entries: list[tuple[bytes, list[bytes]]] = [(e.id.encode(), _flat(e.fields)) for e in generate("healthy", good)]
    hostile = (b"9999999999999-0", [b"event_type", b"trade.intent", b"payload", HOSTILE[where].encode()])
    entries.insert(position, hostile)
    return entries


@pytest.mark.parametrize("position", [0, 10, 20])
@pytest.mark.parametrize("where", list(HOSTILE))
def test_deep_nesting_is_one_bad_json_entry(where: str, position: int) -> None:
    builder = TelemetryBuilder()
    builder.feed(_page(where, position))
    t = builder.build()
    assert t.read == 21 and t.evaluated == 20
    assert t.skipped["bad_json"] == 1 and t.skip_examples["bad_json"] == "9999999999999-0"
    assert t.reconciliation()["balanced"]
    assert all(m.defects.present == 20 for m in t.models.values())


@pytest.mark.parametrize("where", list(HOSTILE))
def test_deep_nesting_is_one_bad_json_entry_for_feature_sanity(where: str) -> None:
    builder = FeatureBuilder(("confidence", "leverage"))
    builder.feed(_page(where, 10))
    assert builder.read == 21 and builder.events == 20
    assert builder.skipped["bad_json"] == 1


@pytest.fixture
def hostile_stream(fake_redis: Any) -> list[dict[str, Any]]:
    """600 healthy entries and, in the middle of the window, one entry nested 100,000 deep."""
    entries = [{"id": e.id, "fields": e.fields} for e in generate("healthy", 600)]
    ms = int(entries[299]["id"].split("-")[0])
    hostile = {"id": f"{ms}-1", "fields": {"event_type": "trade.intent", "payload": HOSTILE["in_vote"]}}
    entries.insert(300, hostile)
    xadd_entries(fake_redis, entries)
    return entries


@pytest.mark.parametrize(("command", "code"), [
    (("quality-gate", "--mode", "canary", "--after", AFTER), 0),
    (("quality-gate", "--mode", "collection", "--after", AFTER), 3),
    (("scoreboard", "--after", AFTER), 0),
])
def test_cli_counts_the_hostile_entry_and_judges_the_rest(hostile_stream: list[dict[str, Any]], run_cli: Any,
                                                          tmp_path: Path, command: tuple[str, ...], code: int) -> None:
    r = run_cli(*command, "--base-dir", str(tmp_path), "--json")
    assert r.exit_code == code, r.output
    assert r.stderr == ""
    data = json.loads(r.stdout)
    rec = data["reconciliation"]
    assert rec["read"] == 601 and rec["evaluated"] == 600 and rec["skipped"]["bad_json"] == 1 and rec["balanced"]
    assert rec["examples"]["bad_json"] == hostile_stream[300]["id"]


def test_feature_sanity_cli_counts_the_hostile_entry(hostile_stream: list[dict[str, Any]], run_cli: Any,
                                                     tmp_path: Path) -> None:
    r = run_cli("feature-sanity", "--after", AFTER, "--base-dir", str(tmp_path), "--json")
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    data = json.loads(r.stdout)
    assert data["read"] == 601 and data["events"] == 600 and data["skipped"]["bad_json"] == 1
