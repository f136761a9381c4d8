"""Typed configuration trees: strict loading from JSON, `key.path=value` overrides, and validation.

Every setting of the project is a field of a (nested) dataclass. A field's `metadata` may carry
`help` (one line for `pidog config`), bounds `ge`/`gt`/`le`/`lt` (applied to every element of a
tuple), `choices`, and `ordered=True` for (low, high) ranges. This module reads those and nothing
else, so the dataclasses stay plain (`robot.PhysicalParams` uses stdlib `field(metadata=...)`).

* `from_dict(cls, data)`: strict: an unknown key is an error naming it; values are type-checked.
  A setting that was removed is listed in its dataclass's `REMOVED` (name -> `Removed(old default,
  why)`): a saved config that holds it at its old default (the behaviour that remains) loads, any
  other value is the error "removed: <why>" (CHANGELOG.md lists them).
* `apply(cfg, "ppo.learning_rate", 1e-4)`: one dotted-path override (the CLI's `--set`).
* `validate(cfg)`: types, finiteness, bounds, choices, then each dataclass's own `check()` for rules
  that span fields. Every problem is a `ConfigError` whose message is one line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Any, Iterator

_NUMBER_BOUNDS = (("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b),
                  ("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b))


class ConfigError(ValueError):
    """A setting is unknown or has a bad value; the message is one line naming the setting."""


@dataclasses.dataclass(frozen=True)
class Removed:
    """A setting that no longer exists: the value that matches today's behaviour, and why it went."""

    default: Any
    why: str


def _removed(cls: type, key: str, value: Any, path: str) -> bool:
    """True when `key` is a removed setting of `cls` held at its old default (to be dropped); a
    ConfigError when it is set to anything else; False when `key` was never a setting of `cls`."""
    gone = getattr(cls, "REMOVED", {}).get(key)
    if gone is None:
        return False
    old = gone.default
    if value == old or (isinstance(old, tuple) and isinstance(value, list) and list(old) == value):
        return True
    raise ConfigError(f"{_join(path, key)} was removed: {gone.why}")


def setting(default: Any = dataclasses.MISSING, *, help: str = "", default_factory: Any = dataclasses.MISSING,
            **rules: Any) -> Any:
    """A dataclass field with help text and validation rules (`ge`, `gt`, `le`, `lt`, `choices`, `ordered`)."""
    unknown = set(rules) - {"ge", "gt", "le", "lt", "choices", "ordered"}
    if unknown:
        raise TypeError(f"unknown setting rule(s) {sorted(unknown)}")
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"help": help, **rules})


