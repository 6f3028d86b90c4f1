"""``qtsafe doctor``: check the environment before the first run and say what to fix.

Each check is OK, WARN (works, but a person should look) or FAIL (a command that needs it will refuse).
Nothing is changed: write access is probed with a temp file that is removed at once.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any

from qtsafe.config import Settings
from qtsafe.errors import QtsafeError, RedisUnreachableError
from qtsafe.findings import FAIL, OK, WARN, Finding
from qtsafe.fsio import probe_writable
from qtsafe.status import Status
from qtsafe.telemetry import sources
from qtsafe.telemetry.ids import stream_id_time
from qtsafe.telemetry.sources import RedisStreamSource, mask_url
from qtsafe.timeutil import format_duration, utc_now


def _check(name: str, state: str, detail: str, fix: str = "") -> Finding:
    """A doctor check: a finding named ``name`` whose fix says what to do."""
    return Finding(name, state, detail, fix=fix)


def check_dict(finding: Finding) -> dict[str, str]:
    """A doctor check as ``--json`` has always shown it (scripts read these keys): name, state, detail, fix."""
    return {"name": finding.check, "state": finding.severity, "detail": finding.message, "fix": finding.fix}


@dataclasses.dataclass(frozen=True)
class DoctorResult:
    status: Status
    summary: str
    checks: tuple[Finding, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"command": "doctor", "status": self.status.value, "summary": self.summary,
                "checks": [check_dict(c) for c in self.checks]}


def _redis_checks(settings: Settings) -> list[Finding]:
    url = mask_url(settings.redis_url)
    # Looked up on the module at call time so tests can hand in fakeredis through the one factory.
    source = RedisStreamSource(sources.redis_client(settings), settings.stream, url=settings.redis_url)
    try:
        length = source.check()
    except RedisUnreachableError as exc:
        return [_check("redis", FAIL, str(exc), "start redis or set redis_url (QTSAFE_REDIS_URL / --redis-url)")]
    except QtsafeError as exc:
        return [_check("redis", FAIL, str(exc), "check stream (QTSAFE_STREAM) and the engine's producer")]
    checks = [_check("redis", OK, f"{url} reachable; stream {settings.stream} holds {length:,} entries")]
    newest = source.latest_id()
    if newest is None:
        checks.append(_check("telemetry", FAIL, f"stream {settings.stream} is empty", "is the AI engine publishing?"))
        return checks
    age = (utc_now() - stream_id_time(newest)).total_seconds()
    limit = settings.monitor.stall_limit
    state = OK if age <= limit else WARN
    checks.append(_check("telemetry", state, f"newest trade.intent entry {newest} is {age / 60:.1f} min old",
                        "" if state == OK else f"older than the stall limit ({format_duration(limit)}): is the engine "
                                               "running and publishing?"))
    trim = source.trim_info()
    if trim.get("entries_added") is None:
        checks.append(_check("redis-version", WARN, "the server does not report entries-added (Redis < 7): trimmed "
                                                   "entries after a cutover cannot be detected", "use Redis 7+"))
    return checks


def _systemd_checks(settings: Settings) -> list[Finding]:
    from qtsafe.canary.systemd import Systemd

    binary = shutil.which(settings.systemctl) if os.sep not in settings.systemctl else settings.systemctl
    if not binary or not os.access(binary, os.X_OK):
        return [_check("systemctl", FAIL, f"{settings.systemctl} not found",
                      "set systemctl (QTSAFE_SYSTEMCTL) or run on the VPS")]
    systemd = Systemd(settings)
    try:
        load = systemd.show("LoadState").partition("=")[2]
        active = systemd.is_active()
    except QtsafeError as exc:
        return [_check("unit", FAIL, str(exc), "is systemd running here? check unit (QTSAFE_UNIT) and systemctl "
                                              "(QTSAFE_SYSTEMCTL)")]
    if load != "loaded":
        return [_check("unit", FAIL, f"{settings.unit} LoadState={load or 'unknown'}",
                      "the fleet also has quantum-ai_engine.service: set unit (QTSAFE_UNIT)")]
    state = OK if active == "active" else FAIL
    return [_check("unit", state, f"{settings.unit} is {active}",
                  "" if state == OK else f"systemctl start {settings.unit} (canary activate needs it active)")]


def run_doctor(settings: Settings) -> DoctorResult:
    checks: list[Finding] = [_check("config", OK, f"settings from {settings.config_file or 'defaults'} < QTSAFE_* "
                                               "environment < flags" + (
        f"; loosened: {', '.join(x['rule'] for x in settings.loosened())}" if settings.loosened() else ""))]
    if settings.loosened():
        checks[0] = dataclasses.replace(checks[0], severity=WARN, fix="loosened thresholds are reported in every "
                                                                   "report and journal record; make sure it is meant")
    checks += _redis_checks(settings)
    checks += _systemd_checks(settings)
    env_file = settings.env_file
    if env_file.is_file() and os.access(env_file, os.R_OK):
        checks.append(_check("env-file", OK, f"{env_file} readable"))
    else:
        checks.append(_check("env-file", FAIL, f"{env_file} missing or unreadable", "set env_file (QTSAFE_ENV_FILE)"))
    for label, directory, needed_for in (
        ("reports-dir", settings.reports_dir, "every report"),
        ("data-dir", settings.data_dir, "canary state and backups of weights"),
        ("logs-dir", settings.logs_dir, "the audit journal"),
        ("systemd-dir", settings.systemd_dir / f"{settings.unit}.d", "canary activate (the drop-in)"),
        ("backup-dir", settings.backup_dir, "canary activate (env file backups)"),
    ):
        problem = probe_writable(directory)
        checks.append(_check(label, OK if problem is None else FAIL,
                            f"{directory} writable" if problem is None else f"{problem} (needed for {needed_for})",
                            "" if problem is None else ("run as root (sudo)" if os.geteuid() != 0
                                                        else f"create {directory} or fix its permissions")))
    from qtsafe.canary.journal import verify_journal

    try:
        journal = verify_journal(settings)
        checks.append(_check("journal", OK if journal.status is Status.PASS else FAIL, journal.summary,
                            "" if journal.status is Status.PASS else "keep the file for the audit; see "
                                                                      "'qtsafe journal verify'"))
    except QtsafeError as exc:
        checks.append(_check("journal", FAIL, str(exc), "check permissions on logs/"))
    fails = [c for c in checks if c.severity == FAIL]
    warns = [c for c in checks if c.severity == WARN]
    if fails:
        status = Status.FAIL
        summary = f"FAIL: {len(fails)} of {len(checks)} checks fail - {fails[0].check}: {fails[0].message}"
    elif warns:
        status = Status.WAIT
        summary = f"WARN: {len(warns)} of {len(checks)} checks need a look - {warns[0].check}: {warns[0].message}"
    else:
        status = Status.PASS
        summary = f"OK: all {len(checks)} checks pass"
    return DoctorResult(status, summary, tuple(checks))


def render_doctor_text(result: DoctorResult) -> str:
    lines = [result.summary]
    for c in result.checks:
        lines.append(f"  {c.severity:<4} {c.check:<12} {c.message}" + (f"\n       fix: {c.fix}" if c.fix else ""))
    return "\n".join(lines)
