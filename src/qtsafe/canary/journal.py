"""The audit journal ``logs/qsc_canary.jsonl``: hash-chained, append-only, one JSON object a line.

Public API (the monitor writes ``monitoring_completed`` / ``monitoring_stopped`` through it)::

    append_record(settings, "monitoring_completed", canary_model="patchtst", violations=None, ...)
    read_records(settings)            # every record, oldest first
    verify_journal(settings)          # -> JournalVerifyResult (status PASS or FAIL)
    show_journal(settings, action=)   # -> JournalShowResult

Every record carries ``timestamp`` (UTC, ``Z``), ``action``, ``seq`` (0-based line number),
``operator``, ``qtsafe_version``, ``prev_hash`` (the previous record's ``hash``; 64 zeros for the first)
and ``hash`` (SHA-256 of the record's canonical JSON without ``hash``). Editing, dropping or reordering any
line breaks the chain, which ``qtsafe journal verify`` reports. Appends hold a lock across
"read the last hash, append" so two writers cannot fork the chain; the line itself goes through
:func:`qtsafe.fsio.append_jsonl` (locked, fsynced, never rewritten).
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtsafe import __version__
from qtsafe.config import Settings
from qtsafe.errors import InputError, StateError
from qtsafe.fsio import append_jsonl, locked
from qtsafe.status import Status
from qtsafe.timeutil import iso, utc_now

GENESIS = "0" * 64
_RESERVED = frozenset({"timestamp", "action", "seq", "prev_hash", "hash"})
_ACTION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_")


def operator_name() -> str:
    """Who ran the command: the sudo caller when there is one, else the login name."""
    sudo = os.environ.get("SUDO_USER")
    if sudo:
        return sudo
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - getuser raises various errors without a passwd entry
        return f"uid:{os.getuid()}"


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 of the record's canonical JSON, ``hash`` excluded."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


def _lock_path(settings: Settings) -> Path:
    # A separate lock file: flock on the journal itself would deadlock against append_jsonl's own flock.
    return settings.journal_path.with_name("." + settings.journal_path.name + ".lock")


def _last_line(path: Path) -> bytes | None:
    """The last complete line of ``path`` (without its newline), or None for a missing/empty file."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if size == 0:
                return None
            chunk = 4096
            data = b""
            position = size
            while position > 0:
                step = min(chunk, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
                if data.rstrip(b"\n").count(b"\n") >= 1:
                    break
                chunk *= 2
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read journal {path}: {exc.strerror or exc}") from exc
    if not data.endswith(b"\n"):
        raise StateError(f"journal {path} ends with an incomplete line (a crash mid-append?); "
                         "run 'qtsafe journal repair'")
    return data.rstrip(b"\n").rsplit(b"\n", 1)[-1]


def _parse_line(line: bytes, number: int, path: Path) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StateError(f"journal {path} line {number}: not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise StateError(f"journal {path} line {number}: not a JSON object")
    return record


def append_record(settings: Settings, action: str, **fields: Any) -> dict[str, Any]:
    """Append one record to the journal and return it (with ``seq``, ``prev_hash`` and ``hash``).

    ``action`` is a lower_snake_case name (``canary_activated``, ``monitoring_completed``, ...). Field
    values must be JSON-able and finite. ``operator`` and ``qtsafe_version`` are filled in unless given.
    Raises StateError if the journal's tail is unreadable, WriteError if the append fails.
    """
    if not action or not set(action) <= _ACTION_CHARS:
        raise InputError(f"invalid journal action {action!r}: use lower_snake_case")
    clash = _RESERVED & set(fields)
    if clash:
        raise InputError(f"journal fields {sorted(clash)} are set by the journal itself")
    path = settings.journal_path
    with locked(_lock_path(settings), blocking=True):
        last = _last_line(path)
        if last is None:
            prev_hash, seq = GENESIS, 0
        else:
            previous = _parse_line(last, -1, path)
            found = previous.get("hash")
            if not isinstance(found, str) or previous.get("seq") is None:
                raise StateError(f"journal {path}: last record has no hash/seq; run 'qtsafe journal verify'")
            prev_hash, seq = found, int(previous["seq"]) + 1
        record: dict[str, Any] = {"timestamp": iso(utc_now()), "action": action}
        record.update({"operator": operator_name(), "qtsafe_version": __version__})
        record.update(fields)
        record["seq"] = seq
        record["prev_hash"] = prev_hash
        record["hash"] = record_hash(record)
        append_jsonl(path, record)
    return record


def read_records(settings: Settings) -> list[dict[str, Any]]:
    """Every record, oldest first ([] when the journal does not exist). Raises StateError on a bad line."""
    path = settings.journal_path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"cannot read journal {path}: {exc.strerror or exc}") from exc
    return [_parse_line(line, number, path) for number, line in enumerate(data.splitlines(), start=1) if line.strip()]


def last_record(settings: Settings, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The newest record matching ``predicate``, or None."""
    for record in reversed(read_records(settings)):
        if predicate(record):
            return record
    return None


@dataclasses.dataclass(frozen=True)
class JournalVerifyResult:
    """Result of ``qtsafe journal verify``: PASS when every record's hash and link hold."""

    status: Status
    summary: str
    path: str
    records: int
    problems: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "summary": self.summary, "path": self.path,
                "records": self.records, "problems": list(self.problems)}


def verify_journal(settings: Settings) -> JournalVerifyResult:
    """Check every line: JSON, ``seq`` in order, its own ``hash``, and ``prev_hash`` linking to the line before."""
    path = settings.journal_path
    problems: list[str] = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JournalVerifyResult(Status.PASS, f"JOURNAL OK: {path} does not exist yet (no records)",
                                   str(path), 0, ())
    except OSError as exc:
        raise StateError(f"cannot read journal {path}: {exc.strerror or exc}") from exc
    if data and not data.endswith(b"\n"):
        problems.append("the last line is incomplete (no newline)")
    prev = GENESIS
    count = 0
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            problems.append(f"line {number}: empty line")
            continue
        count += 1
        try:
            record = _parse_line(line, number, path)
        except StateError as exc:
            problems.append(str(exc).split(": ", 1)[-1])
            prev = "?"
            continue
        if record.get("seq") != number - 1:
            problems.append(f"line {number}: seq is {record.get('seq')!r}, expected {number - 1}")
        if record.get("hash") != record_hash(record):
            problems.append(f"line {number}: hash does not match the record (edited?)")
        if record.get("prev_hash") != prev:
            problems.append(f"line {number}: prev_hash does not match line {number - 1} (removed or reordered?)")
        prev = str(record.get("hash"))
    if problems:
        return JournalVerifyResult(Status.FAIL, f"JOURNAL BROKEN: {len(problems)} problem(s) in {path}",
                                   str(path), count, tuple(problems))
    return JournalVerifyResult(Status.PASS, f"JOURNAL OK: {count} record(s), chain intact ({path})",
                               str(path), count, ())


@dataclasses.dataclass(frozen=True)
class JournalShowResult:
    """Result of ``qtsafe journal show``: the selected records, oldest first."""

    status: Status
    summary: str
    records: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "summary": self.summary, "records": list(self.records)}


