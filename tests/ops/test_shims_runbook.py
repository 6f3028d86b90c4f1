"""Every runbook command in tests/data/runbook_commands.txt works as written: it maps to the qtsafe command
listed, passes qtsafe's exit code through, and the read-only ones give the listed exit code on a simulated
stream. A shim without a listed command, or a listed command without a shim, fails here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "ops" / "model_safety"
LIST = REPO / "tests" / "data" / "runbook_commands.txt"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
CUTOVER = (NOW - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
SAMPLES = {"CUTOVER_ISO": CUTOVER, "CUTOVER_TS": CUTOVER, "CANARY_MODEL": "patchtst", "MODEL": "patchtst",
           "<model>": "patchtst", "<model_name>": "patchtst", "<env_key>": "PATCHTST_SHADOW_ONLY",
           "<cutover_ts>": CUTOVER}


@dataclasses.dataclass(frozen=True)
class Entry:
    where: str
    command: str
    qtsafe: str
    run: str

    @property
    def words(self) -> list[str]:
        """The command's words with sample values, prompts, sudo/nohup, redirections and '&' removed."""
        text = re.sub(r"<\w+>", lambda m: SAMPLES[m.group(0)], self.command)
        text = re.sub(r"\s\d?>>?&?\s*\S+", " ", text).replace(" &", " ")
        words = [re.sub(r"\$\{?(\w+)\}?", lambda m: SAMPLES[m.group(1)], w) for w in shlex.split(text)]
        while words and words[0] in ("sudo", "nohup"):
            words.pop(0)
        return words

    @property
    def expected(self) -> list[str]:
        return [re.sub(r"\$(\w+)", lambda m: SAMPLES[m.group(1)], w) for w in shlex.split(self.qtsafe)]

    @property
    def script(self) -> Path | None:
        for word in self.words:
            if word.endswith((".py", ".sh")):
                return OPS / Path(word).name
        return None

    @property
    def script_args(self) -> list[str]:
        words = self.words
        return words[[i for i, w in enumerate(words) if w.endswith((".py", ".sh"))][0] + 1:]


def load_entries(text: str) -> list[Entry]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(" || ")]
        assert len(fields) == 4, f"line {number}: expected 4 fields separated by ' || ': {line!r}"
        out.append(Entry(*fields))
    return out


ENTRIES = load_entries(LIST.read_text(encoding="utf-8"))
SHIM_ENTRIES = [e for e in ENTRIES if e.script is not None and e.qtsafe not in ("(file)", "(syntax)")]
RUN_ENTRIES = [e for e in ENTRIES if e.run != "-"]


def ident(entry: Entry) -> str:
    return f"{entry.where}:{entry.command[:60]}"


def shim_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"shim_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stub_bin(tmp_path: Path, exit_code: int = 0) -> Path:
    """A directory holding a stand-in ``qtsafe`` that prints its arguments as JSON and exits ``exit_code``."""
    directory = tmp_path / "stub-bin"
    directory.mkdir(exist_ok=True)
    stub = directory / "qtsafe"
    stub.write_text(f"#!{sys.executable} -S\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n"
                    f"sys.exit({exit_code})\n")
    stub.chmod(0o755)
    return directory


def run_without_qtsafe_module(entry: Entry, tmp_path: Path, path_dirs: list[Path],
                              ) -> subprocess.CompletedProcess[str]:
    """Run the shim as the runbook does, with an interpreter that cannot import qtsafe (python -S)."""
    python = tmp_path / "python-without-qtsafe"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    assert entry.script is not None
    words = entry.words
    if words[0] == "bash":
        argv = ["bash", str(entry.script), *entry.script_args]
    elif words[0].endswith(".sh"):
        argv = [str(entry.script), *entry.script_args]
    else:
        argv = [str(python), str(entry.script), *entry.script_args]
    env = {"PATH": os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"]), "PYTHON": str(python),
           "HOME": str(tmp_path)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, cwd=tmp_path)


# ---- the list and the shims ----------------------------------------------------------------------------

def test_every_shim_has_a_listed_command_and_every_listed_command_a_shim() -> None:
    shims = {p.name for p in OPS.iterdir() if p.suffix in (".py", ".sh") and not p.name.startswith("_")}
    listed = {e.script.name for e in ENTRIES if e.script is not None}
    assert listed - shims == set(), "listed commands without a shim"
    assert shims - listed == set(), "shims without a listed runbook command"


def test_the_list_holds_the_runbooks_commands() -> None:
    commands = {e.command for e in ENTRIES}
    assert len(ENTRIES) >= 30
    for needed in ("python3 ops/model_safety/quality_gate.py --after $CUTOVER_TS",
                   "python3 ops/model_safety/scoreboard.py", "python3 ops/model_safety/qsc_monitor.py --duration 3",
                   "nohup python3 ops/model_safety/qsc_monitor.py > logs/qsc_monitor.log 2>&1 &"):
        assert needed in commands


def test_the_list_format_is_checked() -> None:
    with pytest.raises(AssertionError, match="expected 4 fields"):
        load_entries("001:1 || python3 ops/model_safety/scoreboard.py || scoreboard\n")


@pytest.mark.parametrize("entry", [e for e in SHIM_ENTRIES if e.script and e.script.suffix == ".py"
                                   and e.qtsafe != "REFUSED"], ids=ident)
def test_python_shim_maps_to_the_listed_command(entry: Entry) -> None:
    assert entry.script is not None
    module = shim_module(entry.script)
    translate = getattr(module, "translate", None) or module.SHIM.translate
    assert translate(entry.script_args) == entry.expected