# ---------------------------------------------------------------- loading
def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass `cls` from its `asdict` form. Unknown keys are errors; missing keys keep defaults."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names and not _removed(cls, key, data[key], path):
            raise ConfigError(f"unknown setting {_join(path, key)!r}{_suggest(key, names)}")
    kwargs = {f.name: _coerce(data[f.name], hints[f.name], _join(path, f.name))
              for f in dataclasses.fields(cls) if f.name in data}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(value, option, path)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path} must be true or false, got {_show(value)}")
    if hint is int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path} must be an integer, got {_show(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{path} must be a number, got {_show(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path} must be a string, got {_show(value)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {_show(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path} must have {len(args)} entries, got {len(value)}")
        return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping, got {_show(value)}")
        return {str(k): _coerce(v, args[1], _join(path, str(k))) for k, v in value.items()}
    raise ConfigError(f"{path}: unsupported setting type {hint}")


# ---------------------------------------------------------------- overrides
def parse_assignment(text: str) -> tuple[str, Any]:
    """'ppo.gamma=0.99' -> ('ppo.gamma', 0.99). Values are JSON literals; anything else is a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key.path=value, got {text!r}")
    return key, parse_value(raw.strip())


def parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        lowered = raw.lower()
        if lowered in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
            return float(lowered)                   # so validation names them, instead of "a string"
        return raw


def apply(cfg: Any, key: str, value: Any) -> Any:
    """A copy of `cfg` with the setting at dotted path `key` set to `value` (checked as `from_dict` does).

    A group (`env.reward.scales`, `ppo`) takes a mapping, merged into what it holds."""
    data = to_dict(cfg)
    node, path = data, ""
    parts = key.split(".")
    owner = _hint_at(type(cfg), ".".join(parts[:-1])) if len(parts) > 1 else type(cfg)
    if dataclasses.is_dataclass(owner) and _removed(owner, parts[-1], value, ".".join(parts[:-1])):
        return cfg
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"unknown setting {_join(path, part)!r}{_suggest(part, set(node))}")
        if not isinstance(node[part], dict):
            raise ConfigError(f"{_join(path, part)} is a single value, not a group of settings")
        node, path = node[part], _join(path, part)
    last = parts[-1]
    if last not in node:
        raise ConfigError(f"unknown setting {_join(path, last)!r}{_suggest(last, set(node))}")
    if isinstance(node[last], dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{_join(path, last)} is a group of settings; give a mapping, got {_show(value)}")
        node[last] = _merge(node[last], value, _join(path, last))
    else:
        node[last] = value
    return from_dict(type(cfg), data)


def apply_text(cfg: Any, key: str, raw: str) -> Any:
    """`apply` for text from a command line: a string setting takes the text as it is (`null` clears an
    optional one); any other setting parses it as a JSON literal (`1e-4`, `true`, `[0.5, 1.2]`)."""
    hint = _hint_at(type(cfg), key)
    if hint is str or (typing.get_origin(hint) in (typing.Union, types.UnionType) and str in typing.get_args(hint)):
        value: Any = None if raw == "null" and type(None) in typing.get_args(hint) else raw
    else:
        value = parse_value(raw)
    return apply(cfg, key, value)


def _hint_at(cls: type, key: str) -> Any:
    """The annotation of the setting at `key` (None where the path is not a dataclass field)."""
    hint: Any = cls
    for part in key.split("."):
        if not dataclasses.is_dataclass(hint):
            return None
        hint = typing.get_type_hints(hint).get(part)
    return hint


def _merge(base: dict, extra: dict, path: str) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if k not in base:
            raise ConfigError(f"unknown setting {_join(path, k)!r}{_suggest(k, set(base))}")
        out[k] = _merge(base[k], v, _join(path, k)) if isinstance(base[k], dict) and isinstance(v, dict) else v
    return out


def get(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


# ---------------------------------------------------------------- validation
def validate(cfg: Any, path: str = "") -> None:
    """Raise ConfigError for the first bad value in the tree (fields first, then `check()` rules)."""
    for f in dataclasses.fields(cfg):
        value, where = getattr(cfg, f.name), _join(path, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, where)
            continue
        _check_value(value, f.metadata, where)
    check = getattr(cfg, "check", None)
    if callable(check):
        try:
            check()
        except ConfigError as exc:
            raise ConfigError(f"{path + ': ' if path else ''}{exc}") from None


def _check_value(value: Any, rules: Any, where: str) -> None:
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, tuple) else [(None, value)]
    for key, v in items:
        name = where if key is None else (f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{name} must be a finite number, got {v}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            for rule, op, ok in _NUMBER_BOUNDS:
                bound = rules.get(rule)
                if bound is not None and not ok(v, bound):
                    raise ConfigError(f"{name} must be {op} {bound}, got {v}")
        choices = rules.get("choices")
        if choices is not None and v not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}; got {_show(v)}")
    if rules.get("ordered") and isinstance(value, tuple) and list(value) != sorted(value):
        raise ConfigError(f"{where} must be a (low, high) range with low <= high, got {list(value)}")


# ---------------------------------------------------------------- listing
def describe(cfg: Any, path: str = "") -> Iterator[tuple[str, Any, str]]:
    """(dotted key, current value, help) for every leaf setting of `cfg`."""
    for f in dataclasses.fields(cfg):
        value, where = getattr(cfg, f.name), _join(path, f.name)
        if dataclasses.is_dataclass(value):
            yield from describe(value, where)
        else:
            yield where, value, f.metadata.get("help", "")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, list, dict, bool)) or value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(key: str, names: set[str]) -> str:
    import difflib
    close = difflib.get_close_matches(key, sorted(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
