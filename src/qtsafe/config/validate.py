"""What loaded settings must satisfy as a whole: ranges, orderings between rules, and a valid systemd unit name."""

from __future__ import annotations

import math
import re

from qtsafe.config.settings import Settings
from qtsafe.errors import ConfigError

#: The characters systemd accepts in a unit name (unit_name_is_valid), what ``systemd-escape`` produces.
#: systemd's UNIT_NAME_MAX is 256 bytes with the terminating NUL: at most 255 characters.
_UNIT_NAME_CHARS = re.compile(r"[A-Za-z0-9:_.\\@-]+")
UNIT_NAME_MAX = 255


def check_unit_name(name: str) -> str:
    """Return ``name`` if it is a valid name of a systemd service unit, else raise ConfigError.

    The name becomes a path (``<systemd_dir>/<unit>.d/``), an argument of systemctl and journalctl and
    part of printed commands, so only what systemd itself accepts passes: letters, digits and ``:_.\\-@``,
    at most 255 characters, a ``.service`` suffix, no leading ``.`` or ``-`` (an option to systemctl),
    and a plain or instance name (``name@instance.service``), not a template.
    """
    shown = repr(name if len(name) <= 80 else name[:80] + "...")
    why = None
    if not name:
        why = "it is empty"
    elif len(name) > UNIT_NAME_MAX:
        why = f"it is {len(name)} characters long (at most {UNIT_NAME_MAX})"
    elif "/" in name:
        why = "it contains '/' (a unit name is not a path)"
    elif not _UNIT_NAME_CHARS.fullmatch(name):
        bad = sorted({ch for ch in name if not _UNIT_NAME_CHARS.fullmatch(ch)})
        why = (f"it contains {', '.join(repr(ch) for ch in bad)} (allowed: letters, digits and ':_.\\-@'; "
               "systemd-escape makes a valid name)")
    elif name[0] in ".-":
        why = f"it starts with {name[0]!r}" + (" (systemctl would read it as an option)" if name[0] == "-" else "")
    elif not name.endswith(".service") or name == ".service":
        hint = f"; did you mean '{name}.service'?" if "." not in name else ""
        why = f"the engine unit must be a .service unit{hint}"
    else:
        prefix, at, instance = name[: -len(".service")].partition("@")
        if at and not prefix:
            why = "it has nothing before '@'"
        elif at and not instance:
            why = "it is a template ('name@.service'); name an instance ('name@instance.service')"
    if why:
        raise ConfigError(f"unit {shown} is not a valid systemd unit name: {why}")
    return name


def _validate(settings: Settings) -> None:
    check_unit_name(settings.unit)
    t = settings.thresholds
    for name in ("majority_max", "hold_dead_zone_max", "dead_zone_fraction", "invalid_max_fraction",
                 "above_one_max_fraction", "bad_vote_max_fraction", "degenerate_action_max",
                 "inactive_max_fraction", "agreement_min", "agreement_max", "hard_disagree_max", "presence_min",
                 "relative_margin_others", "relative_margin_baseline", "relative_margin_no_baseline"):
        value = getattr(t, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"thresholds.{name} must be within [0, 1], got {value}")
    for name in ("evidence_alpha", "relative_alpha"):
        if not 0.0 < getattr(t, name) < 0.5:
            raise ConfigError(f"thresholds.{name} must be within (0, 0.5), got {getattr(t, name)}")
    if t.agreement_min > t.agreement_max:
        raise ConfigError("thresholds.agreement_min must not exceed thresholds.agreement_max")
    if t.dead_zone_low > t.dead_zone_high:
        raise ConfigError("thresholds.dead_zone_low must not exceed thresholds.dead_zone_high")
    for name in ("min_events_collection", "min_events_canary", "recent_window", "relative_min_sided"):
        if getattr(t, name) < 1:
            raise ConfigError(f"thresholds.{name} must be at least 1")
    if settings.page_size < 1 or settings.page_size > 100_000:
        raise ConfigError(f"page_size must be within 1..100000, got {settings.page_size}")
    if not 1 <= settings.read_workers <= 16:
        raise ConfigError(f"read_workers must be within 1..16, got {settings.read_workers}")
    if settings.redis_timeout <= 0:
        raise ConfigError("redis_timeout must be positive")
    if settings.feature_sanity.min_events < 1:
        raise ConfigError("feature_sanity.min_events must be at least 1")
    if settings.monitor.interval <= 0 or settings.monitor.duration <= 0:
        raise ConfigError("monitor.interval and monitor.duration must be positive")
    if not 0 <= settings.monitor.end_grace < math.inf:
        raise ConfigError("monitor.end_grace must be zero or more seconds")
    if not 0 < settings.monitor.alpha < 0.5 or settings.monitor.history_events < 1:
        raise ConfigError("monitor.alpha must be within (0, 0.5) and monitor.history_events at least 1")
    if not 60.0 <= settings.monitor.agreement_batch <= 86_400.0:
        raise ConfigError(f"monitor.agreement_batch must be within 60..86400 seconds, got "
                          f"{settings.monitor.agreement_batch}")
