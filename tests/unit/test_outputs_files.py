"""Report files: a read-only reports directory is one clear error, and timestamped reports never replace
each other (issue 10, items 6 and 11)."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from qtsafe import reports
from qtsafe.config import Settings, load_settings
from qtsafe.errors import WriteError
from qtsafe.fsio import atomic_write_pair
from qtsafe.gate import run_quality_gate
from qtsafe.sanity import run_feature_sanity
from qtsafe.telemetry import JsonlSource
from qtsafe.telemetry.window import window_between
from tests.conftest import healthy_events_file

NOW = dt.datetime(2026, 1, 10, 6, 0, 0, tzinfo=dt.UTC)
AFTER = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return healthy_events_file(tmp_path_factory, 600)


def _settings(base: Path) -> Settings:
    return load_settings(None, {"base_dir": str(base)}, env={})


def read_only_below(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """``directory`` behaves as a read-only mount at the OS boundary: creating a file in it fails with EROFS
    (tests run as root, for whom chmod 0o555 is no obstacle)."""
    real_open = os.open

    def fake_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_CREAT and Path(os.fsdecode(path)).parent == directory:  # type: ignore[arg-type]
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))  # type: ignore[arg-type]
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", fake_open)


# ---- item 11: read-only reports directory -------------------------------------------------------------

def test_pair_in_a_read_only_directory_names_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: IndexError (the first temp file was never created, and the error path indexed it).
    read_only_below(monkeypatch, tmp_path)
    with pytest.raises(WriteError) as raised:
        atomic_write_pair(tmp_path / "a.json", b"{}", tmp_path / "a.md", b"# a")
    assert str(raised.value) == f"cannot write {tmp_path / 'a.json'}: Read-only file system"
    assert list(tmp_path.iterdir()) == []


def test_pair_when_only_the_second_temp_cannot_be_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.json").write_text("old json")
    real_open = os.open

    def fake_open(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_CREAT and os.path.basename(os.fsdecode(path)).startswith(".a.md."):  # type: ignore[arg-type]
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(path))  # type: ignore[arg-type]
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", fake_open)
    with pytest.raises(WriteError, match=r"cannot write .*a\.md: No space left on device"):
        atomic_write_pair(tmp_path / "a.json", b"{}", tmp_path / "a.md", b"# a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # old file kept, no temp left
    assert (tmp_path / "a.json").read_text() == "old json"


def test_pair_never_uses_mktemp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old file's safety link gets its name from link() itself (which refuses an existing name), not
    from tempfile.mktemp, whose name another process can take before it is used."""

    def forbidden(*args: object, **kwargs: object) -> str:
        raise AssertionError("tempfile.mktemp is racy")

    monkeypatch.setattr(tempfile, "mktemp", forbidden)
    atomic_write_pair(tmp_path / "a.json", b"1", tmp_path / "a.md", b"1")
    atomic_write_pair(tmp_path / "a.json", b"2", tmp_path / "a.md", b"2")
    assert (tmp_path / "a.json").read_text() == "2" and (tmp_path / "a.md").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.md"]


@pytest.mark.parametrize("command", [("quality-gate", "--mode", "canary"), ("feature-sanity",), ("scoreboard",)])
def test_cli_read_only_reports_directory_is_one_line(tmp_path: Path, events: Path, monkeypatch: pytest.MonkeyPatch,
                                                     run_cli: Callable[..., Result], command: tuple[str, ...]
                                                     ) -> None:
    reports = tmp_path / "reports" / "safety"
    reports.mkdir(parents=True)
    read_only_below(monkeypatch, reports)
    r = run_cli(*command, "--after", "2000-01-01T00:00:00Z", "--events", str(events), "--base-dir", str(tmp_path))
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.startswith(f"qtsafe: error: cannot write {reports}/"), r.stderr
    assert r.stderr.endswith(": Read-only file system\n") and len(r.stderr.splitlines()) == 1, r.stderr
    assert list(reports.iterdir()) == []


# ---- item 6: reports never replace each other ---------------------------------------------------------

def _gate(settings: Settings, events: Path, mode: str = "canary", after: dt.datetime = AFTER):
    return run_quality_gate(settings, JsonlSource(events), window_between(after), mode=mode, now=NOW)


