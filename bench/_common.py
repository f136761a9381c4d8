"""Shared helpers for the benchmark scripts: where results go and how they are written.

Every run writes one self-describing JSON file (`write_result`): the figures at the top level (as the
scripts always did), `machine` (CPU model, cores, load average, platform, time) and `run`: which bench, its protocol,
the command line, the commit and whether the working tree had uncommitted changes, a hash of the
defaults it ran with (`defaults`: the env's `EnvConfig().hash()` and the same over the pipeline's
`PipelineConfig()`), the flags it was given, seeds, episodes, package versions and wall time. The file is
written twice: `<RESULTS>/<name>.json` (the latest run, overwritten) and
`<RESULTS>/runs/<name>_<time>_<commit>.json` (kept). `python -m bench.publish` copies chosen runs into
docs/results/data/, from which `python -m bench.report` renders the docs' results.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# PIDOG_BENCH_RESULTS redirects the output (the tests use it so they never overwrite real results).
RESULTS = Path(os.environ.get("PIDOG_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))
RUNS = "runs"                                   # RESULTS/runs/: every run kept
SCHEMA = 1
STARTED = time.time()                           # a bench imports this module first: its wall time starts here
PACKAGES = ("numpy", "torch", "mujoco", "gymnasium", "stable-baselines3", "imitation", "onnxruntime")
# Settings that name a run rather than define it: left out of the defaults hash.
RUN_IDENTITY = ("experiment_name", "output_dir", "resume", "live")

# What each bench measures by default (the run's flags, recorded beside it, say what changed).
PROTOCOLS = {
    "trot": "the hard-coded trot: one 20 s episode with randomization off (seed 0) for speed, drift and "
            "heading, then `--seeds` randomized 20 s episodes (seeds 0 to N-1) for falls",
    "env_throughput": "random actions (reset at episode end); the PiDog env, its physics ceiling and Ant-v5 in "
                      "interleaved rounds, then the 48x48 camera env alone; steps per second",
    "ppo_throughput": "the pipeline's PPO from scratch over three vector envs, interleaved rounds; env steps "
                      "per second including the updates",
    "visualization_overhead": "what PPO training waits for per training clip, and the background renderer's "
                              "CPU time, against the training time between clips",
    "deploy_latency": "the robot runtime at 50 Hz on the simulated robot and against a fake vendor stack, then "
                      "an exported trot-BC policy through the runtime and in the env (randomized 20 s episodes)",
    "sample_efficiency": "demonstrations -> BC -> PPO (and the algorithms asked), seeded runs; evaluated speed "
                         "and falls against PPO steps, the shipped model on episodes the selection never saw",
}


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo; elsewhere platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Hardware", "Model"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:                      # not Linux
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]   # busy cores over 1, 5, 15 min: was the machine shared?
    except (AttributeError, OSError):
        load = None
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "usable_cores": usable,
            "load_average": load, "platform": platform.platform(), "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def git_state() -> dict:
    """The commit the bench ran at and whether tracked files differed from it (`dirty`, with their paths)."""
    from training.common import checkout_state
    commit, changed = checkout_state()
    if commit is None:
        return {"commit": None, "dirty": None, "dirty_paths": []}
    return {"commit": commit, "dirty": bool(changed), "dirty_paths": changed[:50]}


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def defaults_hashes() -> dict:
    """Hashes of today's defaults: `env` = EnvConfig().hash(), `pipeline` = the same over PipelineConfig()
    without the settings that only name a run. A published result whose hash differs from the one the code
    gives now was measured with earlier defaults."""
    from pidog_env.config import HASH_NEUTRAL, EnvConfig, without_neutral
    from training.config import HASH_NEUTRAL as PIPELINE_NEUTRAL
    from training.config import PipelineConfig
    pipeline = PipelineConfig().to_dict()
    for key in RUN_IDENTITY:
        pipeline.pop(key, None)
    pipeline = without_neutral(pipeline, {**{("env", *k): v for k, v in HASH_NEUTRAL.items()}, **PIPELINE_NEUTRAL})
    return {"env": EnvConfig().hash(), "pipeline": _digest(pipeline)}


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def command_line() -> tuple[str | None, dict]:
    """(the command as typed, its flags as {flag: value, or a list for a repeated or many-valued flag}) when
    the bench runs as a script; (None, {}) when its main() was called from Python."""
    script = Path(sys.argv[0])
    if script.parent.name != "bench" or script.suffix != ".py":
        return None, {}
    argv = sys.argv[1:]
    given: dict[str, list[str]] = {}
    key = "args"                                    # words before the first flag
    for word in argv:
        if word.startswith("--"):
            key, eq, value = word.partition("=")
            given.setdefault(key, [])
            if eq:
                given[key].append(value)
        else:
            given.setdefault(key, []).append(word)
    flags = {k: True if not v else v[0] if len(v) == 1 else v for k, v in given.items()}
    return " ".join(["python", f"bench/{script.name}", *argv]), flags


def _count(value) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, list):
        return len(value)
    return None


def _seeds_and_episodes(name: str, figures: dict) -> tuple:
    """What the figures say about the seeds and episodes they came from (each bench names them its own way)."""
    seeds, episodes = None, None
    if name == "trot" and isinstance(figures.get("seeds"), int):
        seeds, episodes = f"0-{figures['seeds'] - 1}", figures["seeds"]
    elif isinstance(figures.get("seeds"), list):
        seeds = figures["seeds"]
    for key in ("episodes", "walk_episodes", "eval_episodes", "final_eval_episodes"):
        if _count(figures.get(key)) is not None:
            episodes = _count(figures[key])
            break
    return seeds, episodes


def run_record(name: str, protocol: str | None = None, seeds=None, episodes: int | None = None,
               wall_seconds: float | None = None) -> dict:
    command, flags = command_line()
    return {"schema": SCHEMA, "bench": name, "protocol": protocol or PROTOCOLS.get(name), "command": command,
            "settings": flags, **git_state(), "defaults": defaults_hashes(), "seeds": seeds, "episodes": episodes,
            "versions": versions(),
            "wall_seconds": round(time.time() - STARTED if wall_seconds is None else wall_seconds, 1)}


def write_result(name: str, figures: dict, *, protocol: str | None = None, seeds=None, episodes: int | None = None,
                 wall_seconds: float | None = None) -> Path:
    """Print `figures` and write them, with `machine` and `run` (see the module docstring), to
    <RESULTS>/<name>.json and, kept, <RESULTS>/runs/<name>_<time>_<commit>.json. `protocol`, `seeds` and
    `episodes` default to the bench's entry in PROTOCOLS and to what the figures name; `wall_seconds` to the
    time since this module was imported."""
    found_seeds, found_episodes = _seeds_and_episodes(name, figures)
    run = run_record(name, protocol, found_seeds if seeds is None else seeds,
                     found_episodes if episodes is None else episodes, wall_seconds)
    host = machine()
    payload = {**figures, "machine": host, "run": run}
    text = json.dumps(payload, indent=2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(text)
    stem = f"{name}_{time.strftime('%Y%m%d-%H%M%S')}_{(run['commit'] or 'nogit')[:7]}"
    (RESULTS / RUNS).mkdir(exist_ok=True)
    kept, n = RESULTS / RUNS / f"{stem}.json", 1
    while kept.exists():                        # two runs within one second
        n += 1
        kept = RESULTS / RUNS / f"{stem}-{n}.json"
    kept.write_text(text)
    width = max(len(k) for k in [*figures, "run"])
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    dirty = " with uncommitted changes" if run["dirty"] else ""
    print(f"{'run':<{width}}  {name} at {(run['commit'] or 'no commit')[:7]}{dirty}, "
          f"{host['cpu_model']}, {run['wall_seconds']} s")
    print(f"-> {path} (kept as {kept})")
    return path


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """Lay out, write and close a matplotlib figure, and say where it went."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    print(f"-> {path}")


def speed_curves(runs: dict[str, list[list[dict]]], path: Path, title: str,
                 lines: list[tuple[float, str, str, str]]) -> None:
    """Evaluated forward speed against PPO steps, one colour per label (every run of it drawn), plus
    horizontal reference `lines` (value, label, color, linestyle)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for color, (label, histories) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], runs.items()):
        for i, h in enumerate(histories):
            ax.plot([e["timesteps"] for e in h], [e["mean_forward_speed"] for e in h], color=color, alpha=0.8,
                    lw=1.5, label=label if i == 0 else None)
    for value, label, color, style in lines:
        ax.axhline(value, color=color, ls=style, lw=1.2, label=label)
    ax.set_xlabel("PPO env steps")
    ax.set_ylabel("eval forward speed (m/s)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)
