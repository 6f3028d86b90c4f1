#!/usr/bin/env python3
"""Generate docs/cli.md from the Click command tree, and the settings tables of docs/configuration.md.

    python scripts/gen_cli_docs.py            # write both files
    python scripts/gen_cli_docs.py --check    # exit 1 with one line if either file on disk is stale

docs/cli.md is generated whole. docs/configuration.md is written by hand except the part between
the two GENERATED markers, which comes from the dataclasses in ``qtsafe.config``.

The output must not depend on the machine: help is rendered at a fixed width, with every ``QTSAFE_*``
variable (and COLUMNS) removed from the environment while it is rendered.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import os
import re
import sys
import tempfile
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

REPO = Path(__file__).resolve().parents[1]
CLI_DOC = REPO / "docs" / "cli.md"
CONFIG_DOC = REPO / "docs" / "configuration.md"
WIDTH = 100
BEGIN = "<!-- BEGIN GENERATED: settings tables (scripts/gen_cli_docs.py --config); do not edit by hand -->"
END = "<!-- END GENERATED: settings tables -->"

# qtsafe.config documents the section rules in field metadata; the top-level keys carry no text there,
# so their meaning lives here. A key added to Settings without a line here fails the docs tests.
TOP_LEVEL_MEANING = {
    "base_dir": "Base directory of `reports/safety/`, `data/` and `logs/` (the runbook layout).",
    "redis_url": "Redis holding the telemetry stream. A password in it is masked in every message.",
    "stream": "Stream key of the `trade.intent` telemetry.",
    "redis_timeout": "Seconds a Redis connect or command may take before it counts as an error. Must be > 0.",
    "page_size": "Entries per XRANGE page when reading the stream (1 to 100000).",
    "charts": "Draw a PNG chart beside the gate, scoreboard and monitor reports (needs the charts extra; a chart "
              "is never evidence). `--no-charts` turns it off for one run.",
    "read_workers": "Processes that read a large stream in parallel time slices (1 to 16; 1 reads in one process).",
    "parallel_min_entries": "Stream length (XLEN) from which the gates and scoreboard read with read_workers.",
    "unit": "systemd unit of the AI engine. Some hosts name it `quantum-ai_engine.service`.",
    "env_file": "The engine's env file. Backed up before a canary; edited only in `--env-key` mode; "
                "never put into an incident bundle.",
    "systemd_dir": "Where unit drop-ins live: `<systemd_dir>/<unit>.d/qsc_canary.conf`.",
    "backup_dir": "Timestamped backups of the env file, the baseline weights and existing drop-ins.",
    "weights_variable": "Environment variable through which the engine reads its ensemble weights (JSON).",
    "weights_file": "JSON weights file used as the baseline when the unit's environment has no "
                    "`weights_variable`. Empty: none (activation is refused without live weights).",
    "engine_repo": "Git checkout of the engine; its commit hash is recorded as proof on activation. "
                   "Empty: not recorded.",
    "systemctl": "The `systemctl` binary (a name on PATH or a path). Tests point it at a fake.",
    "journalctl": "The `journalctl` binary (a name on PATH or a path).",
}

SECTION_TITLES = {
    "thresholds": "`[thresholds]`: the quality rules (quality-gate, scoreboard, monitor, model gate)",
    "feature_sanity": "`[feature_sanity]`: rules for `qtsafe feature-sanity`",
    "monitor": "`[monitor]`: the canary watch and its watchdog",
    "canary": "`[canary]`: the canary lifecycle",
    "outcomes": "`[outcomes]`: outcome scoring and the promotion rule to 0.5 and 1.0",
}


@contextlib.contextmanager
def clean_environ() -> Iterator[None]:
    """Remove QTSAFE_* and terminal-size variables while rendering, and render in an empty working directory
    (--help shows the defaults a qtsafe.toml there would set); put both back afterwards."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("QTSAFE_") or k in ("COLUMNS", "LINES")}
    for key in saved:
        del os.environ[key]
    cwd = os.getcwd()
    try:
        with tempfile.TemporaryDirectory(prefix="qtsafe-docs-") as empty:
            os.chdir(empty)
            try:
                yield
            finally:
                os.chdir(cwd)
    finally:
        os.environ.update(saved)


def load_cli() -> click.Command:
    with clean_environ():
        from qtsafe.cli import cli
    return cli


