"""Loading settings: defaults < config file < ``QTSAFE_*`` environment < flags, each value coerced to its
field's type (refusing anything ambiguous) and every unknown key an error with a "did you mean"."""

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

from qtsafe.config.settings import _SECTION_TYPES, _SECTIONS, Settings
from qtsafe.config.validate import _validate
from qtsafe.errors import ConfigError


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
