"""One experiment folder, `<output_dir>/<experiment_name>/`: every artifact's name, and saving with metadata.

| file / folder              | written by                 | content                                            |
|----------------------------|----------------------------|----------------------------------------------------|
| config.json                | creation, each resume      | the config tree, command line, versions, changes   |
| demonstrations.npz         | demonstrations             | expert episodes (no pickle) + metadata             |
| bc_pretrained_policy.pth   | behavior cloning           | state dict + metadata (weights-only load)          |
| bc_curve.json, bc_logs/    | behavior cloning           | per-epoch losses; TensorBoard and CSV logs         |
| checkpoints/               | RL                         | `<algo>_<steps>_steps.zip` + reward normalizer      |
| tensorboard/               | RL                         | one run, continued by --resume                     |
| evaluations.json           | RL                         | the deterministic evaluation history               |
| training_episodes.json     | RL                         | per-rollout means of training episodes (dashboard) |
| best_model.zip             | RL                         | the fastest evaluated model with <= 2 % falls: export this |
| final_model.zip            | RL / GAIL                  | the model at the end of the budget                 |
| student_policy.pth         | distillation               | the deployable student (`distill.history`): export this |
| distill_curve.json         | distillation               | per DAgger iteration: loss, falls, speed           |
| videos/, plots/            | visualization              | clips and the training dashboard                   |
| summary.json               | every stage                | the figures of each stage                          |
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from pidog_env import config_tree
from pidog_env.config_tree import ConfigError
from training.common import PipelineError, versions, write_json
from training.config import PipelineConfig

# On --resume these groups may change (how to keep training); everything else defines what was
# trained and stays as saved.
RESUMABLE = ("rl.total_timesteps", "rl.n_envs", "rl.vec_env", "rl.eval_freq", "rl.eval_episodes",
             "rl.final_eval_episodes", "rl.checkpoint_freq", "rl.visualize_freq", "ppo.",
             "off_policy.", "live")


class Experiment:
    CONFIG = "config.json"
    DEMOS = "demonstrations.npz"
    BC_POLICY = "bc_pretrained_policy.pth"
    BC_CURVE = "bc_curve.json"
    BC_LOGS = "bc_logs"
    CHECKPOINTS = "checkpoints"
    TENSORBOARD = "tensorboard"
    EVALUATIONS = "evaluations.json"
    TRAIN_EPISODES = "training_episodes.json"
    BEST_MODEL = "best_model.zip"
    FINAL_MODEL = "final_model.zip"
    STUDENT = "student_policy.pth"                  # the distilled, deployable student (distill.history > 0)
    DISTILL_CURVE = "distill_curve.json"
    SUMMARY = "summary.json"
    VIDEOS = "videos"                               # clip_<step>.mp4 files, see clip()
    PLOTS = "plots"
    DASHBOARD = "plots/training_curves.png"         # evaluations and training episodes against steps
    INTERVENTIONS = "interventions.json"            # off-policy takeovers per window
    EXPORT = "export"                               # `pidog export`'s default folder, beside the model

    @classmethod
    def clip(cls, root: str | Path, step: int) -> Path:
        """The clip recorded at `step` (its episode's figures beside it, as .json)."""
        return Path(root) / cls.VIDEOS / f"step_{step}.mp4"

    @classmethod
    def clips(cls, root: str | Path) -> list[Path]:
        """Every clip of the run, oldest first."""
        return sorted((Path(root) / cls.VIDEOS).glob("step_*.mp4"), key=lambda p: p.stat().st_mtime)

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    # ---------------------------------------------------------------- creation and config
    def create(self, cfg: PipelineConfig) -> "Experiment":
        """Make the folder (never reusing a non-empty one) and write config.json."""
        if self.root.exists() and any(self.root.iterdir()):
            raise PipelineError(f"experiment directory {self.root} already exists; choose another "
                                "--experiment-name or pass --resume to continue it")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_json(self / self.CONFIG, {"config": cfg.to_dict(), "command": _command_line(),
                                            "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                            "changes": []})
        except OSError as exc:      # the CLI checks the output folder up front; this catches what changed since
            raise PipelineError(f"cannot create the experiment folder {self.root}: "
                                f"{exc.strerror or type(exc).__name__}") from None
        return self

    def load_config(self) -> PipelineConfig:
        """The saved config tree, loaded strictly (an unknown key is a one-line error)."""
        path = self / self.CONFIG
        if not path.is_file():
            raise PipelineError(f"--resume: no experiment at {self.root} ({self.CONFIG} missing)")
        try:
            saved = json.loads(path.read_text())["config"]
            return config_tree.from_dict(PipelineConfig, saved)
        except (ValueError, KeyError, TypeError) as exc:
            raise PipelineError(f"{path}: {exc}") from None

    def resume_config(self, assignments: list[tuple[str, str]], step: int) -> PipelineConfig:
        """The saved config with the settings the user typed now (key, command-line text) applied, each
        change recorded in config.json with the step it takes effect at.

        Settings that define what was trained (env, policy, demonstrations, imitation) cannot change."""
        cfg = self.load_config()
        changed: dict[str, Any] = {}
        for key, text in assignments:
            candidate = config_tree.apply_text(cfg, key, text)            # an unknown key fails here
            before, after = config_tree.get(cfg, key), config_tree.get(candidate, key)
            if after == before:
                continue                                # repeating the saved value is no change
            if not any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE):
                raise PipelineError(f"--resume cannot change {key} ({before!r} -> {after!r}): it defines what "
                                    "the checkpoint was trained on (start a new experiment instead)")
            cfg, changed[key] = candidate, {"from": before, "to": after}
        cfg.resume = True
        config_tree.validate(cfg)
        if changed:
            path = self / self.CONFIG
            record = json.loads(path.read_text())
            record["config"] = cfg.to_dict()
            record.setdefault("changes", []).append({"step": step, "command": _command_line(),
                                                     "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                     "settings": changed})
            write_json(path, record)
        return cfg

    # ---------------------------------------------------------------- artifacts
    def read_json(self, name: str, default: Any) -> Any:
        path = self / name
        return json.loads(path.read_text()) if path.is_file() else default

    def write_json(self, name: str, payload: Any) -> Path:
        path = self / name
        write_json(path, payload)
        return path

    def save_model(self, model: Any, path: Path, meta: dict[str, Any]) -> Path:
        """An SB3 model zip with this project's metadata inside (so loading it needs no pickle)."""
        from training.policies import add_meta_to_zip
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
        add_meta_to_zip(path, {**meta, "timesteps": int(model.num_timesteps)})
        return path


def checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(steps, path) of every `<algo>_<steps>_steps.zip` in `ckpt_dir`, in step order."""
    found = []
    for p in ckpt_dir.glob("*_*_steps.zip"):
        try:
            found.append((int(p.stem.split("_")[1]), p))
        except (IndexError, ValueError):
            continue
    return sorted(found)


def latest_checkpoint(ckpt_dir: Path) -> tuple[Path, int] | None:
    """(path, steps) of the newest `<algo>_<steps>_steps.zip` in `ckpt_dir`."""
    found = checkpoints(ckpt_dir)
    if not found:
        return None
    steps, path = found[-1]
    return path, steps


def checkpoint_steps(exp: Experiment) -> int:
    found = latest_checkpoint(exp / Experiment.CHECKPOINTS)
    return found[1] if found else 0


def _command_line() -> str:
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


__all__ = ["ConfigError", "Experiment", "checkpoint_steps", "checkpoints", "latest_checkpoint"]
