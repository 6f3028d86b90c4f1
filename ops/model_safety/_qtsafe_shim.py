"""The one helper behind the runbook-named shims: map old arguments to a qtsafe command and run it.

Each shim states its mapping as a :class:`Shim` (target command, renamed options, bare-number units, defaults);
``translate`` is pure so the runbook-command test can check every mapping without running anything. Running
prefers the qtsafe of the interpreter the operator typed (``/opt/quantum/venvs/ai-engine/bin/python
ops/model_safety/quality_gate.py``), in the same process, so the exit code (0/2/3), the PID (``nohup ... &
echo $!``) and SIGTERM handling are qtsafe's own; then a ``qtsafe`` on PATH; else one line saying how to install
it, exit 2. Anything a shim cannot map is refused with one line naming the qtsafe command to use, exit 2.

Also runnable as ``python3 _qtsafe_shim.py ARGS...`` (the bash shims use it): run ``qtsafe ARGS`` as above.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parents[2]
BARE_NUMBER = re.compile(r"\d+(?:\.\d+)?")


class Refused(Exception):
    """An argument this shim cannot map faithfully; the message names the qtsafe command to use instead."""


@dataclasses.dataclass(frozen=True)
class Shim:
    """How one old script's arguments become a qtsafe command line."""

    name: str                                    # the script's runbook name, for messages
    command: tuple[str, ...]                     # e.g. ("quality-gate",)
    example: str                                 # the qtsafe command to suggest when refusing
    renames: dict[str, str] = dataclasses.field(default_factory=dict)      # old option -> qtsafe option
    units: dict[str, str] = dataclasses.field(default_factory=dict)        # option -> unit for a bare number
    no_bare_numbers: dict[str, str] = dataclasses.field(default_factory=dict)  # option -> why a bare number is refused
    defaults: tuple[tuple[str, str], ...] = ()   # (option, value) added when the old script had that default
    options: dict[str, int] | None = None        # qtsafe option -> values it takes (None: ask this qtsafe)

    def refuse(self, what: str) -> Refused:
        return Refused(f"{self.name}: cannot map {what}; use the qtsafe command instead: {self.example} "
                       f"(see 'qtsafe {' '.join(self.command)} --help')")

    def translate(self, argv: Sequence[str]) -> list[str]:
        """The qtsafe arguments for ``argv`` (pure; raises :class:`Refused`)."""
        known = self.options if self.options is not None else command_options(self.command)
        out: list[str] = []
        given: set[str] = set()
        args = list(argv)
        while args:
            word = args.pop(0)
            if word in ("-h", "--help"):
                return [*self.command, "--help"]
            if not word.startswith("-") or word == "-":
                raise self.refuse(f"the argument {word!r}")
            option, has_value, value = word.partition("=")
            target = self.renames.get(option, option)
            if known is not None and target not in known:
                raise self.refuse(f"the option {option}")
            given.add(target)
            arity = known.get(target, 1) if known is not None else 1
            if arity != 1:
                if has_value or len(args) < arity:
                    raise self.refuse(f"{word!r} ({option} takes {arity} values)")
                out += [target, *args[:arity]]
                del args[:arity]
                continue
            if not has_value:
                mapped = target in self.renames.values() or target in self.units or target in self.no_bare_numbers
                if known is None and not mapped and (not args or args[0].startswith("-")):
                    out.append(target)  # qtsafe is on PATH only: an option not followed by a value is a flag
                    continue
                if not args:
                    raise self.refuse(f"{option} without a value")
                value = args.pop(0)
            if target in self.units and BARE_NUMBER.fullmatch(value.strip()):
                value = value.strip() + self.units[target]
            elif target in self.no_bare_numbers and BARE_NUMBER.fullmatch(value.strip()):
                raise self.refuse(f"{option} {value} ({self.no_bare_numbers[target]})")
            out += [target, value]
        missing = [word for option, value in self.defaults if option not in given for word in (option, value)]
        return [*self.command, *missing, *out]


def _qtsafe_command(path: Sequence[str]) -> object | None:
    """The Click command for ``path`` from this interpreter's qtsafe, or None when it is not importable."""
    if importlib.util.find_spec("qtsafe") is None:
        return None
    from qtsafe.cli import cli

    command: object = cli
    for name in path:
        command = command.get_command(None, name)  # type: ignore[attr-defined]
        if command is None:
            return None
    return command


def command_options(path: Sequence[str]) -> dict[str, int] | None:
    """Every option the qtsafe command accepts and how many values it takes (None: qtsafe not importable here)."""
    command = _qtsafe_command(path)
    if command is None:
        return None
    return {o: 0 if getattr(p, "is_flag", False) else p.nargs
            for p in command.params for o in (*p.opts, *p.secondary_opts)}  # type: ignore[attr-defined]


def install_hint() -> str:
    source = str(REPO) if (REPO / "pyproject.toml").exists() else "qtsafe"
    return (f"qtsafe is not installed for {sys.executable} and no 'qtsafe' is on PATH: install it with "
            f"'{sys.executable} -m pip install {source}' (or run this shim with the interpreter that has it)")


def run(args: Sequence[str], *, name: str = "qtsafe shim") -> NoReturn:
    """Run ``qtsafe ARGS`` and exit with its code; never returns."""
    if importlib.util.find_spec("qtsafe") is not None:
        from qtsafe.cli import cli

        cli.main(list(args), prog_name="qtsafe")  # exits with qtsafe's own code (0/2/3)
        sys.exit(2)  # pragma: no cover - main always exits
    binary = shutil.which("qtsafe")
    if binary:
        os.execv(binary, [binary, *args])  # same PID, qtsafe's own exit code
    print(f"{name}: {install_hint()}", file=sys.stderr)
    sys.exit(2)


def main(shim: Shim, argv: Sequence[str] | None = None, *,
         translate: Callable[[Sequence[str]], list[str]] | None = None) -> NoReturn:
    """Translate, then run; a refusal is one line on stderr and exit 2."""
    try:
        args = (translate or shim.translate)(sys.argv[1:] if argv is None else argv)
    except Refused as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(2)
    run(args, name=shim.name)


if __name__ == "__main__":
    run(sys.argv[1:])
