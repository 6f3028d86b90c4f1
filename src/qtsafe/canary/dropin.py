"""Renders the systemd drop-in that carries the canary weights (and its markers) into the unit's environment."""

from __future__ import annotations

from collections.abc import Mapping

from qtsafe import __version__
from qtsafe.canary import state as st
from qtsafe.canary.weights import weights_json
from qtsafe.config import Settings
from qtsafe.errors import InputError
from qtsafe.timeutil import iso, utc_now


def _unit_quote(assignment: str) -> str:
    """One ``Environment=`` operand, double-quoted for the unit-file parser. Only safe characters get here."""
    if any(ch in assignment for ch in "\\\n\r%$`") or not assignment.isprintable():
        raise InputError(f"refusing to write {assignment[:80]!r} into a unit file")
    return '"' + assignment.replace('"', '\\"') + '"'


def render_dropin(settings: Settings, canary_id: str, weights: Mapping[str, float], model: str | None,
                  share: float | None) -> str:
    """The drop-in text: the engine's weights variable, plus the canary markers when ``model`` is given."""
    lines = [
        f"# Written by qtsafe {__version__} at {iso(utc_now())} for {canary_id}.",
        "# Remove it only with 'qtsafe canary rollback' (it restores and verifies the baseline).",
        "[Service]",
        f"Environment={_unit_quote(f'{settings.weights_variable}={weights_json(weights)}')}",
    ]
    if model is not None and share is not None:
        lines.append(f"Environment={_unit_quote(f'{st.MARKER_MODEL}={model}')}")
        lines.append(f"Environment={_unit_quote(f'{st.MARKER_WEIGHT}={share!r}')}")
    return "\n".join(lines) + "\n"

