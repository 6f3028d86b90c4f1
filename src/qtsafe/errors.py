"""The one error hierarchy. The CLI turns any QtsafeError into one line on stderr and exit 2."""

from __future__ import annotations


class QtsafeError(Exception):
    """Base class: an expected failure with a message fit for an operator."""


class ConfigError(QtsafeError):
    """Raised when a config file, environment variable or option value is invalid."""


class InputError(QtsafeError):
    """Raised when an input file or argument cannot be used (missing, unreadable, malformed)."""


class TelemetryError(QtsafeError):
    """Raised when the telemetry source cannot be read: Redis down, timing out, auth refused, wrong key type."""


class InsufficientDataError(QtsafeError):
    """Raised when there is too little evidence to judge; fail-closed, never a pass."""


class WriteError(QtsafeError):
    """Raised when a report, state or journal file cannot be written; the previous file is left intact."""


class StateError(QtsafeError):
    """Raised when the canary state, lock or journal is inconsistent or held by another process."""


class SystemdError(QtsafeError):
    """Raised when systemctl/journalctl fail, time out or report an unexpected unit state."""


class CanaryStateError(StateError):
    """Raised when the canary state file cannot be read, is not JSON or has an unknown format (rollback repairs it)."""


class LockHeldError(StateError):
    """Raised when the per-unit canary lock is held by another qtsafe process; nothing was changed."""


class RedisUnreachableError(TelemetryError):
    """Raised when Redis cannot be reached or does not answer in time (refused, reset, timed out).

    A subclass so callers that advise a person (``doctor``) can tell "start Redis" from "check the
    stream" by type, never by matching words in the message.
    """
