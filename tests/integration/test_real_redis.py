"""The same commands against a real redis-server on a free loopback port (started by a fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import STREAM, RedisServer

pytestmark = pytest.mark.integration
AFTER = "2000-01-01T00:00:00Z"


def qtsafe(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real entry point in a subprocess: exit codes and streams exactly as a shell script sees them."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "qtsafe", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=120)


def test_operator_loop_exit_codes(redis_server: RedisServer, real_redis, tmp_path: Path) -> None:
    url = redis_server.url
    base = ["--redis-url", url, "--base-dir", str(tmp_path)]
    r = qtsafe("simulate", "--scenario", "healthy", "--events", "600", "--redis-url", url)
    assert r.returncode == 0, r.stderr
    assert qtsafe("feature-sanity", *base).returncode == 0
    collection = qtsafe("quality-gate", "--mode", "collection", "--after", AFTER, *base)
    assert collection.returncode == 3
    assert collection.stdout.startswith("COLLECTED: quality gate (collection)")
    canary = qtsafe("quality-gate", "--mode", "canary", "--after", AFTER, *base)
    assert canary.returncode == 0, canary.stdout
    board = qtsafe("scoreboard", *base)
    assert board.returncode == 0 and board.stdout.startswith("GO: all 4 models pass")
    assert (tmp_path / "reports" / "safety" / "scoreboard_latest.md").is_file()


def test_collapse_fails_on_real_redis(redis_server: RedisServer, real_redis, tmp_path: Path) -> None:
    qtsafe("simulate", "--scenario", "collapsed", "--events", "400", "--redis-url", redis_server.url)
    r = qtsafe("quality-gate", "--mode", "canary", "--after", AFTER, "--redis-url", redis_server.url,
               "--base-dir", str(tmp_path), "--json")
    assert r.returncode == 2
    data = json.loads(r.stdout)
    assert {"constant_output", "collapsed_confidence", "narrow_range"} <= {
        f["check"] for f in data["findings"] if f["subject"] == "patchtst"}


def test_trimmed_entries_after_cutover_are_reported(redis_server: RedisServer, real_redis, tmp_path: Path) -> None:
    r = qtsafe("simulate", "--scenario", "healthy", "--events", "3000", "--maxlen", "1000",
               "--redis-url", redis_server.url)
    assert r.returncode == 0
    length = real_redis.xlen(STREAM)
    assert length < 3000
    r = qtsafe("quality-gate", "--mode", "canary", "--after", AFTER, "--redis-url", redis_server.url,
               "--base-dir", str(tmp_path), "--json")
    data = json.loads(r.stdout)
    assert data["trimmed"]["detected"] is True
    assert data["trimmed"]["trimmed_at_most"] == 3000 - length
    assert data["reconciliation"]["read"] == length  # the verdict uses what remains
    md = Path(data["report_path"]).read_text()
    assert "entries after the cutover may have been trimmed before this read" in md


def test_no_trim_reported_when_cutover_is_after_deleted_ids(redis_server: RedisServer, real_redis,
                                                            tmp_path: Path) -> None:
    qtsafe("simulate", "--scenario", "healthy", "--events", "3000", "--maxlen", "1000",
           "--redis-url", redis_server.url)
    first_kept = real_redis.xrange(STREAM, count=1)[0][0].decode()
    ms = int(first_kept.split("-")[0]) + 60_000
    import datetime as dt
    after = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat()
    r = qtsafe("scoreboard", "--after", after, "--redis-url", redis_server.url, "--base-dir", str(tmp_path),
               "--json")
    assert json.loads(r.stdout)["trimmed"]["detected"] is False


def test_slow_redis_times_out_with_exit_2(redis_server: RedisServer, real_redis, tmp_path: Path) -> None:
    qtsafe("simulate", "--scenario", "healthy", "--events", "300", "--redis-url", redis_server.url)
    blocker = threading.Thread(target=lambda: redis_server.client().execute_command("DEBUG", "SLEEP", "3"))
    blocker.start()
    time.sleep(0.2)
    try:
        r = qtsafe("quality-gate", "--mode", "canary", "--after", AFTER, "--redis-url", redis_server.url,
                   "--base-dir", str(tmp_path), env={"QTSAFE_REDIS_TIMEOUT": "0.5"})
    finally:
        blocker.join()
    assert r.returncode == 2
    assert r.stderr.startswith(f"qtsafe: error: Redis at {redis_server.url} (stream {STREAM}): timed out")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "reports").exists()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory):
    server = RedisServer(tmp_path_factory.mktemp("auth"), "--requirepass", "hunter2")
    yield server
    server.stop()


@pytest.mark.parametrize(("password", "expected"), [
    (None, "authentication"),
    ("wrong", "authentication refused"),
])
def test_auth_refused(auth_server: RedisServer, tmp_path: Path, password: str | None, expected: str) -> None:
    url = f"redis://:{password}@127.0.0.1:{auth_server.port}/0" if password else auth_server.url
    r = qtsafe("scoreboard", "--redis-url", url, "--base-dir", str(tmp_path))
    assert r.returncode == 2
    assert expected in r.stderr
    assert "wrong" not in r.stderr.replace("wrong password", "")  # the password itself is masked
    assert len(r.stderr.splitlines()) == 1


def test_redis_killed_before_read(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    url = server.url
    server.stop()
    r = qtsafe("quality-gate", "--mode", "canary", "--after", AFTER, "--redis-url", url, "--base-dir", str(tmp_path))
    assert r.returncode == 2
    assert "unreachable" in r.stderr


def test_debug_shows_a_traceback(tmp_path: Path) -> None:
    # A library error (a badly formed time is a usage error now, refused by Click before the library runs).
    r = qtsafe("--debug", "quality-gate", "--mode", "canary", "--after", "1960-01-01T00:00:00Z")
    assert r.returncode == 2
    assert "Traceback" in r.stderr and r.stderr.strip().endswith("cannot be a stream ID: 1960-01-01T00:00:00+00:00")


def test_parallel_read_equals_a_single_read(redis_server: RedisServer, real_redis, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes reading time slices must give exactly what one reader gives (defects included)."""
    from qtsafe.config import load_settings
    from qtsafe.evidence import gather
    from qtsafe.telemetry import open_source
    from qtsafe.telemetry.window import resolve_window
    from tests.conftest import load_samples, xadd_entries

    qtsafe("simulate", "--scenario", "nan-burst", "--events", "3000", "--end", "2026-01-10T05:00:00Z",
           "--redis-url", redis_server.url)
    xadd_entries(real_redis, load_samples())  # the awkward samples, after the simulated entries
    settings = load_settings(overrides={"redis_url": redis_server.url, "page_size": 100}, env={})
    window = resolve_window("2000-01-01T00:00:00Z")
    import qtsafe.evidence as evidence

    merged: list[int] = []
    real_merge = evidence.merge_telemetry
    monkeypatch.setattr(evidence, "merge_telemetry", lambda parts: merged.append(len(parts)) or real_merge(parts))
    idle: list[str] = []
    single = gather(open_source(settings), window, workers=1, idle=lambda: idle.append("single")).telemetry
    assert merged == [] and idle == []  # the one reader has no time to spare
    parallel = gather(open_source(settings), window, workers=2, parallel_min=1,
                      idle=lambda: idle.append("parallel")).telemetry
    assert merged == [8]  # really read as eight slices on two worker processes
    assert idle == ["parallel"]  # the caller's own work (the chart's import) ran once, while they read
    assert single.read == parallel.read == 3012
    assert single.skipped == parallel.skipped and single.skip_examples == parallel.skip_examples
    assert (single.votes == parallel.votes).all() and (single.event_ms == parallel.event_ms).all()
    assert single.models.keys() == parallel.models.keys()
    for name, columns in single.models.items():
        other = parallel.models[name]
        assert columns.defects == other.defects and columns.examples == other.examples
        for field in ("event_idx", "action", "conf"):
            assert (getattr(columns, field) == getattr(other, field)).all(), (name, field)
    r = qtsafe("quality-gate", "--mode", "canary", "--after", AFTER, "--redis-url", redis_server.url,
               "--base-dir", str(tmp_path), "--json", env={"QTSAFE_PARALLEL_MIN_ENTRIES": "1"})
    assert json.loads(r.stdout)["reconciliation"]["read"] == 3012
