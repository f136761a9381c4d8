"""The servo model against its own parameters and against the DC motor's power limit.

    python bench/actuator_check.py [--seconds 20] [--policy LABEL=PATH ...]

1. The servo: on the robot welded to a stand (`model.load_model(fixed_base=True)`, gravity off, so a leg
   swings free), each LF servo slews from one end of its range towards the other against constant loads
   of 0-80 % of the stall torque; the speed in the middle third of the travel against the load gives the
   torque-speed line the model really produces, and its ends the measured stall torque and no-load speed.
2. The gaits: one 20 s episode each with randomization off (the nominal servos), every physics step
   sampled: each leg joint's motor torque (actuator force plus the back-EMF damping, `qfrc_damper`) times
   its speed. Reported: the peak joint power and the largest power delivered above the DC line
   (|torque| - (s tau_s + friction - b |w|), times |w|, when the torque drives the motion), and the samples
   outside the motor's whole envelope (braking, the drive and the back-EMF add up to at most s tau_s +
   friction + b |w|). The trot and the
   vendor's gaits always; `--policy LABEL=PATH` adds a BC `.pth` or a PPO `.zip` (run on this env's
   physics with its own observation settings).

Writes bench/results/actuator_check.json ({"servo": {...}, "gaits": {name: {"peak_power_w",
"excess_power_w"}}, ...}) and actuator_check.png (the envelope: the DC line, the measured points, the gaits'
samples). Acceptance: excess_power_w <= 0.01 W for every gait; the measured stall torque and no-load speed
within 5 % of the parameters.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np

from pidog_env import robot
from pidog_env.actuator import ServoDrive, ServoParams
from pidog_env.config import EnvConfig
from pidog_env.evaluation import run_episode
from pidog_env.gaits import TrotGait
from pidog_env.model import load_model

LOADS = (0.0, 0.2, 0.4, 0.6, 0.8)          # fractions of the stall torque
JOINTS = ("LF_hip", "LF_knee")
EXCESS_LIMIT_W = 0.01
MEASURE_TOLERANCE = 0.05


def slew_speed(model: mujoco.MjModel, joint: str, load: float) -> float:
    """Mean speed (rad/s) of `joint` over the middle third of a slew across its range against `load` (N m)."""
    data = mujoco.MjData(model)
    j = model.joint(joint)
    act, dof, adr = model.actuator(joint).id, int(j.dofadr[0]), int(j.qposadr[0])
    lo, hi = model.jnt_range[j.id]
    data.qpos[adr] = lo
    data.ctrl[:] = data.qpos[[model.jnt_qposadr[model.actuator_trnid[a, 0]] for a in range(model.nu)]]
    data.ctrl[act] = hi
    data.qfrc_applied[dof] = -load
    speeds = []
    for _ in range(int(5.0 / model.opt.timestep)):
        mujoco.mj_step(model, data)
        if lo + (hi - lo) / 3 <= data.qpos[adr] <= hi - (hi - lo) / 3:
            speeds.append(data.qvel[dof])
        elif data.qpos[adr] > hi - (hi - lo) / 3:
            break
    if not speeds:
        raise RuntimeError(f"{joint} did not cross its range against {load:.3f} N m")
    return float(np.mean(speeds))


def measure_servo(params: robot.PhysicalParams, sim_dt: float) -> dict:
    """The torque-speed line of each servo in JOINTS, fitted to the slews; its ends."""
    model = load_model(params, sim_dt, fixed_base=True)
    model.opt.gravity[:] = 0.0
    servo = ServoParams.from_physical(params)
    out = {}
    for joint in JOINTS:
        loads = np.array(LOADS) * servo.stall_torque
        speeds = np.array([slew_speed(model, joint, load) for load in loads])
        slope, no_load = np.polyfit(loads, speeds, 1)
        out[joint] = {"loads_nm": loads.round(4).tolist(), "speeds_rad_s": speeds.round(4).tolist(),
                      "stall_torque_nm": float(-no_load / slope), "no_load_speed_rad_s": float(no_load)}
    return out


class RecordingDrive(ServoDrive):
    """The env's servo drive, one physics step at a time, keeping each leg joint's motor torque and speed."""

    def __init__(self, drive: ServoDrive, dofs: slice, acts: slice) -> None:
        super().__init__(drive.ctrl, drive.dead, drive.signs)
        self.dofs, self.acts = dofs, acts
        self.torque: list[np.ndarray] = []
        self.speed: list[np.ndarray] = []

    def advance(self, model, data, nstep: int) -> None:
        for _ in range(nstep):
            w = data.qvel[self.dofs].copy()                      # the speed the step's forces were computed at
            super().advance(model, data, 1)
            self.speed.append(w)
            self.torque.append(data.actuator_force[self.acts] + data.qfrc_damper[self.dofs])


def gait_power(act, cfg: EnvConfig, seconds: float, servo: ServoParams) -> tuple[dict, np.ndarray, np.ndarray]:
    """(figures, torques, speeds) of one nominal episode of `act` sampled at every physics step."""
    env = gym.make("PiDog-v2", config=cfg, randomize=False, episode_seconds=seconds)
    u = env.unwrapped
    rec = RecordingDrive(u._drive, u.idx.leg_qvel, u.idx.leg_act)
    u._drive = rec
    try:
        if hasattr(act, "reset"):
            act.reset()
        episode = run_episode(act, env, seed=0)
    finally:
        env.close()
    torque, speed = np.array(rec.torque), np.array(rec.speed)
    power = torque * speed
    driving = power > 0
    excess = np.where(driving, np.maximum(0.0, np.abs(torque) - servo.dc_line(speed)) * np.abs(speed), 0.0)
    # braking, the drive and the back-EMF add up: any torque is within -A - b w .. A - b w
    damping_torque = servo.damping * speed
    outside = np.abs(torque + damping_torque) > servo.motor_torque() + 1e-9
    return {"peak_power_w": round(float(power.max()), 4), "excess_power_w": round(float(excess.max()), 6),
            "samples_outside_envelope": int(outside.sum()),
            "mean_power_w": round(float(np.maximum(power, 0).mean()), 4),
            "speed_mps": round(episode["mean_forward_speed"], 4), "fell": episode["fell"],
            "physics_steps": int(len(power))}, torque, speed


def policy_actor(spec: str) -> tuple[str, object, EnvConfig]:
    label, _, path = spec.partition("=")
    from training.viewer import load_actor
    act, cfg, _ = load_actor(path)
    # The policy's observation settings on this env's physics (its saved servo values are the model it was
    # trained on, not the one checked here).
    return label, act, dataclasses.replace(cfg, physical=robot.PhysicalParams())


def plot(path: Path, servo: ServoParams, measured: dict, samples: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5))
    a, b = float(servo.motor_torque()), float(servo.damping)
    w0 = a / b
    w = np.linspace(-1.2 * w0, 1.2 * w0, 200)
    ax.fill_between(w, -a - b * w, a - b * w, color="0.9", label="what the motor can do")
    motoring = (w >= 0) & (w <= w0)
    ax.plot(w[motoring], a - b * w[motoring], "k-", lw=1.5, label="DC line (motoring)")
    ax.plot(-w[motoring], -a + b * w[motoring], "k-", lw=1.5)
    ax.plot([0, servo.no_load_speed], [servo.stall_torque, 0], "k--", lw=1, label="output (datasheet) line")
    for (label, (torque, speed)), color in zip(samples.items(), ("C0", "C1", "C2", "C3", "C4", "C5")):
        step = max(1, torque.size // 20000)
        ax.plot(speed.ravel()[::step], torque.ravel()[::step], ".", ms=1, alpha=0.3, color=color, label=label)
    for joint, m in measured.items():
        ax.plot(m["speeds_rad_s"], m["loads_nm"], "x", ms=7, label=f"{joint} measured")
    ax.set_xlabel("joint speed (rad/s)")
    ax.set_ylabel("motor torque (N m)")
    ax.set_title("Servo torque-speed envelope, every physics step")
    legend = ax.legend(fontsize=7, loc="lower left")
    for handle in legend.legend_handles:
        if getattr(handle, "get_marker", lambda: None)() == ".":
            handle.set_markersize(6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    from bench import vendor_gaits
    from bench._common import RESULTS, write_result
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="episode length per gait")
    parser.add_argument("--policy", action="append", default=[], metavar="LABEL=PATH",
                        help="also check a BC .pth or PPO .zip policy (repeatable)")
    args = parser.parse_args(argv)
    if not 0.1 <= args.seconds <= 600:
        parser.exit(2, "error: --seconds must be in 0.1..600\n")
    for spec in args.policy:
        label, sep, path = spec.partition("=")
        if not (label and sep and path) or label in ("trot", *(f"vendor_{g}" for g in vendor_gaits.GAITS)):
            parser.exit(2, f"error: --policy takes LABEL=PATH with a new label, got {spec!r}\n")
    policies = [policy_actor(spec) for spec in args.policy]

    cfg = EnvConfig()
    params = cfg.physical
    servo = ServoParams.from_physical(params)
    measured = measure_servo(params, cfg.sim_dt)
    # the joint whose measurement is furthest from the parameters
    def error(m):
        return max(abs(m["stall_torque_nm"] / servo.stall_torque - 1), abs(m["no_load_speed_rad_s"] / servo.no_load_speed - 1))
    worst = max(measured.values(), key=error)

    actors = [("trot", TrotGait.for_config(cfg), cfg)]
    actors += [(f"vendor_{name}", vendor_gaits.VendorGait(name, cfg.ctrl_dt, args.seconds), cfg)
               for name in vendor_gaits.GAITS]
    actors += policies
    gaits, samples = {}, {}
    for label, act, acfg in actors:
        gaits[label], torque, speed = gait_power(act, acfg, args.seconds, servo)
        samples[label] = (torque, speed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(RESULTS / "actuator_check.png", servo, measured, samples)
    passed = (all(g["excess_power_w"] <= EXCESS_LIMIT_W for g in gaits.values()) and error(worst) <= MEASURE_TOLERANCE)
    write_result("actuator_check", {
        "servo": {"stall_torque_nm": servo.stall_torque, "no_load_speed_rad_s": servo.no_load_speed,
                  "damping_nms_rad": round(float(servo.damping), 5), "kp_nm_rad": servo.kp,
                  "frictionloss_nm": servo.frictionloss, "dead_time_s": servo.dead_time,
                  "peak_power_w": round(float(servo.peak_power()), 4),
                  "measured_stall_torque_nm": round(worst["stall_torque_nm"], 4),
                  "measured_no_load_speed_rad_s": round(worst["no_load_speed_rad_s"], 4)},
        "joints": {j: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()} for j, m in measured.items()},
        "gaits": gaits,
        "passed": passed,
        "seconds": args.seconds,
        "plot": str(RESULTS / "actuator_check.png"),
        "targets": {"excess_power_w": f"<= {EXCESS_LIMIT_W} for every gait",
                    "measured": f"stall torque and no-load speed within {MEASURE_TOLERANCE:.0%} of the parameters"},
    }, protocol="LF hip and knee slewing against 0-80 % of the stall torque on the welded robot (gravity off); "
                "one nominal episode per gait, every physics step sampled", seeds=[0], episodes=len(gaits))


if __name__ == "__main__":
    main()
