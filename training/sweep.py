#!/usr/bin/env python
"""The experiment runner: the whole pipeline over N seeds x a grid or a sampled search space, each
(configuration, seed) a pipeline run in its own process, on this machine or on a Ray cluster.

    python training/sweep.py --spec sweeps/learning_rate.toml       # an experiment spec (TOML or JSON)
    python training/sweep.py --spec learning_rate --preset tiny --seeds 0   # the same at the tests' budget
    python training/sweep.py --name lr --seeds 0 1 2 --grid 'ppo.learning_rate=[1e-4, 3e-4]'
    python training/sweep.py --name std --grid 'ppo.init_log_std=[-2.5, -2]' --set rl.total_timesteps=200000
    python training/sweep.py --name sac --algo sac --sample 'off_policy.learning_rate=loguniform(1e-4, 1e-3)' \\
        --num-samples 4
    python training/sweep.py --name lr --resume        # run again what did not finish; finished trials stay
    python training/sweep.py --quick --output-dir DIR  # 2 configurations x 2 seeds, tiny budgets (CI)
    python training/sweep.py ... --workers 4           # trials at once (default: one per CPU)
    python training/sweep.py ... --backend ray         # on Ray Tune (./install.sh --with-ray)
    python training/sweep.py ... --address auto        # on an existing Ray cluster (docs/sweeps.md)

A configuration is one point of the grid (`--grid KEY=[v1, v2, ...]`, every combination) or one draw of the
search space (`--sample KEY=uniform(a, b) | loguniform(a, b) | randint(a, b) | choice([..])`, `--num-samples`
draws, seeded by `--sample-seed` so a resumed sweep draws the same). `--set`/`--preset` apply to all
configurations before the swept settings (any key of `pidog config`). A spec file (`--spec`) holds the
same as data: `seeds`, `presets`, tables `set`, `grid` and `sample`, `num_samples`, `sample_seed`, `name`
(see sweeps/learning_rate.toml); `--seeds`, `--set` and `--preset` on the command line go on top of it.

Each (configuration, seed) trial runs the real pipeline, `python -m training.cli train ...`, as a child
process with its own log, and writes its normal experiment folder. The local backend (the default) runs
`--workers` trials at once in a pool of worker processes on this machine; `--backend ray` runs each trial
as a Ray Tune trial instead (Ray starts in-process on this machine unless `--address` names a cluster).

Writes to <output-dir>/<name>/ (and nowhere else with the local backend):
    sweep.json      what was asked (settings, configurations, seeds, command line)
    trials/<c>_s<seed>/   each trial's experiment folder (config.json, summary.json, models, TensorBoard)
    logs/<trial>.log      each trial's output
    results.json    one entry per trial: config, seed, status (ok | failed | stopped | not run), the shipped
                    model's final_speed_mps and final_fall_rate, steps_to_target, error; rewritten as trials end
    table.md, table.json  mean +- std over seeds per configuration (also printed)
    curves.png      evaluated speed against env steps: one band (mean +- std over seeds) per configuration
    ray/            Ray Tune's own records (--backend ray)
A trial that fails (an error, a crash, a killed process) is reported in results.json and the table and
does not stop the others; `--resume` runs the trials that did not finish (a trial folder with a
checkpoint continues from it) and keeps the finished ones. Ctrl-C or SIGTERM stops the running trials
(each saves a checkpoint, as a single run does) and exits 130 / 143.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import difflib
import itertools
import json
import math
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pidog_env.config_tree import ConfigError
from training.common import PipelineError, check_output_dir, write_json
from training.experiment import Experiment

SWEEP_FILE, RESULTS_FILE, TABLE_FILE, CURVES_FILE = "sweep.json", "results.json", "table.md", "curves.png"
QUICK_GRID = {"ppo.learning_rate": [3e-4, 1e-4]}           # --quick: 2 configurations ...
QUICK_SEEDS = [0, 1]                                        # ... x 2 seeds
QUICK_BASE = [["@preset", "tiny"], ["demo.n_envs", "1"]]   # the tests' budget: every stage for real, in seconds
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
BACKENDS = ("local", "ray")
SPECS = Path(__file__).resolve().parent.parent / "sweeps"   # the committed experiment specs (--spec NAME)
SPEC_KEYS = ("about", "name", "seeds", "presets", "set", "grid", "sample", "num_samples", "sample_seed")
STOP_GRACE_S = 60          # a stopped trial's pipeline has this long to save before it is killed
RAY_MISSING = ("Ray Tune is not installed: ./install.sh --with-ray (or pip install -r requirements-sweep.txt) "
               "installs it, or run on this machine with --backend local")


# ---------------------------------------------------------------- what a sweep is
@dataclass
class SweepSpec:
    """Everything that defines a sweep's trials (saved in sweep.json; `--resume` reads it back)."""
    name: str
    seeds: list[int]
    base: list[list[str]] = field(default_factory=list)            # [key, text] in command-line order ("@preset", name)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    sample: dict[str, str] = field(default_factory=dict)
    num_samples: int = 0
    sample_seed: int = 0

    def configurations(self) -> list[dict[str, Any]]:
        """The swept settings of each configuration: the grid's product, times the search space's draws."""
        keys = list(self.grid)
        points = [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]
        if not self.sample:
            return points
        rng = np.random.default_rng(self.sample_seed)
        draws = [{k: draw(text, rng) for k, text in self.sample.items()} for _ in range(self.num_samples)]
        return [{**p, **d} for p in points for d in draws]


