"""A fake ``systemctl`` / ``journalctl`` for the canary tests (installed on PATH by conftest.py).

It records every call (argv, one JSON line) to ``$FAKE_SYSTEMD_STATE/calls.jsonl`` and behaves like a small
systemd: ``daemon-reload`` loads the unit file and its drop-ins' ``Environment=`` lines (``show -p
Environment`` answers from what was last loaded, as real systemd does), ``restart`` applies outcomes queued in
``control.json``:

    {"restart": ["fail" | "die" | "hang" | "ok", ...],   # one entry consumed per restart, then "ok"
     "daemon_reload": ["fail" | "ok", ...],
     "die_after_checks": 1,                               # "die": is-active says active this many times
     "hang_seconds": 30,
     "initial": "active"}
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

STATE = Path(os.environ["FAKE_SYSTEMD_STATE"])
ROOT = Path(os.environ["FAKE_SYSTEMD_ROOT"])
UNIT = os.environ.get("FAKE_SYSTEMD_UNIT", "quantum-ai-engine.service")


def _load(name: str, default: object) -> object:
    try:
        return json.loads((STATE / name).read_text())
    except FileNotFoundError:
        return default


def _save(name: str, value: object) -> None:
    tmp = STATE / f".{name}.tmp"
    tmp.write_text(json.dumps(value))
    os.replace(tmp, STATE / name)


def _pop(kind: str) -> str:
    control = _load("control.json", {})
    queue = control.get(kind, [])
    if not queue:
        return "ok"
    outcome = queue.pop(0)
    control[kind] = queue
    _save("control.json", control)
    return outcome


def _parse_environment_lines(path: Path, env: dict[str, str]) -> None:
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line.startswith("Environment="):
            continue
        operand = line[len("Environment="):]
        if not operand:
            env.clear()
            continue
        for word in shlex.split(operand):
            name, _, value = word.partition("=")
            env[name] = value


def _configured_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    unit_file = ROOT / UNIT
    if unit_file.exists():
        _parse_environment_lines(unit_file, env)
    dropins = ROOT / f"{UNIT}.d"
    if dropins.is_dir():
        for conf in sorted(dropins.glob("*.conf")):
            _parse_environment_lines(conf, env)
    return env


def _quote(word: str) -> str:
    # systemctl show quotes assignments holding shell-special characters, C-style.
    if any(ch in word for ch in ' "\\`$*?[{}~\'()<>|&;!'):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def systemctl(args: list[str]) -> int:
    unit = _load("unit.json", None)
    if unit is None:
        control = _load("control.json", {})
        unit = {"state": control.get("initial", "active"), "checks_left": None,
                "loaded_env": _configured_environment(), "active_enter": "Fri 2026-01-10 05:43:15 UTC"}
    code = 0
    verb = args[0] if args else ""
    if verb == "daemon-reload":
        if _pop("daemon_reload") == "fail":
            print("Failed to reload daemon: Access denied", file=sys.stderr)
            code = 1
        else:
            unit["loaded_env"] = _configured_environment()
    elif verb == "restart":
        outcome = _pop("restart")
        if outcome == "hang":
            _save("unit.json", unit)
            time.sleep(float(_load("control.json", {}).get("hang_seconds", 30)))
            return 0
        if outcome == "fail":
            unit["state"] = "failed"
            print(f"Job for {UNIT} failed because the control process exited with error code.", file=sys.stderr)
            code = 1
        else:
            unit["state"] = "active"
            unit["active_enter"] = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime())
            unit["checks_left"] = int(_load("control.json", {}).get("die_after_checks", 1)) if outcome == "die" \
                else None
    elif verb == "is-active":
        if unit["state"] == "active" and unit.get("checks_left") is not None:
            if unit["checks_left"] <= 0:
                unit["state"] = "failed"
            else:
                unit["checks_left"] -= 1
        print(unit["state"])
        code = 0 if unit["state"] == "active" else 3
    elif verb == "show":
        prop = args[args.index("-p") + 1] if "-p" in args else ""
        if prop == "Environment":
            print("Environment=" + " ".join(_quote(f"{k}={v}") for k, v in unit["loaded_env"].items()))
        elif prop == "LoadState":
            print("LoadState=loaded")
        elif prop == "ActiveState":
            print(f"ActiveState={unit['state']}")
        elif prop == "ActiveEnterTimestamp":
            print(f"ActiveEnterTimestamp={unit['active_enter']}")
        else:
            print(f"{prop}=")
    else:
        print(f"fake systemctl: unsupported {args}", file=sys.stderr)
        code = 1
    _save("unit.json", unit)
    return code


def journalctl(args: list[str]) -> int:
    count = int(args[args.index("-n") + 1]) if "-n" in args else 10
    for i in range(count):
        print(f"Jan 10 12:00:{i:02d} vps ai-engine[4242]: engine line {i}")
    return 0


def main() -> int:
    name = Path(sys.argv[0]).name
    args = sys.argv[1:]
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "calls.jsonl", "a") as handle:
        handle.write(json.dumps({"argv": [name, *args]}) + "\n")
    return journalctl(args) if name == "journalctl" else systemctl(args)


if __name__ == "__main__":
    sys.exit(main())
