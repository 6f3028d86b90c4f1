"""Markdown for ``model gate``: the JSON result rendered through the shared strict Jinja2 templates."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qtsafe.models.gate import GateResult


def render_gate_markdown(result: GateResult) -> str:
    """The report people read, built from ``result.to_dict()`` so it cannot disagree with the JSON."""
    from qtsafe.reports import render  # noqa: PLC0415 - jinja is only needed when a report is written

    return render("model_gate.md.j2", r=result.to_dict())
