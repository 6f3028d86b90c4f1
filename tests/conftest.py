"""Shared fixtures: an isolated process environment, fakeredis for unit tests, a real redis-server
for integration tests, and factories that write producer-shape telemetry."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from click.testing import CliRunner, Result

from qtsafe.cli import cli
from qtsafe.simulate import generate

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLES = Path(__file__).resolve().parent / "data" / "trade_intent_producer_format.jsonl"
STREAM = "quantum:stream:trade.intent"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory,
                  request: pytest.FixtureRequest) -> None:
    """No QTSAFE_* from the developer's shell, HOME in a temp dir, and a cwd with no config file."""
    for key in list(os.environ):
        if key.startswith("QTSAFE_"):
            monkeypatch.delenv(key)
    # A chart costs about a second a report (matplotlib): off for the suite (subprocesses by the setting, the
    # library by a stand-in drawer, since tests build settings with env={}), on in tests/*/test_chart*.py.
    monkeypatch.setenv("QTSAFE_CHARTS", "false")
    if "test_chart" not in request.node.nodeid:
        from qtsafe.reports import charts

        monkeypatch.setattr(charts, "draw", lambda kind, data: charts.Chart(None, 0, 0, "charts: off in tests"))
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def fake_redis(fake_server: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeRedis:
    """A fakeredis client; every client qtsafe makes in this test talks to the same fake server."""
    client = fakeredis.FakeRedis(server=fake_server)

    def factory(settings: Any) -> fakeredis.FakeRedis:
        return fakeredis.FakeRedis(server=fake_server)

    monkeypatch.setattr("qtsafe.telemetry.sources.redis_client", factory)
    monkeypatch.setattr("qtsafe.telemetry.redis_client", factory)
    return client


def load_samples() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLES.read_text().splitlines() if line.strip()]


def healthy_events_file(tmp_path_factory: pytest.TempPathFactory, count: int = 600) -> Path:
    """A JSONL export of ``count`` simulated healthy entries, for module fixtures that replay one through the CLI."""
    path = tmp_path_factory.mktemp("events") / "healthy.jsonl"
    path.write_text("".join(e.to_json() + "\n" for e in generate("healthy", count)))
    return path


def xadd_entries(client: redis.Redis, entries: list[dict[str, Any]], key: str = STREAM) -> None:
    pipe = client.pipeline(transaction=False)
    for entry in entries:
        pipe.xadd(key, entry["fields"], id=entry["id"])
    pipe.execute()


@pytest.fixture
def make_stream() -> Callable[..., list[dict[str, Any]]]:
    """``make_stream(client, scenario, events, **kw)`` writes a simulated scenario; returns the entries."""

    def make(client: redis.Redis, scenario: str = "healthy", events: int = 400, key: str = STREAM,
             **kwargs: Any) -> list[dict[str, Any]]:
        entries = [{"id": e.id, "fields": e.fields} for e in generate(scenario, events, **kwargs)]
        xadd_entries(client, entries, key)
        return entries

    return make


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke the real group (its error handling included) with stdout and stderr kept apart."""

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    return run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A real redis-server on a free loopback port, in its own temp dir."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            # Fail, never skip: CI installs redis-server, and a skipped integration suite proves nothing.
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir), "--enable-debug-command", "local", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client(password=self._password(extra)).ping()
                break
            except redis.AuthenticationError:
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    @staticmethod
    def _password(extra: tuple[str, ...]) -> str | None:
        return extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None

    def client(self, password: str | None = None) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=password, socket_timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def real_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A clean database on the session's real redis-server."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


_FIXED_CONFIDENCE = {"xgb": 0.8, "lgbm": 0.7, "nhits": 0.6, "patchtst": 0.9}


def intent_entry(stream_ms: int, symbol: str | None, price: float | None,
                 actions: dict[str, str]) -> tuple[bytes, list[bytes]]:
    """One raw ``trade.intent`` stream entry (ID, flat field list) whose breakdown votes ``actions`` at fixed
    confidences, with ``symbol`` and ``entry_price`` left out where None (outcome tests)."""
    body: dict[str, Any] = {"model_breakdown": {
        name: {"action": action, "confidence": _FIXED_CONFIDENCE.get(name, 0.75)} for name, action in actions.items()}}
    if symbol is not None:
        body["symbol"] = symbol
    if price is not None:
        body["entry_price"] = price
    return f"{stream_ms}-0".encode(), [b"event_type", b"trade.intent", b"payload", json.dumps(body).encode()]

