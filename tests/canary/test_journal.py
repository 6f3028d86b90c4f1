from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from qtsafe.canary import journal
from qtsafe.config import load_settings
from qtsafe.errors import InputError
from qtsafe.status import Status


@pytest.fixture
def settings(tmp_path: Path):  # noqa: ANN201
    return load_settings(None, {"base_dir": str(tmp_path)}, env={})


def test_records_are_chained(settings) -> None:  # noqa: ANN001
    first = journal.append_record(settings, "canary_activated", canary_model="patchtst", weights={"a": 1.0})
    second = journal.append_record(settings, "monitoring_completed", canary_model="patchtst", violations=None,
                                   result="safe", checks_performed=720)
    assert first["prev_hash"] == journal.GENESIS and first["seq"] == 0
    assert second["prev_hash"] == first["hash"] and second["seq"] == 1
    assert second["timestamp"].endswith("Z")
    assert {"operator", "qtsafe_version", "action", "timestamp"} <= set(second)
    assert journal.verify_journal(settings).status is Status.PASS
    assert [r["action"] for r in journal.read_records(settings)] == ["canary_activated", "monitoring_completed"]


def _lines(settings) -> list[str]:  # noqa: ANN001
    return settings.journal_path.read_text().splitlines()


@pytest.mark.parametrize("tamper", ["edit", "drop", "swap", "truncate"])
def test_verify_detects_tampering(settings, tamper: str) -> None:  # noqa: ANN001
    for i in range(4):
        journal.append_record(settings, "rollback_executed", n=i)
    lines = _lines(settings)
    if tamper == "edit":
        record = json.loads(lines[1])
        record["n"] = 99
        lines[1] = json.dumps(record, sort_keys=True)
    elif tamper == "drop":
        del lines[2]
    elif tamper == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    text = "\n".join(lines) + "\n"
    if tamper == "truncate":
        text = text[:-10]
    settings.journal_path.write_text(text)
    result = journal.verify_journal(settings)
    assert result.status is Status.FAIL and result.problems


def test_reserved_fields_and_bad_actions(settings) -> None:  # noqa: ANN001
    with pytest.raises(InputError):
        journal.append_record(settings, "x", hash="nope")
    with pytest.raises(InputError):
        journal.append_record(settings, "Bad Action")


def test_show_filters(settings) -> None:  # noqa: ANN001
    for action in ("canary_activated", "rollback_executed", "canary_activated"):
        journal.append_record(settings, action)
    shown = journal.show_journal(settings, action="canary_activated", last=1)
    assert len(shown.records) == 1 and shown.records[0]["seq"] == 2


def _writer(base: str, n: int) -> None:
    settings = load_settings(None, {"base_dir": base}, env={})
    for i in range(n):
        journal.append_record(settings, "monitoring_tick", i=i)


def test_concurrent_writers_keep_one_chain(settings, tmp_path: Path) -> None:  # noqa: ANN001
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), 25)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    result = journal.verify_journal(settings)
    assert result.status is Status.PASS, result.problems
    assert result.records == 100
