"""A STAND-IN for systemctl/journalctl, for the demo sandbox only: it is not systemd and touches nothing else.

scripts/demo_canary.sh copies it into <sandbox>/bin as ``systemctl`` and ``journalctl``. It keeps one pretend
unit in <sandbox>/systemd-stand-in/unit.json: ``daemon-reload`` reads the ``Environment=`` lines of the unit file
and its drop-ins under $DEMO_SYSTEMD_DIR (as systemd would), ``restart`` marks the unit active, ``is-active`` and
``show -p Environment|ActiveState|LoadState|ActiveEnterTimestamp`` answer from that state. Every call is
announced on stderr and appended to <sandbox>/systemd-stand-in/calls.log, so the newcomer sees what qtsafe asked.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

SANDBOX = Path(os.environ["DEMO_SANDBOX"])
STATE = SANDBOX / "systemd-stand-in"
SYSTEMD_DIR = Path(os.environ["DEMO_SYSTEMD_DIR"])
UNIT = os.environ.get("DEMO_UNIT", "quantum-ai-engine.service")


def configured_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    files = [SYSTEMD_DIR / UNIT, *sorted((SYSTEMD_DIR / f"{UNIT}.d").glob("*.conf"))]
    for path in files:
        if not path.is_file():
            continue
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if line.startswith("Environment="):
                operand = line[len("Environment="):]
                if not operand:
                    env.clear()
                for word in shlex.split(operand):
                    name, _, value = word.partition("=")
                    env[name] = value
    return env


def quote(word: str) -> str:
    if any(ch in word for ch in ' "\\`$*?[{}~\'()<>|&;!'):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def systemctl(args: list[str]) -> int:
    path = STATE / "unit.json"
    unit: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {
        "state": "active", "env": configured_environment(), "since": time.strftime("%a %Y-%m-%d %H:%M:%S UTC",
                                                                                   time.gmtime())}
    verb = args[0] if args else ""
    code = 0
    if verb == "daemon-reload":
        unit["env"] = configured_environment()
    elif verb == "restart":
        unit["state"] = "active"
        unit["since"] = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime())
    elif verb == "is-active":
        print(unit["state"])
        code = 0 if unit["state"] == "active" else 3
    elif verb == "show" and "-p" in args:
        prop = args[args.index("-p") + 1]
        values = {"Environment": " ".join(quote(f"{k}={v}") for k, v in unit["env"].items()),
                  "ActiveState": unit["state"], "LoadState": "loaded", "ActiveEnterTimestamp": unit["since"]}
        print(f"{prop}={values.get(prop, '')}")
    else:
        print(f"stand-in systemctl: '{' '.join(args)}' is not something this demo stand-in does", file=sys.stderr)
        code = 1
    tmp = STATE / ".unit.json.tmp"
    tmp.write_text(json.dumps(unit))
    os.replace(tmp, path)
    return code


def main() -> int:
    name = Path(sys.argv[0]).name
    args = sys.argv[1:]
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "calls.log", "a") as log:
        log.write(f"{time.strftime('%H:%M:%S', time.gmtime())} {name} {' '.join(args)}\n")
    print(f"[demo stand-in {name}, not systemd] {name} {' '.join(args)}", file=sys.stderr)
    if name == "journalctl":
        print(f"-- demo stand-in journalctl: there is no real {UNIT} and no real journal in this sandbox --")
        return 0
    return systemctl(args)


if __name__ == "__main__":
    sys.exit(main())