@dataclass
class Trial:
    name: str                  # c<config>_s<seed>: also the experiment folder's name
    config_id: str
    config: dict[str, Any]     # the swept settings
    seed: int
    command: list[str]         # the pipeline's command line (argv after the interpreter)


def parse_distribution(text: str) -> tuple[str, list[Any]]:
    m = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", text)
    if not m or m.group(1) not in DISTRIBUTIONS:
        raise ConfigError(f"--sample: {text!r} is not one of {', '.join(d + '(..)' for d in DISTRIBUTIONS)}")
    kind, inner = m.group(1), m.group(2)
    try:
        args = json.loads(f"[{inner}]")
    except ValueError:
        raise ConfigError(f"--sample: cannot read the arguments of {text!r} (JSON numbers or a JSON list)") from None
    if kind == "choice":
        if len(args) != 1 or not isinstance(args[0], list) or not args[0]:
            raise ConfigError(f"--sample: choice takes one non-empty JSON list, e.g. choice([64, 128]); got {text!r}")
        return kind, args
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise ConfigError(f"--sample: {kind} takes two numbers (low, high); got {text!r}")
    low, high = args
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"--sample: {kind} needs finite low < high; got {text!r}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"--sample: loguniform needs low > 0; got {text!r}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise ConfigError(f"--sample: randint takes two integers; got {text!r}")
    return kind, args


def draw(text: str, rng: np.random.Generator) -> Any:
    kind, args = parse_distribution(text)
    if kind == "choice":
        return args[0][int(rng.integers(len(args[0])))]
    low, high = args
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return int(rng.integers(low, high + 1))        # randint: both ends included


def value_text(value: Any) -> str:
    """A value as the pipeline's command line takes it (`--set KEY=TEXT`): a string as it is (a string
    setting takes the text verbatim), anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def trials_of(spec: SweepSpec, trials_dir: Path) -> list[Trial]:
    """Every (configuration, seed) trial, each validated as the pipeline would (a bad value fails here,
    before anything is created)."""
    from training.presets import build_config
    out = []
    for i, config in enumerate(spec.configurations()):
        for seed in spec.seeds:
            name = f"c{i}_s{seed}"
            typed = [(k, t) for k, t in spec.base] + [(k, value_text(v)) for k, v in config.items()]
            typed += [("seed", str(seed)), ("output_dir", str(trials_dir)), ("experiment_name", name)]
            try:
                build_config([], typed)
            except ConfigError as exc:
                raise ConfigError(f"configuration c{i} ({describe(config)}): {exc}") from None
            command = ["-m", "training.cli", "train", "--no-live", "--seed", str(seed),
                       "--output-dir", str(trials_dir), "--experiment-name", name]
            for key, text in typed[:-3]:
                command += ["--preset", text] if key == "@preset" else ["--set", f"{key}={text}"]
            out.append(Trial(name, f"c{i}", config, seed, command))
    return out


def describe(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items()) or "defaults"


# ---------------------------------------------------------------- one trial (in a worker process)
class TrialStopped(Exception):
    """The sweep was stopped (Ctrl-C / SIGTERM) while this trial ran."""


class NotStarted(TrialStopped):
    """The sweep was stopped before this trial started."""


def execute_trial(t: dict[str, Any], stop: Any = None, kill: Any = None) -> dict[str, Any]:
    """Run one trial's pipeline as a child process (its own session, its output in logs/<trial>.log) and
    return the figures of its experiment folder. `stop`/`kill` (events, local backend): when set, the
    pipeline gets SIGTERM (it saves a checkpoint and exits; SIGKILL after STOP_GRACE_S) / SIGKILL.
    A pipeline that does not exit 0 raises RuntimeError with one line: why, its last line, its log."""
    root, name = Path(t["root"]), t["name"]
    exp = root / "trials" / name
    if stop is not None and stop.is_set():
        raise NotStarted(name)
    command = [sys.executable, *t["command"]]
    if (exp / Experiment.CONFIG).is_file():    # a stopped attempt's folder continues with its saved settings
        command = [sys.executable, *t["command"][:t["command"].index("--experiment-name") + 2], "--resume"]
    (root / "logs").mkdir(parents=True, exist_ok=True)
    log_path = root / "logs" / f"{name}.log"
    with open(log_path, "ab") as log:
        log.write(f"\n$ {shlex.join(command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    (root / "logs" / f"{name}.pid").write_text(str(proc.pid))
    stopped_at = None
    try:
        while True:
            try:
                code = proc.wait(None if stop is None else 0.5)
                break
            except subprocess.TimeoutExpired:
                if stopped_at is None and stop.is_set():
                    stopped_at = time.monotonic()
                    signal_group(proc.pid, signal.SIGTERM)
                if stopped_at is not None and (kill.is_set() or time.monotonic() - stopped_at > STOP_GRACE_S):
                    signal_group(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:                        # this worker is going away: stop the pipeline too
            signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                signal_group(proc.pid, signal.SIGKILL)
    if stopped_at is not None:
        raise TrialStopped(f"the pipeline was stopped ({exit_text(code)}): {last_line(log_path)} (log: {log_path})")
    if code != 0:
        raise RuntimeError(f"the pipeline {exit_text(code)}: {last_line(log_path)} (log: {log_path})")
    return trial_figures(exp)


def signal_group(pid: int, sig: int) -> None:
    """Signal the pipeline's process group (its env workers too); gone already is fine."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


