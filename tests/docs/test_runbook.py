"""Every qtsafe command in docs/runbook.md (and in the help examples) must parse against the real CLI.

Command lines are taken from the shell code blocks, continuation lines joined, prompts, ``sudo``,
variable assignments, comments, pipes and redirections removed. Each one is then parsed by Click
itself, command by command down the tree, with ``resilient_parsing=False``: an unknown command or
option, a bad choice, a missing required option or a stray argument is an error. Nothing is run.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from tests.docs._docs_helpers import REPO, load_generator

gen = load_generator()
ROOT = gen.load_cli()
RUNBOOK = REPO / "docs" / "runbook.md"
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
OPERATORS = {";", "&&", "||", "|", "&", "(", ")", "{", "}"}
# Values for the shell variables the runbook uses, so typed options see a realistic value.
SAMPLE_VALUES = {"CUTOVER": "2026-01-10T05:40:00Z", "MODEL": "patchtst", "BASE": "/home/qt/quantum_trader"}
REQUIRED_COMMANDS = (
    "doctor", "feature-sanity", "quality-gate", "scoreboard", "canary activate", "canary status", "monitor",
    "canary promote", "canary rollback", "incident-bundle", "journal verify", "model scan", "build-dataset",
)


# ---- extraction --------------------------------------------------------------------------------------

def code_blocks(markdown: str) -> Iterator[tuple[int, str, list[str]]]:
    """(first line number, language, lines) of every fenced code block."""
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^\s*```(\S*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        start, language, body = i + 1, match.group(1).lower(), []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        yield start + 1, language, body
        i += 1


def logical_lines(body: list[str], first: int) -> Iterator[tuple[int, str]]:
    """Join backslash continuations; drop console prompts."""
    pending, start = "", first
    for number, raw in enumerate(body, start=first):
        line = raw.rstrip()
        if not pending:
            start = number
            line = re.sub(r"^\s*\$\s+", "", line)
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def simple_commands(line: str) -> list[list[str]]:
    """The shell line split into simple commands (operators, redirections and comments removed)."""
    line = re.sub(r"\s\d?(>>?|<)&?\s*\S+", " ", line)  # 2>&1, > file, >> log, < file
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise AssertionError(f"cannot split {line!r}: {exc}") from exc
    out: list[list[str]] = [[]]
    for token in tokens:
        if token in OPERATORS:
            out.append([])
        else:
            out[-1].append(token)
    return [c for c in out if c]


def qtsafe_arguments(words: list[str]) -> list[str] | None:
    """The arguments after ``qtsafe`` (or ``python -m qtsafe``), or None for another program."""
    words = list(words)
    while words and (words[0] in ("sudo", "exec", "time") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])
                     or (words[0].startswith("-") and len(words) > 1)):
        words.pop(0)
    if not words:
        return None
    if words[0] == "qtsafe" or words[0].endswith("/qtsafe"):
        return words[1:]
    if re.search(r"python3?$", words[0]) and words[1:3] == ["-m", "qtsafe"]:
        return words[3:]
    return None


def qtsafe_commands(markdown: str) -> list[tuple[int, list[str]]]:
    """(line number, arguments) of every qtsafe invocation in the shell code blocks."""
    found = []
    for first, language, body in code_blocks(markdown):
        if language not in SHELL_LANGUAGES:
            continue
        for number, line in logical_lines(body, first):
            for words in simple_commands(line):
                args = qtsafe_arguments(words)
                if args is not None:
                    found.append((number, args))
    return found


def make_targets(markdown: str) -> list[tuple[int, str]]:
    found = []
    for first, language, body in code_blocks(markdown):
        if language in SHELL_LANGUAGES:
            for number, line in logical_lines(body, first):
                for words in simple_commands(line):
                    while words and (words[0] == "sudo" or re.match(r"^[A-Za-z_]\w*=", words[0])):
                        words = words[1:]
                    if words[:1] == ["make"]:
                        found += [(number, w) for w in words[1:] if not w.startswith("-") and "=" not in w]
    return found


# ---- parsing against the Click tree ------------------------------------------------------------------

def substitute(arg: str) -> str:
    def value(match: re.Match[str]) -> str:
        return SAMPLE_VALUES.get(match.group(1) or match.group(2), "X")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, arg)


def parse_problem(args: list[str]) -> str | None:
    """None if Click accepts ``qtsafe ARGS`` (command path, every option, values, required options)."""
    args = [substitute(a) for a in args]
    wants_help = any(a in ("--help", "-h") for a in args)
    args = [a for a in args if a not in ("--help", "-h")]
    command: click.Command = ROOT
    try:
        ctx = ROOT.make_context("qtsafe", list(args), resilient_parsing=wants_help)
        while isinstance(command, click.Group):
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if not rest:  # a group that runs without a subcommand (`qtsafe monitor`) takes none
                return None if wants_help or command.invoke_without_command else "no command given"
            name, sub, rest = command.resolve_command(ctx, rest)
            assert sub is not None and name is not None
            ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=wants_help)
            command = sub
    except click.exceptions.Exit:
        return None  # --version (eager) ends parsing the way the real CLI does
    except click.ClickException as exc:
        return exc.format_message()
    return None


def runbook_problems(markdown: str) -> list[str]:
    return [f"line {number}: qtsafe {shlex.join(args)}: {problem}"
            for number, args in qtsafe_commands(markdown) if (problem := parse_problem(args)) is not None]


def help_examples() -> list[tuple[str, list[str]]]:
    """Every example command line in every --help text (continuations joined)."""
    out = []
    for path, _command in gen.iter_commands(ROOT):
        text = gen.help_text(ROOT, path)
        for _number, line in logical_lines(text.splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("qtsafe "):
                for words in simple_commands(stripped):
                    args = qtsafe_arguments(words)
                    if args is not None:
                        out.append((" ".join(path), args))
    return out


# ---- the runbook -------------------------------------------------------------------------------------

def test_runbook_exists_and_has_commands() -> None:
    commands = qtsafe_commands(RUNBOOK.read_text(encoding="utf-8"))
    assert len(commands) >= 40


def test_every_runbook_command_parses() -> None:
    problems = runbook_problems(RUNBOOK.read_text(encoding="utf-8"))
    assert problems == [], "\n".join(problems)


def test_runbook_covers_the_whole_loop() -> None:
    seen = {" ".join(a for a in args[:2] if not a.startswith("-"))
            for _n, args in qtsafe_commands(RUNBOOK.read_text(encoding="utf-8"))}
    seen |= {s.split(" ")[0] for s in seen}
    missing = [c for c in REQUIRED_COMMANDS if c not in seen]
    assert missing == []


def test_runbook_make_targets_exist() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+):", makefile, flags=re.M))
    missing = [f"line {n}: make {t}" for n, t in make_targets(RUNBOOK.read_text(encoding="utf-8"))
               if t not in targets]
    assert missing == []


@pytest.mark.parametrize(("where", "args"), help_examples(), ids=lambda x: x if isinstance(x, str) else "")
def test_help_examples_parse(where: str, args: list[str]) -> None:
    assert parse_problem(args) is None, f"{where}: example 'qtsafe {shlex.join(args)}': {parse_problem(args)}"


# ---- the checks can fail -----------------------------------------------------------------------------

FAKE_RUNBOOK = """\
Run `qtsafe not-a-command` in prose: not extracted.

