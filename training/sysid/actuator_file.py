"""`--actuator actuator.json`: the settings `pidog sysid fit` identified, as `--set` assignments.

actuator.json's "settings" maps config keys (robot.PhysicalParams' servo fields under env.physical) to
values; the pipeline commands apply them where the flag stands on the command line (later flags win), so
config.json records them like any other setting."""

from __future__ import annotations

import json
import math
from pathlib import Path

KEYS = ("env.physical.servo_torque", "env.physical.servo_speed", "env.physical.servo_kp",
        "env.physical.joint_friction", "env.physical.armature", "env.physical.servo_dead_time")


def actuator_settings(path: str | Path) -> list[tuple[str, str]]:
    """The (key, JSON text) pairs of an actuator.json; ValueError (one line) when it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not an actuator.json of pidog sysid fit ({str(exc).splitlines()[0]})") from None
    settings = doc.get("settings") if isinstance(doc, dict) else None
    if not isinstance(settings, dict) or set(settings) != set(KEYS):
        raise ValueError(f"{path} is not an actuator.json of pidog sysid fit (its \"settings\" must name {', '.join(KEYS)})")
    out = []
    for key in KEYS:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{path}: {key} must be a finite number >= 0, got {value!r}")
        out.append((key, json.dumps(float(value))))
    return out