_EVENTS: tuple[Any, Any] = (None, None)           # a local worker's (stop, kill) events


def _worker_start(stop: Any, kill: Any) -> None:
    """Local worker processes leave stop signals to the sweep's main process, which stops the trials
    through `stop`/`kill`. A Python handler, not SIG_IGN: the pipeline a worker starts gets the default."""
    global _EVENTS
    _EVENTS = (stop, kill)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _leave_to_main)


def _leave_to_main(signum: int, frame: Any) -> None:
    pass


def local_trial(t: dict[str, Any]) -> dict[str, Any]:
    """The local backend's task (runs in a worker process)."""
    return execute_trial(t, *_EVENTS)


def run_trial(params: dict[str, Any]) -> None:
    """Ray Tune trainable: the pipeline as a child process, then its figures reported to Tune."""
    from ray import tune
    tune.report(execute_trial(params["trial"]))


def exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else "(no output)"


def trial_figures(exp: Path) -> dict[str, Any]:
    """The figures of a finished experiment folder: the shipped model's final evaluation, steps to 1.1x
    the trot's speed (the trot evaluated on the same randomized episodes as the run's evaluations) and
    the evaluation history (for the sweep's curves)."""
    import torch
    from pidog_env.config_tree import from_dict
    from pidog_env.gaits import TrotGait
    from training.config import PipelineConfig
    from training.evaluation import evaluate_policy
    from training.selection import TARGET_OVER_TROT, shipped_eval, steps_to_target
    torch.set_num_threads(1)
    run = Experiment(exp)
    summary = run.read_json(Experiment.SUMMARY, None)
    cfg = from_dict(PipelineConfig, run.read_json(Experiment.CONFIG, None)["config"])
    history = run.read_json(Experiment.EVALUATIONS, [])
    rl = summary.get("ppo") or summary.get("off_policy")
    final = shipped_eval(rl) if rl else summary["bc"]
    trot = evaluate_policy(TrotGait.for_config(cfg.env), cfg.env, cfg.rl.eval_episodes, randomize=True)
    target = TARGET_OVER_TROT * trot["mean_forward_speed"]
    return {"final_speed_mps": round(float(final["mean_forward_speed"]), 4),
            "final_fall_rate": round(float(final["fall_rate"]), 4),
            "steps_to_target": steps_to_target(history, target), "target_speed_mps": round(target, 4),
            "timesteps": int(rl["timesteps"]) if rl else 0, "shipped_model": (rl or {}).get("selected", {}).get("model"),
            "history": [{"timesteps": int(h["timesteps"]), "mean_forward_speed": float(h["mean_forward_speed"]),
                         "fall_rate": float(h["fall_rate"])} for h in history]}


