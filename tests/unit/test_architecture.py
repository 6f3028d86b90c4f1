"""The shape of the house: every module under src/qtsafe belongs to a part of docs/architecture.md, and every
import (at module level, inside functions, under TYPE_CHECKING) goes in a direction that document allows.

The rules are read from the document's tables, so the document and the test cannot drift apart. Each check
also runs against a made-up module that breaks it, to prove it can fail.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
DOC = REPO / "docs" / "architecture.md"

# Edges known to cross a direction today, each being removed on another branch of issue 11. An entry that is
# no longer needed fails test_known_exceptions_are_still_needed, so the list cannot outlive its reason.
KNOWN_CROSSINGS: set[tuple[str, str]] = set()


# ---- reading the document -----------------------------------------------------------------------------

def _rows(text: str, block: str) -> list[list[str]]:
    match = re.search(rf"<!-- BEGIN {block}\b.*?-->\n(.*?)<!-- END {block}\b", text, re.S)
    assert match, f"docs/architecture.md lacks the {block} table"
    rows = []
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or set(cells[0]) <= {"-"} or cells[0] in ("part", "module (by prefix)", "library"):
            continue
        rows.append(cells)
    return rows


def _names(cell: str) -> list[str]:
    """The backticked module names of a cell."""
    return re.findall(r"`([\w.]+)`", cell)


def _words(cell: str, parts: set[str]) -> tuple[set[str], list[str]]:
    """Part names and backticked prefixes of a comma-separated cell (``-`` for none)."""
    prefixes = _names(cell)
    words = {w.strip() for w in re.sub(r"`[\w.]+`", "", cell).split(",") if w.strip() not in ("", "-")}
    unknown = words - parts
    assert not unknown, f"docs/architecture.md names unknown parts {sorted(unknown)}"
    return words, prefixes


@dataclasses.dataclass(frozen=True)
class Rules:
    parts: dict[str, tuple[str, ...]]          # part -> module prefixes
    allowed: dict[str, frozenset[str]]         # part -> the other parts it may import
    extra: dict[str, frozenset[str]]           # module prefix -> more parts it may import
    outside: dict[str, tuple[frozenset[str], tuple[str, ...]]]  # library -> (parts, prefixes) that may import it
    bans: dict[str, tuple[str, ...]]           # module prefix -> names it must not import

    def part_of(self, module: str) -> str | None:
        best: tuple[int, str] | None = None
        for part, prefixes in self.parts.items():
            for prefix in prefixes:
                # `qtsafe` names the package's own __init__, not everything below it.
                matches = _under(module, prefix) if "." in prefix else module == prefix
                if matches and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), part)
        return best[1] if best else None


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def load_rules(text: str) -> Rules:
    part_rows = _rows(text, "PARTS")
    parts = {row[0]: tuple(_names(row[1])) for row in part_rows}
    names = set(parts)
    allowed = {row[0]: frozenset(_words(row[2], names)[0]) for row in part_rows}
    extra = {}
    for row in _rows(text, "EXTRA"):
        for prefix in _names(row[0]):
            extra[prefix] = frozenset(_words(row[1], names)[0])
    outside = {}
    for row in _rows(text, "OUTSIDE"):
        words, prefixes = _words(row[1], names)
        outside[_names(row[0])[0]] = (frozenset(words), tuple(prefixes))
    bans = {_names(row[0])[0]: tuple(_names(row[1])) for row in _rows(text, "BANS")}
    return Rules(parts, allowed, extra, outside, bans)


# ---- reading the code ---------------------------------------------------------------------------------

def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Every module ``source`` imports, anywhere in the file, as absolute names (``from a import b`` gives
    ``a`` and ``a.b``: b may be a submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and _call_name(node.func) in DYNAMIC_IMPORTS):
            # require("qtsafe.dataset.sources", ...) and importlib.import_module("...") import too.
            found.add(node.args[0].value)
    return found


DYNAMIC_IMPORTS = {"require", "import_module"}


def _call_name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def violations(rules: Rules, modules: dict[str, set[str]]) -> tuple[list[str], set[tuple[str, str]]]:
    """(modules with no part, forbidden (importer, imported) edges)."""
    unassigned = sorted(m for m in modules if rules.part_of(m) is None)
    bad: set[tuple[str, str]] = set()
    for module, imported in modules.items():
        part = rules.part_of(module)
        if part is None:
            continue
        may = set(rules.allowed[part]) | {part}
        for prefix, more in rules.extra.items():
            if _under(module, prefix):
                may |= more
        for name in imported:
            top = name.split(".")[0]
            if top == "qtsafe":
                # `from qtsafe.x import y` also yields qtsafe.x.y, which may be a function: judge known modules only.
                if name in modules and rules.part_of(name) not in may:
                    bad.add((module, name))
            elif top in rules.outside:
                parts_ok, prefixes_ok = rules.outside[top]
                if part not in parts_ok and not any(_under(module, p) for p in prefixes_ok):
                    bad.add((module, name))
            for prefix, banned in rules.bans.items():
                if _under(module, prefix) and any(_under(name, b) for b in banned):
                    bad.add((module, name))
    return unassigned, bad


def scan(src: Path = SRC) -> dict[str, set[str]]:
    modules = {}
    for path in sorted((src / "qtsafe").rglob("*.py")):
        name = module_name(path, src)
        modules[name] = imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
    return modules


RULES = load_rules(DOC.read_text(encoding="utf-8"))
MODULES = scan()


# ---- the real code ------------------------------------------------------------------------------------

def test_every_module_belongs_to_a_part() -> None:
    unassigned, _ = violations(RULES, MODULES)
    assert not unassigned, f"give these modules a part in docs/architecture.md: {unassigned}"


def test_no_import_crosses_a_forbidden_direction() -> None:
    _, bad = violations(RULES, MODULES)
    new = sorted(bad - KNOWN_CROSSINGS)
    assert not new, "imports against docs/architecture.md:\n" + "\n".join(
        f"  {a} ({RULES.part_of(a)}) -> {b} ({RULES.part_of(b) or 'outside'})" for a, b in new)


def test_known_exceptions_are_still_needed() -> None:
    _, bad = violations(RULES, MODULES)
    stale = sorted(KNOWN_CROSSINGS - bad)
    assert not stale, f"these edges are gone: remove them from KNOWN_CROSSINGS and docs/architecture.md: {stale}"


def test_the_scan_sees_the_lazy_imports() -> None:
    """canary activate re-runs the gate through a function-level import: a scan of the module top would miss it."""
    assert "qtsafe.gate" in MODULES["qtsafe.canary.preflight"]
    assert "click" in MODULES["qtsafe.cli.gate"] and "qtsafe.gate" in MODULES["qtsafe.cli.gate"]


def test_the_document_names_every_part_the_issue_asks_for() -> None:
    assert set(RULES.parts) == {"kernel", "telemetry", "checks", "reports", "verdicts", "live system", "watch",
                                "models", "dataset", "CLI"}
    for prefixes in RULES.parts.values():
        assert prefixes


# ---- the checks can fail ------------------------------------------------------------------------------

def _with(module: str, source: str, *, package: bool = False) -> dict[str, set[str]]:
    return {**MODULES, module: imports_of(source, module, package)}


@pytest.mark.parametrize(("module", "source", "edge"), [
    # library -> CLI / click
    ("qtsafe.gate", "def f():\n    from qtsafe.cli.options import finish\n", ("qtsafe.gate", "qtsafe.cli.options")),
    ("qtsafe.reports.extra", "import click\n", ("qtsafe.reports.extra", "click")),
    # telemetry -> live system, also relative and lazy
    ("qtsafe.telemetry.extra", "def f():\n    from ..canary import lifecycle\n",
     ("qtsafe.telemetry.extra", "qtsafe.canary.lifecycle")),
    # checks -> I/O
    ("qtsafe.checks.extra", "import redis\n", ("qtsafe.checks.extra", "redis")),
    ("qtsafe.checks.extra", "from qtsafe.fsio import atomic_write_text\n", ("qtsafe.checks.extra", "qtsafe.fsio")),
    ("qtsafe.checks.extra", "import subprocess\n", ("qtsafe.checks.extra", "subprocess")),
    ("qtsafe.checks.extra", "from qtsafe import reports\n", ("qtsafe.checks.extra", "qtsafe.reports")),
    # the live system never imports the watch (the arrow points one way)
    ("qtsafe.canary.extra", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import qtsafe.monitor\n",
     ("qtsafe.canary.extra", "qtsafe.monitor")),
])
def test_a_forbidden_import_is_caught(module: str, source: str, edge: tuple[str, str]) -> None:
    _, bad = violations(RULES, _with(module, source))
    assert edge in bad


def test_a_module_without_a_part_is_caught() -> None:
    unassigned, _ = violations(RULES, _with("qtsafe.newthing", "import os\n"))
    assert unassigned == ["qtsafe.newthing"]


def test_prefixes_cover_modules_added_inside_a_package() -> None:
    assert RULES.part_of("qtsafe.canary.activate") == "live system"
    assert RULES.part_of("qtsafe.monitor.watchdog") == "watch"
    assert RULES.part_of("qtsafe.monitor.stream") == "watch"
    assert RULES.part_of("qtsafe.brand_new_module") is None  # a new top-level module must be given a part
    assert RULES.part_of("qtsafe.models.pickle_policy") == "models"


def test_an_allowed_import_passes() -> None:
    source = "from qtsafe.canary import lifecycle\nfrom qtsafe.telemetry import open_source\n"
    _, bad = violations(RULES, _with("qtsafe.monitor.extra", source))
    assert not {edge for edge in bad if edge[0] == "qtsafe.monitor.extra"}
