"""One CLI vocabulary: --events FILE, --last N, --after/--until parsed alike and checked when parsed, --help that
shows the defaults in force and their environment variables, -q wherever progress is printed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from qtsafe.canary.journal import JournalShowResult, JournalVerifyResult
from qtsafe.canary.journal_text import render_show_text, render_verify_text
from qtsafe.cli import cli
from qtsafe.cli.options import Duration, SettingOption, UtcTimestamp
from qtsafe.status import Status

# Options allowed to differ from the vocabulary, with the reason. None today: rollback's old boolean --last is a
# hidden alias of --last-activation (hidden options are not the vocabulary), and every --after shares one parser.
ELSEWHERE: set[tuple[str, str]] = set()

# Commands that print progress or per-tick lines on stderr.
PROGRESS_COMMANDS = ("quality-gate", "feature-sanity", "scoreboard", "export", "monitor")


def commands(command: click.Command = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    if path:
        yield " ".join(path), command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            assert sub is not None
            yield from commands(sub, (*path, name))


def options_named(flag: str) -> list[tuple[str, click.Option]]:
    return [(name, p) for name, command in commands() for p in command.params
            if isinstance(p, click.Option) and flag in p.opts and (name, flag) not in ELSEWHERE
            and not p.hidden]  # a hidden old spelling (rollback's old --last) is not the vocabulary


def flat(text: str) -> str:
    return " ".join(text.split())


# ---- the same words mean the same things everywhere ---------------------------------------------------

def test_events_is_a_jsonl_file_everywhere() -> None:
    found = options_named("--events")  # shown options only: simulate's hidden --events N is the old --count
    assert {name for name, _ in found} >= {"quality-gate", "feature-sanity", "scoreboard", "canary activate"}
    assert "simulate" not in {name for name, _ in found}
    for name, option in found:
        assert isinstance(option.type, click.Path) and not option.type.dir_okay, name


def test_last_is_the_newest_n_everywhere() -> None:
    found = options_named("--last")
    assert {name for name, _ in found} >= {"quality-gate", "export", "journal show"}
    for name, option in found:
        assert isinstance(option.type, click.IntRange) and option.type.min == 1, name
        assert not option.is_flag and "newest N" in (option.help or ""), name


def test_after_until_end_share_one_parser() -> None:
    afters = options_named("--after")
    assert {name for name, _ in afters} >= {"quality-gate", "feature-sanity", "scoreboard", "export"}
    for name, option in afters:
        assert isinstance(option.type, UtcTimestamp) and option.type.allow_auto, name
    for flag in ("--until", "--end"):
        for name, option in options_named(flag):
            assert isinstance(option.type, UtcTimestamp) and not option.type.allow_auto, (name, flag)


@pytest.mark.parametrize("name", [n for n in PROGRESS_COMMANDS if (n, "--quiet") not in ELSEWHERE])
def test_quiet_wherever_progress_is_printed(name: str) -> None:
    command = dict(commands())[name]
    quiet = [p for p in command.params if isinstance(p, click.Option) and "--quiet" in p.opts]
    assert quiet and "-q" in quiet[0].opts


def test_every_option_read_from_the_environment_says_so() -> None:
    for name, command in commands():
        for p in command.params:
            if isinstance(p, click.Option) and p.envvar:
                assert p.show_envvar, f"{name} {p.opts[0]}"


# ---- bad values are refused while parsing, naming the option ------------------------------------------

@pytest.mark.parametrize(("args", "option"), [
    (["quality-gate", "--mode", "canary", "--after", "yesterday"], "--after"),
    (["feature-sanity", "--after", "2026-13-40T00:00:00Z"], "--after"),
    (["scoreboard", "--after", "auto", "--until", "tomorrow"], "--until"),
    (["export", "--out", "window.jsonl", "--after", "soon"], "--after"),
    (["simulate", "--out", "window.jsonl", "--end", "noon"], "--end"),
    (["simulate", "--out", "window.jsonl", "--spacing", "5 parsecs"], "--spacing"),
])
def test_bad_time_or_duration_is_a_usage_error_naming_the_option(run_cli, args: list[str], option: str) -> None:
    r = run_cli(*args)
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines()[-1].startswith(f"Error: Invalid value for '{option}': ")
    assert "Traceback" not in r.output
    assert not Path("window.jsonl").exists()  # refused before anything ran


def test_types_convert_what_they_accept() -> None:
    assert UtcTimestamp(allow_auto=True).convert("AUTO", None, None) == "AUTO"
    assert UtcTimestamp().convert("2026-01-10T05:40:00", None, None) == "2026-01-10T05:40:00"
    with pytest.raises(click.BadParameter, match="not an ISO 8601 timestamp"):
        UtcTimestamp().convert("auto", None, None)
    assert Duration().convert("2m", None, None) == 120.0
    assert Duration().convert(1.5, None, None) == 1.5
    with pytest.raises(click.BadParameter, match="not a duration"):
        Duration().convert("-3s", None, None)


# ---- simulate counts with --count ---------------------------------------------------------------------

def test_simulate_count_sets_the_number_of_entries(run_cli) -> None:
    r = run_cli("simulate", "--count", "7", "--out", "seven.jsonl", "--json")
    assert r.exit_code == 0, r.output
    assert len(Path("seven.jsonl").read_text().splitlines()) == 7
    assert r.stderr == ""


def test_simulate_events_n_still_works_but_says_it_is_deprecated(run_cli) -> None:
    r = run_cli("simulate", "--events", "5", "--out", "five.jsonl")
    assert r.exit_code == 0, r.output
    assert len(Path("five.jsonl").read_text().splitlines()) == 5
    assert r.stderr == ("qtsafe: warning: simulate --events N is deprecated; use --count N "
                        "(--events names a JSONL file in every other command)\n")
    shown = run_cli("simulate", "--help").stdout
    assert "--count" in shown and "--events" not in shown


def test_simulate_events_contradicting_count_is_refused(run_cli) -> None:
    r = run_cli("simulate", "--count", "5", "--events", "6", "--out", "x.jsonl")
    assert r.exit_code == 2
    assert "Invalid value for '--events'" in r.stderr and not Path("x.jsonl").exists()


# ---- --help shows the defaults in force ---------------------------------------------------------------

def test_help_shows_the_defaults_from_the_config_file_and_environment(run_cli) -> None:
    Path("qtsafe.toml").write_text('redis_url = "redis://cfg-host:6380/1"\nstream = "cfg:stream"\n'
                                   'base_dir = "/srv/quantum"\n')
    out = flat(run_cli("quality-gate", "--help").stdout)
    assert "env var: QTSAFE_REDIS_URL; default: redis://cfg-host:6380/1]" in out
    assert "env var: QTSAFE_STREAM; default: cfg:stream]" in out
    assert "env var: QTSAFE_BASE_DIR; default: /srv/quantum]" in out
    out = flat(run_cli("doctor", "--help", env={"QTSAFE_STREAM": "env:stream"}).stdout)
    assert "default: env:stream]" in out and "default: redis://cfg-host:6380/1]" in out


def test_help_reads_the_config_named_by_config(run_cli, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text('redis_url = "redis://ops:hunter2@vault-host:6379/0"\n')
    r = run_cli("--config", str(other), "export", "--help")
    assert r.exit_code == 0
    assert "default: redis://ops:***@vault-host:6379/0]" in flat(r.stdout)
    assert "hunter2" not in r.output


def test_help_with_a_broken_config_still_helps_with_the_builtin_defaults(run_cli) -> None:
    Path("qtsafe.toml").write_text("redis_url = [\n")
    r = run_cli("scoreboard", "--help")
    assert r.exit_code == 0
    assert "default: redis://127.0.0.1:6379/0]" in flat(r.stdout)
    assert run_cli("scoreboard").exit_code == 2  # the command itself still refuses the file


def test_setting_options_leave_the_value_to_the_settings() -> None:
    """The flag's value stays None unless given, so the config file still beats the built-in default."""
    seen = set()
    for name, command in commands():
        setting_options = [p for p in command.params if isinstance(p, SettingOption)]
        if not setting_options:
            continue
        ctx = command.make_context(name, [], resilient_parsing=True)
        for option in setting_options:
            seen.add(option.opts[0])
            assert ctx.params[option.name or ""] is None, f"{name} {option.opts[0]}"
    assert seen >= {"--redis-url", "--stream", "--base-dir"}


# ---- text rendering lives in the library --------------------------------------------------------------

def test_journal_text_is_rendered_by_the_library() -> None:
    verify = JournalVerifyResult(Status.FAIL, "JOURNAL BROKEN: 1 problem(s)", "j.jsonl", 2, ("line 2: edited",))
    assert render_verify_text(verify) == "JOURNAL BROKEN: 1 problem(s)\n  ! line 2: edited"
    show = JournalShowResult(Status.PASS, "1 record(s)", ({"b": 1, "a": "x"},))
    assert render_show_text(show) == "1 record(s)\n" + json.dumps({"a": "x", "b": 1})