# ---------------------------------------------------------------- the sweep (the driver)
class Results:
    """results.json: one entry per trial, rewritten whenever a trial ends (a stopped sweep keeps them)."""

    FIGURES = ("final_speed_mps", "final_fall_rate", "steps_to_target", "target_speed_mps", "timesteps",
               "shipped_model", "history")

    def __init__(self, root: Path, trials: list[Trial], earlier: dict[str, dict]) -> None:
        self.path = root / RESULTS_FILE
        self.entries = {t.name: earlier.get(t.name) or
                        {"trial": t.name, "config_id": t.config_id, "config": t.config, "seed": t.seed,
                         "status": "not run", "experiment": str(root / "trials" / t.name)} for t in trials}

    def record(self, name: str, status: str, figures: dict[str, Any] | None = None, error: str | None = None) -> None:
        entry = self.entries[name]
        entry.update({"status": status, "error": error, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
        for key in self.FIGURES:
            entry[key] = (figures or {}).get(key)
        self.write()

    def write(self) -> None:
        write_json(self.path, list(self.entries.values()))           # type: ignore[arg-type]


class Progress:
    """One printed line per finished trial: `[done/total] trial (settings, seed): status: figures or why`."""

    def __init__(self, results: Results, total: int) -> None:
        self.results, self.total, self.done = results, total, 0

    def line(self, name: str) -> None:
        self.done += 1
        e = self.results.entries[name]
        figs = (f"{e['final_speed_mps']:.3f} m/s, {e['final_fall_rate']:.0%} falls, steps to target "
                f"{e['steps_to_target'] if e['steps_to_target'] is not None else '-'}") if e["status"] == "ok" \
            else e["error"]
        print(f"[{self.done}/{self.total}] {name} ({describe(e['config'])}, seed {e['seed']}): {e['status']}: {figs}",
              flush=True)


def tune_callback(results: Results, total: int):
    from ray.tune import Callback

    class Report(Callback):
        """Records each trial's end in results.json and prints one line for it."""

        def __init__(self) -> None:
            self.progress = Progress(results, total)

        def on_trial_complete(self, iteration, trials, trial, **info):
            name = trial.config["trial"]["name"]
            if trial.last_result and "final_speed_mps" in trial.last_result:
                results.record(name, "ok", trial.last_result)
            else:
                results.record(name, "failed", error="the trial ended without figures")
            self.progress.line(name)

        def on_trial_error(self, iteration, trials, trial, **info):
            name = trial.config["trial"]["name"]
            results.record(name, "failed", error=error_line(trial))
            self.progress.line(name)

    return Report()


def error_line(trial) -> str:
    """The one line of a failed trial's error that says why (Ray wraps it in a traceback)."""
    text = ""
    path = getattr(trial, "error_file", None) or ""
    if path and Path(path).is_file():
        text = Path(path).read_text(errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "the pipeline " in ln:
            return ln[ln.index("the pipeline "):][:400]
    return (lines[-1][:400] if lines else "the trial failed (no error text)")


def start_ray(address: str | None) -> None:
    """Join the cluster at `address`, or start Ray in this process on this machine (loopback, no
    dashboard). A cluster that does not answer is a one-line PipelineError."""
    import ray
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")   # our own figures; TensorBoard is per trial
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR", _node_ip_address="127.0.0.1")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at --address {address}" if address else "Ray on this machine"
        raise PipelineError(f"cannot reach {where}: {one_line(exc)}") from None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                             # not Linux
        return os.cpu_count() or 1


def run_sweep(spec: SweepSpec, root: Path, resume: bool, command_line: str, backend: str = "local",
              workers: int | None = None, address: str | None = None,
              cpus_per_trial: float | None = None) -> list[dict[str, Any]]:
    trials = trials_of(spec, root / "trials")           # validates every trial's settings first
    earlier: dict[str, dict] = {}
    if resume:
        earlier = {e["trial"]: e for e in json.loads((root / RESULTS_FILE).read_text())
                   if e.get("status") == "ok"} if (root / RESULTS_FILE).is_file() else {}
    todo = [t for t in trials if t.name not in earlier]
    if todo and backend == "ray":
        start_ray(address)                              # before anything is created: it may not answer
    try:
        return _run_sweep(spec, root, resume, command_line, backend, trials, earlier, todo, workers, cpus_per_trial)
    finally:
        if todo and backend == "ray":
            import ray
            ray.shutdown()


def _run_sweep(spec: SweepSpec, root: Path, resume: bool, command_line: str, backend: str, trials: list[Trial],
               earlier: dict[str, dict], todo: list[Trial], workers: int | None,
               cpus_per_trial: float | None) -> list[dict[str, Any]]:
    root.mkdir(parents=True, exist_ok=True)
    record = json.loads((root / SWEEP_FILE).read_text()) if resume else {"created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    record.update({"spec": asdict(spec), "configurations": {f"c{i}": c for i, c in enumerate(spec.configurations())}})
    record.setdefault("commands", []).append(command_line)
    write_json(root / SWEEP_FILE, record)
    results = Results(root, trials, earlier)
    results.write()
    n_cfg = len(spec.configurations())
    at_once = min(workers or usable_cpus(), max(len(todo), 1))
    print(f"sweep {spec.name}: {n_cfg} configuration(s) x {len(spec.seeds)} seed(s) = {len(trials)} trials"
          + (f"; {len(trials) - len(todo)} finished earlier, running {len(todo)}" if resume else "")
          + (f" on {at_once} local worker(s)" if backend == "local" else " on Ray Tune")
          + f" -> {root}", flush=True)
    stopped_by = None
    if todo and backend == "local":
        stopped_by = run_local(todo, root, results, at_once)
    elif todo:
        run_ray(todo, root, results, workers, cpus_per_trial or 1.0)
    entries = list(results.entries.values())
    write_table(entries, spec, root)
    plot_bands(entries, spec, root / CURVES_FILE)
    if stopped_by is not None:
        from training.stopping import Interrupted
        done = sum(e["status"] == "ok" for e in entries)
        raise Interrupted(stopped_by, f"sweep {spec.name}",
                          f"{done} of {len(entries)} trials finished (results in {root / RESULTS_FILE}; "
                          "each stopped trial saved a checkpoint where it had reached one)",
                          f"python training/sweep.py --resume --name {spec.name} --output-dir {root.parent}")
    return entries


def run_local(todo: list[Trial], root: Path, results: Results, workers: int) -> int | None:
    """The trials on a pool of `workers` processes of this machine, each running one trial's pipeline
    at a time. Returns the stop signal's number if Ctrl-C / SIGTERM stopped the sweep (the running
    pipelines are stopped and save a checkpoint; trials not started stay 'not run')."""
    from training.stopping import SIGNALS
    ctx = multiprocessing.get_context("spawn")        # fresh interpreters: no forked threads or locks
    stop, kill = ctx.Event(), ctx.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if received:
            print(f"\n{name} again: killing the running trials", file=sys.stderr, flush=True)
            kill.set()
        else:
            print(f"\n{name} received: stopping the running trials (each saves a checkpoint; "
                  "send it again to kill them)", file=sys.stderr, flush=True)
            stop.set()
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    progress = Progress(results, len(todo))
    try:
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_start,
                                    initargs=(stop, kill)) as pool:
            futures = {pool.submit(local_trial, {"name": t.name, "root": str(root), "command": t.command}): t.name
                       for t in todo}
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                if received:
                    for fut in pending:
                        fut.cancel()                  # those not handed to a worker yet
                for fut in done:
                    name = futures[fut]
                    exc = None if fut.cancelled() else fut.exception()
                    if fut.cancelled() or isinstance(exc, NotStarted):
                        continue                      # stays "not run"
                    if isinstance(exc, TrialStopped):
                        results.record(name, "stopped", error=str(exc))
                    elif exc is not None:
                        results.record(name, "failed", error=one_line(exc))
                    else:
                        results.record(name, "ok", fut.result())
                    progress.line(name)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0] if received else None


def one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if isinstance(exc, cf.BrokenExecutor):             # a worker process died (killed, out of memory)
        text = f"a worker process died ({text or 'no reason given'})"
    return (text or type(exc).__name__)[:400]


def run_ray(todo: list[Trial], root: Path, results: Results, max_concurrent: int | None, cpus_per_trial: float) -> None:
    """The trials as Ray Tune trials (Ray is started or joined already: `start_ray`)."""
    from ray import tune
    params = [{"name": t.name, "root": str(root), "command": t.command} for t in todo]
    tuner = tune.Tuner(
        tune.with_resources(run_trial, {"cpu": cpus_per_trial}),
        param_space={"trial": tune.grid_search(params)},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent or 0),
        run_config=tune.RunConfig(
            name=f"tune_{time.strftime('%Y%m%d_%H%M%S')}", storage_path=str((root / "ray").resolve()),
            verbose=0, callbacks=[tune_callback(results, len(todo))],
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)))
    tuner.fit()


