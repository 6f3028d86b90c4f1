"""Settings, stated once: defaults < config file < ``QTSAFE_*`` environment < command-line flags.

The config file is ``qtsafe.toml`` (or ``[tool.qtsafe]`` in ``pyproject.toml``) found in the working
directory, or the file named by ``--config`` / ``QTSAFE_CONFIG``. Top-level keys configure the system;
the sections ``[thresholds]``, ``[feature_sanity]``, ``[monitor]``, ``[canary]`` and ``[outcomes]`` configure
the rules.
Environment variables are ``QTSAFE_<KEY>`` for top-level keys and ``QTSAFE_<SECTION>_<KEY>`` for
section keys. An unknown key anywhere is an error with a "did you mean".
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qtsafe.errors import ConfigError

# Which way loosens a threshold: "min" rules fail below the value (lowering loosens), "max" rules
# fail above it (raising loosens). Reports and the journal list every threshold loosened past its default.
# A "subset" rule (a list of judged fields) loosens when a default member is dropped from it.
_LOOSER_WHEN = {"min": "lower", "max": "higher", "subset": "fewer"}


def _rule(default: Any, kind: str | None, doc: str) -> Any:
    return dataclasses.field(default=default, metadata={"kind": kind, "doc": doc})


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The quality rules from the operators' runbooks (DESIGN.md's table)."""

    min_events_collection: int = _rule(100, "min", "evaluated events per model for a collection-mode gate")
    min_events_canary: int = _rule(200, "min", "evaluated events per model for a canary-mode gate")
    recent_window: int = _rule(200, "max", "events per model in the recent window, judged beside the whole window")
    majority_max: float = _rule(0.70, "max", "largest share any one action may take")
    std_min: float = _rule(0.05, "min", "smallest confidence std before the output counts as collapsed")
    p10_p90_min: float = _rule(0.12, "min", "smallest P90-P10 confidence spread")
    constant_std: float = _rule(0.01, "min", "confidence std below this is a constant output")
    hold_dead_zone_max: float = _rule(0.85, "max", "largest HOLD share when confidence sits in the dead zone")
    dead_zone_low: float = _rule(0.4, "max", "lower edge of the HOLD dead zone")
    dead_zone_high: float = _rule(0.6, "min", "upper edge of the HOLD dead zone")
    dead_zone_fraction: float = _rule(0.5, "max", "share of confidences inside the dead zone that counts as 'mostly'")
    invalid_max_fraction: float = _rule(0.0, "max", "share of votes with NaN/Inf/negative/non-numeric/null confidence")
    above_one_max_fraction: float = _rule(0.0, "max", "share of votes with confidence above 1 (calibration defect)")
    bad_vote_max_fraction: float = _rule(0.0, "max", "share of votes with an unknown action or a malformed entry")
    degenerate_action_max: float = _rule(0.95, "max", "one action above this share with low variance is degenerate")
    degenerate_std: float = _rule(0.05, "min", "confidence std counted as low variance for the degenerate check")
    inactive_max_fraction: float = _rule(0.5, "max", "largest share of events a judged model may be inactive in")
    agreement_min: float = _rule(0.55, "min", "lowest healthy ensemble agreement")
    agreement_max: float = _rule(0.80, "max", "highest healthy ensemble agreement")
    hard_disagree_max: float = _rule(0.20, "max", "largest share of events with a BUY and a SELL among voters")
    presence_min: float = _rule(0.5, "min", "smallest share of the window's events a judged model must appear in "
                                "(active or not)")
    evidence_alpha: float = _rule(0.05, "min", "one-sided alpha of the bounds on the gate's and scoreboard's "
                                  "proportion rules (one look)")
    relative_alpha: float = _rule(0.01, "min", "one-sided alpha of the relative rule (hard disagreement with the "
                                  "others' consensus)")
    relative_margin_others: float = _rule(0.10, "max", "relative rule: points above the majority of the other "
                                          "models' upper bound")
    relative_margin_baseline: float = _rule(0.10, "max", "relative rule: points above the model's own upper bound "
                                            "before the cutover")
    relative_margin_no_baseline: float = _rule(0.20, "max", "relative rule without a usable baseline: points above "
                                               "the others")
    relative_min_sided: int = _rule(30, "max", "relative rule: fewest events where both the model and the others "
                                    "took a side before it is judged")


DEFAULT_NUMERIC_FIELDS = (
    "confidence",
    "consensus_count",
    "total_models",
    "position_size_usd",
    "leverage",
    "entry_price",
    "stop_loss",
    "take_profit",
    "atr_value",
    "volatility_factor",
    "exchange_divergence",
    "funding_rate",
)


