"""The text the ``qtsafe journal`` commands print: verify's summary with its problems, show's records."""

from __future__ import annotations

import json

from qtsafe.canary.journal import JournalShowResult, JournalVerifyResult


def render_verify_text(result: JournalVerifyResult) -> str:
    """The summary, then one ``! problem`` line per broken record or link."""
    return "\n".join([result.summary, *[f"  ! {p}" for p in result.problems]])


def render_show_text(result: JournalShowResult) -> str:
    """The summary, then each record as one JSON object a line (keys sorted, so lines diff cleanly)."""
    return "\n".join([result.summary, *[json.dumps(r, sort_keys=True) for r in result.records]])
