"""Robot runtime timing at 50 Hz, against MuJoCo and against a fake of the vendor stack, and whether the
exported policy still walks through the runtime with the robot's IMU timing.

    python bench/deploy_latency.py [--seconds 20] [--vendor-seconds 10] [--export DIR] [--episodes 5]
        [--bc-demos 6] [--bc-epochs 40]

Without `--export` it trains a small trot-BC policy (`--bc-demos` demonstrations, `--bc-epochs` epochs)
and exports it with training/export.py.
Then the real runtime loop (deploy.runtime.ControlLoop, real-time scheduling) runs:

1. against the simulated robot (MujocoHardware) for `--seconds`: inference and jitter, as before;
2. against the fake vendor stack (deploy/fake_vendor.py: servo writes release the GIL for 0.45 ms each,
   the IMU block read 1.4 ms; `pidog.Pidog()`'s threads, among them an ultrasonic reader that spins
   holding the GIL) for `--vendor-seconds` each, in three situations:
   - `vendor_fake_*`: the runtime as it drives the robot: it builds the vendor's Robot and Sh3001 objects
     itself and never calls `Pidog()`, so the busy thread never starts (`vendor_fake_threads` lists the
     threads alive during the loop);
   - `vendor_fake_busy_thread_*`: a stress case: the busy thread spins in the process anyway (as if a
     vendor thread could not be avoided; it runs at normal priority); the runtime's 0.1 ms interpreter
     switch interval limits the damage;
   - `vendor_fake_pidog_in_process_*`: the busy thread and the interpreter's default 5 ms switch interval,
     i.e. the previous runtime with `Pidog()` in its process (the runtime's slow-loop stop is disabled
     and the pose moves shortened for this one run, so that it can be measured);
3. against SunFounder's own pidog / robot-hat Python code (the unmodified sources in `--vendor-src`,
   default ../shared/vendor) over an emulated I2C bus (deploy/vendor_bus.py: each transfer takes its
   time at 100 kHz, releasing the GIL like smbus2's ioctl) for `--vendor-seconds`: `vendor_code_*`, the
   vendor's own Servo/PWM/I2C and Sh3001 code paths in every tick (null where the sources are absent);
4. the exported policy in the env and through the runtime on the simulated robot with the robot's IMU
   timing (`--hardware sim --sim-imu robot`), `--episodes` randomized 20 s episodes each.

The runtime raises its control thread to SCHED_FIFO priority where the OS allows it (root or
CAP_SYS_NICE, as on the Pi under sudo); `*_realtime_priority` says whether each run had it.

Writes bench/results/deploy_latency.json; at the top level `vendor_fake_tick_duration_p99_ms` (target
< 10) and `vendor_fake_period_p99_ms` (target < 22), `vendor_code_tick_duration_p99_ms` (< 10),
`inference_p99_ms` (< 0.5), `jitter_p99_ms` (< 2), and `sim_runtime_speed_ratio` (>= 0.8).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

import deploy.runtime as runtime
from bench._common import write_result
from deploy.fake_vendor import FakeVendor
from deploy.hardware import MujocoHardware, RobotHardware
from deploy.policy_spec import PolicySpec
from deploy.runtime import ControlLoop, OnnxPolicy

VENDOR_SRC = Path(__file__).resolve().parent.parent.parent / "shared" / "vendor"


def train_and_export(tmp: Path, demos: int = 6, epochs: int = 40) -> Path:
    from training.experiment import Experiment
    from training.export import export
    from pidog_env.config import EnvConfig
    from training import demos as demo_io
    from training.bc import train_bc
    from training.config import BCConfig, DemoConfig, PolicyConfig
    from training.policies import policy_meta, save_policy
    demo = demo_io.generate(DemoConfig(n_episodes=demos, n_envs=1, noise=0.02), EnvConfig(), seed=0, progress=False)
    bc = train_bc(demo, None, EnvConfig(), PolicyConfig(), BCConfig(epochs=epochs), tmp / "logs", 0, progress=False)
    save_policy(tmp / "bc.pth", bc.policy, policy_meta(bc.policy, PolicyConfig(), EnvConfig()))
    export(tmp / "bc.pth", tmp / Experiment.EXPORT, check_steps=100)
    return tmp / Experiment.EXPORT


def vendor_run(spec: PolicySpec, policy, seconds: float, busy_thread: bool, switch_interval: float,
               tmp: Path) -> dict:
    fake = FakeVendor(seed=0)
    if busy_thread:
        fake.start_vendor_threads()
    seen: set[str] = set()

    def watched(obs):
        seen.update(t.name for t in threading.enumerate())
        return policy(obs)

    default = runtime.SWITCH_INTERVAL_S
    runtime.SWITCH_INTERVAL_S = switch_interval
    try:
        measure_only = switch_interval != default       # the old situation: its ticks would stop the runtime
        loop = ControlLoop(spec, watched, RobotHardware(fake.stack(), tmp / "pidog.conf"), realtime=True,
                           enforce_timing=not measure_only, say=lambda line: None,
                           **(dict(stand_s=0.2, lie_s=0.2) if measure_only else {}))
        stop = loop.run(seconds)
    finally:
        runtime.SWITCH_INTERVAL_S = default
        fake.stop_vendor_threads()
    s = loop.stats.summary()
    return {"tick_duration_p50_ms": round(s["tick_duration_p50_ms"], 3), "tick_duration_p99_ms": round(s["tick_duration_p99_ms"], 3),
            "period_p50_ms": round(s["period_p50_ms"], 3), "period_p99_ms": round(s["period_p99_ms"], 3),
            "ticks": s["ticks"], "stopped": stop.message, "threads": sorted(seen),
            "realtime_priority": s["realtime_priority"]}


def vendor_code_run(spec: PolicySpec, policy, seconds: float, vendor_src: Path, tmp: Path) -> dict:
    """The runtime driving SunFounder's own code over the emulated bus at 100 kHz (see the docstring, 3.)."""
    from deploy.vendor_bus import BYTE_S_100KHZ, VendorEmulation
    emulation = VendorEmulation(vendor_src, byte_s=BYTE_S_100KHZ)
    conf = tmp / "vendor_code_pidog.conf"
    conf.write_text("legs_servo_offset_list = [1.0, -1.0, 0.5, 0.0, 0.0, 0.5, -0.5, 1.0]\n\n")
    with emulation:
        seen: set[str] = set()

        def watched(obs):
            seen.update(t.name for t in threading.enumerate())
            return policy(obs)
        loop = ControlLoop(spec, watched, RobotHardware(emulation.stack, conf), realtime=True, say=lambda line: None)
        stop = loop.run(seconds)
    s = loop.stats.summary()
    return {"tick_duration_p50_ms": round(s["tick_duration_p50_ms"], 3),
            "tick_duration_p99_ms": round(s["tick_duration_p99_ms"], 3),
            "period_p50_ms": round(s["period_p50_ms"], 3), "period_p99_ms": round(s["period_p99_ms"], 3),
            "ticks": s["ticks"], "stopped": stop.message, "threads": sorted(seen),
            "realtime_priority": s["realtime_priority"], "bus_transfers": emulation.bus.transfers}


