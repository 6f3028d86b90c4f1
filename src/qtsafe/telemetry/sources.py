"""Where telemetry comes from: a Redis stream read in pages, or a JSONL export of one.

Redis comes in through :func:`redis_client` only. Reads are paged XRANGE calls from the cutover ID;
the next page is fetched on a background thread while the current one is decoded, so network wait
and decoding overlap. Replies skip redis-py's per-entry dict (a raw response callback).

redis-py reconnects silently, so a read that spans a Redis restart would go on against another
server. Every paged read therefore notes who served it (:class:`ServerMark`) before and after, and
fails if the server, the stream, or the window's last entry changed under it.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from qtsafe.config import Settings
from qtsafe.errors import InputError, RedisUnreachableError, TelemetryError
from qtsafe.telemetry.decode import RawEntry
from qtsafe.telemetry.ids import MAX_ID, MIN_ID, next_id, parse_stream_id, prev_id

Page = list[RawEntry]
Progress = Callable[[int, int | None], None]

def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, fit for an error message."""
    return re.sub(r"(?<=://)([^:@/]*):([^@/]*)@", lambda m: f"{m.group(1)}:***@", url)


def redis_client(settings: Settings) -> redis.Redis:
    """The one place a Redis connection is made: timeouts from settings, bytes replies."""
    try:
        return redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            decode_responses=False,
        )
    except ValueError as exc:
        raise TelemetryError(f"invalid Redis URL {mask_url(settings.redis_url)}: {exc}") from exc


def _raw_reply(response: Any, **_: Any) -> Any:
    return response


def _unreachable(exc: Exception) -> bool:
    """Redis could not be reached or did not answer in time (as opposed to answering with a refusal)."""
    if isinstance(exc, redis.AuthenticationError):
        return False
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError, TimeoutError, ConnectionError))


def _describe_error(exc: Exception) -> str:
    if isinstance(exc, redis.AuthenticationError):
        return f"authentication refused ({exc})"
    if isinstance(exc, redis.TimeoutError):
        return f"timed out ({exc or 'no reply'})"
    if isinstance(exc, redis.ConnectionError):
        return f"unreachable ({exc})"
    if isinstance(exc, redis.ResponseError):
        text = str(exc)
        if text.startswith("WRONGTYPE"):
            return "the key is not a stream (WRONGTYPE)"
        if "NOAUTH" in text or "NOPERM" in text:
            return f"authentication required or refused ({text})"
        return f"error reply ({text})"
    return f"{type(exc).__name__}: {exc}"


@dataclasses.dataclass(frozen=True)
class ServerMark:
    """Who serves the stream at one moment: compared before and after a read to catch a restart under it."""

    run_id: str | None  # INFO server run_id; None only when the server refuses INFO (an ACL, fakeredis)
    exists: bool  # the key exists (as a stream)
    entries_added: int | None  # XINFO STREAM entries-added (Redis 7+); it never falls on the same stream