def _pair_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_two_gates_in_one_second_keep_both_reports(tmp_path: Path, events: Path) -> None:
    settings = _settings(tmp_path)
    first = _gate(settings, events)
    first_md, first_json = first.report_path.read_bytes(), first.json_path.read_bytes()  # type: ignore[union-attr]
    second = _gate(settings, events, after=AFTER + dt.timedelta(days=1))
    third = _gate(settings, events, mode="collection")
    assert first.report_path.name == "quality_gate_20260110_060000_post_cutover.md"  # type: ignore[union-attr]
    assert second.report_path.name == "quality_gate_20260110_060000_2_post_cutover.md"  # type: ignore[union-attr]
    # Collection reports have their own name; the first of that second takes the plain one.
    assert third.report_path.name == "quality_gate_20260110_060000_collection_post_cutover.md"  # type: ignore
    assert _pair_names(settings.reports_dir) == sorted(
        f"quality_gate_20260110_060000{s}_post_cutover.{ext}" for s in ("", "_2", "_collection")
        for ext in ("md", "json"))
    # The earlier report is untouched, and every JSON twin names its own Markdown.
    assert first.report_path.read_bytes() == first_md and first.json_path.read_bytes() == first_json  # type: ignore
    for result in (first, second, third):
        data = json.loads(result.json_path.read_text())  # type: ignore[union-attr]
        assert data["report_path"] == str(result.report_path)
        assert data["json_path"] == str(result.json_path)
        assert result.json_path.stem == result.report_path.stem  # type: ignore[union-attr]
    assert json.loads(second.json_path.read_text())["window"]["after"] == "2000-01-02T00:00:00Z"  # type: ignore


def test_a_leftover_twin_moves_the_next_report_on(tmp_path: Path, events: Path) -> None:
    """A JSON without its Markdown (another writer mid-way, or a crash) still blocks its name: never half a pair."""
    settings = _settings(tmp_path)
    settings.reports_dir.mkdir(parents=True)
    orphan = settings.reports_dir / "quality_gate_20260110_060000_post_cutover.json"
    orphan.write_text("someone else's\n")
    result = _gate(settings, events)
    assert result.report_path.name == "quality_gate_20260110_060000_2_post_cutover.md"  # type: ignore[union-attr]
    assert orphan.read_text() == "someone else's\n"


def test_two_feature_sanity_runs_in_one_second(tmp_path: Path, events: Path) -> None:
    settings = _settings(tmp_path)
    runs = [run_feature_sanity(settings, JsonlSource(events), window_between(AFTER), now=NOW) for _ in range(2)]
    assert [r.report_path.name for r in runs] == ["feature_sanity_20260110_060000.md",  # type: ignore[union-attr]
                                                  "feature_sanity_20260110_060000_2.md"]
    assert len(list(settings.reports_dir.iterdir())) == 4
    assert json.loads(runs[1].json_path.read_text())["report_path"] == str(runs[1].report_path)  # type: ignore


def test_concurrent_writers_never_share_a_name(tmp_path: Path) -> None:
    """Sixteen writers racing for one stem: sixteen whole pairs, each naming itself, none lost."""
    barrier = threading.Barrier(16)
    written: list[tuple[Path, Path]] = []
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        def render_pair(md: Path, js: Path) -> tuple[str, dict[str, object]]:
            return f"# run {i} at {md.name}\n", {"run": i, "report_path": str(md)}

        try:
            barrier.wait()
            written.append(reports.write_new_report(tmp_path, lambda n: f"quality_gate_20260110_060000{n}_post_cutover",
                                            render_pair))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({md for md, _ in written}) == 16
    runs = set()
    for md, js in written:
        data = json.loads(js.read_text())
        assert data["report_path"] == str(md) and md.read_text() == f"# run {data['run']} at {md.name}\n"
        runs.add(data["run"])
    assert runs == set(range(16))
    assert len(list(tmp_path.iterdir())) == 32  # no temp file left behind


# ---- item 5: which reports a failing run must correct --------------------------------------------------

def test_every_report_convention_is_found_for_correction(tmp_path: Path) -> None:
    """The error path rewrites the pair a result wrote, whichever attribute names its command uses."""
    import dataclasses

    from qtsafe.cli.options import written_reports
    from qtsafe.status import Status

    @dataclasses.dataclass
    class Telemetry:
        status: Status = Status.PASS
        report_path: Path | None = tmp_path / "a.md"
        json_path: Path | None = tmp_path / "a.json"

    @dataclasses.dataclass
    class ModelGate:
        status: Status = Status.PASS
        report_md: str | None = str(tmp_path / "m.md")
        report_json: str | None = str(tmp_path / "m.json")

    assert written_reports(Telemetry()) == (tmp_path / "a.md", tmp_path / "a.json")  # type: ignore[arg-type]
    assert written_reports(ModelGate()) == (tmp_path / "m.md", tmp_path / "m.json")  # type: ignore[arg-type]
    assert written_reports(Telemetry(report_path=None, json_path=None)) is None  # type: ignore[arg-type]


def test_mark_report_failed_rewrites_then_removes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    md.write_text("# PASS: quality gate (canary) - fine\n\n| | |\n|---|---|\n| verdict | **PASS** (exit 0) |\n")
    js.write_text(json.dumps({"status": "PASS", "summary": "PASS: fine"}))
    assert reports.mark_report_failed(md, js, "cannot write /m.prom: No space left on device") == "rewritten"
    text = md.read_text()
    assert text.startswith("# ERROR: this run exited 2 - cannot write /m.prom: No space left on device\n")
    assert "| verdict | **ERROR** (exit 2; the checks alone gave PASS) |" in text and "(exit 0)" not in text
    assert json.loads(js.read_text())["status"] == "ERROR"

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    assert reports.mark_report_failed(md, js, "again") == "removed"
    assert list(tmp_path.iterdir()) == []