# ---------------------------------------------------------------- table and plot
def aggregate(entries: list[dict[str, Any]], spec: SweepSpec) -> list[dict[str, Any]]:
    """Per configuration: mean and std over its finished seeds; failed/not-run trials counted."""
    rows = []
    for i, config in enumerate(spec.configurations()):
        mine = [e for e in entries if e["config_id"] == f"c{i}"]
        ok = [e for e in mine if e["status"] == "ok"]
        row: dict[str, Any] = {"config_id": f"c{i}", "config": config, "seeds_ok": len(ok), "seeds": len(mine)}
        for key in ("final_speed_mps", "final_fall_rate"):
            values = [e[key] for e in ok]
            row[key] = [float(np.mean(values)), float(np.std(values))] if values else None
        reached = [e["steps_to_target"] for e in ok if e["steps_to_target"] is not None]
        row["steps_to_target"] = [float(np.mean(reached)), float(np.std(reached))] if reached else None
        row["reached_target"] = len(reached)
        rows.append(row)
    return rows


def write_table(entries: list[dict[str, Any]], spec: SweepSpec, root: Path) -> None:
    rows = aggregate(entries, spec)
    pm = lambda v, fmt: f"{v[0]:{fmt}} +- {v[1]:{fmt}}" if v else "-"     # noqa: E731
    lines = [f"# Sweep {spec.name}: mean +- std over seeds {spec.seeds}", "",
             "| configuration | settings | seeds ok | final speed (m/s) | final falls | steps to target (reached) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        steps = f"{pm(r['steps_to_target'], ',.0f')} ({r['reached_target']}/{r['seeds_ok']})"
        lines.append(f"| {r['config_id']} | {describe(r['config'])} | {r['seeds_ok']}/{r['seeds']} | "
                     f"{pm(r['final_speed_mps'], '.3f')} | {pm(r['final_fall_rate'], '.1%')} | {steps} |")
    failed = [e for e in entries if e["status"] != "ok"]
    if failed:
        lines += ["", "Trials without figures:"] + [f"- {e['trial']}: {e['status']}" + (f": {e['error']}" if e.get("error")
                                                     else "") for e in failed]
    text = "\n".join(lines) + "\n"
    (root / TABLE_FILE).write_text(text)
    write_json(root / "table.json", rows)                            # type: ignore[arg-type]
    print(text, flush=True)


def plot_bands(entries: list[dict[str, Any]], spec: SweepSpec, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, config in enumerate(spec.configurations()):
        runs = [e["history"] for e in entries if e["config_id"] == f"c{i}" and e["status"] == "ok" and e.get("history")]
        if not runs:
            continue
        steps = np.array(sorted({h["timesteps"] for run in runs for h in run}), dtype=float)
        speeds = np.array([np.interp(steps, [h["timesteps"] for h in run], [h["mean_forward_speed"] for h in run])
                           for run in runs])
        mean, std, color = speeds.mean(0), speeds.std(0), colors[i % len(colors)]
        ax.plot(steps, mean, color=color, lw=1.8, label=f"c{i}: {describe(config)} ({len(runs)} seeds)")
        ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2)
    targets = [e["target_speed_mps"] for e in entries if e["status"] == "ok" and e.get("target_speed_mps")]
    if targets:
        ax.axhline(float(np.mean(targets)), color="green", ls=":", lw=1.2, label="target: 1.1x trot")
    ax.set(xlabel="env steps", ylabel="eval forward speed (m/s)", title=f"sweep {spec.name}: mean +- std over seeds")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- command line
def parse_grid(text: str) -> tuple[str, list[Any]]:
    key, eq, values = text.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"--grid wants KEY=[v1, v2, ...], got {text!r}")
    try:
        parsed = json.loads(values)
    except ValueError:
        raise ConfigError(f"--grid {key.strip()}: {values!r} is not a JSON list (e.g. [1e-4, 3e-4])") from None
    if not isinstance(parsed, list) or not parsed:
        raise ConfigError(f"--grid {key.strip()}: wants a non-empty JSON list, got {values!r}")
    return key.strip(), parsed


