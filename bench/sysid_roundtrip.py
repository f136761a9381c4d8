"""The identification kit against synthetic robots whose servo parameters are known.

    python bench/sysid_roundtrip.py [--repeats 3] [--max-evals 600] [--workers 1] [--quick]

For each synthetic robot: the recorder's protocol (deploy/sysid.py) as a log with jittered tick times; a
phone-like video of the hanging leg rendered from the single-leg model with the robot's parameters
(training/sysid/synthetic.py: 240 fps, motion blur, defocus, noise, the encoder's loss, frame-time jitter,
clock drift and an offset the log does not know); then `pidog sysid track` and `pidog sysid fit` on them,
as a user runs them. Robots: nominal (the priors of robot.PhysicalParams), weak (0.65 x stall torque,
1.3 x damping), slow (60 ms dead time). Writes bench/results/sysid_roundtrip.json: per robot the true and
fitted values, the relative errors of stall torque, damping and kp, the dead time's error in ms and the
held-out (trot replay) error in degrees. Targets: relative errors <= 10 %, |dead time error| <= 4 ms,
held-out error <= 1 deg. `--quick`: one robot, the short protocol at 60 fps and a small fit (a smoke test;
its figures are not held to the targets).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench._common import write_result

PROTOCOL = ("synthetic robots (nominal; 0.65 x stall torque and 1.3 x damping; 60 ms dead time): the recorder's "
            "protocol rendered as a 240 fps phone video of the hanging leg (blur, noise, encoder loss, frame-time "
            "jitter, clock drift, unknown offset), then pidog sysid track and fit; relative errors, dead time "
            "error and the held-out trot replay's error")
TARGETS = {"relative_error": "<= 0.10 each", "delay_error_ms": "<= 4 (absolute)", "holdout_mae_deg": "<= 1.0"}


def robots():
    from training.sysid.leg import LegParams
    nominal = LegParams()
    return {"nominal": nominal, "weak": nominal.scaled(stall_torque=0.65, damping=1.3),
            "slow": dataclasses.replace(nominal, delay=0.060)}


def run_case(name: str, seed: int, quick: bool, repeats: int, max_evals: int, workdir: str) -> dict:
    import numpy as np

    from training.sysid import files
    from training.sysid.fit import FitData, fit
    from training.sysid.synthetic import RenderSettings, render, synthetic_log, write_log
    from training.sysid.track import track
    true = robots()[name]
    folder = Path(workdir) / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    settings = RenderSettings()
    if quick:
        settings = dataclasses.replace(settings, fps=60.0, exposure=0.5 / 60, subframes=2)
    log = synthetic_log("LF", quick, rng, settings.tick_jitter_s)
    write_log(folder / "log.npz", log)
    t0 = time.perf_counter()
    render(folder / "video.mp4", log, true, settings, seed=seed)
    t1 = time.perf_counter()
    summary = track(folder / "video.mp4", folder / "log.npz", folder / "track.npz", None, say=lambda *a: None)
    t2 = time.perf_counter()
    data = FitData.from_track(files.load_track(folder / "track.npz"))
    result = fit(data, "trot", repeats=repeats, max_evals=max_evals, seed=seed, say=lambda *a: None)
    t3 = time.perf_counter()
    got = result["params"]
    fields = ("stall_torque", "damping", "kp", "frictionloss", "armature", "delay")
    return {
        "name": name,
        "true": {f: getattr(true, f) for f in fields} | {"no_load_speed": true.no_load_speed},
        "fitted": {f: getattr(got, f) for f in fields} | {"no_load_speed": got.no_load_speed},
        "spread": {f: float(result["spread"][f]) for f in fields},
        "relative_error": {f: round(getattr(got, f) / getattr(true, f) - 1, 4)
                           for f in ("stall_torque", "damping", "kp", "frictionloss", "armature")},
        "delay_error_ms": round(1000 * (got.delay - true.delay), 2),
        "holdout_mae_deg": round(result["holdout_mae_deg"], 3),
        "train_mae_deg": round(result["train_mae_deg"], 3),
        "frames": summary["frames"], "tracked_fraction": summary["tracked_fraction"],
        "flashes_matched": summary["flashes_matched"], "sync_rms_ms": summary["sync_rms_ms"],
        "simulations": result["evaluations"], "repeats_kept": result["kept"],
        "seconds": {"render": round(t1 - t0, 1), "track": round(t2 - t1, 1), "fit": round(t3 - t2, 1)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="CMA-ES fits per robot (their spread is reported)")
    parser.add_argument("--max-evals", type=int, default=600, help="simulations per fit")
    parser.add_argument("--workers", type=int, default=1, help="robots in parallel (processes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one robot, the short protocol at 60 fps (a smoke test)")
    args = parser.parse_args(argv)
    for flag, value, low in (("--repeats", args.repeats, 1), ("--max-evals", args.max_evals, 20),
                             ("--workers", args.workers, 1), ("--seed", args.seed, 0)):
        if value < low:
            parser.exit(2, f"error: {flag} must be at least {low}, got {value}\n")
    names = ["nominal"] if args.quick else list(robots())
    workdir = tempfile.mkdtemp(prefix="pidog_sysid_roundtrip_")
    try:
        jobs = [(name, args.seed + 1000 * i, args.quick, args.repeats, args.max_evals, workdir)
                for i, name in enumerate(names)]
        if args.workers > 1:
            with ProcessPoolExecutor(min(args.workers, len(jobs))) as pool:
                cases = list(pool.map(run_case, *zip(*jobs)))
        else:
            cases = [run_case(*job) for job in jobs]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    worst_rel = max(abs(v) for c in cases for k, v in c["relative_error"].items() if k in ("stall_torque", "damping", "kp"))
    write_result("sysid_roundtrip", {
        "cases": cases,
        "worst_relative_error": round(worst_rel, 4),
        "worst_delay_error_ms": max(abs(c["delay_error_ms"]) for c in cases),
        "worst_holdout_mae_deg": max(c["holdout_mae_deg"] for c in cases),
        "quick": args.quick, "repeats": args.repeats, "max_evals": args.max_evals,
        "targets": TARGETS,
    }, protocol=PROTOCOL)


if __name__ == "__main__":
    main()
