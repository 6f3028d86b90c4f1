"""Atomic writes leave the old file intact on failure; timestamps are UTC; stream IDs map exactly."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from qtsafe.errors import InputError, WriteError
from qtsafe.fsio import append_jsonl, atomic_write_text, sha256_file
from qtsafe.telemetry.ids import stream_id_for
from qtsafe.timeutil import file_stamp, iso, parse_duration, parse_utc


def test_atomic_write_replaces(tmp_path: Path) -> None:
    target = tmp_path / "r.md"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["r.md"]


def test_failed_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "r.md"
    target.write_text("old")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(WriteError, match="No space left"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.md"]  # no temp file left behind


def test_unwritable_directory(tmp_path: Path) -> None:
    # A regular file where the directory should be: fails for root too (chmod would not).
    blocker = tmp_path / "reports"
    blocker.write_text("not a directory")
    with pytest.raises(WriteError, match="cannot"):
        atomic_write_text(blocker / "safety" / "r.md", "new")
    assert blocker.read_text() == "not a directory"


def test_append_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "j.jsonl"
    append_jsonl(path, {"a": 1})
    append_jsonl(path, {"b": 2})
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"a": 1}, {"b": 2}]
    with pytest.raises(ValueError):
        append_jsonl(path, {"c": float("nan")})
    assert len(path.read_text().splitlines()) == 2
    assert len(sha256_file(path)) == 64


@pytest.mark.parametrize("text", ["2026-01-10T05:47:45Z", "2026-01-10T05:47:45+00:00", "2026-01-10T05:47:45",
                                  "2026-01-10T06:47:45+01:00", "2026-01-10 05:47:45"])
def test_parse_utc_forms(text: str) -> None:
    assert parse_utc(text) == dt.datetime(2026, 1, 10, 5, 47, 45, tzinfo=dt.UTC)


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00Z"])
def test_parse_utc_rejects(text: str) -> None:
    with pytest.raises(InputError):
        parse_utc(text)


def test_stream_id_and_stamps() -> None:
    moment = parse_utc("2026-01-10T05:47:45.847Z")
    assert stream_id_for(moment) == "1768024065847-0"
    assert file_stamp(moment) == "20260110_054745"
    assert iso(moment) == "2026-01-10T05:47:45Z"
    assert parse_duration("6h") == 21600 and parse_duration("30s") == 30 and parse_duration("10m") == 600
    with pytest.raises(InputError):
        parse_duration("soon")
