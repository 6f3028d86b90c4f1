"""ops/grafana/qtsafe.json against what qtsafe really writes with --metrics-file (issue 13, section 5).

"What qtsafe writes" is never a hand-kept list: the fixture runs the operator's loop through the real CLI
(simulate, gates over the JSONL export, canary activate / status, a short monitor, the watchdog, a replay)
into one textfile and parses it with prometheus_client's own parser. Every metric, label and label value the
dashboard's PromQL asks for must be in that file; every gauge family in it must be on the dashboard.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from prometheus_client.parser import text_string_to_metric_families

from qtsafe import metrics
from qtsafe.config import Monitor, Thresholds
from qtsafe.status import Status
from tests.canary.conftest import FakeGate, Root, patch_default_gate  # noqa: F401 - fixture used by `written`

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "qtsafe.json"

# Labels Prometheus itself puts on every scraped series (the scrape target), not qtsafe.
TARGET_LABELS = {"instance", "job"}
# node_exporter's own gauges about the textfile collector: the only non-qtsafe series the dashboard may show.
NODE_EXPORTER = {
    "node_textfile_scrape_error": "1 when node_exporter cannot read a .prom file: a broken file hides every gauge",
}
# qtsafe gauge families deliberately left off the dashboard, each with the reason. None today.
NOT_SHOWN: dict[str, str] = {}

PROMQL_FUNCTIONS = {
    "abs", "absent", "avg", "bottomk", "ceil", "changes", "clamp_max", "clamp_min", "count", "delta", "floor",
    "group", "increase", "label_replace", "label_values", "last_over_time", "max", "max_over_time", "min",
    "min_over_time", "quantile", "rate", "resets", "round", "sort", "sort_desc", "sum", "time", "timestamp",
    "topk", "vector",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<var>\$\{?\w+\}?)|(?P<num>\d+(?:\.\d+)?(?:e[+-]?\d+)?)'
                   r'|(?P<id>[A-Za-z_:][\w:]*)|(?P<op>=~|!~|!=|==|>=|<=|[-+*/(){}\[\],=<>^%]))')
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass
class Selector:
    metric: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)  # (label, op, value)


@dataclass
class Query:
    where: str
    expr: str
    selectors: list[Selector] = field(default_factory=list)
    grouping: list[str] = field(default_factory=list)  # labels in by/without/on/ignoring/group_*
    outer_by: list[str] | None = None  # labels an outer "agg by (...)" keeps
    legend: list[str] = field(default_factory=list)


def tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr.rstrip()):
        match = TOKEN.match(expr, pos)
        assert match, f"cannot read PromQL at {expr[pos:]!r}"
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def parse(where: str, expr: str, legend: str = "") -> Query:
    """The metric selectors, label matchers and grouping labels of one PromQL expression."""
    query = Query(where, expr, legend=LEGEND.findall(legend or ""))
    toks = tokens(expr)
    i = 0

    def label_list(start: int) -> tuple[list[str], int]:
        assert toks[start] == ("op", "("), f"{where}: expected a label list in {expr!r}"
        labels, j = [], start + 1
        while toks[j] != ("op", ")"):
            if toks[j][0] == "id":
                labels.append(toks[j][1])
            j += 1
        return labels, j + 1

    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ("", "")
        if kind == "id" and text in GROUPING:
            if nxt == ("op", "("):
                labels, i = label_list(i + 1)
                query.grouping += labels
                if toks[1] == ("id", "by") and query.outer_by is None:  # "max by (...) (...)": only these survive
                    query.outer_by = labels
            else:
                i += 1
            continue
        if kind == "id" and (nxt == ("op", "(") or (nxt[0] == "id" and nxt[1] in GROUPING)):
            assert text in PROMQL_FUNCTIONS, f"{where}: unknown PromQL function {text!r} in {expr!r}"
            i += 1
            continue
        if kind == "id" and text not in KEYWORDS:
            selector = Selector(text)
            i += 1
            if i < len(toks) and toks[i] == ("op", "{"):
                i += 1
                while toks[i] != ("op", "}"):
                    if toks[i] == ("op", ","):
                        i += 1
                        continue
                    (lk, label), (ok, op), (vk, value) = toks[i], toks[i + 1], toks[i + 2]
                    assert lk == "id" and ok == "op" and vk == "str", f"{where}: bad matcher in {expr!r}"
                    selector.matchers.append((label, op, json.loads(value)))
                    i += 3
                i += 1
            query.selectors.append(selector)
            continue
        i += 1
    assert query.selectors, f"{where}: no metric in {expr!r}"
    return query


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: dict[str, Any]) -> list[Query]:
    """Every PromQL expression: panel targets and the template variables' label_values() queries."""
    out = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            out.append(parse(f"panel {panel['title']!r} {target['refId']}", target["expr"],
                             target.get("legendFormat", "")))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            text = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", text)
            assert match, f"variable ${var['name']}: only label_values(selector, label) is used here"
            query = parse(f"variable ${var['name']}", match.group(1))
            query.grouping.append(match.group(2))  # the label the variable lists must exist too
            out.append(query)
    return out