class RedisStreamSource:
    """A ``trade.intent`` stream in Redis, read in pages."""

    def __init__(self, client: redis.Redis, key: str, *, page_size: int = 1000, url: str = "",
                 reconnect: Callable[[], redis.Redis] | None = None) -> None:
        self.client = client
        self.key = key
        self.page_size = page_size
        self.url = mask_url(url) if url else "redis"
        self._url = url
        # How a worker process opens its own connection (a forked socket must not be shared); None: no workers.
        self.reconnect = reconnect
        # Raw replies: [[id, [field, value, ...]], ...] without a dict per entry (~0.5 s per million).
        client.set_response_callback("XRANGE", _raw_reply)
        client.set_response_callback("XREVRANGE", _raw_reply)

    def describe(self) -> str:
        return f"{self.url} stream {self.key}"

    def _fail(self, exc: Exception) -> TelemetryError:
        kind = RedisUnreachableError if _unreachable(exc) else TelemetryError
        return kind(f"Redis at {self.url} (stream {self.key}): {_describe_error(exc)}")

    def _call(self, *args: Any) -> Any:
        try:
            return self.client.execute_command(*args)
        except redis.RedisError as exc:
            raise self._fail(exc) from exc
        except OSError as exc:  # socket errors that redis-py does not wrap
            raise self._fail(exc) from exc

    def check(self) -> int:
        """Verify the key is a stream; return its length. A missing key is an error (fail-closed)."""
        kind = self._call("TYPE", self.key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind == "none":
            raise TelemetryError(f"stream {self.key} does not exist at {self.url}")
        if kind != "stream":
            raise TelemetryError(f"Redis at {self.url}: key {self.key} is a {kind}, not a stream")
        return int(self._call("XLEN", self.key))

    def trim_info(self) -> dict[str, Any]:
        """What XINFO STREAM says about trimming (Redis 7+: max-deleted-entry-id, entries-added)."""
        info = _xinfo_fields(self._call("XINFO", "STREAM", self.key))

        def text(value: Any) -> str | None:
            if value is None:
                return None
            if isinstance(value, bytes):
                return value.decode("ascii", "replace")
            if isinstance(value, (list, tuple)) and value:
                return text(value[0])
            return str(value)
        return {
            "length": int(info.get("length", 0) or 0),
            "first_id": text(info.get("first-entry")),
            "last_id": text(info.get("last-entry")),
            "max_deleted_id": text(info.get("max-deleted-entry-id")),
            "entries_added": int(info["entries-added"]) if "entries-added" in info else None,
        }

    def first_id_of_last(self, count: int, start: str, end: str) -> str | None:
        """The ID of the oldest of the newest ``count`` entries in [start, end]."""
        reply = self._call("XREVRANGE", self.key, end, start, "COUNT", count)
        return reply[-1][0].decode("ascii") if reply else None

    def mark(self) -> ServerMark:
        """Who serves the stream now: the server's run_id and the stream's entries-added."""
        try:
            info = self.client.execute_command("INFO", "server")
        except redis.ResponseError:
            # Refused (an ACL without +info, a renamed command, fakeredis): the stream checks still apply.
            run_id = None
        except (redis.RedisError, OSError) as exc:
            raise self._fail(exc) from exc
        else:
            run_id = _run_id(info)
            if run_id is None:
                # A real server always reports one; an INFO answer without it is not trusted to mean "same".
                raise TelemetryError(f"Redis at {self.url}: INFO server gives no run_id, so a restart during the "
                                     "read could not be noticed")
        try:
            raw = self.client.execute_command("XINFO", "STREAM", self.key)
        except redis.ResponseError as exc:
            if self._call("TYPE", self.key) in (b"none", "none"):
                return ServerMark(run_id, False, None)
            raise self._fail(exc) from exc
        except (redis.RedisError, OSError) as exc:
            raise self._fail(exc) from exc
        added = _xinfo_fields(raw).get("entries-added")
        return ServerMark(run_id, True, int(added) if added is not None else None)

    def _changed(self, before: ServerMark, now: ServerMark) -> str | None:
        """Why ``now`` is not the server and stream of ``before``, or None."""
        if before.run_id != now.run_id:
            return (f"the Redis server changed during the read (run_id {_short(before.run_id)} -> "
                    f"{_short(now.run_id)}): it restarted or failed over, so the entries read may come from two "
                    "servers; run the command again")
        if before.exists and not now.exists:
            return "the stream vanished during the read (deleted, or Redis restarted empty); run the command again"
        if before.entries_added is not None and now.entries_added is not None and (
                now.entries_added < before.entries_added):
            return (f"the stream was recreated during the read (entries-added fell from {before.entries_added} to "
                    f"{now.entries_added}: deleted, or Redis restarted); run the command again")
        return None

    def verify_unchanged(self, before: ServerMark) -> None:
        """Raise TelemetryError unless the same server still holds the same stream as at ``before``."""
        why = self._changed(before, self.mark())
        if why is not None:
            raise TelemetryError(f"Redis at {self.url} (stream {self.key}): {why}")

    def _window_last(self, start: str, end: str) -> str | None:
        reply = self._call("XREVRANGE", self.key, end, start, "COUNT", 1)
        return reply[0][0].decode("ascii") if reply else None

    def _verify_read(self, before: ServerMark, expected_last: str | None, last_read: bytes | None) -> None:
        """After the last page: the same server and stream, and the read reached the window's last entry."""
        now = self.mark()
        why = self._changed(before, now)
        if why is None and expected_last is not None:
            got = last_read.decode("ascii") if last_read is not None else None
            if got is None or parse_stream_id(got) < parse_stream_id(expected_last):
                # An empty or short page before the window's end is not the end: entries vanished under the read.
                why = (f"the read ended at {got or 'no entry'}, before {expected_last}, the window's last entry "
                       "when the read began: entries vanished during the read (Redis restarted or the stream "
                       "was trimmed or deleted); run the command again")
            elif before.run_id is None and not self._call("XRANGE", self.key, expected_last, expected_last):
                # Without a run_id only the stream tells: the window's last entry at the start must still be there.
                why = (f"{expected_last}, the window's last entry when the read began, is gone: the stream was "
                       "replaced during the read (Redis restarted or the key was recreated); run the command again")
        if why is not None:
            raise TelemetryError(f"Redis at {self.url} (stream {self.key}): {why}")

    def pages(self, start: str, end: str, progress: Progress | None = None, total: int | None = None, *,
              since: ServerMark | None = None) -> Iterator[Page]:
        """Yield pages of raw entries from ``start`` to ``end`` (inclusive), prefetching the next page.

        The read is checked against ``since`` (default: the server as the read begins) at its start and end:
        a restart, a vanished or recreated stream, or a read that stops short of the window's last entry
        as it stood at the start raise TelemetryError after the last page instead of passing as a short read.
        """
        before = self.mark() if since is None else since
        if since is not None:
            self.verify_unchanged(since)
        expected_last = self._window_last(start, end)
        handoff: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()
        size = self.page_size

        def produce() -> None:
            cursor = start
            try:
                while not stop.is_set():
                    page = self.client.execute_command("XRANGE", self.key, cursor, end, "COUNT", size)
                    if not page:
                        break
                    handoff.put(page)
                    if len(page) < size:
                        break
                    cursor = next_id(page[-1][0])
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
                handoff.put(exc)
                return
            handoff.put(None)

        worker = threading.Thread(target=produce, name="qtsafe-xrange", daemon=True)
        worker.start()
        read = 0
        last_read: bytes | None = None
        try:
            while True:
                item = handoff.get()
                if item is None:
                    self._verify_read(before, expected_last, last_read)
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, (redis.RedisError, OSError)):
                        raise self._fail(item) from item
                    raise item
                read += len(item)
                last_read = item[-1][0]
                if progress is not None:
                    progress(read, total)
                yield item
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    handoff.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.05)

    def pages_before(self, before: str, count: int) -> Iterator[Page]:
        """Pages (oldest first within each page, newest page first) of up to ``count`` entries before ``before``."""
        cursor = prev_id(before)
        remaining = count
        while cursor is not None and remaining > 0:
            page = self._call("XREVRANGE", self.key, cursor, MIN_ID, "COUNT", min(self.page_size, remaining))
            if not page:
                return
            remaining -= len(page)
            yield list(reversed(page))
            cursor = prev_id(page[-1][0].decode("ascii"))

    def latest_id(self) -> str | None:
        reply = self._call("XREVRANGE", self.key, MAX_ID, MIN_ID, "COUNT", 1)
        return reply[0][0].decode("ascii") if reply else None

    def bounds(self, start: str, end: str) -> tuple[str, str] | None:
        """The first and last entry IDs within [start, end], or None when the range is empty."""
        first = self._call("XRANGE", self.key, start, end, "COUNT", 1)
        last = self._call("XREVRANGE", self.key, end, start, "COUNT", 1)
        if not first or not last:
            return None
        return first[0][0].decode("ascii"), last[0][0].decode("ascii")

    def reopened(self) -> RedisStreamSource:
        """The same stream through a new connection (for a worker process)."""
        if self.reconnect is None:
            raise TelemetryError("this source cannot open another connection")
        return RedisStreamSource(self.reconnect(), self.key, page_size=self.page_size, url=self._url,
                                 reconnect=self.reconnect)


