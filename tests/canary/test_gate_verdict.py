"""Activation reads the gate through GateResult.model_verdict, not by re-parsing its JSON shape."""

from __future__ import annotations

import dataclasses
from typing import Any

from qtsafe.canary.activate import activate
from qtsafe.config import Settings
from qtsafe.status import Status
from tests.canary.conftest import FakeGate, Root


@dataclasses.dataclass(frozen=True)
class TypedOnly:
    """A gate result with the typed reading and no dict form at all."""

    status: Status
    summary: str
    mode: str
    verdicts: dict[str, tuple[bool, int]]

    def model_verdict(self, name: str) -> tuple[bool, int] | None:
        return self.verdicts.get(name)


def _run(root: Root, verdicts: dict[str, tuple[bool, int]]) -> Any:
    def gate(settings: Settings, source: Any, **kwargs: Any) -> TypedOnly:
        return TypedOnly(Status.PASS, "QUALITY GATE: PASS", "canary", verdicts)

    return activate(root.settings(), model="patchtst", gate=gate, open_source=lambda *a: object(),
                    sleep=lambda s: None)


def test_the_typed_verdict_alone_is_enough_to_activate(root: Root) -> None:
    result = _run(root, {name: (True, 250) for name in ("xgb", "lgbm", "nhits", "patchtst")})
    assert result.status is Status.PASS, result.summary


def test_the_typed_verdict_refuses_a_failed_model_and_too_few_events(root: Root) -> None:
    failed = _run(root, {"patchtst": (False, 500)})
    assert failed.summary == "CANARY BLOCKED: quality gate passed overall but patchtst did not: QUALITY GATE: PASS " \
        "(nothing changed)"
    few = _run(root, {"patchtst": (True, 199)})
    assert few.summary == ("CANARY BLOCKED: quality gate judged 199 events for patchtst; a canary needs at least 200 "
                           "(nothing changed)")
    assert _run(root, {}).summary.startswith("CANARY BLOCKED: unknown model 'patchtst'")


def test_the_real_gate_result_reads_passed_and_whole_window_events() -> None:
    from qtsafe.gate import GateResult

    model = type("Verdict", (), {"name": "patchtst", "passed": False, "whole": type("Stats", (), {"n": 321})()})()
    result = GateResult.__new__(GateResult)
    object.__setattr__(result, "models", (model,))
    assert result.model_verdict("patchtst") == (False, 321)
    assert result.model_verdict("tft") is None


def test_fake_gate_matches_the_typed_reading(gate: FakeGate, root: Root) -> None:
    assert gate(root.settings(), None, models=("patchtst",)).model_verdict("patchtst") == (True, 342)
