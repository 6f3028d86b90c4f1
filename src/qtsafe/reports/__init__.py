"""Reports: Jinja2 templates rendered strictly into strings; writing is a separate, atomic step."""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from qtsafe.errors import WriteError
from qtsafe.fsio import atomic_write_bytes, atomic_write_pair, write_new_set
from qtsafe.textsafe import visible


def _pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value * 100:.{digits}f} %"


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _cell(value: Any) -> str:
    """Make any text safe inside a Markdown table cell: one line, control characters visible, ``|`` escaped."""
    return visible(value).replace("|", "\\|")


class _QuietCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs (compiling them was a fifth of a gate's start-up). A cache that cannot
    be read or written is no cache: the template compiles as before, and no report fails for it."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, ValueError, EOFError):
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """``$XDG_CACHE_HOME/qtsafe`` (or ``~/.cache/qtsafe``), private to the user; none if it cannot be made.
    The bucket key includes the template's source checksum, so an edited template is never served stale."""
    import os
    import sys

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = Path(base) / "qtsafe" / f"jinja-{jinja2.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    return _QuietCache(str(directory))


_ENV = jinja2.Environment(
    bytecode_cache=_bytecode_cache(),
    loader=jinja2.PackageLoader("qtsafe", "reports/templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)
# `vis`: every name or message that may carry telemetry or command-line text (see qtsafe.textsafe).
_ENV.filters.update(pct=_pct, num=_num, cell=_cell, vis=visible)


def render(template_name: str, **context: Any) -> str:
    """Render ``templates/<template_name>`` with StrictUndefined: a missing value is an error, not a blank."""
    return _ENV.get_template(template_name).render(**context)


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


# The chart each command's report gets (qtsafe.reports.charts), by the ``command`` its JSON names.
CHART_OF_COMMAND = {"quality-gate": "gate", "scoreboard": "scoreboard", "monitor": "monitor"}


def _with_chart(markdown: str, data: dict[str, Any], png_path: Path, charts: bool) -> tuple[str, bytes | None]:
    """Draw the report's chart from its own JSON; link it from the Markdown, or say in one line why not.

    A chart is never evidence: whatever happens here, the verdict, the exit code and the rest of the report
    are unchanged. The JSON twin names the chart (``chart``) or the note (``chart_note``).
    """
    kind = CHART_OF_COMMAND.get(str(data.get("command", "")))
    if kind is None:
        return markdown, None
    if not charts:
        data["chart_note"] = "charts: off (--no-charts or charts = false)"
        return markdown + f"\n{data['chart_note']}\n", None
    from qtsafe.reports.charts import draw

    chart = draw(kind, data)
    if chart.png is None:
        data["chart_note"] = chart.note
        return markdown + f"\n{chart.note}\n", None
    data["chart"] = str(png_path)
    return (markdown + f"\n## Chart\n\n![{kind} chart ({chart.width} x {chart.height} px)]({png_path.name})\n",
            chart.png)


def write_report(directory: Path, stem: str, markdown: str, data: dict[str, Any], *,
                 charts: bool = True) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` as a pair (both new or both old); returns (markdown, json).

    For a report that is meant to be replaced (``scoreboard_latest``); timestamped reports use
    :func:`write_new_report`, which never replaces one. The chart (``<stem>.png``) is written first: a
    Markdown never links a chart that is not there (an old PNG beside a report that could not draw its new one
    is removed, so it cannot pass for the new one).
    """
    json_path, md_path, png_path = (directory / f"{stem}{ext}" for ext in (".json", ".md", ".png"))
    data = dict(data)
    markdown, png = _with_chart(markdown, data, png_path, charts)
    if png is not None:
        atomic_write_bytes(png_path, png)
    else:
        with contextlib.suppress(OSError):
            png_path.unlink(missing_ok=True)
    atomic_write_pair(json_path, _json_bytes(data), md_path, markdown.encode("utf-8"))
    return md_path, json_path


def write_new_report(directory: Path, stem_for: Callable[[str], str],
                     render_pair: Callable[[Path, Path], tuple[str, dict[str, Any]]], *,
                     charts: bool = True) -> tuple[Path, Path]:
    """Write a timestamped report pair under a name no other report has; returns (markdown, json).

    ``stem_for(suffix)`` builds the runbook's name with ``suffix`` ("" first, then "_2", "_3", ... when a run
    in the same second took the name); ``render_pair(md_path, json_path)`` renders (markdown, data) for the
    paths being claimed, so a report always names itself. The JSON twin follows its Markdown's name, and so does
    the chart (``<stem>.png``), claimed in the same set: JSON, chart, then the Markdown that links it.
    """

    def build(paths: dict[str, Path]) -> dict[str, bytes]:
        markdown, data = render_pair(paths[".md"], paths[".json"])
        data = dict(data)
        markdown, png = _with_chart(markdown, data, paths[".png"], charts)
        out = {".json": _json_bytes(data), ".md": markdown.encode("utf-8")}
        if png is not None:
            out[".png"] = png
        return out

    paths = write_new_set(directory, stem_for, build, (".json", ".png", ".md"))
    return paths[".md"], paths[".json"]


_VERDICT_ROW = re.compile(r"^\| (verdict|status|result) \| .*\|$", re.MULTILINE)


def mark_report_failed(md_path: Path, json_path: Path, error: str) -> str:
    """The run exited 2 after writing this report: make the pair say so, or remove it.

    A report states the outcome the process really returns: the verdict line becomes ``ERROR`` (exit 2)
    with the cause, and the verdict the checks alone gave is kept beside it. If the pair cannot be
    rewritten (the disk that failed the run may still be full), it is removed, so a PASS report never
    outlives a run that exited 2. Returns "rewritten", "removed" or "left" (nothing could be done).
    """
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
        markdown = md_path.read_text(encoding="utf-8")
        if not isinstance(data, dict):
            raise ValueError("not an object")
        before = str(data.get("status", "?"))
        data.update(status="ERROR", exit_code=2, error=error, status_before_error=before)
        heading, _, body = markdown.partition("\n")
        old = heading.lstrip("# ").strip()
        note = (f"# ERROR: this run exited 2 - {visible(error)}\n\n"
                f"> The checks below gave **{visible(before)}** (\"{old}\"), but the run then failed and "
                f"exited 2, so this report is not a {visible(before)}.\n")
        body = _VERDICT_ROW.sub(lambda m: f"| {m.group(1)} | **ERROR** (exit 2; the checks alone gave "
                                          f"{visible(before)}) |", body, count=1)
        atomic_write_pair(json_path, _json_bytes(data), md_path, (note + body).encode("utf-8"))
        return "rewritten"
    except (OSError, ValueError, WriteError):
        removed = True
        for path in (md_path, json_path):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                removed = False
        return "removed" if removed else "left"


__all__ = ["mark_report_failed", "render", "write_new_report", "write_report"]
