"""A paged read that the stream changes under fails, never finishes short (issue 10 items 2 and 15).

fakeredis has no INFO (no run_id), so these tests exercise the stream's own evidence: a stream
replaced or emptied under the reader, a read that stops before the window's last entry, and the worker
path. The run_id comparison against a real server is in tests/chaos/test_reader_restart.py.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis

from qtsafe.errors import TelemetryError
from qtsafe.evidence import gather
from qtsafe.simulate import generate
from qtsafe.telemetry.sources import RedisStreamSource, ServerMark
from qtsafe.telemetry.window import window_between
from tests.conftest import STREAM, xadd_entries

PAGE = 10


def _entries(n: int, seed: int = 7, spacing_ms: int = 1000, end: dt.datetime | None = None) -> list[dict[str, Any]]:
    return [{"id": e.id, "fields": e.fields}
            for e in generate("healthy", n, seed=seed, spacing_ms=spacing_ms, end=end)]


LATER = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)  # a refill written after the original entries


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def source(server: fakeredis.FakeServer) -> RedisStreamSource:
    client = fakeredis.FakeRedis(server=server)
    xadd_entries(client, _entries(200))
    return RedisStreamSource(client, STREAM, page_size=PAGE, url="redis://reader:s3cret@127.0.0.1:6379/0")


def _replace(client: fakeredis.FakeRedis, entries: list[dict[str, Any]]) -> None:
    """Delete the stream and write ``entries`` in one transaction: the prefetching reader never sees it empty."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(STREAM)
    for entry in entries:
        pipe.xadd(STREAM, entry["fields"], id=entry["id"])
    pipe.execute()


def _read_and_then(source: RedisStreamSource, change: Any, end: str = "+") -> int:
    """Read every page; after the first, ``change`` the stream. Returns the entries read (if no error)."""
    read = 0
    pages: Iterator[Any] = source.pages("-", end)
    for number, page in enumerate(pages):
        read += len(page)
        if number == 0:
            change()
    return read


def test_an_untouched_read_passes_and_reads_everything(source: RedisStreamSource) -> None:
    assert _read_and_then(source, lambda: None) == 200


def test_a_stream_replaced_by_a_larger_one_mid_read_fails(source: RedisStreamSource,
                                                          server: fakeredis.FakeServer) -> None:
    """Redis restarted empty and a producer refilled it with more, newer entries: the old read went on."""
    other = fakeredis.FakeRedis(server=server)

    with pytest.raises(TelemetryError) as caught:  # more entries than before, all newer
        _read_and_then(source, lambda: _replace(other, _entries(400, seed=8, spacing_ms=1, end=LATER)))
    message = str(caught.value)
    assert message.startswith(f"Redis at redis://reader:***@127.0.0.1:6379/0 (stream {STREAM}): ")
    assert "the window's last entry when the read began, is gone: the stream was replaced" in message
    assert "\n" not in message and "s3cret" not in message


def test_a_stream_recreated_smaller_mid_read_fails(source: RedisStreamSource, server: fakeredis.FakeServer) -> None:
    other = fakeredis.FakeRedis(server=server)

    with pytest.raises(TelemetryError, match=r"the stream was recreated during the read \(entries-added fell "
                                             r"from 200 to 50"):
        _read_and_then(source, lambda: _replace(other, _entries(50, seed=9, spacing_ms=1)))


def test_a_stream_deleted_mid_read_fails(source: RedisStreamSource, server: fakeredis.FakeServer) -> None:
    other = fakeredis.FakeRedis(server=server)
    with pytest.raises(TelemetryError, match="the stream vanished during the read"):
        _read_and_then(source, lambda: other.delete(STREAM))


