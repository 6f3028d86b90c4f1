"""Prometheus text-format gauges for node_exporter's textfile collector (``--metrics-file``).

Every command replaces its own series in the file and keeps the other commands' series, under a lock,
and the file is replaced atomically, so the collector never reads half a file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from qtsafe.errors import WriteError
from qtsafe.fsio import atomic_write_text, locked
from qtsafe.status import Status, exit_code_for
from qtsafe.textsafe import metric_label
from qtsafe.timeutil import utc_now

_HELP = {
    "qtsafe_last_exit_code": "Exit code of the command's last run (0 pass, 2 fail, 3 collected/wait).",
    "qtsafe_last_run_timestamp_seconds": "Unix time of the command's last run.",
    "qtsafe_last_verdict": "1 for the verdict of the command's last run (label verdict: PASS, FAIL, ERROR, WAIT...).",
    "qtsafe_model_passed": "1 when the model passed every check in the command's last run, else 0.",
    "qtsafe_model_events": "Valid votes judged for the model in the command's last run.",
    "qtsafe_model_confidence_std": "Confidence standard deviation over the judged window.",
    "qtsafe_model_confidence_p10_p90": "Confidence P90 minus P10 over the judged window.",
    "qtsafe_model_action_share": "Share of each action over the judged window.",
    "qtsafe_ensemble_agreement": "Mean plurality share among voting models.",
    "qtsafe_ensemble_hard_disagree": "Share of events with both a BUY and a SELL vote.",
    "qtsafe_canary_active": "1 when a canary is active (label model), else 0.",
    "qtsafe_canary_weight": "Ensemble weight qtsafe gave the active canary's model (absent for an env-flag canary).",
    "qtsafe_monitor_heartbeat_age_seconds": "Age of the monitor heartbeat when canary status or the watchdog last "
                                            "looked.",
    "qtsafe_monitor_checks": "Checks performed by the monitor's last run.",
}
_LINE = re.compile(r'^(\w+)\{command="([^"]*)"')


def _label(value: str) -> str:
    return metric_label(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


Series = list[tuple[str, dict[str, str], float]]


def series_for(command: str, status: Status, data: dict[str, Any], now: float) -> Series:
    """The gauges one result yields; figures it does not carry are simply absent."""
    out: Series = [
        ("qtsafe_last_exit_code", {}, float(exit_code_for(status))),
        ("qtsafe_last_run_timestamp_seconds", {}, now),
        # Exit code 2 is both FAIL and ERROR: the verdict tells a blocker from a broken run.
        ("qtsafe_last_verdict", {"verdict": status.value}, 1.0),
    ]
    for model in data.get("models") or []:
        if not isinstance(model, dict) or "name" not in model:
            continue
        labels = {"model": str(model["name"])}
        if "passed" in model:
            out.append(("qtsafe_model_passed", labels, 1.0 if model["passed"] else 0.0))
        whole = model.get("whole") or {}
        for key, metric in (("n", "qtsafe_model_events"), ("conf_std", "qtsafe_model_confidence_std"),
                            ("spread", "qtsafe_model_confidence_p10_p90")):
            value = _number(whole.get(key))
            if value is not None:
                out.append((metric, labels, value))
        for action, share in (whole.get("action_share") or {}).items():
            value = _number(share)
            if value is not None:
                out.append(("qtsafe_model_action_share", {**labels, "action": action}, value))
    ensemble = data.get("ensemble") or {}
    for key, metric in (("agreement", "qtsafe_ensemble_agreement"), ("hard_disagree", "qtsafe_ensemble_hard_disagree")):
        value = _number(ensemble.get(key))
        if value is not None:
            out.append((metric, {}, value))
    if "active" in data and "canary" in data:
        canary = data.get("canary") or {}
        out.append(("qtsafe_canary_active", {"model": str(canary.get("model", ""))}, 1.0 if data["active"] else 0.0))
        share = _number(canary.get("share"))
        if data["active"] and share is not None:
            out.append(("qtsafe_canary_weight", {"model": str(canary.get("model", ""))}, share))
    # canary status and the every-minute watchdog both carry it; the watchdog is the one a timer runs.
    age = _number(data.get("heartbeat_age_seconds"))
    if age is not None:
        out.append(("qtsafe_monitor_heartbeat_age_seconds", {}, age))
    if data.get("command") == "monitor":
        checks = _number(data.get("checks"))
        if checks is not None:
            out.append(("qtsafe_monitor_checks", {}, checks))
    return out


def write_metrics(path: Path, command: str, status: Status, data: dict[str, Any]) -> None:
    """Replace ``command``'s series in ``path`` and keep everyone else's."""
    now = utc_now().timestamp()
    new_lines = []
    for name, labels, value in series_for(command, status, data, now):
        rendered = ",".join([f'command="{_label(command)}"'] + [f'{k}="{_label(v)}"' for k, v in labels.items()])
        new_lines.append(f"{name}{{{rendered}}} {value:.10g}")
    with locked(path.with_name(path.name + ".lock")):
        kept = []
        try:
            for line in path.read_text(encoding="utf-8").splitlines():
                match = _LINE.match(line)
                if match and match.group(2) != command:
                    kept.append(line)
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as exc:
            raise WriteError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
        series = kept + new_lines
        names = sorted({line.split("{", 1)[0] for line in series})
        body = []
        for name in names:
            body.append(f"# HELP {name} {_HELP.get(name, name)}")
            body.append(f"# TYPE {name} gauge")
            body += sorted(line for line in series if line.split("{", 1)[0] == name)
        atomic_write_text(path, "\n".join(body) + "\n")
