"""The Markdown report, rendered strictly by the shared renderer (an undefined name is an error)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtsafe.reports import render

if TYPE_CHECKING:
    from qtsafe.dataset.run import DatasetResult

TEMPLATE = "dataset.md.j2"


def render_report(result: DatasetResult) -> str:
    """The report for ``result`` as Markdown text; writing it is the caller's step."""
    return render(TEMPLATE, r=result.to_dict(), summary=result.summary_line())
