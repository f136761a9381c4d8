"""Presets (named sets of settings, data in `training/presets/*.json`) and building a `PipelineConfig`
from the defaults, a command's base settings, presets and `key.path=value` texts, in that order.
The command line (`training/cli.py`), the sweep runner and the bench protocols all build configs here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pidog_env import config_tree
from pidog_env.config_tree import ConfigError
from training.config import PipelineConfig

PRESETS = Path(__file__).resolve().parent / "presets"


def load_preset(name: str) -> dict[str, Any]:
    path = Path(name) if name.endswith(".json") else PRESETS / f"{name}.json"
    if name.endswith(".json") and path.exists() and not path.is_file():
        raise ConfigError(f"preset {path} is not a file")
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(PRESETS.glob("*.json")))
        raise ConfigError(f"no preset {name!r} (known: {known}; or give a path to a .json file)")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"preset {path} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"preset {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path} must be a JSON object of key.path: value")
    return {k: v for k, v in data.items() if not k.startswith("_")}


def build_config(base: list[tuple[str, Any]], typed: list[tuple[str, str]]) -> PipelineConfig:
    """Defaults <- the subcommand's base settings <- presets and typed settings in command-line order."""
    cfg = PipelineConfig()
    for key, value in base:
        cfg = config_tree.apply(cfg, key, value)
    preset_of: dict[str, str] = {}                    # setting -> the preset that set it last (for messages)
    for key, text in typed:
        if key == "@preset":
            for pkey, pvalue in load_preset(text).items():
                try:
                    cfg = config_tree.apply(cfg, pkey, pvalue)
                except ConfigError as exc:
                    raise ConfigError(f"preset {text}: {exc}") from None
                preset_of[pkey] = text
        else:
            cfg = config_tree.apply_text(cfg, key, text)
            preset_of.pop(key, None)
    try:
        config_tree.validate(cfg)
    except ConfigError as exc:
        named = str(exc).split(" ", 1)[0]
        if named in preset_of:
            raise ConfigError(f"preset {preset_of[named]}: {exc}") from None
        raise
    return cfg
