"""``qtsafe incident-bundle``: one tar.gz with what a person needs to understand an incident.

The journal, the newest reports, the state files, an export of the canary's telemetry window, and the
unit's recent journal lines, named with the UTC time. What could not be collected is listed in the
bundle's MANIFEST.json with the reason (and the result is WAIT, exit 3), never silently left out.
The engine's env file is deliberately not included: it may hold exchange API keys.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtsafe import __version__
from qtsafe.config import Settings
from qtsafe.errors import QtsafeError
from qtsafe.fsio import atomic_writer
from qtsafe.status import Status
from qtsafe.timeutil import file_stamp, iso, parse_utc, utc_now

UNIT_PROPERTIES = ("ActiveState", "SubState", "ActiveEnterTimestamp", "FragmentPath", "DropInPaths", "NRestarts")


@dataclasses.dataclass(frozen=True)
class IncidentResult:
    status: Status
    summary: str
    path: Path | None
    included: tuple[str, ...]
    missing: tuple[dict[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"command": "incident-bundle", "status": self.status.value, "summary": self.summary,
                "path": str(self.path) if self.path else None, "included": list(self.included),
                "missing": list(self.missing)}


class _Bundle:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.members: list[tuple[str, bytes]] = []
        self.missing: list[dict[str, str]] = []

    def add_bytes(self, name: str, data: bytes) -> None:
        self.members.append((f"{self.prefix}/{name}", data))

    def add_file(self, name: str, path: Path) -> None:
        try:
            self.add_bytes(name, path.read_bytes())
        except FileNotFoundError:
            self.missing.append({"item": name, "reason": f"{path} does not exist"})
        except OSError as exc:
            self.missing.append({"item": name, "reason": f"cannot read {path}: {exc.strerror or exc}"})

    def attempt(self, name: str, make: Callable[[], bytes]) -> None:
        try:
            self.add_bytes(name, make())
        except QtsafeError as exc:
            self.missing.append({"item": name, "reason": str(exc)})


def _canary_window_start(settings: Settings, now: dt.datetime) -> tuple[dt.datetime, str]:
    from qtsafe.canary import state as canary_state
    from qtsafe.canary.journal import read_records

    state = canary_state.read_state(settings)
    if state is not None and state.activated_at:
        return parse_utc(state.activated_at), "the active canary's activation"
    try:
        records = read_records(settings)
    except QtsafeError:
        records = []
    for record in reversed(records):
        if record.get("action") == "canary_activated" and record.get("timestamp"):
            return parse_utc(str(record["timestamp"])), "the last canary_activated journal record"
    return now - dt.timedelta(hours=6), "no canary on record: the last 6 hours"


def _export_bytes(settings: Settings, start: dt.datetime) -> bytes:
    from qtsafe.export import export_window
    from qtsafe.telemetry import open_source
    from qtsafe.telemetry.window import window_between

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "window.jsonl"
        export_window(open_source(settings), window_between(start), target)
        return target.read_bytes()


def build_incident_bundle(settings: Settings, *, out_dir: Path | None = None,
                          now: dt.datetime | None = None) -> IncidentResult:
    """Collect everything, then write ``qtsafe_incident_<UTC ts>.tar.gz`` atomically."""
    from qtsafe.canary.status import canary_status
    from qtsafe.canary.systemd import Systemd

    now = now or utc_now()
    name = f"qtsafe_incident_{file_stamp(now)}"
    bundle = _Bundle(name)
    bundle.add_file("logs/qsc_canary.jsonl", settings.journal_path)
    data = settings.data_dir
    for rel in ("qsc_canary_state.json", "qsc_monitor_state.json", "qsc_monitor_heartbeat.json",
                "baseline_model_weights.json", "qsc_canary_weights.json", "systemd_overrides/qsc_canary.conf"):
        path = data / rel
        if path.exists():
            bundle.add_file(f"data/{rel}", path)
    # The newest reports with their JSON twins and charts (a report's chart is the picture it links).
    kept = (".md", ".json", ".png")
    reports = sorted((p for p in settings.reports_dir.glob("*") if p.is_file() and p.suffix in kept),
                     key=lambda p: p.stat().st_mtime, reverse=True)[:45]
    if not reports:
        bundle.missing.append({"item": "reports", "reason": f"no reports in {settings.reports_dir}"})
    for path in reports:
        bundle.add_file(f"reports/{path.name}", path)
    start, why = _canary_window_start(settings, now)
    bundle.attempt("telemetry/canary_window.jsonl", lambda: _export_bytes(settings, start))
    systemd = Systemd(settings)
    bundle.attempt("unit/journal.txt", lambda: "\n".join(systemd.journal_tail(500)).encode() + b"\n")
    bundle.attempt("unit/properties.txt",
                   lambda: "\n".join(systemd.show(p) for p in UNIT_PROPERTIES).encode() + b"\n")
    bundle.attempt("canary/status.json",
                   lambda: json.dumps(canary_status(settings).to_dict(), indent=2, default=str).encode())
    manifest = {
        "created_at": iso(now), "qtsafe_version": __version__, "unit": settings.unit, "stream": settings.stream,
        "telemetry_window": {"from": iso(start), "to": iso(now), "why": why},
        "files": {member: hashlib.sha256(blob).hexdigest() for member, blob in bundle.members},
        "missing": bundle.missing,
        "not_included": ["the engine env file (it may hold exchange API keys)"],
    }
    bundle.add_bytes("MANIFEST.json", json.dumps(manifest, indent=2).encode())
    target = (out_dir or settings.reports_dir) / f"{name}.tar.gz"
    with atomic_writer(target) as handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
        for member, blob in bundle.members:
            info = tarfile.TarInfo(member)
            info.size = len(blob)
            info.mtime = int(now.timestamp())
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(blob))
    included = tuple(m.split("/", 1)[1] for m, _ in bundle.members)
    if bundle.missing:
        status = Status.WAIT
        summary = (f"PARTIAL: incident bundle {target} written with {len(included)} files; "
                   f"{len(bundle.missing)} items missing - {bundle.missing[0]['item']}: {bundle.missing[0]['reason']}")
    else:
        status = Status.PASS
        summary = f"incident bundle {target} written with {len(included)} files"
    return IncidentResult(status, summary, target, included, tuple(bundle.missing))


def render_incident_text(result: IncidentResult) -> str:
    lines = [result.summary]
    lines += [f"  missing {m['item']}: {m['reason']}" for m in result.missing]
    return "\n".join(lines)
