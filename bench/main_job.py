"""The default one-shot job as a user runs it, timed stage by stage.

    python bench/main_job.py                    # train_pretrain_finetune.py with no flags (~10-15 min, 2 cores)
    python bench/main_job.py --quick            # train_pretrain_finetune.py --quick
    python bench/main_job.py --baseline-code /path/to/older/checkout    # the same job on older code first,
                                                # then this code, in one run: the ratio of their wall times

Runs `python train_pretrain_finetune.py [--quick] --seed S` in a fresh output folder (removed afterwards
unless `--keep`), then reads the run's `summary.json`: the wall time of each stage the pipeline records
(`timings`: demonstrations, BC, BC evaluation, PPO learning, periodic evaluations, confirmations, clips,
checkpoints, final figures; `other` is what they leave of the total: start-up, imports, set-up), the
shipped model's figures on the final episodes, and the steps to 1.1x the trot (the trot evaluated on the
pipeline's evaluation episodes). `evaluation_fraction` = (evaluations + confirmations + final figures) /
total. Code older than the stage timings reports its total, its PPO stage and the shipped figures.

Writes bench/results/main_job.json: {"total_s", "stages": {name: seconds}, "evaluation_fraction",
"ppo_learning_steps_per_s", "shipped": {"speed_mps", "fall_rate"}, "steps_to_1p1x_trot",
"confirmation_episodes": {"run", "skipped"}, "baseline": {the same for --baseline-code} | null,
"total_ratio_to_baseline"}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import write_result

HERE = Path(__file__).resolve().parent.parent          # the checkout this script belongs to

EVALUATION_STAGES = ("evaluations", "confirmations", "final_figures")


def run_job(code: Path, quick: bool, seed: int, workdir: Path, name: str, extra: list[str]) -> dict:
    """One job from checkout `code` (its own modules first on the path); its wall time and summary."""
    argv = [sys.executable, str(code / "train_pretrain_finetune.py"), "--seed", str(seed), "--output-dir",
            str(workdir), "--experiment-name", name, *(["--quick"] if quick else []), *extra]
    env = {**os.environ, "PYTHONPATH": str(code) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DISPLAY", None)                                 # no live window: a user's headless run
    print(f"running {' '.join(argv[1:])}  (code: {code})", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    total = time.perf_counter() - t0
    (workdir / f"{name}.log").write_text(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"error: the job failed (exit {proc.returncode}); its output is in {workdir / name}.log:\n"
                         + proc.stdout[-2000:])
    from training.experiment import Experiment
    run = Experiment(workdir / name)
    return {"total_s": total, "summary": run.read_json(Experiment.SUMMARY, None),
            "history": run.read_json(Experiment.EVALUATIONS, [])}


def figures(job: dict, trot_speed: float) -> dict:
    from training.selection import TARGET_OVER_TROT, shipped_eval, steps_to_target
    summary, total = job["summary"], job["total_s"]
    ppo = summary["ppo"]
    stages = {k: round(v, 1) for k, v in summary.get("timings", {}).items()}
    if stages:
        stages["other"] = round(max(0.0, total - sum(stages.values())), 1)
    shipped = shipped_eval(ppo)
    return {
        "total_s": round(total, 1),
        "stages": stages or None,
        "ppo_stage_s": round(ppo["seconds"], 1),
        "evaluation_fraction": round(sum(stages.get(k, 0.0) for k in EVALUATION_STAGES) / total, 3) if stages else None,
        "ppo_learning_steps_per_s": round(ppo["learning_steps_per_s"]) if "learning_steps_per_s" in ppo else None,
        "shipped": {"speed_mps": round(shipped["mean_forward_speed"], 4), "fall_rate": shipped["fall_rate"],
                    "episodes": shipped.get("episodes"), "model": (ppo.get("selected") or {}).get("model")},
        "selected_at_steps": (ppo.get("selected") or {}).get("timesteps"),
        "steps_to_1p1x_trot": steps_to_target(job["history"], TARGET_OVER_TROT * trot_speed),
        "evaluations": len(job["history"]),
        "confirmations": sum("confirmation" in h for h in job["history"]),
        "confirmation_episodes": ppo.get("confirmation_episodes"),
    }


def trot_speed(config_path: Path) -> float:
    """The trot's mean speed on the run's evaluation episodes (its env, randomized, the same seeds)."""
    from pidog_env.config import EnvConfig
    from pidog_env.gaits import TrotGait
    from training.evaluation import evaluate_policy
    saved = json.loads(config_path.read_text())["config"]
    env_cfg = EnvConfig.from_dict(saved["env"])
    return evaluate_policy(TrotGait.for_config(env_cfg), env_cfg, saved["rl"]["eval_episodes"],
                           randomize=True)["mean_forward_speed"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the --quick job instead of the default one")
    ap.add_argument("--seed", type=int, default=0, help="the job's --seed (default 0)")
    ap.add_argument("--baseline-code", type=Path, default=None, metavar="DIR",
                    help="a checkout of older code: its job runs first, on the same machine, same settings")
    ap.add_argument("--preset", action="append", default=[], metavar="NAME",
                    help="a preset for both jobs, as `pidog --preset` (e.g. tiny: a smoke test's budget)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for both jobs, as `pidog --set` (after the presets)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the runs' folders (models, logs) afterwards")
    args = ap.parse_args(argv)
    if not 0 <= args.seed < 2**31:
        ap.exit(2, "error: --seed must be in [0, 2**31)\n")
    bad = next((a for a in args.set if "=" not in a or not a.split("=", 1)[0]), None)
    if bad is not None:
        ap.exit(2, f"error: --set takes KEY=VALUE, got {bad!r}\n")
    if args.baseline_code is not None and not (args.baseline_code / "train_pretrain_finetune.py").is_file():
        ap.exit(2, f"error: --baseline-code {args.baseline_code} has no train_pretrain_finetune.py\n")
    if args.workdir is not None and args.workdir.exists() and any(args.workdir.iterdir()):
        ap.exit(2, f"error: --workdir {args.workdir} is not empty\n")
    from training.presets import build_config
    build_config([], [*(("@preset", p) for p in args.preset), *(tuple(a.split("=", 1)) for a in args.set)])
    extra = [*(x for p in args.preset for x in ("--preset", p)), *(x for a in args.set for x in ("--set", a))]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pidog_main_job_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        jobs = {}
        if args.baseline_code is not None:
            jobs["baseline"] = run_job(args.baseline_code.resolve(), args.quick, args.seed, workdir, "baseline", extra)
        jobs["current"] = run_job(HERE, args.quick, args.seed, workdir, "current", extra)
        from training.experiment import Experiment
        trot = trot_speed(workdir / "current" / Experiment.CONFIG)
        result = figures(jobs["current"], trot)
        base = figures(jobs["baseline"], trot) if "baseline" in jobs else None
        write_result("main_job", {
            **result, "job": "quick" if args.quick else "default", "seed": args.seed, "presets": args.preset,
            "settings": args.set,
            "trot_speed_mps": round(trot, 4), "baseline": base,
            "baseline_code": str(args.baseline_code) if args.baseline_code else None,
            "total_ratio_to_baseline": round(result["total_s"] / base["total_s"], 3) if base else None,
        })
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"runs kept in {workdir}")


if __name__ == "__main__":
    from training.cli import run_guarded
    sys.exit(run_guarded(main))