def show_journal(settings: Settings, *, action: str | None = None, last: int | None = None) -> JournalShowResult:
    """Records, optionally only one ``action`` and only the newest ``last``."""
    records = read_records(settings)
    if action:
        records = [r for r in records if r.get("action") == action]
    if last is not None:
        records = records[-last:] if last > 0 else []
    what = f" with action {action}" if action else ""
    return JournalShowResult(Status.PASS, f"{len(records)} record(s){what} in {settings.journal_path}",
                             tuple(records))


@dataclasses.dataclass(frozen=True)
class JournalRepairResult:
    """Result of ``qtsafe journal repair``: PASS when a torn tail was cut (and kept) or there was none."""

    status: Status
    summary: str
    path: str
    removed_bytes: int
    kept_copy: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "summary": self.summary, "path": self.path,
                "removed_bytes": self.removed_bytes, "kept_copy": self.kept_copy}


def repair_journal(settings: Settings) -> JournalRepairResult:
    """Cut a torn last line (a crash mid-append) so records can be appended again; nothing else is touched.

    The torn bytes are kept in ``<journal>.torn-<UTC ts>`` first, the cut is an in-place truncation of
    the incomplete tail only, and a ``journal_repaired`` record (with the torn bytes' SHA-256) is appended
    so the repair itself is on the chain. A journal whose complete lines do not verify is not repaired:
    that is tampering or corruption, for a person to look at.
    """
    from qtsafe.fsio import atomic_write_bytes
    from qtsafe.timeutil import file_stamp

    path = settings.journal_path
    with locked(_lock_path(settings), blocking=True):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return JournalRepairResult(Status.PASS, f"NOTHING TO REPAIR: {path} does not exist", str(path), 0, None)
        except OSError as exc:
            raise StateError(f"cannot read journal {path}: {exc.strerror or exc}") from exc
        if not data or data.endswith(b"\n"):
            return JournalRepairResult(Status.PASS, f"NOTHING TO REPAIR: {path} has no torn line", str(path), 0, None)
        cut = data.rfind(b"\n") + 1
        torn = data[cut:]
        copy = path.with_name(f"{path.name}.torn-{file_stamp()}")
        atomic_write_bytes(copy, torn)
        try:
            with open(path, "r+b") as handle:
                handle.truncate(cut)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise StateError(f"cannot truncate journal {path}: {exc.strerror or exc}") from exc
    check = verify_journal(settings)
    if check.status is not Status.PASS:
        return JournalRepairResult(Status.FAIL, f"REPAIR INCOMPLETE: the torn tail was cut (kept in {copy}) but the "
                                                f"journal still does not verify: {check.problems[0]}",
                                   str(path), len(torn), str(copy))
    append_record(settings, "journal_repaired", removed_bytes=len(torn),
                  removed_sha256=hashlib.sha256(torn).hexdigest(), kept_copy=str(copy))
    return JournalRepairResult(Status.PASS, f"JOURNAL REPAIRED: cut a torn last line of {len(torn)} bytes "
                                            f"(kept in {copy}); the chain verifies", str(path), len(torn), str(copy))