def _xinfo_fields(raw: Any) -> dict[str, Any]:
    """XINFO STREAM's reply (a flat list in RESP2, a map in RESP3) as a dict with str keys."""
    items = list(raw.items()) if isinstance(raw, dict) else [(raw[i], raw[i + 1]) for i in range(0, len(raw) - 1, 2)]
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in items}


def _run_id(info: Any) -> str | None:
    """run_id from INFO server, parsed by redis-py (a dict) or raw text."""
    if isinstance(info, dict):
        value = info.get("run_id", info.get(b"run_id"))
    else:
        text = info.decode("ascii", "replace") if isinstance(info, bytes) else str(info)
        found = re.search(r"^run_id:(\S+)", text, re.MULTILINE)
        value = found.group(1) if found else None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value) if value else None


def _short(run_id: str | None) -> str:
    return run_id[:12] if run_id else "unknown"


def _id_key(entry_id: str) -> tuple[int, int]:
    return parse_stream_id(entry_id)


class JsonlSource:
    """A JSONL export: one ``{"id": ..., "fields": {...}}`` per line, in stream order."""

    def __init__(self, path: str | Path, *, page_size: int = 1000) -> None:
        self.path = Path(path)
        self.page_size = page_size
        if not self.path.is_file():
            raise InputError(f"events file not found: {self.path}")

    def describe(self) -> str:
        return f"export {self.path}"

    def check(self) -> int:
        return -1

    def trim_info(self) -> dict[str, Any]:
        return {}

    def _entries(self) -> Iterator[tuple[tuple[int, int], RawEntry]]:
        try:
            handle = open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"cannot read events file {self.path}: {exc.strerror or exc}") from exc
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{self.path} line {number}"
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise InputError(f"{where}: not a JSON object ({exc.__class__.__name__})") from exc
                if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not isinstance(
                    record.get("fields"), dict
                ):
                    raise InputError(f'{where}: expected {{"id": "<ms>-<seq>", "fields": {{...}}}}')
                try:
                    key = _id_key(record["id"])
                except InputError as exc:
                    raise InputError(f"{where}: {exc}") from exc
                flat: list[bytes] = []
                for field, value in record["fields"].items():
                    if not isinstance(value, str):
                        raise InputError(f"{where}: field {field!r} is not a string (stream values are strings)")
                    flat.append(str(field).encode("utf-8", "surrogateescape"))
                    flat.append(value.encode("utf-8", "surrogateescape"))
                yield key, (record["id"].encode("ascii"), flat)

    def _select(self, start: str, end: str) -> Iterator[RawEntry]:
        low = (0, 0) if start == MIN_ID else _id_key(start)
        high = (1 << 64, 1 << 64) if end == MAX_ID else (
            _id_key(end) if "-" in end else (_id_key(end)[0], (1 << 64) - 1)
        )
        previous: tuple[int, int] | None = None
        for key, entry in self._entries():
            if previous is not None and key <= previous:
                raise InputError(f"{self.path}: IDs are not increasing at {entry[0].decode()}")
            previous = key
            if low <= key <= high:
                yield entry

    def first_id_of_last(self, count: int, start: str, end: str) -> str | None:
        tail: deque[bytes] = deque(maxlen=count)
        for entry_id, _ in self._select(start, end):
            tail.append(entry_id)
        return tail[0].decode("ascii") if tail else None

    def pages(self, start: str, end: str, progress: Progress | None = None, total: int | None = None, *,
              since: ServerMark | None = None) -> Iterator[Page]:
        """Pages of the export's entries in [start, end]; ``since`` is for Redis sources (a file does not restart)."""
        page: Page = []
        read = 0
        for entry in self._select(start, end):
            page.append(entry)
            if len(page) >= self.page_size:
                read += len(page)
                if progress is not None:
                    progress(read, total)
                yield page
                page = []
        if page:
            yield page

    def pages_before(self, before: str, count: int) -> Iterator[Page]:
        limit = _id_key(before)
        tail: deque[RawEntry] = deque(maxlen=count)
        for key, entry in self._entries():
            if key >= limit:
                break
            tail.append(entry)
        if tail:
            yield list(tail)

    def latest_id(self) -> str | None:
        last = None
        for _, entry in self._entries():
            last = entry[0]
        return last.decode("ascii") if last else None


Source = RedisStreamSource | JsonlSource


def open_source(settings: Settings, events_file: str | None = None) -> Source:
    """A JSONL export when ``events_file`` is given, else the configured Redis stream."""
    if events_file:
        return JsonlSource(events_file, page_size=settings.page_size)
    return RedisStreamSource(redis_client(settings), settings.stream, page_size=settings.page_size,
                             url=settings.redis_url, reconnect=lambda: redis_client(settings))
