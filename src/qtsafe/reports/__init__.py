"""Reports: Jinja2 templates rendered strictly into strings; writing is a separate, atomic step."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jinja2

from qtsafe.fsio import atomic_write_pair


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
    """Make any text safe inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("qtsafe", "reports/templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)
_ENV.filters.update(pct=_pct, num=_num, cell=_cell)


def render(template_name: str, **context: Any) -> str:
    """Render ``templates/<template_name>`` with StrictUndefined: a missing value is an error, not a blank."""
    return _ENV.get_template(template_name).render(**context)


def write_report(directory: Path, stem: str, markdown: str, data: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` as a pair (both new or both old); returns (markdown, json)."""
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    body = (json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
    atomic_write_pair(json_path, body, md_path, markdown.encode("utf-8"))
    return md_path, json_path


__all__ = ["render", "write_report"]
