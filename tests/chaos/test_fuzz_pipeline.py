"""Hypothesis through the whole read path: arbitrary stream entries (binary field names and values,
missing fields, non-UTF-8, bare NaN tokens, huge payloads, odd field order) go into a Redis stream,
and the real CLI reads them (paged XRANGE, both decoders, the judges, the report templates).

Invariants: the exit code is the contract's for the status printed (0, 2 or 3) and nothing goes to
stderr (an unexpected exception would be mapped to exit 2 *with* a line there); every entry is counted
(read = entries written = evaluated + skipped); per model, every appearance is a valid vote or a
counted defect; and the page size changes no count.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from qtsafe import monitor as mon
from qtsafe.simulate import generate
from qtsafe.status import Status, exit_code_for
from qtsafe.telemetry import RedisStreamSource
from tests.chaos.conftest import Faults
from tests.conftest import STREAM
from tests.monitor.conftest import FastClock, activated, write_events  # noqa: F401 - fixture

AFTER = "2000-01-01T00:00:00Z"
HEALTHY = [e.fields["payload"].encode() for e in generate("healthy", 300, seed=11)]
COMMANDS = {
    "gate-canary": ("quality-gate", "--mode", "canary"),
    "gate-collection": ("quality-gate", "--mode", "collection"),
    "scoreboard": ("scoreboard",),
    "feature-sanity": ("feature-sanity",),
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10,
)
model_names = st.sampled_from(["xgb", "lgbm", "nhits", "patchtst", "tft", "fallback", "", "a|b\nc", "x" * 300]) \
    | st.text(max_size=10)
votes = st.fixed_dictionaries(
    {}, optional={
        "action": st.sampled_from(["BUY", "SELL", "HOLD", "buy", "", None, 1]) | json_values,
        "confidence": st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.5, 1.05, -0.1, "0.7"])
        | json_values,
        "inactive": st.booleans() | json_values,
        "shadow": st.booleans() | json_values,
    })


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # bare NaN / Infinity tokens, as Python's json writes them


def _corrupt(data: bytes, where: int, byte: int) -> bytes:
    if not data:
        return bytes([byte])
    i = where % len(data)
    return data[:i] + bytes([byte]) + data[i + 1:]


payloads = st.one_of(
    st.binary(max_size=120),
    json_values.map(_dumps),
    st.dictionaries(model_names, votes | json_values, max_size=5).map(lambda b: _dumps({"model_breakdown": b})),
    st.builds(lambda i: HEALTHY[i], st.integers(0, len(HEALTHY) - 1)),
    # One byte replaced by another ASCII byte (bytes >= 0x80 are the non-UTF-8 fuzz below).
    st.builds(lambda i, w, b: _corrupt(HEALTHY[i], w, b), st.integers(0, len(HEALTHY) - 1),
              st.integers(0, 10_000), st.integers(0, 127)),
    st.builds(lambda i, n: HEALTHY[i][:n], st.integers(0, len(HEALTHY) - 1), st.integers(0, 900)),
)
event_types = st.sampled_from([b"trade.intent"] * 6 + [b"trade.intent ", b"TRADE.INTENT", b"", b"trade.exit"]) \
    | st.binary(max_size=12)
extra_fields = st.dictionaries(st.binary(max_size=10).filter(lambda k: k not in (b"event_type", b"payload")),
                               st.binary(max_size=40), max_size=3)


@st.composite
def entries(draw: st.DrawFn) -> dict[bytes, bytes]:
    fields: dict[bytes, bytes] = {}
    if draw(st.integers(0, 9)) > 0:
        fields[b"event_type"] = draw(event_types)
    if draw(st.integers(0, 9)) > 0:
        fields[b"payload"] = draw(payloads)
    fields.update(draw(extra_fields))
    if not fields:
        fields[b"source"] = b"ai-engine"
    items = list(fields.items())
    order = draw(st.permutations(range(len(items))))
    return dict(items[i] for i in order)


# A huge entry (a valid intent carrying 0.3-1.5 MB of padding) in one example out of five.
huge = st.one_of(st.none(), st.none(), st.none(), st.none(), st.builds(
    lambda i, n: {b"event_type": b"trade.intent", b"payload": HEALTHY[i][:-1] + b', "padding": "' + b"x" * n + b'"}'},
    st.integers(0, len(HEALTHY) - 1), st.integers(300_000, 1_500_000)))
streams = st.tuples(
    st.lists(entries(), min_size=1, max_size=25),
    st.sampled_from([0, 0, 3, 250]),  # healthy entries mixed in, so a green verdict stays possible
    huge,
    st.randoms(use_true_random=False),
)


def _expected_skips(rows: list[dict[bytes, bytes]]) -> dict[str, int]:
    other = sum(1 for f in rows if f.get(b"event_type") != b"trade.intent")
    no_payload = sum(1 for f in rows if f.get(b"event_type") == b"trade.intent" and b"payload" not in f)
    return {"other_event_type": other, "no_payload": no_payload}


def _write(client: Any, rows: list[dict[bytes, bytes]]) -> None:
    client.flushall()
    base = int(time.time() * 1000) - 60_000  # a minute old: fresh enough not to count as a stall
    pipe = client.pipeline(transaction=False)
    for i, fields in enumerate(rows):
        pipe.xadd(STREAM, fields, id=f"{base}-{i + 1}")
    pipe.execute()


def _run(run_cli: Callable[..., Result], command: str, base: Path, page: int, *redis: str) -> dict[str, Any]:
    result = run_cli(*COMMANDS[command], "--after", AFTER, "--json", "--base-dir", str(base), *redis,
                     env={"QTSAFE_PAGE_SIZE": str(page)})
    assert result.stderr == "", result.stderr  # an unexpected exception would be reported here
    data = json.loads(result.stdout)
    assert result.exit_code == exit_code_for(Status(data["status"])) and result.exit_code in (0, 2, 3)
    assert data["report_path"] and Path(data["report_path"]).read_text().startswith("# ")
    return data


def _counts(data: dict[str, Any]) -> dict[str, Any]:
    if data["command"] == "feature-sanity":
        assert data["read"] == data["events"] + sum(data["skipped"].values())
        return {"read": data["read"], "events": data["events"], "skipped": data["skipped"],
                "features": {f["name"]: f for f in data["features"]}}
    rec = data["reconciliation"]
    assert rec["balanced"] and rec["read"] == rec["evaluated"] + sum(rec["skipped"].values())
    models = {}
    for m in data["models"]:
        d = m["defects"]
        assert d["present"] == m["whole"]["n"] + d["inactive"] + d["invalid_total"] + sum(d["bad_votes"].values())
        std = m["whole"]["conf_std"]
        assert std is None or (isinstance(std, float) and (math.isnan(std) or std >= 0))
        models[m["name"]] = (d, m["whole"]["n"])
    return {"read": rec["read"], "evaluated": rec["evaluated"], "skipped": rec["skipped"], "models": models}


def _check(rows: list[dict[bytes, bytes]], data: dict[str, Any]) -> dict[str, Any]:
    counts = _counts(data)
    assert counts["read"] == len(rows)
    for reason, n in _expected_skips(rows).items():
        assert counts["skipped"][reason] == n, (reason, counts["skipped"])
    return counts


def _mixed(rows: list[dict[bytes, bytes]], healthy: int, big: dict[bytes, bytes] | None,
           rnd: Any) -> list[dict[bytes, bytes]]:
    good = [{b"event_type": b"trade.intent", b"payload": HEALTHY[i % len(HEALTHY)], b"source": b"ai-engine"}
            for i in range(healthy)]
    mixed = rows + good + ([big] if big else [])
    rnd.shuffle(mixed)
    return mixed


FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@pytest.mark.fault("fuzz")
@FUZZ
@given(stream=streams, command=st.sampled_from(list(COMMANDS)), page=st.integers(1, 9))
def test_fuzzed_entries_through_fakeredis_and_the_cli(fake_redis: Any, run_cli: Callable[..., Result],
                                                       tmp_path: Path, faults: Faults, stream: Any, command: str,
                                                       page: int) -> None:
    rows = _mixed(*stream)
    _write(fake_redis, rows)
    faults.add()
    small = _check(rows, _run(run_cli, command, tmp_path / "small", page))
    large = _check(rows, _run(run_cli, command, tmp_path / "large", 1000))
    assert json.dumps(small, sort_keys=True) == json.dumps(large, sort_keys=True)  # page size changes no count


@pytest.mark.integration
@pytest.mark.fault("fuzz")
@settings(FUZZ, max_examples=40)
@given(stream=streams, command=st.sampled_from(list(COMMANDS)), page=st.integers(1, 9))
def test_fuzzed_entries_through_a_real_redis_and_the_cli(redis_server: Any, real_redis: Any,
                                                          run_cli: Callable[..., Result], tmp_path: Path,
                                                          faults: Faults, stream: Any, command: str,
                                                          page: int) -> None:
    rows = _mixed(*stream)
    _write(real_redis, rows)
    faults.add()
    _check(rows, _run(run_cli, command, tmp_path / "real", page, "--redis-url", redis_server.url))


# ---- invalid UTF-8 inside a payload's JSON strings ---------------------------------------------------

non_utf8_payloads = st.one_of(
    st.builds(lambda i, w, b: _corrupt(HEALTHY[i], w, b), st.integers(0, len(HEALTHY) - 1),
              st.integers(0, 10_000), st.integers(128, 255)),
    st.builds(lambda i, name: HEALTHY[i].replace(b'"xgb"', b'"' + name + b'"', 1), st.integers(0, len(HEALTHY) - 1),
              st.sampled_from([b"xg\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"x\x80"])),
)


@pytest.mark.fault("fuzz")
@settings(FUZZ, max_examples=30, phases=[Phase.explicit, Phase.generate], database=None)
@given(payloads=st.lists(non_utf8_payloads, min_size=1, max_size=5), healthy=st.sampled_from([0, 250]),
       command=st.sampled_from(list(COMMANDS)))
def test_fuzzed_non_utf8_payloads_are_counted(fake_redis: Any, run_cli: Callable[..., Result], tmp_path: Path,
                                              faults: Faults, payloads: list[bytes], healthy: int,
                                              command: str) -> None:
    rows = [{b"event_type": b"trade.intent", b"payload": p} for p in payloads]
    rows += [{b"event_type": b"trade.intent", b"payload": HEALTHY[i % len(HEALTHY)]} for i in range(healthy)]
    _write(fake_redis, rows)
    faults.add()
    _check(rows, _run(run_cli, command, tmp_path, 7))


NON_UTF8 = {
    "action value": b'{"model_breakdown": {"xgb": {"action": "BU\xff", "confidence": 0.5}}}',
    "model name": b'{"model_breakdown": {"xg\xff": {"action": "BUY", "confidence": 0.5}}}',
    "unused field": b'{"symbol": "BTC\xff", "model_breakdown": {"xgb": {"action": "BUY", "confidence": 0.5}}}',
}


@pytest.mark.fault("fuzz")
@pytest.mark.parametrize(("command", "where"), [("gate-canary", "action value"), ("scoreboard", "model name"),
                                                ("feature-sanity", "unused field")])
def test_one_non_utf8_entry_among_healthy_ones_is_counted(fake_redis: Any, run_cli: Callable[..., Result],
                                                          tmp_path: Path, command: str, where: str) -> None:
    rows = [{b"event_type": b"trade.intent", b"payload": HEALTHY[i % len(HEALTHY)]} for i in range(400)]
    rows.insert(200, {b"event_type": b"trade.intent", b"payload": NON_UTF8[where]})
    _write(fake_redis, rows)
    _check(rows, _run(run_cli, command, tmp_path, 1000))


@pytest.mark.fault("fuzz")
def test_one_non_utf8_entry_does_not_kill_the_monitor(root: Any, activated: dict[str, Any],  # noqa: F811
                                                      fake_redis: Any) -> None:
    start = activated["at"]

    def producer(clock: FastClock, before: Any) -> None:
        write_events(fake_redis, "healthy", 40, before, clock.t, seed=clock.sleeps)
        if clock.sleeps == 5:
            fake_redis.xadd(STREAM, {"event_type": "trade.intent", "payload": NON_UTF8["action value"]})

    write_events(fake_redis, "healthy", 5, start - dt.timedelta(hours=2), start - dt.timedelta(hours=1),
                 seed=99)  # the stream exists before the canary, as the activation's gate requires
    result = mon.run_monitor(activated["settings"], RedisStreamSource(fake_redis, STREAM),
                             clock=FastClock(start, producer), interval=60, duration=900)
    # Counted like any other malformed entry, never a failed check: the watch goes on (or rolls back for a
    # defect it judged, verified), and never for "Redis errors" the entry caused.
    assert [row["index"] for row in result.timeline if row["state"] == "error"] == []
    assert not [v for v in result.violations if v.startswith("telemetry ")]
    assert result.status in (Status.COMPLETED, Status.FAIL)
    assert result.rollback is None or result.rollback["status"] == "PASS"
    assert root.actions()[-1] in ("monitoring_completed", "rollback_executed")


@pytest.mark.integration
@pytest.mark.fault("fuzz")
def test_a_repeated_field_is_classified_the_same_whatever_the_page(redis_server: Any, real_redis: Any,
                                                                  run_cli: Callable[..., Result],
                                                                  tmp_path: Path) -> None:
    rows = [{b"event_type": b"trade.intent", b"payload": HEALTHY[i % len(HEALTHY)]} for i in range(300)]
    _write(real_redis, rows)
    top = real_redis.xrevrange(STREAM, count=1)[0][0].decode()
    ms, seq = top.split("-")
    # XADD keeps repeated fields in order (redis-py's dict API would collapse them): a raw command.
    real_redis.execute_command("XADD", STREAM, f"{ms}-{int(seq) + 1}", "event_type", "trade.intent",
                               "payload", HEALTHY[0], "event_type", "trade.exit")
    real_redis.execute_command("XADD", STREAM, f"{ms}-{int(seq) + 2}", "event_type", "trade.exit")
    url = ("--redis-url", redis_server.url)
    by_page = {page: _run(run_cli, "gate-collection", tmp_path / str(page), page, *url)["reconciliation"]
               for page in (1, 1000)}
    sanity = _run(run_cli, "feature-sanity", tmp_path / "sanity", 1000, *url)
    assert by_page[1] == by_page[1000]
    assert sanity["events"] == by_page[1000]["evaluated"]