def make_spec(name: str, seeds: list[int] | None, base: list[list[str]], grid: dict[str, list[Any]],
              sample: dict[str, str], num_samples: int | None, sample_seed: int | None,
              flag: Callable[[str], str]) -> SweepSpec:
    """The checks every sweep passes, from the command line or a spec file (`flag` names a field in the
    messages: '--num-samples' or 'num_samples')."""
    both = sorted(set(grid) & set(sample))
    if both:
        raise ConfigError(f"{flag('grid')} and {flag('sample')} both set {both[0]}")
    if num_samples is not None and not sample:
        raise ConfigError(f"{flag('num_samples')} needs at least one {flag('sample')}")
    num = num_samples if num_samples is not None else (4 if sample else 0)
    if sample and not 1 <= num <= 10_000:
        raise ConfigError(f"{flag('num_samples')} must be 1..10000, got {num}")
    sample_seed = 0 if sample_seed is None else sample_seed
    if not 0 <= sample_seed < 2**63:
        raise ConfigError(f"{flag('sample_seed')} must be a non-negative integer, got {sample_seed}")
    seeds = [0, 1, 2] if seeds is None else seeds
    if not seeds or len(set(seeds)) != len(seeds) or not all(0 <= s < 2**31 for s in seeds):
        raise ConfigError(f"{flag('seeds')} must be distinct integers in 0..2^31-1, got {seeds}")
    return SweepSpec(name, list(seeds), base, grid, sample, num, sample_seed)


def build_spec(args: argparse.Namespace) -> SweepSpec:
    """The sweep the command line describes (no --spec)."""
    base = [list(pair) for pair in getattr(args, "assignments", None) or []]
    if args.algo:
        base.append(["rl.algo", args.algo])
    grid, sample = {}, {}
    for text in args.grid:
        key, values = parse_grid(text)
        grid[key] = values
    for text in args.sample:
        key, eq, dist = text.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--sample wants KEY=DISTRIBUTION, got {text!r}")
        parse_distribution(dist)
        sample[key.strip()] = dist.strip()
    seeds = args.seeds
    if args.quick:
        base = [*QUICK_BASE, *base]
        grid = grid or dict(QUICK_GRID)
        seeds = args.seeds if args.seeds is not None else list(QUICK_SEEDS)
    return make_spec(args.name, seeds, base, grid, sample, args.num_samples, args.sample_seed,
                     lambda k: "--" + k.replace("_", "-"))


# ---------------------------------------------------------------- experiment specs (data files)
def spec_file(text: str) -> Path:
    """--spec: a .toml or .json path, or the name of a spec in sweeps/ (without its extension)."""
    path = Path(text)
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", text):
        named = [SPECS / f"{text}{ext}" for ext in (".toml", ".json") if (SPECS / f"{text}{ext}").is_file()]
        if not named:
            known = ", ".join(sorted(p.stem for p in SPECS.glob("*.*") if p.suffix in (".toml", ".json")))
            raise ConfigError(f"--spec: no spec {text!r} in {SPECS} (known: {known or 'none'}; "
                              "or give the path of a .toml or .json file)")
        return named[0]
    if not path.exists():
        raise ConfigError(f"--spec {text}: no such file")
    if not path.is_file():
        raise ConfigError(f"--spec {text}: not a file")
    if path.suffix not in (".toml", ".json"):
        raise ConfigError(f"--spec {text}: a spec is a .toml or .json file")
    return path


def read_spec(path: Path) -> dict[str, Any]:
    kind = "TOML" if path.suffix == ".toml" else "JSON"
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if kind == "TOML" else json.loads(text)
    except OSError as exc:
        raise ConfigError(f"--spec {path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--spec {path}: not a text file (UTF-8)") from None
    except ValueError as exc:                          # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(f"--spec {path}: not valid {kind} ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--spec {path}: wants a table of {', '.join(SPEC_KEYS)}; got {type(data).__name__}")
    return data


