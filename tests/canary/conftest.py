"""Canary fixtures: a temp root (base dir, fake /etc/systemd/system, env file, backup dir), a fake
``systemctl``/``journalctl`` on PATH that records calls and can be told to fail, and a fake quality gate."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qtsafe.canary import preflight as canary_preflight
from qtsafe.canary.state import CanaryState
from qtsafe.config import Settings, load_settings
from qtsafe.status import Status

FAKE = Path(__file__).resolve().parent / "fake_systemd.py"
UNIT = "quantum-ai-engine.service"
BASELINE = {"xgb": 0.25, "lgbm": 0.25, "nhits": 0.30, "patchtst": 0.20}
BASELINE_JSON = '{"lgbm":0.25,"nhits":0.3,"patchtst":0.2,"xgb":0.25}'
ENV_FILE_TEXT = (
    "# ai-engine environment\n"
    "REDIS_URL=redis://127.0.0.1:6379/0\n"
    "PATCHTST_SHADOW_ONLY=true\n"
    "LOG_LEVEL=INFO\n"
    "#PATCHTST_SHADOW_ONLY=commented\n"
)
REPO_SRC = Path(__file__).resolve().parents[2] / "src"
#: State files written by the dict-based code before CanaryState (kept to prove the typed record reads them).
DATA = Path(__file__).resolve().parent / "data"


def old_state(name: str) -> CanaryState:
    """A state file from ``tests/canary/data`` as the typed record."""
    path = DATA / name
    return CanaryState.from_dict(json.loads(path.read_text(encoding="utf-8")), where=str(path))


@dataclasses.dataclass(frozen=True)
class FakeGateResult:
    status: Status
    summary: str
    mode: str = "canary"
    models: tuple[dict[str, Any], ...] = ()
    report_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "summary": self.summary, "mode": self.mode,
                "models": list(self.models)}

    def model_verdict(self, name: str) -> tuple[bool, int] | None:
        """The real GateResult's typed reading: ``(passed, whole-window events)`` or None."""
        entry = next((m for m in self.models if m["name"] == name), None)
        return None if entry is None else (bool(entry["passed"]), int(entry["whole"]["n"]))


class FakeGate:
    """Stands in for run_quality_gate; records its calls."""

    def __init__(self, status: Status = Status.PASS, events: int = 342, mode: str = "canary",
                 models: tuple[str, ...] | None = None, passed: bool = True) -> None:
        self.status, self.events, self.mode, self.models, self.passed = status, events, mode, models, passed
        self.calls: list[dict[str, Any]] = []

    def __call__(self, settings: Settings, source: Any, **kwargs: Any) -> FakeGateResult:
        self.calls.append(kwargs)
        names = self.models if self.models is not None else tuple(kwargs.get("models") or ())
        entries = tuple({"name": n, "passed": self.passed, "whole": {"n": self.events}} for n in names)
        verdict = {Status.PASS: "QUALITY GATE: PASS", Status.FAIL: "QUALITY GATE: FAIL (BLOCKER)",
                   Status.COLLECTED: "QUALITY GATE: COLLECTED"}.get(self.status, self.status.value)
        return FakeGateResult(self.status, f"{verdict} ({self.events} events)", self.mode, entries)


