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
from qtsafe.fsio import atomic_write_pair, write_new_pair
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


def write_report(directory: Path, stem: str, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` as a pair (both new or both old); returns (markdown, json).

    For a report that is meant to be replaced (``scoreboard_latest``); timestamped reports use
    :func:`write_new_report`, which never replaces one.
    """
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    atomic_write_pair(json_path, _json_bytes(data), md_path, markdown.encode("utf-8"))
    return md_path, json_path


def write_new_report(directory: Path, stem_for: Callable[[str], str],
                     render_pair: Callable[[Path, Path], tuple[str, dict[str, Any]]]) -> tuple[Path, Path]:
    """Write a timestamped report pair under a name no other report has; returns (markdown, json).

    ``stem_for(suffix)`` builds the runbook's name with ``suffix`` ("" first, then "_2", "_3", ... when a run
    in the same second took the name); ``render_pair(md_path, json_path)`` renders (markdown, data) for the
    paths being claimed, so a report always names itself. The JSON twin follows its Markdown's name.
    """

    def build(json_path: Path, md_path: Path) -> tuple[bytes, bytes]:
        markdown, data = render_pair(md_path, json_path)
        return _json_bytes(data), markdown.encode("utf-8")

    json_path, md_path = write_new_pair(directory, stem_for, build, first_ext=".json", second_ext=".md")
    return md_path, json_path


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