def _plain(value: Any) -> bool:
    """A value JSON can carry (what settings take): no TOML dates or times."""
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return value is None or isinstance(value, (str, int, float, bool))


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """{"ppo": {"gamma": x}} (TOML's `ppo.gamma = x`) -> [("ppo.gamma", x)]; a quoted "ppo.gamma" key too."""
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        path = f"{prefix}{key}"
        out += _flatten(value, f"{path}.") if isinstance(value, dict) and value else [(path, value)]
    return out


def spec_from_file(path: Path, args: argparse.Namespace) -> SweepSpec:
    """The sweep a spec file describes, with --seeds (replacing its seeds), --preset and --set (after its
    settings) from the command line. Every error is one line naming the file and the key."""
    data = read_spec(path)

    def bad(text: str) -> ConfigError:
        return ConfigError(f"--spec {path}: {text}")

    unknown = [k for k in data if k not in SPEC_KEYS and not k.startswith("_")]
    if unknown:
        close = difflib.get_close_matches(unknown[0], SPEC_KEYS, n=1)
        raise bad(f"unknown key {unknown[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                  + f"; a spec has {', '.join(SPEC_KEYS)}")
    integer = lambda v: isinstance(v, int) and not isinstance(v, bool)      # noqa: E731
    for key, ok, want in (("about", lambda v: isinstance(v, str), "a text"),
                          ("name", lambda v: isinstance(v, str) and NAME.match(v), "a folder name (letters, "
                           "digits, '.', '_' or '-')"),
                          ("seeds", lambda v: isinstance(v, list) and all(integer(s) for s in v), "a list of integers"),
                          ("presets", lambda v: isinstance(v, str) or (isinstance(v, list) and
                                                                      all(isinstance(p, str) for p in v)),
                           "a preset name or a list of them"),
                          ("set", lambda v: isinstance(v, dict), "a table of settings"),
                          ("grid", lambda v: isinstance(v, dict) and v, "a table of settings, each with a list of values"),
                          ("sample", lambda v: isinstance(v, dict) and v, "a table of settings, each with a distribution"),
                          ("num_samples", integer, "an integer"), ("sample_seed", integer, "an integer")):
        if key in data and not ok(data[key]):
            raise bad(f"{key} wants {want}; got {json.dumps(data[key], default=str)}")
    presets = [data["presets"]] if isinstance(data.get("presets"), str) else list(data.get("presets", []))
    # a preset file named by a relative path is found beside the spec
    presets = [str((path.parent / p).resolve()) if p.endswith(".json") and not Path(p).is_absolute() else p
               for p in presets]
    base = [["@preset", p] for p in presets]
    for key, value in _flatten(data.get("set", {})):
        if not _plain(value):
            raise bad(f"set {key}: {value!r} is not a value a setting takes")
        base.append([key, value_text(value)])
    base += [list(pair) for pair in getattr(args, "assignments", None) or []]
    grid: dict[str, list[Any]] = {}
    for key, values in _flatten(data.get("grid", {})):
        if not isinstance(values, list) or not values or not _plain(values):
            raise bad(f"grid {key}: wants a non-empty list of values, got {json.dumps(values, default=str)}")
        grid[key] = values
    sample: dict[str, str] = {}
    for key, dist in _flatten(data.get("sample", {})):
        if not isinstance(dist, str):
            raise bad(f"sample {key}: wants a distribution such as \"loguniform(1e-4, 1e-3)\", got {dist!r}")
        try:
            parse_distribution(dist)
        except ConfigError as exc:
            raise bad(f"sample {key}: {str(exc).removeprefix('--sample: ')}") from None
        sample[key] = dist.strip()
    seeds = args.seeds if args.seeds is not None else data.get("seeds")
    try:
        return make_spec(data.get("name", path.stem), seeds, base, grid, sample, data.get("num_samples"),
                         data.get("sample_seed"), lambda k: "--seeds" if k == "seeds" and args.seeds is not None else k)
    except ConfigError as exc:
        raise bad(str(exc)) from None


# ---------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    from training.cli import Parser, add_settings_options, run_guarded
    ap = Parser(prog="training/sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", metavar="FILE|NAME", help="an experiment spec: a .toml or .json file, or the name of "
                                                       "one in sweeps/ (e.g. learning_rate); --seeds, --set and "
                                                       "--preset go on top of it")
    ap.add_argument("--name", default=None, help="the sweep's folder under --output-dir (default: the spec's name, "
                                                 "sweep, or quick for --quick)")
    ap.add_argument("--output-dir", type=Path, default=Path("outputs/sweeps"), help="default outputs/sweeps")
    ap.add_argument("--seeds", type=int, nargs="+", help="seeds per configuration (default 0 1 2; --quick: 0 1)")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=[V1, V2]",
                    help="sweep a setting over a JSON list of values (repeatable: every combination)")
    ap.add_argument("--sample", action="append", default=[], metavar="KEY=DIST",
                    help="draw a setting from uniform(a, b), loguniform(a, b), randint(a, b) or choice([..]) (repeatable)")
    ap.add_argument("--num-samples", type=int, default=None, help="draws of the --sample space (default 4)")
    ap.add_argument("--sample-seed", type=int, default=None, help="seed of the draws (default 0)")
    ap.add_argument("--algo", choices=["ppo", "sac", "td3"], help="= --set rl.algo=ALGO")
    ap.add_argument("--quick", action="store_true", help="2 configurations (ppo.learning_rate 3e-4, 1e-4) x 2 seeds "
                                                         "with the tiny preset: a check in about a minute")
    ap.add_argument("--resume", action="store_true", help="run the trials of an existing sweep that did not finish")
    ap.add_argument("--backend", choices=BACKENDS, default=None,
                    help="local: worker processes on this machine (the default); ray: Ray Tune trials "
                         "(./install.sh --with-ray; the default with --address)")
    ap.add_argument("--workers", "--max-concurrent", dest="workers", type=int, default=None,
                    help="trials at once (default: one per CPU of this machine; ray: as the cluster's CPUs allow)")
    ap.add_argument("--address", default=None, help="join an existing Ray cluster from one of its nodes ('auto' or the "
                                                    "head's HOST:6379); implies --backend ray")
    ap.add_argument("--cpus-per-trial", type=float, default=None, help="CPUs Ray reserves per trial (--backend ray; "
                                                                       "default 1)")
    add_settings_options(ap, quick=False)
    args = ap.parse_args(argv)
    command_line = shlex.join(["training/sweep.py", *(sys.argv[1:] if argv is None else argv)])

    def go() -> None:
        backend = args.backend or ("ray" if args.address else "local")
        if backend == "local" and args.address:
            raise ConfigError("--address names a Ray cluster: use it with --backend ray")
        if backend == "local" and args.cpus_per_trial is not None:
            raise ConfigError("--cpus-per-trial is for --backend ray (the local backend runs --workers trials at once)")
        if args.workers is not None and not 1 <= args.workers <= 4096:
            raise ConfigError(f"--workers must be 1..4096, got {args.workers}")
        if args.cpus_per_trial is not None and not 0 < args.cpus_per_trial <= 1024:
            raise ConfigError(f"--cpus-per-trial must be in (0, 1024], got {args.cpus_per_trial}")
        fresh = None
        if args.spec:
            given = [flag for flag, on in (("--grid", args.grid), ("--sample", args.sample), ("--algo", args.algo),
                                           ("--num-samples", args.num_samples is not None),
                                           ("--sample-seed", args.sample_seed is not None), ("--quick", args.quick))
                     if on]
            if given:
                raise ConfigError(f"{given[0]} with --spec: the spec file defines the sweep (on the command line "
                                  "only --seeds, --set and --preset go on top of it)")
            fresh = spec_from_file(spec_file(args.spec), args)
        args.name = args.name or (fresh.name if fresh else "quick" if args.quick else "sweep")
        if not NAME.match(args.name):
            raise ConfigError(f"--name {args.name!r}: use letters, digits, '.', '_' or '-' (a folder name)")
        if fresh:
            fresh.name = args.name
        root = args.output_dir.resolve() / args.name
        check_output_dir(root if args.resume else args.output_dir, "--output-dir")
        if args.resume:
            spec = resumed_spec(root, args, fresh)
        else:
            spec = fresh or build_spec(args)
            if (root / SWEEP_FILE).exists() or (root.exists() and any(root.iterdir())):
                raise PipelineError(f"sweep {root} already exists; pass --resume to finish it or choose another --name")
        if backend == "ray":
            import_ray()
        entries = run_sweep(spec, root, args.resume, command_line, backend, args.workers, args.address,
                            args.cpus_per_trial)
        bad = [e for e in entries if e["status"] != "ok"]
        print(f"results -> {root / RESULTS_FILE}; table -> {root / TABLE_FILE}; curves -> {root / CURVES_FILE}")
        if bad:
            print(f"{len(bad)} of {len(entries)} trials without figures ({', '.join(e['trial'] for e in bad)}); "
                  f"run them again with: python training/sweep.py --resume --name {spec.name} "
                  f"--output-dir {args.output_dir}", flush=True)
        if len(bad) == len(entries):
            raise PipelineError("no trial finished")

    return run_guarded(go)


def resumed_spec(root: Path, args: argparse.Namespace, fresh: SweepSpec | None = None) -> SweepSpec:
    path = root / SWEEP_FILE
    if not path.is_file():
        raise PipelineError(f"--resume: no sweep at {root} ({SWEEP_FILE} missing)")
    try:
        saved = SweepSpec(**json.loads(path.read_text())["spec"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"{path}: {exc}") from None
    asked = fresh is not None or args.grid or args.sample or args.seeds is not None or args.algo \
        or getattr(args, "assignments", None) or args.num_samples is not None or args.sample_seed is not None
    if asked and (fresh or build_spec(args)) != saved:
        raise PipelineError(f"--resume: the sweep's settings differ from {path}; resume with --name and "
                            "--output-dir alone, or start a new sweep with another --name")
    return saved


def import_ray() -> None:
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError:
        raise PipelineError(RAY_MISSING) from None


if __name__ == "__main__":
    # Through the module, so Ray and the worker processes find `training.sweep.*` by reference.
    from training.sweep import main as _main
    sys.exit(_main())