class Root:
    """One temp root: paths, settings, the fake systemd's controls and call log, and snapshots."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path / "base"
        self.systemd_dir = path / "etc" / "systemd" / "system"
        self.env_file = path / "etc" / "quantum" / "ai-engine.env"
        self.backup_dir = path / "backups" / "model_activations"
        self.bin = path / "bin"
        self.fake_state = path / "fake_state"
        self.unit_file = self.systemd_dir / UNIT
        self.dropin = self.systemd_dir / f"{UNIT}.d" / "qsc_canary.conf"
        self.journal = self.base / "logs" / "qsc_canary.jsonl"
        self.state_file = self.base / "data" / "qsc_canary_state.json"

    def env(self) -> dict[str, str]:
        """QTSAFE_* settings and fake-systemd variables, for in-process and subprocess runs alike."""
        return {
            "QTSAFE_BASE_DIR": str(self.base), "QTSAFE_SYSTEMD_DIR": str(self.systemd_dir),
            "QTSAFE_ENV_FILE": str(self.env_file), "QTSAFE_BACKUP_DIR": str(self.backup_dir),
            "QTSAFE_UNIT": UNIT, "QTSAFE_CANARY_SETTLE_SECONDS": "0", "QTSAFE_CANARY_RECHECK_SECONDS": "0",
            "QTSAFE_CANARY_RESTART_TIMEOUT": "10", "QTSAFE_CANARY_COMMAND_TIMEOUT": "10",
            "FAKE_SYSTEMD_STATE": str(self.fake_state), "FAKE_SYSTEMD_ROOT": str(self.systemd_dir),
            "FAKE_SYSTEMD_UNIT": UNIT, "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(None, overrides, env=self.env())

    # -- fake systemd ----------------------------------------------------------------------------------
    def control(self, **values: Any) -> None:
        path = self.fake_state / "control.json"
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update(values)
        path.write_text(json.dumps(current))

    def calls(self) -> list[list[str]]:
        path = self.fake_state / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line)["argv"] for line in path.read_text().splitlines()]

    def verbs(self) -> list[str]:
        return [" ".join(argv[:2]) for argv in self.calls()]

    def clear_calls(self) -> None:
        (self.fake_state / "calls.jsonl").unlink(missing_ok=True)

    def live_environment(self) -> str:
        proc = subprocess.run(["systemctl", "show", UNIT, "-p", "Environment"], capture_output=True, text=True,
                              env={**os.environ, **self.env()}, check=True)
        return proc.stdout.strip()

    # -- files -----------------------------------------------------------------------------------------
    def snapshot(self, *, live_only: bool = False) -> dict[str, bytes]:
        """Every file under the root (bytes), minus the fake's own bookkeeping and the lock file."""
        tops = [self.systemd_dir.parent.parent, self.backup_dir.parent] if live_only else [self.path]
        out: dict[str, bytes] = {}
        for top in tops:
            for path in sorted(top.rglob("*")):
                rel = str(path.relative_to(self.path))
                if rel.startswith(("fake_state", "bin")) or path.name.endswith(".lock"):
                    continue
                out[rel + ("/" if path.is_dir() else "")] = path.read_bytes() if path.is_file() else b""
        return out

    def records(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines()]

    def actions(self) -> list[str]:
        return [r["action"] for r in self.records()]


def _install_fake(root: Root) -> None:
    root.bin.mkdir(parents=True)
    body = FAKE.read_text()
    for name in ("systemctl", "journalctl"):
        script = root.bin / name
        script.write_text(f"#!{sys.executable} -S\n{body}")
        script.chmod(0o755)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _isolated_env: None) -> Iterator[Root]:
    r = Root(tmp_path)
    r.base.mkdir()
    # A deployed base directory has these; the per-unit lock file lives in data/.
    (r.base / "data").mkdir()
    (r.base / "logs").mkdir()
    r.systemd_dir.mkdir(parents=True)
    r.env_file.parent.mkdir(parents=True)
    r.env_file.write_text(ENV_FILE_TEXT)
    r.unit_file.write_text(
        "[Unit]\nDescription=AI engine\n[Service]\n"
        f"EnvironmentFile={r.env_file}\n"
        f'Environment="ENSEMBLE_WEIGHTS={BASELINE_JSON.replace(chr(34), chr(92) + chr(34))}"\n'
        "Environment=PYTHONUNBUFFERED=1\n"
        "ExecStart=/usr/bin/python3 -m engine\n"
    )
    r.fake_state.mkdir()
    _install_fake(r)
    for key, value in r.env().items():
        monkeypatch.setenv(key, value)
    yield r


@pytest.fixture
def gate() -> FakeGate:
    return FakeGate()


@pytest.fixture
def no_sleep() -> Callable[[float], None]:
    return lambda seconds: None


@pytest.fixture
def patch_default_gate(monkeypatch: pytest.MonkeyPatch, gate: FakeGate) -> FakeGate:
    """Make the CLI (which uses the lazily imported real gate) use the fake gate and a dummy source."""
    monkeypatch.setattr(canary_preflight, "_default_gate", lambda: gate)
    monkeypatch.setattr(canary_preflight, "_default_open_source", lambda: (lambda settings, *a: object()))
    return gate


def run_qtsafe(root: Root, *args: str, extra_env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m qtsafe ...`` in a subprocess with the root's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")}
    env.update(root.env())
    env["PYTHONPATH"] = str(REPO_SRC)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "qtsafe", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=root.path)
