"""The end of a watch and the stream under it (issue 10, items 3 and 4), on fakeredis.

A watch ends clean only on a check that read the stream; a stream that is gone, of another type, went
backwards or was recreated is lost telemetry (a violation), never ``OK (+0)``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from qtsafe import monitor as mon
from qtsafe.status import Status, exit_code_for
from qtsafe.telemetry import RedisStreamSource
from tests.canary.conftest import Root
from tests.conftest import STREAM
from tests.monitor.conftest import FastClock, write_events

PER_TICK = 100
DURATION = 600.0  # 11 checks a minute apart: 0, 60, ..., 600 s after activation
INTERVAL = 60.0


def seed(client: Any, at: dt.datetime) -> None:
    """The producer ran before the canary (the gate needed its events); these are not judged."""
    write_events(client, "healthy", 5, at - dt.timedelta(hours=2), at - dt.timedelta(hours=1), seed=99)


def watch(activated: dict[str, Any], client: Any, on_sleep: Any, **monitor: Any) -> mon.MonitorResult:
    settings = activated["settings"]
    if monitor:
        settings = dataclasses.replace(settings, monitor=dataclasses.replace(settings.monitor, **monitor))
    clock = FastClock(activated["at"], on_sleep)
    return mon.run_monitor(settings, RedisStreamSource(client, STREAM), clock=clock, duration=DURATION,
                           interval=INTERVAL)


def elapsed(clock: FastClock, start: dt.datetime) -> float:
    return (clock.t - start).total_seconds()


# ---- item 3: the end of the watch -------------------------------------------------------------------

def outage(client: Any, server: Any, start: dt.datetime, down_from: float, up_at: float = float("inf")) -> Any:
    """A producer that writes every minute, and Redis unreachable for checks at down_from <= t < up_at."""

    def on_sleep(clock: FastClock, before: dt.datetime) -> None:
        server.connected = True
        write_events(client, "healthy", PER_TICK, before, clock.t, seed=clock.sleeps)
        server.connected = not down_from <= elapsed(clock, start) < up_at

    return on_sleep


def test_redis_down_for_the_final_two_checks_is_never_safe(root: Root, activated, fake_redis, fake_server) -> None:
    start = activated["at"]
    seed(fake_redis, start)
    result = watch(activated, fake_redis, outage(fake_redis, fake_server, start, down_from=540))
    # Checks 10 and 11 (540 s, 600 s) fail; the watch does not end on them: check 12 fails too, and three
    # errors in a row are lost telemetry, rolled back as any violation.
    assert result.status is Status.FAIL and exit_code_for(result.status) == 2, result.summary
    assert result.checks == 12
    assert result.violations == ("telemetry lost: Redis errors on 3 consecutive checks (limit 3)",)
    assert result.rollback["status"] == "PASS"
    assert "monitoring_completed" not in root.actions()
    assert root.actions()[-1] == "rollback_executed"


def test_an_outage_at_the_end_that_heals_within_the_grace_completes(root: Root, activated, fake_redis,
                                                                    fake_server) -> None:
    start = activated["at"]
    seed(fake_redis, start)
    result = watch(activated, fake_redis, outage(fake_redis, fake_server, start, down_from=540, up_at=660))
    # Check 12 (660 s) reads everything since the last entry read: the watch ends on it, clean.
    assert result.status is Status.COMPLETED, result.summary
    assert result.checks == 12 and result.events == 11 * PER_TICK
    record = root.records()[-1]
    assert record["action"] == "monitoring_completed" and record["result"] == "safe"


def test_no_grace_fails_closed_at_the_end(root: Root, activated, fake_redis, fake_server) -> None:
    start = activated["at"]
    seed(fake_redis, start)
    result = watch(activated, fake_redis, outage(fake_redis, fake_server, start, down_from=600), end_grace=0.0)
    assert result.status is Status.FAIL and result.checks == 11
    assert result.violations[0].startswith("telemetry lost at the end of the watch: no check read the stream "
                                           "in the 0 s grace after the end (the last check failed: Redis at")
    assert root.records()[-1]["trigger"] == "qsc_monitor_violation"


def test_a_bad_grace_is_refused(root: Root) -> None:
    from qtsafe.config import load_settings
    from qtsafe.errors import ConfigError

    with pytest.raises(ConfigError, match="monitor.end_grace must be zero or more"):
        load_settings(None, {"monitor.end_grace": -1.0}, env=root.env())


# ---- item 4: the stream under the watch ---------------------------------------------------------------

def producer(client: Any, start: dt.datetime, after_check_5: Any) -> Any:
    """Healthy events every minute; after check 5 ``after_check_5(clock, before)`` plays the fault."""

    def on_sleep(clock: FastClock, before: dt.datetime) -> None:
        if clock.sleeps <= 4:
            write_events(client, "healthy", PER_TICK, before, clock.t, seed=clock.sleeps)
        elif after_check_5 is not None:
            after_check_5(clock, before)

    return on_sleep


def test_a_deleted_stream_is_lost_telemetry(root: Root, activated, fake_redis) -> None:
    start = activated["at"]
    seed(fake_redis, start)
    gone = {"done": False}

    def delete_once(clock: FastClock, before: dt.datetime) -> None:
        if not gone["done"]:
            fake_redis.delete(STREAM)
            gone["done"] = True

    result = watch(activated, fake_redis, producer(fake_redis, start, delete_once))
    assert result.status is Status.FAIL and result.checks == 6, result.summary
    assert result.violations == (f"telemetry lost: stream {STREAM} does not exist any more (deleted, or Redis "
                                 "restarted empty)",)
    assert result.rollback["status"] == "PASS" and "monitoring_completed" not in root.actions()


def test_a_key_of_another_type_is_lost_telemetry(root: Root, activated, fake_redis) -> None:
    start = activated["at"]
    seed(fake_redis, start)

    def replace_with_a_string(clock: FastClock, before: dt.datetime) -> None:
        fake_redis.delete(STREAM)
        fake_redis.set(STREAM, "not a stream")

    result = watch(activated, fake_redis, producer(fake_redis, start, replace_with_a_string))
    assert result.status is Status.FAIL and result.checks == 6
    assert result.violations == (f"telemetry lost: key {STREAM} is a string, not a stream",)


def test_a_stream_recreated_and_refilled_is_lost_telemetry(root: Root, activated, fake_redis) -> None:
    start = activated["at"]
    seed(fake_redis, start)

    def restart_empty_and_refill(clock: FastClock, before: dt.datetime) -> None:
        if clock.sleeps == 5:
            fake_redis.delete(STREAM)
        write_events(fake_redis, "healthy", PER_TICK, before, clock.t, seed=clock.sleeps)

    result = watch(activated, fake_redis, producer(fake_redis, start, restart_empty_and_refill))
    assert result.status is Status.FAIL and result.checks == 6, result.summary
    assert result.violations[0].startswith(f"telemetry lost: stream {STREAM} was recreated: it counts 100 entries "
                                           "ever added, fewer than the 405 at the previous check")


def test_a_stream_that_went_backwards_is_lost_telemetry(root: Root, activated, fake_redis) -> None:
    start = activated["at"]
    seed(fake_redis, start)
    kept: list[Any] = []

    def restore_an_older_copy(clock: FastClock, before: dt.datetime) -> None:
        if clock.sleeps == 5:
            kept.extend(fake_redis.xrange(STREAM, count=200))
            fake_redis.delete(STREAM)
            for entry_id, flat in kept:  # raw replies (the source's callback): [field, value, ...]
                fake_redis.xadd(STREAM, dict(zip(flat[::2], flat[1::2], strict=True)), id=entry_id)

    result = watch(activated, fake_redis, producer(fake_redis, start, restore_an_older_copy))
    assert result.status is Status.FAIL and result.checks == 6
    assert result.violations[0].startswith(f"telemetry lost: stream {STREAM} went backwards: its last ID is "
                                           f"{kept[-1][0].decode()}, older than ")


def test_the_entry_last_read_trimmed_away_is_lost_telemetry(root: Root, activated, fake_redis) -> None:
    start = activated["at"]
    seed(fake_redis, start)

    def flood_and_trim(clock: FastClock, before: dt.datetime) -> None:
        if clock.sleeps == 5:  # more than the cap arrived in one interval: unread entries were trimmed
            write_events(fake_redis, "healthy", PER_TICK, before, clock.t, seed=clock.sleeps)
            fake_redis.xtrim(STREAM, maxlen=50)

    result = watch(activated, fake_redis, producer(fake_redis, start, flood_and_trim))
    assert result.status is Status.FAIL and result.checks == 6
    assert "is no longer in stream" in result.violations[0] and "trimmed past unread entries" in \
        result.violations[0]


# ---- item 9: a monitor that cannot record its work ------------------------------------------------------

def test_a_short_journal_write_at_the_end_is_never_safe(root: Root, activated, fake_redis,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from qtsafe.canary import lifecycle

    start = activated["at"]
    seed(fake_redis, start)
    real_write = os.write
    full = {"disk": False}

    def short_journal_write(fd: int, data: bytes) -> int:  # a disk that fills up under the journal's append
        if full["disk"] and os.readlink(f"/proc/self/fd/{fd}").endswith("qsc_canary.jsonl"):
            return real_write(fd, bytes(data)[: len(data) // 2])
        return real_write(fd, data)

    def on_sleep(clock: FastClock, before: dt.datetime) -> None:
        write_events(fake_redis, "healthy", PER_TICK, before, clock.t, seed=clock.sleeps)
        full["disk"] = elapsed(clock, start) >= DURATION

    monkeypatch.setattr(os, "write", short_journal_write)
    result = watch(activated, fake_redis, on_sleep)
    monkeypatch.setattr(os, "write", real_write)
    # Completion could not be journaled: the watch rolls back instead (the live unit is on its baseline
    # again; the rollback's own record hit the same torn journal, so status shows the state to repair).
    assert result.status is Status.FAIL and exit_code_for(result.status) == 2, result.summary
    assert "the monitor cannot record its work: short write to" in result.summary
    assert not root.dropin.exists()
    status = lifecycle.canary_status(activated["settings"])
    assert exit_code_for(status.status) != 0 and not status.summary.startswith("CANARY MONITORED"), status.summary