def walking(spec: PolicySpec, policy, episodes: int) -> dict:
    """Mean speed of the exported policy in the env and through the runtime (robot IMU timing), randomized."""
    import gymnasium as gym

    import pidog_env
    from pidog_env import config_tree
    from pidog_env.config import EnvConfig
    from pidog_env.evaluation import run_episode
    ideal = config_tree.apply(EnvConfig(), "randomization.imu_delay_substeps", (0, 0))
    in_env = {}
    for label, cfg in (("robot_imu", EnvConfig()), ("ideal_imu", ideal)):
        env = gym.make(pidog_env.ENV_ID, config=cfg)
        in_env[label] = float(np.mean([run_episode(policy, env, seed)["mean_forward_speed"] for seed in range(episodes)]))
        env.close()
    speeds = []
    for seed in range(episodes):
        hw = MujocoHardware(randomize=True, seed=seed, imu_timing="robot")
        ControlLoop(spec, policy, hw, realtime=False, say=lambda line: None).run(20.0)
        speeds.append(hw.info["mean_forward_speed"])         # distance over the time walked, as in the env
        hw.close()
    runtime_speed = float(np.mean(speeds))
    return {"in_env_speed_mps": round(in_env["robot_imu"], 4), "in_env_ideal_imu_speed_mps": round(in_env["ideal_imu"], 4),
            "sim_runtime_speed_mps": round(runtime_speed, 4),
            "sim_runtime_speed_ratio": round(runtime_speed / max(in_env["robot_imu"], in_env["ideal_imu"]), 3),
            "walk_episodes": episodes}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="MuJoCo run length")
    ap.add_argument("--vendor-seconds", type=float, default=10.0, help="length of each fake-vendor run")
    ap.add_argument("--export", type=Path, help="an export folder (policy.onnx + policy.json) instead of a fresh BC policy")
    ap.add_argument("--episodes", type=int, default=5, help="randomized episodes for the walking check")
    ap.add_argument("--bc-demos", type=int, default=6, help="demonstrations for the BC policy trained here")
    ap.add_argument("--bc-epochs", type=int, default=40, help="epochs of the BC policy trained here")
    ap.add_argument("--vendor-src", type=Path, default=VENDOR_SRC,
                    help="the unmodified pidog / robot-hat sources (folders pidog/ and robot-hat/)")
    args = ap.parse_args(argv)
    if not (0 < args.seconds <= 600 and 0 < args.vendor_seconds <= 600 and 1 <= args.episodes <= 100):
        ap.exit(2, "error: --seconds and --vendor-seconds must be in (0, 600], --episodes in 1..100\n")
    if not (1 <= args.bc_demos <= 1000 and 1 <= args.bc_epochs <= 10_000):
        ap.exit(2, "error: --bc-demos must be in 1..1000 and --bc-epochs in 1..10000\n")
    if args.export and not (args.export / "policy.onnx").is_file():
        ap.exit(2, f"error: {args.export / 'policy.onnx'} not found\n")
    vendor_src = args.vendor_src if (args.vendor_src / "pidog" / "pidog").is_dir() else None
    if vendor_src is None and args.vendor_src != VENDOR_SRC:
        ap.exit(2, f"error: --vendor-src {args.vendor_src} holds no pidog/pidog package folder\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = args.export or train_and_export(tmp, args.bc_demos, args.bc_epochs)
        spec = PolicySpec.load(folder / "policy.json")
        policy = OnnxPolicy(folder / "policy.onnx", spec)
        hw = MujocoHardware(randomize=True, seed=0)
        loop = ControlLoop(spec, policy, hw, realtime=True, say=lambda line: None)
        stop = loop.run(args.seconds)
        hw.close()
        s = loop.stats.summary()
        print("fake vendor stack runs ...", file=sys.stderr)
        ours = vendor_run(spec, policy, args.vendor_seconds, False, runtime.SWITCH_INTERVAL_S, tmp)
        busy = vendor_run(spec, policy, args.vendor_seconds, True, runtime.SWITCH_INTERVAL_S, tmp)
        old = vendor_run(spec, policy, args.vendor_seconds, True, 0.005, tmp)
        if vendor_src is not None:
            print("vendor code over the emulated bus ...", file=sys.stderr)
            code = vendor_code_run(spec, policy, args.vendor_seconds, vendor_src, tmp)
        else:
            print(f"vendor code: skipped, no vendor sources in {args.vendor_src}", file=sys.stderr)
            code = {}
        print("walking check ...", file=sys.stderr)
        walk = walking(spec, policy, args.episodes)
    figures = {
        "inference_p50_ms": round(s["inference_p50_ms"], 4), "inference_p99_ms": round(s["inference_p99_ms"], 4),
        "jitter_p50_ms": round(s["jitter_p50_ms"], 3), "jitter_p99_ms": round(s["jitter_p99_ms"], 3),
        "overruns": s["overruns"], "ticks": s["ticks"], "control_hz": spec.control_hz, "stopped": stop.message,
        "tick_duration_p99_ms": round(s["tick_duration_p99_ms"], 3), "period_p99_ms": round(s["period_p99_ms"], 3),
        "vendor_fake_tick_duration_p99_ms": ours["tick_duration_p99_ms"], "vendor_fake_period_p99_ms": ours["period_p99_ms"],
        **{f"vendor_fake_{k}": v for k, v in ours.items() if k not in ("tick_duration_p99_ms", "period_p99_ms")},
        **{f"vendor_fake_busy_thread_{k}": v for k, v in busy.items()},
        **{f"vendor_fake_pidog_in_process_{k}": v for k, v in old.items()},
        "vendor_code_tick_duration_p99_ms": code.get("tick_duration_p99_ms"),
        "vendor_code_period_p99_ms": code.get("period_p99_ms"),
        **{f"vendor_code_{k}": v for k, v in code.items() if k not in ("tick_duration_p99_ms", "period_p99_ms")},
        "vendor_code_source": str(vendor_src) if vendor_src else f"skipped: no vendor sources in {args.vendor_src}",
        **walk,
        "policy": str(args.export) if args.export else f"trot-BC ({args.bc_demos} demos, {args.bc_epochs} epochs), trained here",
        "targets": {"inference_p99_ms": "< 0.5", "jitter_p99_ms": "< 2", "vendor_fake_tick_duration_p99_ms": "< 10",
                    "vendor_fake_period_p99_ms": "< 22", "vendor_code_tick_duration_p99_ms": "< 10",
                    "sim_runtime_speed_ratio": ">= 0.8"},
    }
    write_result("deploy_latency", figures)


if __name__ == "__main__":
    main()
