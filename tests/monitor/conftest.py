"""Monitor fixtures: the canary test root (fake systemd, temp paths), an activated canary, a fast clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from qtsafe.canary import lifecycle
from qtsafe.canary import state as st
from qtsafe.simulate import generate
from qtsafe.status import Status
from qtsafe.timeutil import parse_utc
from tests.canary.conftest import FakeGate, Root, gate, root  # noqa: F401 - fixtures re-exported
from tests.conftest import STREAM, xadd_entries


class FastClock:
    """Time that moves only when the monitor sleeps; ``on_sleep`` plays the producer between ticks."""

    def __init__(self, start: dt.datetime, on_sleep: Callable[[FastClock, dt.datetime], None] | None = None) -> None:
        self.t = start
        self.on_sleep = on_sleep
        self.sleeps = 0

    def now(self) -> dt.datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        before = self.t
        self.t = self.t + dt.timedelta(seconds=seconds)
        self.sleeps += 1
        if self.on_sleep is not None:
            self.on_sleep(self, before)


def write_events(client: Any, scenario: str, count: int, start: dt.datetime, end: dt.datetime, seed: int) -> None:
    """``count`` producer-shape entries spread over (start, end], written to the stream."""
    span_ms = int((end - start).total_seconds() * 1000)
    spacing = max(span_ms // count, 1)
    entries = [{"id": e.id, "fields": e.fields} for e in generate(scenario, count, seed=seed, end=end,
                                                                    spacing_ms=spacing)]
    xadd_entries(client, entries, STREAM)


@pytest.fixture
def activated(root: Root, gate: FakeGate) -> dict[str, Any]:  # noqa: F811
    """A verified canary for patchtst (fake gate, fake systemd); returns its settings and activation time."""
    settings = root.settings()
    result = lifecycle.activate(settings, model="patchtst", gate=gate, open_source=lambda *a: object(),
                                sleep=lambda s: None)
    assert result.status is Status.PASS, result.problems
    canary = st.active_canary(settings)
    assert canary is not None and canary.activated_at
    root.clear_calls()
    return {"settings": settings, "at": parse_utc(canary.activated_at), "canary": canary}