@dataclasses.dataclass(frozen=True)
class FeatureSanity:
    """Rules for ``feature-sanity``."""

    min_events: int = _rule(50, "min", "trade.intent events needed before features are judged")
    flatline_max_fraction: float = _rule(0.30, "max", "largest share of judged features that may be flatlined")
    flatline_rel_tol: float = _rule(1e-9, "min", "std at or below this times max(|median|, 1) is a flatline")
    missing_max_fraction: float = _rule(0.5, "max", "a feature missing from more than this share of events fails")
    numeric_fields: tuple[str, ...] = _rule(DEFAULT_NUMERIC_FIELDS, "subset", "payload fields judged as features")
    expected_constant: tuple[str, ...] = _rule((), None, "fields the producer fills with fixed values today")


@dataclasses.dataclass(frozen=True)
class Monitor:
    """Rules for ``monitor``."""

    duration: float = _rule(6 * 3600.0, "min", "seconds the canary is watched")
    interval: float = _rule(30.0, "max", "seconds between checks")
    window_events: int = _rule(200, "max", "events per model in the rolling window (a larger one dilutes a collapse)")
    stall_limit: float = _rule(600.0, "max", "seconds without a new trade.intent before telemetry counts as lost")
    max_consecutive_errors: int = _rule(3, "max", "Redis errors on this many ticks in a row is a violation")
    max_total_errors: int = _rule(5, "max", "Redis errors on this many ticks in all is a violation")
    heartbeat_max_age: float = _rule(180.0, "max", "seconds after which the watchdog treats the monitor as dead")
    end_grace: float = _rule(300.0, "max", "seconds past the end the monitor keeps checking for a clean final check")
    alpha: float = _rule(0.05, "max", "false-alarm budget of a whole watch, spread over its planned checks")
    history_events: int = _rule(1000, "max", "recent events kept to measure dependence (regimes outlast the window) "
                                "and to judge the canary against the others")
    agreement_batch: float = _rule(900.0, "max", "seconds of stream time per batch of the whole-watch agreement rule "
                                   "(batch means; longer than a market regime)")


@dataclasses.dataclass(frozen=True)
class Canary:
    """Settings for the canary lifecycle."""

    share: float = _rule(0.10, None, "weight given to the canary model")
    settle_seconds: float = _rule(5.0, None, "seconds to wait after a restart before verifying the unit")
    restart_timeout: float = _rule(90.0, None, "seconds a systemctl call may take")
    recheck_seconds: float = _rule(5.0, None, "seconds between the first and the second is-active check")
    command_timeout: float = _rule(30.0, None, "seconds a systemctl query (is-active, show) or journalctl may take")
    lock_dir: str = _rule("", None, "directory of the per-unit lock file (empty: <base_dir>/data)")


MAX_OUTCOME_HORIZON = 4 * 3600.0  # the longest horizon build-dataset labels


