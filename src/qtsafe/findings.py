"""The one finding type: a judged rule in plain words, for the gate, sanity, doctor, model and dataset checks."""

from __future__ import annotations

import dataclasses
from typing import Any

OK = "OK"
WARN = "WARN"
FAIL = "FAIL"
SEVERITIES = (OK, WARN, FAIL)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One judged rule. ``severity`` FAIL blocks; WARN is shown but does not block; OK records a pass.

    ``subject`` is what was judged (a model, a feature, a directory), ``scope`` the part of the evidence
    (``whole window``, ``recent``), ``fix`` what a person can do about it.
    """

    check: str
    severity: str
    message: str
    subject: str = ""
    scope: str = ""
    fix: str = ""

    @property
    def passed(self) -> bool:
        return self.severity != FAIL

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if not self.fix:
            # The gate, sanity and model reports carried no fix key before there was one: keep their shape.
            del data["fix"]
        return data