# ---- what qtsafe really writes ------------------------------------------------------------------

Written = dict[str, dict[str, set[str]]]  # family -> label -> values seen


def read_textfile(path: Path) -> Written:
    out: Written = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        assert family.type == "gauge", family.name
        labels = out.setdefault(family.name, {})
        for sample in family.samples:
            for key, value in sample.labels.items():
                labels.setdefault(key, set()).add(value)
    return out


AFTER, END = "2026-01-10T06:00:00Z", "2026-01-10T07:00:00Z"


_LOOP: list[Written] = []  # the loop takes seconds; what it wrote is plain data, read once per process


@pytest.fixture
def written(request: pytest.FixtureRequest) -> Written:
    if not _LOOP:
        _LOOP.append(request.getfixturevalue("operators_loop"))
    return _LOOP[0]


@pytest.fixture
def operators_loop(root: Root, patch_default_gate: FakeGate,  # noqa: F811 - the imported fixture, requested
                   fake_redis: Any, run_cli: Callable[..., Result], tmp_path: Path) -> Written:
    """The operator's loop through the real CLI, every run adding its gauges to one textfile."""
    prom = tmp_path / "textfile" / "qtsafe.prom"
    prom.parent.mkdir()
    events = tmp_path / "events.jsonl"

    def run(*args: str, code: int) -> None:
        result = run_cli("--metrics-file", str(prom), *args)
        assert result.exit_code == code, (args, result.output, result.stderr)

    window = ("--after", AFTER, "--events", str(events))
    run("simulate", "--events", "400", "--end", END, "--out", str(events), code=0)
    run("quality-gate", "--mode", "canary", *window, "-q", code=0)
    run("scoreboard", *window, code=0)
    run("feature-sanity", *window, code=0)
    run("monitor", "--replay", "0-0", "9999999999999-0", "--model", "patchtst", "--events", str(events), code=0)
    run("simulate", "--events", "400", "--end", END, code=0)  # the stream the monitor watches (fakeredis)
    run("canary", "activate", "--model", "patchtst", code=0)
    run("monitor", "--duration", "1s", "--interval", "1s", code=3)  # no event after activation: inconclusive
    run("canary", "status", code=0)  # active, heartbeat fresh
    run("monitor", "--watchdog", code=0)
    run("journal", "verify", "--no-such-option", code=2)  # an error path's gauges are part of the contract too
    return read_textfile(prom)


def test_the_loop_writes_every_family_metrics_declares(written: Written) -> None:
    """So the checks below see every family's real labels: a new gauge must be exercised here too."""
    assert set(written) == set(metrics._HELP)
    assert written["qtsafe_canary_active"]["model"] == {"patchtst"}
    assert written["qtsafe_canary_weight"]["model"] == {"patchtst"}
    assert written["qtsafe_monitor_heartbeat_age_seconds"]["command"] == {"canary status", "monitor watchdog"}
    assert {"ERROR", "PASS", "GO", "WAIT"} <= written["qtsafe_last_verdict"]["verdict"]


def drift(written: Written, dashboard: dict[str, Any]) -> list[str]:
    """What the dashboard asks for that qtsafe does not write: metrics, labels, label values, variables."""
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    problems = []
    for query in dashboard_queries(dashboard):
        seen_labels = set(TARGET_LABELS)
        for sel in query.selectors:
            if sel.metric in NODE_EXPORTER:
                labels: dict[str, set[str]] = {}
            elif sel.metric not in written:
                problems.append(f"{query.where}: qtsafe writes no {sel.metric}")
                continue
            else:
                labels = written[sel.metric]
            seen_labels |= set(labels)
            for label, op, value in sel.matchers:
                if label not in labels and label not in TARGET_LABELS:
                    problems.append(f"{query.where}: {sel.metric} has no label {label!r} (it has {sorted(labels)})")
                    continue
                for name in re.findall(r"\$\{?(\w+)\}?", value):
                    if name not in variables:
                        problems.append(f"{query.where}: ${name} is not a dashboard variable")
                if "$" in value or label in TARGET_LABELS:
                    continue
                values = labels[label]
                if op == "=" and value not in values:
                    problems.append(f"{query.where}: {sel.metric}{{{label}={value!r}}} matches nothing qtsafe "
                                    f"writes ({sorted(values)})")
                if op == "=~" and not any(re.fullmatch(value, v) for v in values):
                    problems.append(f"{query.where}: {sel.metric}{{{label}=~{value!r}}} matches nothing")
        for label in query.grouping:
            if label not in seen_labels:
                problems.append(f"{query.where}: groups by {label!r}, which none of its metrics carries")
        for label in query.legend:
            allowed = set(query.outer_by) if query.outer_by is not None else seen_labels
            if label not in allowed:
                problems.append(f"{query.where}: legend {{{{{label}}}}} is not a label of the result")
    return problems