```bash
cd /home/qt/quantum_trader
$ qtsafe doctor
sudo /opt/quantum/venvs/ai-engine/bin/qtsafe canary activate \\
    --model patchtst --dry-run      # a comment
/opt/quantum/venvs/ai-engine/bin/python -m qtsafe scoreboard --after "$CUTOVER"; echo "exit $?"
qtsafe quality-gate --mode canary --cutover 2026-01-10T05:40:00Z 2>&1 | tee gate.log
qtsafe canary promot --to 0.25 --reason x
qtsafe canary promote --to 0.3 --reason x
QTSAFE_UNIT=quantum-ai_engine.service qtsafe quality-gate --after auto
qtsafe feature-sanity --last many
make quality-gate CUTOVER=auto && make no-such-target
```

```text
qtsafe this is output, not a command
```
"""


def test_extraction_finds_each_invocation() -> None:
    found = qtsafe_commands(FAKE_RUNBOOK)
    assert [args[:2] for _n, args in found] == [
        ["doctor"], ["canary", "activate"], ["scoreboard", "--after"], ["quality-gate", "--mode"],
        ["canary", "promot"], ["canary", "promote"], ["quality-gate", "--after"], ["feature-sanity", "--last"],
    ]
    assert found[1][1] == ["canary", "activate", "--model", "patchtst", "--dry-run"]
    assert found[3][1][-1] == "2026-01-10T05:40:00Z"


def test_bad_commands_are_reported() -> None:
    problems = runbook_problems(FAKE_RUNBOOK)
    joined = "\n".join(problems)
    assert len(problems) == 5, joined
    assert "--cutover" in problems[0] and "No such option" in problems[0]
    assert "No such command 'promot'" in problems[1]
    assert "'0.3' is not one of" in problems[2]
    assert "Missing option '--mode'" in problems[3]
    assert "'many' is not a valid integer" in problems[4]


def test_good_commands_pass() -> None:
    assert parse_problem(["doctor"]) is None
    assert parse_problem(["--config", "/home/qt/quantum_trader/qtsafe.toml", "canary", "status", "--json"]) is None
    assert parse_problem(["monitor", "--replay", "1768024065847-0", "1768045665847-0", "--model", "patchtst"]) is None
    assert parse_problem(["monitor", "--help"]) is None
    assert parse_problem(["monitor", "--nope", "--help"]) is None  # help short-circuits, like the real CLI
    assert parse_problem(["--version"]) is None


def test_make_targets_are_checked() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+):", makefile, flags=re.M))
    found = [t for _n, t in make_targets(FAKE_RUNBOOK)]
    assert found == ["quality-gate", "no-such-target"]
    assert [t for t in found if t not in targets] == ["no-such-target"]


def test_fixture_paths() -> None:
    assert isinstance(RUNBOOK, Path)


# ---- the old commands' table -------------------------------------------------------------------------

def old_commands_table(markdown: str) -> list[list[str]]:
    """Rows (old, qtsafe, what changed) of the table in 'From the old runbooks'."""
    section = markdown.split("## From the old runbooks", 1)[1].split("\n## ", 1)[0]
    rows = [re.split(r"(?<!\\)\|", line.strip())[1:-1] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| old command")]
    return [[cell.strip() for cell in row] for row in rows]


def test_every_shim_has_a_row_in_the_old_commands_table() -> None:
    rows = old_commands_table(RUNBOOK.read_text(encoding="utf-8"))
    assert rows and all(len(row) == 3 and all(row) for row in rows), rows
    shims = sorted(p.name for p in (REPO / "ops" / "model_safety").iterdir()
                   if p.suffix in (".py", ".sh") and not p.name.startswith("_"))
    missing = [name for name in shims if not any(name in row[0] for row in rows)]
    assert missing == []
    mapped = " ".join(row[1] for row in rows)
    for command in ("qtsafe quality-gate --mode canary --after", "qtsafe feature-sanity --after", "--last 200",
                    "qtsafe scoreboard", "qtsafe monitor --duration 3h", "qtsafe canary rollback"):
        assert command in mapped


def test_old_commands_table_check_can_fail() -> None:
    table = "## From the old runbooks\n\n| old command | qtsafe | changed |\n|---|---|---|\n| `x.py` | `qtsafe x` | |\n"
    rows = old_commands_table(table)
    assert rows == [["`x.py`", "`qtsafe x`", ""]]
    assert not all(all(row) for row in rows)