def test_an_empty_page_before_the_windows_end_is_not_the_end(source: RedisStreamSource,
                                                            server: fakeredis.FakeServer) -> None:
    """The rest of the window vanishes (XDEL, same server, same entries-added): the empty page is suspect."""
    other = fakeredis.FakeRedis(server=server)
    ids = [entry_id for entry_id, _ in other.xrange(STREAM)]
    until = ids[149].decode()

    def vanish() -> None:
        other.xdel(STREAM, *ids[40:150])

    with pytest.raises(TelemetryError) as caught:
        _read_and_then(source, vanish, end=until)
    assert f"before {until}, the window's last entry when the read began: entries vanished" in str(caught.value)


def test_a_read_pinned_to_an_earlier_mark_fails_on_a_new_stream(source: RedisStreamSource,
                                                                server: fakeredis.FakeServer) -> None:
    """gather's pin: a read that begins after the stream was recreated is refused before its first page."""
    mark = source.mark()
    assert mark == ServerMark(run_id=None, exists=True, entries_added=200)
    other = fakeredis.FakeRedis(server=server)
    _replace(other, _entries(10, seed=3))
    with pytest.raises(TelemetryError, match="entries-added fell from 200 to 10"):
        next(iter(source.pages("-", "+", since=mark)))


class _InfoWithoutRunId(fakeredis.FakeRedis):
    def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[:1] == ("INFO",):
            return {"redis_version": "7.0.15"}
        return super().execute_command(*args, **options)


def test_a_server_that_answers_info_without_a_run_id_is_not_trusted(server: fakeredis.FakeServer) -> None:
    client = _InfoWithoutRunId(server=server)
    xadd_entries(client, _entries(5))
    source = RedisStreamSource(client, STREAM, page_size=PAGE, url="redis://127.0.0.1:6379/0")
    with pytest.raises(TelemetryError, match="INFO server gives no run_id"):
        list(source.pages("-", "+"))


class _ChangingRunId(fakeredis.FakeRedis):
    """A server whose run_id changes after the first page (what a restart looks like to INFO)."""

    infos = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if args[:1] == ("INFO",):
            self.infos += 1
            return {"redis_version": "7.0.15", "run_id": ("a" if self.infos == 1 else "b") * 40}
        return super().execute_command(*args, **options)


def test_a_changed_run_id_fails_even_when_the_stream_looks_the_same(server: fakeredis.FakeServer) -> None:
    """With AOF the restarted server holds the same stream: only the run_id tells, and it is believed."""
    client = _ChangingRunId(server=server)
    xadd_entries(client, _entries(50))
    source = RedisStreamSource(client, STREAM, page_size=PAGE, url="redis://127.0.0.1:6379/0")
    with pytest.raises(TelemetryError, match=r"the Redis server changed during the read \(run_id aaaaaaaaaaaa -> "
                                             r"bbbbbbbbbbbb\): it restarted or failed over"):
        list(source.pages("-", "+"))


# ---- the worker path (issue 10 item 15: worker errors name the masked URL) ---------------------------------

def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_worker_error_names_the_masked_url_not_redis(server: fakeredis.FakeServer) -> None:
    client = fakeredis.FakeRedis(server=server)
    xadd_entries(client, _entries(400))
    port = _dead_port()
    url = f"redis://reader:s3cret@127.0.0.1:{port}/0"
    source = RedisStreamSource(client, STREAM, page_size=PAGE, url=url,
                               reconnect=lambda: redis.Redis.from_url(url, socket_connect_timeout=1))
    with pytest.raises(TelemetryError) as caught:
        gather(source, window_between(None), workers=2, parallel_min=1)
    message = str(caught.value)
    assert message.startswith(f"Redis at redis://reader:***@127.0.0.1:{port}/0 (stream {STREAM}): unreachable"), \
        message
    assert "s3cret" not in message


def test_reopened_keeps_the_masked_url(source: RedisStreamSource) -> None:
    source.reconnect = lambda: fakeredis.FakeRedis()
    assert source.reopened().describe() == f"redis://reader:***@127.0.0.1:6379/0 stream {STREAM}"