def test_every_metric_label_and_value_the_dashboard_queries_is_written(written: Written) -> None:
    problems = drift(written, load_dashboard())
    assert not problems, "\n".join(problems)


def unshown(written: Written, dashboard: dict[str, Any]) -> list[str]:
    """qtsafe's gauge families that no dashboard query shows and NOT_SHOWN does not explain."""
    shown = {sel.metric for query in dashboard_queries(dashboard) for sel in query.selectors}
    return sorted(set(written) - shown - set(NOT_SHOWN))


def test_every_gauge_family_qtsafe_writes_is_on_the_dashboard(written: Written) -> None:
    dashboard = load_dashboard()
    missing = unshown(written, dashboard)
    assert not missing, f"gauges on no panel (add a panel, or list them in NOT_SHOWN with the reason): {missing}"
    shown = {sel.metric for query in dashboard_queries(dashboard) for sel in query.selectors}
    assert not set(NOT_SHOWN) & shown, "listed as not shown, yet shown"
    assert set(NOT_SHOWN) <= set(written), "NOT_SHOWN names a family qtsafe no longer writes"
    assert shown - set(written) <= set(NODE_EXPORTER)


# ---- the checker itself can fail ---------------------------------------------------------------------------

@pytest.mark.parametrize(("expr", "legend", "found"), [
    ('qtsafe_model_event{instance=~"$instance"}', "", "writes no qtsafe_model_event"),
    ('qtsafe_model_events{modle=~"$model"}', "", "has no label 'modle'"),
    ('qtsafe_model_events{command="quality_gate"}', "", "matches nothing qtsafe writes"),
    ('qtsafe_model_events{command=~"quality.gate.x"}', "", "matches nothing"),
    ('qtsafe_model_events{model=~"$nodel"}', "", "$nodel is not a dashboard variable"),
    ("max by (verdict) (qtsafe_model_events)", "", "groups by 'verdict'"),
    ("max by (instance) (qtsafe_model_events)", "{{model}}", "legend {{model}} is not"),
])
def test_the_drift_check_catches(expr: str, legend: str, found: str, written: Written) -> None:
    broken = load_dashboard()
    broken["panels"][1]["targets"][0].update(expr=expr, legendFormat=legend)
    assert not drift(written, load_dashboard())
    assert any(found in problem for problem in drift(written, broken)), drift(written, broken)


def test_a_family_on_no_panel_is_caught(written: Written) -> None:
    broken = load_dashboard()
    broken["panels"] = [p for p in broken["panels"] if "qtsafe_canary_weight" not in json.dumps(p)]
    assert unshown(written, broken) == ["qtsafe_canary_weight"]


# ---- importable as it is ----------------------------------------------------------------------------------

def test_the_json_is_an_importable_dashboard_model() -> None:
    dashboard = load_dashboard()
    assert re.fullmatch(r"[\w-]{1,40}", dashboard["uid"]) and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert "__inputs" not in dashboard and "${DS_" not in DASHBOARD.read_text(), \
        "the datasource is a dashboard variable, so the file imports and provisions as it is"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] and target["expr"].strip()


def test_verdict_colours_cover_every_status() -> None:
    table = next(p for p in panels(load_dashboard()) if p["title"] == "Last verdict and exit code")
    override = next(o for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "verdict")
    mapping = next(p["value"] for p in override["properties"] if p["id"] == "mappings")[0]["options"]
    assert set(mapping) == {s.value for s in Status}


def _threshold_values(title: str) -> set[float]:
    panel = next(p for p in panels(load_dashboard()) if p["title"] == title)
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return {float(s["value"]) for s in steps if s["value"] is not None}


@pytest.mark.parametrize(("title", "limits"), [
    ("Valid votes judged", {Thresholds.min_events_collection, Thresholds.min_events_canary}),
    ("Confidence standard deviation", {Thresholds.std_min, Thresholds.constant_std}),
    ("Confidence spread (P90 - P10)", {Thresholds.p10_p90_min}),
    ("Action share", {Thresholds.majority_max}),
    ("Ensemble agreement", {Thresholds.agreement_min, Thresholds.agreement_max}),
    ("Ensemble hard disagreement", {Thresholds.hard_disagree_max}),
    ("Monitor heartbeat age", {Monitor.heartbeat_max_age}),
    ("Monitor heartbeat age (now)", {Monitor.heartbeat_max_age}),
])
def test_drawn_limits_are_the_default_rules(title: str, limits: set[float]) -> None:
    """A default moved in config.py must move the line an operator reads against."""
    assert {float(v) for v in limits} <= _threshold_values(title)


def test_the_runbook_names_every_gauge_and_the_dashboard() -> None:
    runbook = (DASHBOARD.parents[2] / "docs" / "runbook.md").read_text(encoding="utf-8")
    section = runbook.split("## Grafana and node_exporter", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in metrics._HELP if f"`{name}`" not in section]
    assert not missing, f"docs/runbook.md's table of gauges lacks {missing}"
    assert "ops/grafana/qtsafe.json" in section
