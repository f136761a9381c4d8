"""Robot runtime timing: ONNX inference per tick and loop jitter at 50 Hz, MuJoCo-backed hardware.

    python bench/deploy_latency.py [--seconds 20]

Trains a small trot-BC policy (a few seconds), exports it with deploy/export.py, then runs the real
runtime loop (deploy.runtime.ControlLoop, real-time scheduling) for `--seconds` against the simulated
robot. Writes bench/results/deploy_latency.json: inference_p50_ms, inference_p99_ms, jitter_p99_ms,
overruns (targets here: inference p99 < 0.5 ms, jitter p99 < 2 ms). The whole script takes < 60 s.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


from bench._common import write_result
from deploy.export import export
from deploy.hardware import MujocoHardware
from deploy.policy_spec import PolicySpec
from deploy.runtime import ControlLoop, OnnxPolicy
from pidog_env.config import EnvConfig
from training import demos as demo_io
from training.bc import train_bc
from training.config import BCConfig, DemoConfig, PolicyConfig
from training.policies import policy_meta, save_policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        demo = demo_io.generate(DemoConfig(n_episodes=6, n_envs=1, noise=0.02), EnvConfig(), seed=0, progress=False)
        bc = train_bc(demo, None, EnvConfig(), PolicyConfig(), BCConfig(epochs=40), tmp / "logs", 0, progress=False)
        save_policy(tmp / "bc.pth", bc.policy, policy_meta(bc.policy, PolicyConfig(), EnvConfig()))
        export(tmp / "bc.pth", tmp / "export", check_steps=100)
        spec = PolicySpec.load(tmp / "export" / "policy.json")
        hw = MujocoHardware(randomize=True, seed=0)
        loop = ControlLoop(spec, OnnxPolicy(tmp / "export" / "policy.onnx", spec), hw, realtime=True)
        reason = loop.run(args.seconds)
        hw.close()
    s = loop.stats.summary()
    write_result("deploy_latency", {
        "inference_p50_ms": round(s["inference_p50_ms"], 4), "inference_p99_ms": round(s["inference_p99_ms"], 4),
        "jitter_p50_ms": round(s["jitter_p50_ms"], 3), "jitter_p99_ms": round(s["jitter_p99_ms"], 3),
        "overruns": s["overruns"], "ticks": s["ticks"], "control_hz": spec.control_hz, "stopped": reason,
        "targets": {"inference_p99_ms": "< 0.5", "jitter_p99_ms": "< 2"},
    })


if __name__ == "__main__":
    main()
