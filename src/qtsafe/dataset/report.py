"""The Markdown report, rendered strictly (an undefined name is an error, never an empty cell)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import jinja2

if TYPE_CHECKING:
    from qtsafe.dataset.run import DatasetResult

TEMPLATE = "dataset.md.j2"


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # The shared qtsafe.reports renderer uses these same settings; this keeps the dataset package
    # free of a dependency on when that module lands.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("qtsafe", "reports/templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_report(result: DatasetResult) -> str:
    """The report for ``result`` as Markdown text; writing it is the caller's step."""
    data: dict[str, Any] = result.to_dict()
    return _environment().get_template(TEMPLATE).render(r=data, summary=result.summary_line())