@dataclasses.dataclass(frozen=True)
class Outcomes:
    """Outcome scoring (what the price did next) and the promotion rule built on it (docs/verdicts.md)."""

    horizon: float = _rule(300.0, None, "seconds after a vote at which its direction is judged (up to 4 h)")
    margin: float = _rule(0.03, "max", "how much less often than the baseline ensemble the canary may be right")
    confidence: float = _rule(0.95, "min", "one-sided confidence of the non-inferiority bounds")
    min_resolved: int = _rule(30, "min", "paired outcomes (canary and baseline both resolved) before a verdict")

    def __post_init__(self) -> None:
        if not 1.0 <= self.horizon <= MAX_OUTCOME_HORIZON:
            raise ConfigError(f"outcomes.horizon must be within 1..{MAX_OUTCOME_HORIZON:g} seconds, got {self.horizon}")
        if not 0.0 < self.margin < 1.0:
            raise ConfigError(f"outcomes.margin must be within (0, 1), got {self.margin}")
        if not 0.5 < self.confidence < 1.0:
            raise ConfigError(f"outcomes.confidence must be within (0.5, 1), got {self.confidence}")
        if self.min_resolved < 1:
            raise ConfigError(f"outcomes.min_resolved must be at least 1, got {self.min_resolved}")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a command may need. Paths in the runbook layout are relative to ``base_dir``."""

    base_dir: Path = Path(".")
    redis_url: str = "redis://127.0.0.1:6379/0"
    stream: str = "quantum:stream:trade.intent"
    redis_timeout: float = 5.0
    page_size: int = 1000
    read_workers: int = 2
    parallel_min_entries: int = 200_000
    unit: str = "quantum-ai-engine.service"
    env_file: Path = Path("/etc/quantum/ai-engine.env")
    systemd_dir: Path = Path("/etc/systemd/system")
    backup_dir: Path = Path("/opt/quantum/backups/model_activations")
    weights_variable: str = "ENSEMBLE_WEIGHTS"
    weights_file: str = ""
    engine_repo: str = ""
    systemctl: str = "systemctl"
    journalctl: str = "journalctl"
    charts: bool = True
    thresholds: Thresholds = dataclasses.field(default_factory=Thresholds)
    feature_sanity: FeatureSanity = dataclasses.field(default_factory=FeatureSanity)
    monitor: Monitor = dataclasses.field(default_factory=Monitor)
    canary: Canary = dataclasses.field(default_factory=Canary)
    outcomes: Outcomes = dataclasses.field(default_factory=Outcomes)
    config_file: str = ""

    @property
    def reports_dir(self) -> Path:
        return self.base_dir / "reports" / "safety"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.base_dir / "logs"

    @property
    def journal_path(self) -> Path:
        return self.logs_dir / "qsc_canary.jsonl"

    def loosened(self) -> list[dict[str, Any]]:
        """Every rule set looser than its default, for reports and the audit journal."""
        out: list[dict[str, Any]] = []
        for section in _SECTIONS:
            current = getattr(self, section)
            default = type(current)()
            for fld in dataclasses.fields(current):
                kind = fld.metadata.get("kind")
                if kind is None:
                    continue
                now, was = getattr(current, fld.name), getattr(default, fld.name)
                if kind == "subset":
                    # Judging fewer fields is looser, even when others were added in their place.
                    dropped = [name for name in was if name not in now]
                    if dropped:
                        out.append({"rule": f"{section}.{fld.name}", "default": list(was), "value": list(now),
                                    "looser_when": _LOOSER_WHEN[kind], "dropped": dropped})
                elif (kind == "min" and now < was) or (kind == "max" and now > was):
                    out.append(
                        {"rule": f"{section}.{fld.name}", "default": was, "value": now,
                         "looser_when": _LOOSER_WHEN[kind]}
                    )
        return out

    def thresholds_table(self) -> list[dict[str, Any]]:
        """Rows of (rule, value, default, meaning) for the thresholds every report prints."""
        rows = []
        defaults = Thresholds()
        for fld in dataclasses.fields(self.thresholds):
            rows.append(
                {"rule": fld.name, "value": getattr(self.thresholds, fld.name),
                 "default": getattr(defaults, fld.name), "doc": fld.metadata.get("doc", "")}
            )
        return rows


_SECTIONS = ("thresholds", "feature_sanity", "monitor", "canary", "outcomes")
_SECTION_TYPES: dict[str, type] = {
    "thresholds": Thresholds, "feature_sanity": FeatureSanity, "monitor": Monitor, "canary": Canary,
    "outcomes": Outcomes,
}


def _type_of(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


_TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string", Path: "a path (string)"}


def _toml_type_error(value: Any, target: Any, where: str) -> ConfigError | None:
    """A config-file value of the wrong TOML type: TOML values keep their type, so ``"0.9"`` is not a number."""
    if typing.get_origin(target) is tuple:
        ok = isinstance(value, list)
        wanted = "a list of names (e.g. [\"leverage\"])"
    elif target is bool:
        ok, wanted = isinstance(value, bool), _TYPE_NAMES[bool]
    elif target is int:
        ok, wanted = isinstance(value, (int, float)) and not isinstance(value, bool), _TYPE_NAMES[int]
    elif target is float:
        ok, wanted = isinstance(value, (int, float)) and not isinstance(value, bool), _TYPE_NAMES[float]
    else:
        ok, wanted = isinstance(value, str), _TYPE_NAMES.get(target, str(target))
    if ok:
        return None
    hint = " (TOML values keep their type: write it without quotes)" if isinstance(value, str) else ""
    return ConfigError(f"{where}: expected {wanted}, got the TOML {_toml_type_name(value)} {value!r}{hint}")


def _toml_type_name(value: Any) -> str:
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"), (list, "array"),
                       (dict, "table")):
        if isinstance(value, kind):
            return name
    return "date/time" if hasattr(value, "isoformat") else type(value).__name__


def _coerce(value: Any, target: Any, where: str, *, typed: bool = False) -> Any:
    """Turn a TOML or environment value into the field's type, refusing anything ambiguous.

    ``typed`` values come from a config file: TOML keeps its types, so only the conversions the docs
    allow (an integer where a number is wanted, a float with no fraction where an integer is) are made.
    Environment values are strings and are parsed.
    """
    if typed:
        problem = _toml_type_error(value, target, where)
        if problem is not None:
            raise problem
    origin = typing.get_origin(target)
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.lower() in {"1", "true", "yes", "on"}
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if target is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if target is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: must be finite, got {value!r}")
        return number
    if target is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if target is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if origin is tuple:
        if isinstance(value, str):
            items = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ConfigError(f"{where}: expected a list of names, got {value!r}")
        if not all(isinstance(item, str) for item in items):
            raise ConfigError(f"{where}: expected a list of names, got {value!r}")
        return tuple(items)
    raise ConfigError(f"{where}: unsupported setting type {target!r}")  # pragma: no cover


def _unknown(key: str, known: list[str], where: str) -> ConfigError:
    hint = difflib.get_close_matches(key, known, n=1)
    suffix = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(sorted(known))})"
    return ConfigError(f"{where}: unknown setting {key!r}{suffix}")


_TOP_KEYS = [f.name for f in dataclasses.fields(Settings) if f.name not in _SECTIONS and f.name != "config_file"]


def _apply(
    top: dict[str, Any], sections: dict[str, dict[str, Any]], raw: Mapping[str, Any], where: str,
    *, typed: bool = False,
) -> None:
    for key, value in raw.items():
        if key in _SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: [{key}] must be a table")
            cls = _SECTION_TYPES[key]
            names = [f.name for f in dataclasses.fields(cls)]
            for sub, subvalue in value.items():
                if sub not in names:
                    raise _unknown(sub, names, f"{where} [{key}]")
                sections[key][sub] = _coerce(subvalue, _type_of(cls, sub), f"{where} {key}.{sub}", typed=typed)
        elif key in _TOP_KEYS:
            top[key] = _coerce(value, _type_of(Settings, key), f"{where} {key}", typed=typed)
        else:
            raise _unknown(key, _TOP_KEYS + list(_SECTIONS), where)


def _find_config(explicit: str | None, env: Mapping[str, str]) -> tuple[Path | None, dict[str, Any]]:
    path: Path | None = None
    if explicit:
        path = Path(explicit)
    elif env.get("QTSAFE_CONFIG"):
        path = Path(env["QTSAFE_CONFIG"])
    if path is not None:
        if not os.path.lexists(path):
            raise ConfigError(f"config file not found: {path}")
        _check_regular(path)
        return path, _read_toml(path)
    # A config file in the working directory that cannot be read is refused, not skipped: skipping it would
    # run with the defaults (or a pyproject table) the operator did not mean.
    for name in ("qtsafe.toml", "pyproject.toml"):
        candidate = Path(name)
        if not os.path.lexists(candidate):
            continue
        _check_regular(candidate)
        data = _read_toml(candidate)
        if name == "qtsafe.toml" or data:
            return candidate, data
    return None, {}


def _check_regular(path: Path) -> None:
    """Refuse a config path that is a directory, a dangling symlink or anything but a regular file."""
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"config file {path} is a symlink to a missing file ({os.readlink(path)!r})")
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory, not a file")
    if not path.is_file():
        raise ConfigError(f"config file {path} is not a regular file")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: not UTF-8 text (byte "
                          f"0x{exc.object[exc.start]:02x} at offset {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: nested too deeply") from exc
    if path.name == "pyproject.toml":
        tool = data.get("tool", {}).get("qtsafe")
        return tool if isinstance(tool, dict) else {}
    return data


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith("QTSAFE_") or key in {"QTSAFE_CONFIG", "QTSAFE_DEBUG", "QTSAFE_METRICS_FILE"}:
            continue
        name = key[len("QTSAFE_"):].lower()
        for section in _SECTIONS:
            if name.startswith(section + "_"):
                raw.setdefault(section, {})[name[len(section) + 1:]] = value
                break
        else:
            raw[name] = value
    return raw


def load_settings(
    config_path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from defaults < config file < QTSAFE_* environment < ``overrides`` (flags).

    ``overrides`` takes top-level keys and ``section.key`` names; ``None`` values are ignored so a
    flag the operator did not give never overrides anything.
    """
    environ = os.environ if env is None else env
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    path, data = _find_config(config_path, environ)
    if data:
        _apply(top, sections, data, f"config {path}", typed=True)
    _apply(top, sections, _from_env(environ), "environment QTSAFE_*")
    flag_raw: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if "." in key:
            section, sub = key.split(".", 1)
            flag_raw.setdefault(section, {})[sub] = value
        else:
            flag_raw[key] = value
    _apply(top, sections, flag_raw, "option")
    built = {name: _SECTION_TYPES[name](**values) for name, values in sections.items()}
    settings = Settings(**top, **built, config_file=str(path) if path else "")
    _validate(settings)
    return settings


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
