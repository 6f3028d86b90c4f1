"""Ensemble weights: validation and the canary formula. Pure functions, no I/O.

DESIGN.md's formula: the target model gets ``share``; every other model gets
``baseline / sum(other baselines) * (1 - share)``. Values are rounded to 12 decimals so the JSON the
engine reads is readable (``0.3375``, not ``0.33749999999999997``); the sum stays within 1e-9 of 1.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from qtsafe.errors import InputError

#: Model names reach a systemd drop-in and the journal, so the character set is strict: no quotes,
#: spaces, ``%`` (a unit-file specifier), ``=`` or newlines can ever come from the command line.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: A canary may take at most half of the ensemble; promotion goes further (up to 1.0).
MAX_CANARY_SHARE = 0.5
PROMOTION_STAGES = (0.25, 0.5, 1.0)
SUM_TOLERANCE = 1e-9
_DIGITS = 12


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a well-formed model name, else raise InputError (shown safely quoted)."""
    if not isinstance(name, str) or MODEL_NAME.fullmatch(name) is None:
        raise InputError(
            f"invalid model name {name!r}: use 1-64 characters from A-Z a-z 0-9 _ - (starting with a letter or digit)"
        )
    return name


def validate_weights(raw: Any, *, where: str = "weights") -> dict[str, float]:
    """A ``{model: weight}`` mapping with well-formed names, finite non-negative weights summing to 1."""
    if not isinstance(raw, Mapping) or not raw:
        raise InputError(f"{where}: expected a non-empty JSON object of model weights, got {type(raw).__name__}")
    out: dict[str, float] = {}
    for name, value in raw.items():
        try:
            check_model_name(name)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: weight of {name!r} is not a number: {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise InputError(f"{where}: weight of {name!r} is not finite: {value!r}")
        if number < 0:
            raise InputError(f"{where}: weight of {name!r} is negative: {value!r}")
        out[name] = number
    total = math.fsum(out.values())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise InputError(f"{where}: weights sum to {total!r}, not 1")
    return out


def parse_weights_json(text: str, *, where: str = "weights") -> dict[str, float]:
    """Parse and validate weights JSON; NaN/Infinity literals are refused, not coerced."""

    def _no_constants(token: str) -> Any:
        raise InputError(f"{where}: {token} is not a valid weight")

    try:
        raw = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg} at position {exc.pos})") from None
    return validate_weights(raw, where=where)


def weights_json(weights: Mapping[str, float]) -> str:
    """Canonical compact JSON (sorted keys, no spaces): the exact value written to the engine's variable."""
    return json.dumps(dict(sorted(weights.items())), separators=(",", ":"), allow_nan=False)


def canary_weights(
    baseline: Mapping[str, float], model: str, share: float, *, max_share: float = MAX_CANARY_SHARE
) -> dict[str, float]:
    """The canary weights for ``model`` at ``share`` (DESIGN.md's formula), or InputError.

    Edge cases: a model absent from the baseline is added (every baseline weight scales by
    ``1 - share``); ``share`` outside ``(0, max_share]`` is refused; if every other model's baseline
    weight is zero (including no other model at all) the remaining share has nowhere to go, so it is refused
    unless the share is the whole ensemble.
    """
    check_model_name(model)
    base = validate_weights(baseline, where="baseline weights")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share):
        raise InputError(f"share must be a finite number, got {share!r}")
    if not 0.0 < share <= max_share:
        raise InputError(f"share {share} is outside (0, {max_share}]")
    others = {name: weight for name, weight in base.items() if name != model}
    others_total = math.fsum(others.values())
    remainder = 1.0 - share
    if remainder > 0 and others_total <= 0:
        raise InputError(
            f"every model other than {model!r} has zero baseline weight; the remaining {remainder:g} cannot be shared"
        )
    out = {model: round(float(share), _DIGITS)}
    for name, weight in others.items():
        out[name] = round(weight / others_total * remainder, _DIGITS) if remainder > 0 else 0.0
    return validate_weights(out, where="canary weights")