def iter_commands(
    command: click.Command, path: tuple[str, ...] = ("qtsafe",)
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and subcommand, depth first, subcommands in name order (the root first)."""
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in sorted(command.list_commands(ctx)):  # the root group loads its commands lazily
            sub = command.get_command(ctx, name)
            assert sub is not None
            yield from iter_commands(sub, (*path, name))


def _context_for(root: click.Command, path: tuple[str, ...]) -> click.Context:
    ctx = click.Context(root, info_name=path[0], terminal_width=WIDTH, max_content_width=WIDTH,
                        **{k: v for k, v in root.context_settings.items()
                           if k not in ("terminal_width", "max_content_width")})
    command = root
    for name in path[1:]:
        assert isinstance(command, click.Group)
        sub = command.get_command(ctx, name)
        assert sub is not None
        command = sub
        ctx = click.Context(command, info_name=name, parent=ctx, **command.context_settings)
    return ctx


def help_text(root: click.Command, path: tuple[str, ...]) -> str:
    """The command's full --help text at the fixed width, trailing spaces removed."""
    with clean_environ():
        ctx = _context_for(root, path)
        text = ctx.command.get_help(ctx)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def summary(command: click.Command) -> str:
    """The one-line summary: the first paragraph of the help, joined onto one line."""
    if command.short_help:
        return command.short_help.strip()
    first = inspect.cleandoc(command.help or "").split("\n\n", 1)[0]
    return " ".join(first.replace("\b", " ").split())


def anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


def render_cli_doc(root: click.Command | None = None) -> str:
    root = root or load_cli()
    commands = list(iter_commands(root))
    out = [
        "# qtsafe command-line reference",
        "",
        "<!-- Generated by scripts/gen_cli_docs.py from the Click command tree. Do not edit by hand. -->",
        "",
        "This file is generated by `scripts/gen_cli_docs.py` from the Click command tree: every command and",
        "subcommand with its full `--help` text. Do not edit it by hand; run `python scripts/gen_cli_docs.py`",
        "after changing a command, and `python scripts/gen_cli_docs.py --check` to see if it is stale",
        "(the tests in `tests/docs/` fail when it is).",
        "",
        "Exit codes everywhere: 0 PASS / GO, 2 FAIL / NO-GO / BLOCKED / any error, 3 COLLECTED / WAIT.",
        "Global options (`--config`, `--debug`, `--metrics-file`) go before the command name.",
        "What to do for each exit code and finding: [runbook.md](runbook.md).",
        "Every setting: [configuration.md](configuration.md).",
        "",
        "## Contents",
        "",
    ]
    for path, command in commands:
        title = " ".join(path)
        indent = "  " * (len(path) - 1)
        out.append(f"{indent}- [`{title}`](#{anchor(title)}): {summary(command)}")
    for path, command in commands:
        title = " ".join(path)
        out += ["", f"## {title}", "", summary(command), "", "```text", help_text(root, path), "```"]
    return "\n".join(out) + "\n"


# ---- configuration tables --------------------------------------------------------------------------

def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return "list of names"
    return {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path"}.get(hint, str(hint))


def _default_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(value) if value else "(empty)"
    if isinstance(value, Path):
        return str(value)
    if value == "":
        return "(empty)"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _flags_by_env(root: click.Command) -> dict[str, list[str]]:
    """Environment variable -> the command-line flags that read it (found in the Click tree)."""
    flags: dict[str, set[str]] = {}
    for _path, command in iter_commands(root):
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(param, click.Option) and isinstance(envvar, str):
                flags.setdefault(envvar, set()).add(max(param.opts, key=len))
    return {k: sorted(v) for k, v in flags.items()}


def env_name(key: str, section: str | None = None) -> str:
    return f"QTSAFE_{section.upper()}_{key.upper()}" if section else f"QTSAFE_{key.upper()}"


def render_config_tables(root: click.Command | None = None) -> str:
    """Markdown tables of every setting, generated from the dataclasses in qtsafe.config."""
    from qtsafe import config

    root = root or load_cli()
    flags = _flags_by_env(root)
    sections = {f.name: f for f in dataclasses.fields(config.Settings) if f.name in config._SECTION_TYPES}
    hints = typing.get_type_hints(config.Settings)
    defaults = config.Settings()
    out = ["### Top-level keys", "",
           "| key | type | default | environment | flag | meaning |", "|---|---|---|---|---|---|"]
    for fld in dataclasses.fields(config.Settings):
        if fld.name in sections or fld.name == "config_file":
            continue
        env = env_name(fld.name)
        flag = ", ".join(f"`{f}`" for f in flags.get(env, [])) or "-"
        meaning = TOP_LEVEL_MEANING.get(fld.name, "(undocumented)")
        out.append(f"| `{fld.name}` | {_type_name(hints[fld.name])} | `{_default_text(getattr(defaults, fld.name))}` "
                   f"| `{env}` | {flag} | {_cell(meaning)} |")
    for name in config._SECTIONS:
        cls = config._SECTION_TYPES[name]
        section_hints = typing.get_type_hints(cls)
        instance = cls()
        out += ["", f"### {SECTION_TITLES.get(name, f'`[{name}]`')}", "",
                "| key | type | default | environment | looser when | meaning |", "|---|---|---|---|---|---|"]
        for fld in dataclasses.fields(cls):
            kind = fld.metadata.get("kind")
            looser = config._LOOSER_WHEN.get(kind, "not tracked")
            out.append(f"| `{fld.name}` | {_type_name(section_hints[fld.name])} "
                       f"| `{_default_text(getattr(instance, fld.name))}` | `{env_name(fld.name, name)}` | {looser} "
                       f"| {_cell(str(fld.metadata.get('doc', '(undocumented)')))} |")
    return "\n".join(out) + "\n"


def splice_config_doc(current: str, tables: str) -> str:
    """The configuration document with the generated part replaced. Raises ValueError without markers."""
    start, stop = current.find(BEGIN), current.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"{display(CONFIG_DOC)} lacks the GENERATED markers")
    return current[: start + len(BEGIN)] + "\n\n" + tables + "\n" + current[stop:]


# ---- main ------------------------------------------------------------------------------------------

def expected_files() -> dict[Path, str]:
    """Every generated file and the text it should hold now."""
    root = load_cli()
    files = {CLI_DOC: render_cli_doc(root)}
    current = CONFIG_DOC.read_text(encoding="utf-8") if CONFIG_DOC.exists() else ""
    files[CONFIG_DOC] = splice_config_doc(current, render_config_tables(root))
    return files


def display(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def stale_files() -> list[Path]:
    out = []
    for path, text in expected_files().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file on disk is stale")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = stale_files()
            if stale:
                names = ", ".join(display(p) for p in stale)
                print(f"stale: {names} differ from the code; run python scripts/gen_cli_docs.py", file=sys.stderr)
                return 1
            return 0
        for path, text in expected_files().items():
            path.write_text(text, encoding="utf-8")
            print(f"wrote {display(path)}")
    except (OSError, ValueError) as exc:
        print(f"gen_cli_docs: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
