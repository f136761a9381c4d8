"""`pidog sysid fit TRACK`: the servo parameters that make the single-leg model move as the tracked leg did.

CMA-ES (the `cma` package) over stall torque, damping b (= stall torque / no-load speed), kp, friction loss,
armature (searched as the torque scale and ratios, log factors of the prior `robot.PhysicalParams`; the
armature held at its prior unless fitted too) and the dead time, minimizing the Huber
loss of the angle error (degrees, both joints) over the tracked frames of every segment kind but the one
held out. A constant angle offset per joint (marker placement, servo calibration) is removed in closed form
for each candidate (the mean error over the training frames). The fit is repeated from different seeds;
the values are the medians of the repeats that reached the best loss (within 5 %) and their spread the
standard deviation. The held-out segments are
then simulated with the values: their mean absolute error in degrees says how well the model predicts
motion it was not fitted on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.common import PipelineError
from training.sysid.leg import LegParams, LegSimulator, sample

PRIOR = LegParams()
# The search coordinates: the torque scale and ratios the hanging leg measures directly (no-load speed,
# kp / stall torque, friction / stall torque), each as a log factor of the prior's, the armature's log
# factor (when fitted) and the dead time. Along the torque scale the loss is flat (docs/sysid.md), so it
# gets its own coordinate instead of a ridge across four.
COORDS = ("scale", "speed", "kp_ratio", "friction_ratio", "armature")
LOG_BOUND = math.log(4.0)                 # each within 1/4..4 x the prior
DELAY_MAX_S = 0.15
DELAY_UNIT_S = 0.05                       # the search coordinate of the dead time, x this many seconds
HUBER_DEG = 1.5
CONVERGED = 1.05                          # repeats whose loss is within 5 % of the best one's are kept


def _ratios(p: LegParams) -> np.ndarray:
    return np.array([p.stall_torque, p.no_load_speed, p.kp / p.stall_torque, p.frictionloss / p.stall_torque])


def decode(x: np.ndarray, armature: float | None = None) -> LegParams:
    """Search coordinates -> parameters; with `armature` given, x has no armature coordinate."""
    tau, speed, kp_ratio, friction_ratio = _ratios(PRIOR) * np.exp(np.asarray(x[:4], dtype=np.float64))
    arm = armature if armature is not None else PRIOR.armature * math.exp(float(x[4]))
    return LegParams(stall_torque=tau, damping=tau / speed, kp=kp_ratio * tau, frictionloss=friction_ratio * tau,
                     armature=arm, delay=float(x[-1]) * DELAY_UNIT_S)


def encode(p: LegParams, fixed_armature: bool = False) -> np.ndarray:
    x = list(np.log(_ratios(p) / _ratios(PRIOR)))
    if not fixed_armature:
        x.append(math.log(p.armature / PRIOR.armature))
    return np.array(x + [p.delay / DELAY_UNIT_S])


@dataclass
class FitData:
    leg: str
    t_cmd: np.ndarray
    q_cmd: np.ndarray
    t: np.ndarray              # frames' log times (tracked, inside the log)
    q: np.ndarray              # (frames, 2) measured model radians
    kind: np.ndarray           # each frame's segment kind
    battery_v: float | None = None

    @classmethod
    def from_track(cls, track: dict) -> "FitData":
        t_cmd, q_cmd = np.asarray(track["t"]), np.asarray(track["q_cmd"])
        keep = track["valid"] & (track["t_log"] >= t_cmd[0]) & (track["t_log"] <= t_cmd[-1])
        t = np.asarray(track["t_log"])[keep]
        seg = np.asarray(track["segment"])[np.clip(np.searchsorted(t_cmd, t, side="right") - 1, 0, len(t_cmd) - 1)]
        kind = np.asarray(track["segment_kind"])[seg]
        volts = np.asarray(track["battery_v"])
        return cls(track["meta"]["leg"], t_cmd, q_cmd, t, np.asarray(track["q"])[keep], kind,
                   float(np.median(volts)) if volts.size else None)


class Objective:
    def __init__(self, data: FitData, holdout: str | None, nthread: int = 1, armature: float | None = None) -> None:
        self.data, self.armature = data, armature
        self.sim = LegSimulator(data.leg, data.t_cmd, data.q_cmd, data.t_cmd[-1] - data.t_cmd[0] + 0.5, nthread=nthread)
        self.t0 = data.t_cmd[0]
        self.train = data.kind != holdout if holdout else np.ones(len(data.t), bool)
        self.hold = ~self.train
        self.evaluations = 0

    def simulate(self, params: list[LegParams]) -> np.ndarray:
        """Simulated angles at every frame (candidates x frames x 2, radians)."""
        times, traj = self.sim.run(params)
        self.evaluations += len(params)
        return sample(times + self.t0, traj, self.data.t)

    def residuals(self, q_sim: np.ndarray, mask: np.ndarray, offsets: np.ndarray | None = None):
        """(residuals in degrees, the per-joint offsets removed)."""
        err = np.rad2deg(q_sim[..., mask, :] - self.data.q[mask])
        if offsets is None:
            offsets = err.mean(axis=-2, keepdims=True)
        return err - offsets, offsets

    def __call__(self, xs: list[np.ndarray]) -> list[float]:
        q = self.simulate([decode(x, self.armature) for x in xs])
        err, _ = self.residuals(q, self.train)
        a = np.abs(err)
        huber = np.where(a <= HUBER_DEG, 0.5 * a**2, HUBER_DEG * (a - 0.5 * HUBER_DEG))
        return huber.mean(axis=(-1, -2)).tolist()


DELAY_GRID_S = 0.005


def delay_start(obj: Objective) -> float:
    """The dead time (s) whose simulation with the prior's other values fits best, on a 5 ms grid: the
    loss has a local minimum every 20 ms command period, so CMA-ES starts from the right one."""
    n_log = len(COORDS) - (obj.armature is not None)
    grid = np.arange(0.0, DELAY_MAX_S + 1e-9, DELAY_GRID_S)
    xs = [np.r_[np.zeros(n_log), d / DELAY_UNIT_S] for d in grid]
    return float(grid[int(np.argmin(obj(xs)))])


def fit_once(obj: Objective, seed: int, max_evals: int, delay0: float = 0.015, sigma0: float = 0.35
             ) -> tuple[np.ndarray, float]:
    import cma
    n_log = len(COORDS) - (obj.armature is not None)
    lo = [-LOG_BOUND] * n_log + [0.0]
    hi = [LOG_BOUND] * n_log + [DELAY_MAX_S / DELAY_UNIT_S]
    start = np.zeros(n_log + 1)
    start[-1] = delay0 / DELAY_UNIT_S
    es = cma.CMAEvolutionStrategy(start, sigma0, {"seed": seed + 1, "bounds": [lo, hi], "maxfevals": max_evals,
                                                   "verbose": -9, "tolfun": 1e-6, "tolx": 1e-4})
    while not es.stop():
        xs = es.ask()
        es.tell(xs, obj(xs))
    return np.asarray(es.result.xbest), float(es.result.fbest)


def fit(data: FitData, holdout: str | None = "trot", repeats: int = 3, max_evals: int = 600, seed: int = 0,
        nthread: int = 1, armature: float | None = PRIOR.armature, say=print) -> dict:
    """Repeated CMA-ES fits; the figures for actuator.json (and the simulated angles for the plot). The
    armature is held at `armature` (None: fitted too)."""
    if holdout is not None and not (data.kind == holdout).any():
        raise PipelineError(f"the track has no tracked frames of the held-out kind {holdout!r} "
                            f"(kinds: {', '.join(sorted(set(data.kind.tolist())))})")
    obj = Objective(data, holdout, nthread, armature)
    runs = []
    delay0 = delay_start(obj)
    for r in range(repeats):
        x, f = fit_once(obj, seed + r, max_evals, delay0)
        p = decode(x, armature)
        runs.append((f, p))
        say(f"  fit {r + 1}/{repeats}: loss {f:.4f}, stall {p.stall_torque:.4f} N m, b {p.damping:.5f} N m s/rad, "
            f"kp {p.kp:.3f} N m/rad, friction {p.frictionloss:.4f} N m, armature {p.armature:.2e} kg m^2, "
            f"dead time {1000 * p.delay:.1f} ms ({obj.evaluations} simulations)")
    names = ("stall_torque", "damping", "kp", "frictionloss", "armature", "delay")
    # a repeat that stopped in a worse local minimum does not count: the values are the medians of the
    # repeats within CONVERGED of the best loss, the spread their standard deviation
    best_loss = min(f for f, _ in runs)
    kept = [p for f, p in runs if f <= best_loss * CONVERGED]
    table = np.array([[getattr(p, n) for n in names] for p in kept])
    best = LegParams(**dict(zip(names, np.median(table, axis=0))))
    q = obj.simulate([best])[0]
    train_err, offsets = obj.residuals(q, obj.train)
    hold_err = obj.residuals(q, obj.hold, offsets)[0] if obj.hold.any() else None
    return {"params": best, "spread": dict(zip(names, table.std(axis=0))), "runs": runs, "kept": len(kept),
            "offsets_deg": offsets.ravel(),
            "train_mae_deg": float(np.abs(train_err).mean()),
            "holdout_mae_deg": None if hold_err is None else float(np.abs(hold_err).mean()),
            "q_sim": q, "evaluations": obj.evaluations}


SETTINGS = {"env.physical.servo_torque": "stall_torque", "env.physical.servo_speed": "no_load_speed",
            "env.physical.servo_kp": "kp", "env.physical.joint_friction": "frictionloss",
            "env.physical.armature": "armature", "env.physical.servo_dead_time": "delay"}


def actuator_json(result: dict, data: FitData, holdout: str | None, source: dict) -> dict:
    p: LegParams = result["params"]
    sp = result["spread"]
    # the no-load speed's spread from the stall torque's and the damping's (relative errors add in quadrature)
    speed_spread = p.no_load_speed * math.hypot(sp["stall_torque"] / p.stall_torque, sp["damping"] / p.damping)
    return {
        "leg": data.leg,
        "values": {"stall_torque_nm": p.stall_torque, "no_load_speed_rad_s": p.no_load_speed,
                   "damping_nms_per_rad": p.damping, "kp_nm_per_rad": p.kp, "frictionloss_nm": p.frictionloss,
                   "armature_kgm2": p.armature, "dead_time_s": p.delay},
        "spread": {"stall_torque_nm": sp["stall_torque"], "no_load_speed_rad_s": speed_spread,
                   "damping_nms_per_rad": sp["damping"], "kp_nm_per_rad": sp["kp"],
                   "frictionloss_nm": sp["frictionloss"], "armature_kgm2": sp["armature"], "dead_time_s": sp["delay"]},
        "repeats": len(result["runs"]),
        "repeats_kept": result.get("kept", len(result["runs"])),
        "holdout": holdout,
        "holdout_mae_deg": result["holdout_mae_deg"],
        "train_mae_deg": result["train_mae_deg"],
        "angle_offsets_deg": {"hip": float(result["offsets_deg"][0]), "knee": float(result["offsets_deg"][1])},
        "battery_v": data.battery_v,
        # what `pidog train --actuator actuator.json` sets: robot.PhysicalParams' servo fields
        "settings": {key: (p.no_load_speed if attr == "no_load_speed" else getattr(p, attr)) for key, attr in SETTINGS.items()},
        "source": source,
    }