@pytest.mark.parametrize("entry", SHIM_ENTRIES, ids=ident)
def test_shim_runs_the_listed_command_with_any_interpreter(entry: Entry, tmp_path: Path) -> None:
    """The real file, run as written, finds a qtsafe on PATH and passes its exit code (3 here) through."""
    proc = run_without_qtsafe_module(entry, tmp_path, [stub_bin(tmp_path, exit_code=3)])
    if entry.qtsafe == "REFUSED":
        assert proc.returncode == 2 and proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1 and "qtsafe canary activate --model" in proc.stderr
        return
    assert proc.returncode == 3, proc.stderr
    assert json.loads(proc.stdout) == entry.expected


@pytest.mark.parametrize("entry", [e for e in SHIM_ENTRIES if e.qtsafe != "REFUSED"], ids=ident)
def test_without_qtsafe_the_shim_says_how_to_install_it(entry: Entry, tmp_path: Path) -> None:
    proc = run_without_qtsafe_module(entry, tmp_path, [])
    assert proc.returncode == 2
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "qtsafe is not installed" in proc.stderr and "-m pip install" in proc.stderr


# ---- refusals ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("script", "argv", "suggests"), [
    ("qsc_monitor.py", ["--interval", "30"], "qtsafe monitor --duration 3h --interval 30s"),
    ("qsc_monitor.py", ["--cycles", "720"], "qtsafe monitor"),
    ("quality_gate.py", ["--after", "X", "--min-events", "50"], "qtsafe quality-gate --mode canary"),
    ("feature_sanity.py", ["2026-01-10"], "qtsafe feature-sanity --after CUTOVER --last 200"),
    ("scoreboard.py", ["--after"], "qtsafe scoreboard"),
    ("qsc_mode.py", ["--model", "patchtst", "--weight", "0.1"], "qtsafe canary activate"),
])
def test_what_a_shim_cannot_map_is_refused_in_one_line(script: str, argv: list[str], suggests: str,
                                                       tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PATH": f"{stub_bin(tmp_path)}{os.pathsep}/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(OPS / script), *argv], capture_output=True, text=True, env=env,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and suggests in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bare_duration_is_hours_and_a_unit_passes_as_it_is() -> None:
    shim = shim_module(OPS / "qsc_monitor.py").SHIM
    assert shim.translate(["--duration", "3"]) == ["monitor", "--duration", "3h"]
    assert shim.translate(["--duration=1.5"]) == ["monitor", "--duration", "1.5h"]
    assert shim.translate(["--duration", "90m", "--interval", "10s"]) == [
        "monitor", "--duration", "90m", "--interval", "10s"]
    assert shim.translate(["--replay", "1-0", "2-0", "--model", "patchtst"]) == [
        "monitor", "--replay", "1-0", "2-0", "--model", "patchtst"]


# ---- the read-only commands against a simulated stream -------------------------------------------------

def _run_in_process(entry: Entry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                    ) -> tuple[int, str, str]:
    assert entry.script is not None
    monkeypatch.setattr(sys, "argv", [str(entry.script), *entry.script_args])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(entry.script), run_name="__main__")
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 2), out, err


@pytest.mark.parametrize("entry", RUN_ENTRIES, ids=ident)
def test_read_only_command_on_a_simulated_stream(entry: Entry, fake_redis: Any, make_stream: Any,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    scenario, _, expected = entry.run.partition("=")
    monkeypatch.setenv("QTSAFE_BASE_DIR", str(tmp_path))
    monkeypatch.setenv("QTSAFE_FEATURE_SANITY_EXPECTED_CONSTANT", "position_size_usd,leverage,total_models")
    words = entry.words
    if entry.qtsafe == "(file)" or entry.qtsafe == "(syntax)":
        code = subprocess.run(words, cwd=REPO, capture_output=True).returncode
    elif entry.script is not None and entry.script.suffix == ".sh":
        code = subprocess.run(["bash", str(entry.script), *entry.script_args], capture_output=True,
                              env={**os.environ, "PATH": "/usr/bin:/bin"}).returncode
    else:
        make_stream(fake_redis, scenario, 400, end=NOW)
        code, out, err = _run_in_process(entry, monkeypatch, capsys)
        assert "Traceback" not in err
        if code == 2:
            assert err.strip() and len(err.strip().splitlines()) == 1 or "FAIL" in out, err
    assert code == int(expected), entry.command


def test_gate_output_redirected_to_a_txt_file(redis_server: Any, real_redis: Any, tmp_path: Path) -> None:
    """002:305 as a real process: the verdict lands in the .txt, the exit code is the gate's."""
    url = redis_server.url
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")},
           "PYTHONPATH": str(REPO / "src"), "QTSAFE_REDIS_URL": url}
    sim = subprocess.run([sys.executable, "-m", "qtsafe", "simulate", "--scenario", "healthy", "--events", "1500",
                          "--redis-url", url], capture_output=True, text=True, env=env, timeout=60)
    assert sim.returncode == 0, sim.stderr
    (tmp_path / "reports" / "safety").mkdir(parents=True)
    line = ("python3 ops/model_safety/quality_gate.py --after 2026-01-10T05:43:15Z "
            "> reports/safety/quality_gate_post_rollback.txt")
    script = line.replace("python3 ops/", f"{shlex.quote(sys.executable)} {shlex.quote(str(REPO))}/ops/")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    text = (tmp_path / "reports" / "safety" / "quality_gate_post_rollback.txt").read_text()
    assert proc.returncode == 0, proc.stderr
    assert text.startswith("PASS: quality gate (canary)"), text
    assert list((tmp_path / "reports" / "safety").glob("quality_gate_*_post_cutover.md"))
