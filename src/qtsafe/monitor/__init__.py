"""The canary watch (``qtsafe monitor``), its watchdog and replays; the public names, as ``qtsafe.monitor`` had them.

Where each part lives: :mod:`.loop` the watch itself (ticks, end of the watch, grace, recording
failures), :mod:`.state` the watch state and its persistence, :mod:`.rolling` the rolling figures,
:mod:`.stream` the stream continuity checks, :mod:`.watchdog` the watchdog, :mod:`.replay` replays,
:mod:`.live` what they need from the live canary.
"""

from __future__ import annotations

from qtsafe.monitor.live import RollbackFn
from qtsafe.monitor.loop import (
    NOT_JUDGED,
    Clock,
    MonitorResult,
    StatusLine,
    StopCheck,
    SystemClock,
    Unrecorded,
    run_monitor,
    status_line,
)
from qtsafe.monitor.replay import ReplayResult, run_replay
from qtsafe.monitor.state import Tick, Watch, iso_precise, monitor_state_path, monitor_timeline_path
from qtsafe.monitor.watchdog import WatchdogResult, run_watchdog

__all__ = [
    "NOT_JUDGED", "Clock", "MonitorResult", "ReplayResult", "RollbackFn", "StatusLine", "StopCheck", "SystemClock",
    "Tick", "Unrecorded", "Watch", "WatchdogResult", "iso_precise", "monitor_state_path", "monitor_timeline_path",
    "run_monitor", "run_replay", "run_watchdog", "status_line",
]
