"""Names from telemetry or the command line cannot forge lines (issue 10, item 13).

A breakdown key, a `features` key or a --model value holding a newline and a fake verdict, or an RTL
override, is shown escaped in text, Markdown and metrics labels; the JSON keeps the real name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from prometheus_client.parser import text_string_to_metric_families

from qtsafe.simulate import generate
from qtsafe.textsafe import metric_label, visible

AFTER = "2000-01-01T00:00:00Z"
FORGED = "xgb\nPASS: quality gate (canary) - 600 events, models xgb: all checks green"
RTL = "lg\u202ebm"  # shows as "lgmb" reversed tail when printed raw
FEATURE = "f\nPASS: feature sanity - 600 events, no NaN/Inf"
RENAMES = {"xgb": FORGED, "lgbm": RTL}


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = []
    for i, event in enumerate(generate("healthy", 600)):
        payload = json.loads(event.fields["payload"])
        payload["model_breakdown"] = {RENAMES.get(k, k): v for k, v in payload["model_breakdown"].items()}
        payload["features"] = {FEATURE: (i * 7919) % 101 / 10.0, "rsi\u202e": (i * 104729) % 97 / 9.0}
        fields = {**event.fields, "payload": json.dumps(payload)}
        lines.append(json.dumps({"id": event.id, "fields": fields}) + "\n")
    path = tmp_path_factory.mktemp("events") / "hostile_names.jsonl"
    path.write_text("".join(lines))
    return path


def verdict_lines(text: str) -> list[str]:
    """Lines that look like a verdict to a person or a grep (plain, or as a Markdown heading)."""
    return [line for line in text.splitlines()
            if line.lstrip("# ").startswith(("PASS:", "FAIL:", "GO:", "NO-GO:", "WAIT:", "COLLECTED:"))]


def no_raw_controls(text: str) -> None:
    assert "\u202e" not in text
    assert all(line.isprintable() for line in text.splitlines()), [ln for ln in text.splitlines()
                                                                   if not ln.isprintable()]


def report(base: Path, ext: str) -> str:
    (path,) = (base / "reports" / "safety").glob(f"*{ext}")
    return path.read_text(encoding="utf-8")


def test_helpers_escape_what_hides_and_keep_the_rest() -> None:
    assert visible("xgb") == "xgb"
    assert visible("a\nb\r\t\x1b[2J\u202e\u2028z\\") == "a\\nb\\r\\t\\x1b[2J\\u202e\\u2028z\\\\"
    assert visible("tft-ü 📈") == "tft-ü 📈"
    assert metric_label('a"b\\c\nd\u202e') == 'a\\"b\\\\c\\nd\\\\u202e'


def test_gate_names_from_telemetry(events: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    prom = tmp_path / "qtsafe.prom"
    r = run_cli("--metrics-file", str(prom), "quality-gate", "--mode", "canary", "--after", AFTER,
                "--events", str(events), "--base-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    # One verdict line, the real one: the forged "PASS:" is part of the escaped name.
    assert verdict_lines(r.stdout) == [r.stdout.splitlines()[0]]
    assert r.stdout.startswith("PASS: quality gate (canary) - 600 events, models ")
    assert visible(FORGED) in r.stdout and "lg\\u202ebm" in r.stdout
    no_raw_controls(r.stdout)
    markdown = report(tmp_path, ".md")
    assert verdict_lines(markdown) == [markdown.splitlines()[0]]
    assert "xgb\\nPASS: quality gate" in markdown and "lg\\u202ebm" in markdown
    no_raw_controls(markdown)
    data = json.loads(report(tmp_path, ".json"))  # JSON keeps the real names
    assert {m["name"] for m in data["models"]} == {FORGED, RTL, "nhits", "patchtst"}
    prom_text = prom.read_text()
    no_raw_controls(prom_text)
    assert all(line.startswith(("#", "qtsafe_")) for line in prom_text.splitlines())
    families = {f.name: f for f in text_string_to_metric_families(prom_text)}
    labels = {s.labels["model"] for s in families["qtsafe_model_passed"].samples}
    # The exposition format escapes a newline, so the label is the real name; an RTL override has no
    # escape there, so the label holds it visibly.
    assert labels == {FORGED, "lg\\u202ebm", "nhits", "patchtst"}


def test_gate_name_from_the_command_line(events: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    ghost = "ghost\nPASS: quality gate (canary) - 600 events, models ghost: all checks green"
    r = run_cli("quality-gate", "--mode", "canary", "--after", AFTER, "--model", ghost, "--model", "\u202ebgx",
                "--events", str(events), "--base-dir", str(tmp_path))
    assert r.exit_code == 2, r.output
    assert verdict_lines(r.stdout) == [r.stdout.splitlines()[0]] and r.stdout.startswith("FAIL: quality gate")
    assert visible(ghost) in r.stdout and "\\u202ebgx" in r.stdout
    no_raw_controls(r.stdout)
    markdown = report(tmp_path, ".md")
    assert verdict_lines(markdown) == [markdown.splitlines()[0]]
    no_raw_controls(markdown)
    findings = json.loads(report(tmp_path, ".json"))["findings"]
    assert {f["subject"] for f in findings if f["check"] == "model_missing"} == {ghost, "\u202ebgx"}


def test_scoreboard_names(events: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    r = run_cli("scoreboard", "--after", AFTER, "--events", str(events), "--base-dir", str(tmp_path))
    assert r.exit_code in (0, 3), r.output
    assert verdict_lines(r.stdout) == [r.stdout.splitlines()[0]]
    assert visible(FORGED) in r.stdout and "lg\\u202ebm" in r.stdout
    no_raw_controls(r.stdout)
    markdown = report(tmp_path, ".md")
    assert verdict_lines(markdown) == [markdown.splitlines()[0]]
    assert "| xgb\\nPASS: quality gate" in markdown
    no_raw_controls(markdown)
    assert {m["name"] for m in json.loads(report(tmp_path, ".json"))["models"]} == {FORGED, RTL, "nhits", "patchtst"}


def test_feature_sanity_names(events: Path, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    r = run_cli("feature-sanity", "--after", AFTER, "--events", str(events), "--base-dir", str(tmp_path),
                "--json")
    data = json.loads(r.stdout)
    assert {f"features.{FEATURE}", "features.rsi\u202e"} <= {f["name"] for f in data["features"]}  # real names
    # A feature named like a verdict, flatlined: its name appears in a finding message too.
    flat = tmp_path / "flat.jsonl"
    flat.write_text("".join(
        json.dumps({"id": e["id"], "fields": {**e["fields"], "payload": json.dumps(
            {**json.loads(e["fields"]["payload"]), "features": {FEATURE: None}})}}) + "\n"
        for e in map(json.loads, events.read_text().splitlines())))
    for source in (events, flat):
        base = tmp_path / source.stem
        r = run_cli("feature-sanity", "--after", AFTER, "--events", str(source), "--base-dir", str(base))
        assert r.exit_code == (0 if source == events else 2), r.output
        assert verdict_lines(r.stdout) == [r.stdout.splitlines()[0]]
        no_raw_controls(r.stdout)
        markdown = report(base, ".md")
        assert verdict_lines(markdown) == [markdown.splitlines()[0]]
        assert "| features.f\\nPASS: feature sanity" in markdown
        no_raw_controls(markdown)
    assert visible(FEATURE) in r.stdout  # the failing run names the feature in its finding
