"""Export, the robot runtime against the simulator, the safety layer and the pidog adapter."""

import sys
import time
import types

import numpy as np
import pytest

from deploy.hardware import MujocoHardware
from deploy.vendor import chip_to_body, read_pidog_conf
from deploy.policy_spec import PolicySpec
from deploy.replay import replay
from deploy.runtime import ActionMapper, ControlLoop, OnnxPolicy, Stop
from deploy.safety import SafetyLayer
from pidog_env import robot
from pidog_env.config import EnvConfig

STAND_DEG = robot.POSES_DEG["stand"]
LIE_DEG = robot.POSES_DEG["lie"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small trot-BC policy exported to ONNX (trained here in a few seconds)."""
    from training.export import export
    from training import demos as demo_io
    from training.bc import train_bc
    from training.config import BCConfig, DemoConfig, PolicyConfig
    from training.policies import policy_meta, save_policy
    tmp = tmp_path_factory.mktemp("export")
    demo = demo_io.generate(DemoConfig(n_episodes=6, n_envs=1, noise=0.02), EnvConfig(), seed=0, progress=False)
    result = train_bc(demo, None, EnvConfig(), PolicyConfig(), BCConfig(epochs=40), tmp / "logs", seed=0, progress=False)
    save_policy(tmp / "bc.pth", result.policy, policy_meta(result.policy, PolicyConfig(), EnvConfig()))
    info = export(tmp / "bc.pth", tmp / "export", check_steps=300)
    spec = PolicySpec.load(tmp / "export" / "policy.json")
    return {"info": info, "spec": spec, "onnx": OnnxPolicy(tmp / "export" / "policy.onnx", spec),
            "torch": result.policy, "dir": tmp}


@pytest.mark.slow
def test_export_matches_pytorch_and_describes_the_robot(exported):
    assert exported["info"]["max_abs_diff"] <= 1e-5 and exported["info"]["checked"] == 300
    spec = exported["spec"]
    assert spec.leg_joints == list(robot.LEG_JOINTS) and spec.control_hz == pytest.approx(50)
    assert spec.obs_size == 16 and spec.env_config_hash == EnvConfig().hash()
    assert spec.gait_period == EnvConfig().gait_period


@pytest.mark.slow
def test_runtime_observation_equals_the_envs(exported):
    hw = MujocoHardware(randomize=True, seed=3)             # noise, bias and latency included
    loop = ControlLoop(exported["spec"], exported["onnx"], hw, realtime=False)
    loop.start()
    for _ in range(300):
        env_obs = hw.last_obs                            # what the env built for the action about to be taken
        assert loop.tick()                               # reads the IMU first, then acts
        np.testing.assert_allclose(loop.last_obs, env_obs, atol=1e-6)


@pytest.mark.slow
def test_runtime_walks_the_simulated_robot_like_the_env_does(exported):
    from training.evaluation import evaluate_policy
    in_env = evaluate_policy(exported["torch"], EnvConfig(), 1, seed=0, randomize=False)["mean_forward_speed"]
    hw = MujocoHardware(randomize=False, seed=0)                 # the robot's IMU timing (default)
    loop = ControlLoop(exported["spec"], exported["onnx"], hw, realtime=False)
    assert loop.run(seconds=20.0) == Stop("done", "time limit reached")
    runtime_speed = hw.info["forward_distance"] / 20.0
    assert in_env > 0.05                                   # the policy really walks ...
    assert runtime_speed >= 0.8 * in_env                   # ... and so does it through the runtime


@pytest.mark.slow
def test_replay_reproduces_logged_actions(exported, tmp_path):
    loop = ControlLoop(exported["spec"], exported["onnx"], MujocoHardware(seed=1), realtime=False, log=True)
    loop.run(seconds=1.0)
    loop.save_log(tmp_path / "run.npz")
    assert replay(exported["onnx"], tmp_path / "run.npz") < 1e-6


def spec_stub(**kw):
    base = dict(control_dt=0.02, gait_period=0.6148, gravity_alpha=0.04, history=0, ultrasonic=False, obs_size=16,
                frame_layout={"gravity": [0, 3], "gyro": [3, 6], "last_action": [6, 14], "clock": [14, 16]},
                gyro_scale=0.25, leg_joints=list(robot.LEG_JOINTS), leg_signs=robot.LEG_SIGNS.tolist(),
                leg_q_limits_rad=robot.LEG_LIMITS_RAD.tolist(), action_offset_rad=robot.STAND_Q.tolist(),
                action_scale_rad=float(np.deg2rad(robot.ACTION_SCALE_DEG)), leg_speed_deg_s=428.0,
                leg_servo_limits_deg=robot.LEG_SERVO_LIMITS_DEG.tolist(), imu_accel_range_g=robot.IMU_ACCEL_RANGE_G,
                stand_pose_deg=STAND_DEG.tolist(), lie_pose_deg=LIE_DEG.tolist(), fall_tilt_deg=60.0,
                env_config_hash="x")
    return PolicySpec(**{**base, **kw})


@pytest.mark.parametrize("change,message", [
    ({"frame_layout": {"gravity": [0, 3], "gyro": [3, 6], "clock": [6, 8], "last_action": [8, 16]}}, "frame_layout"),
    ({"gyro_scale": 0.5}, "gyro_scale"),
    ({"obs_size": 17}, "obs_size"),
])
def test_runtime_refuses_a_policy_json_whose_layout_or_scales_differ(change, message, tmp_path):
    from deploy.cli import main
    from deploy.runtime import ObservationBuilder, check_layout
    check_layout(spec_stub())                                     # the stub is what the env builds
    with pytest.raises(ValueError, match=message):
        ObservationBuilder(spec_stub(**change))
    spec_stub(**change).save(tmp_path / "policy.json")
    (tmp_path / "policy.onnx").write_bytes(b"")
    assert main(["--policy", str(tmp_path / "policy.onnx"), "--hardware", "sim"]) == 2


def test_action_offset_and_scale_round_trip_between_env_export_and_runtime():
    from training.export import spec_for
    spec = spec_for(EnvConfig(), "test")
    assert np.allclose(spec.action_offset_rad, robot.STAND_Q) and spec.action_scale_rad == pytest.approx(np.pi / 4)
    mapper = ActionMapper(spec)
    hw = MujocoHardware(randomize=False, seed=0)               # the env behind the runtime's hardware API
    rng = np.random.default_rng(0)
    for a in [np.zeros(8), *rng.uniform(-0.6, 0.6, (5, 8))]:      # inside the servo range (no clip)
        servo = mapper.to_servo_deg(a)
        np.testing.assert_allclose(servo, robot.model_rad_to_servo_deg(robot.action_to_leg_rad(a)), atol=1e-9)
        np.testing.assert_allclose(mapper.to_action(servo), a, atol=1e-9)
        sent = []
        step = hw.env.step
        hw.env.step = lambda action: sent.append(action) or step(action)
        hw.write_legs(servo)                                   # servo degrees -> the env's action
        hw.env.step = step
        np.testing.assert_allclose(sent[0], a, atol=1e-6)
    np.testing.assert_allclose(mapper.to_servo_deg(np.zeros(8)), STAND_DEG, atol=1e-9)   # zero = vendor stand
    full = mapper.to_servo_deg(np.ones(8))                     # stand + 45 deg, clipped to the envelope
    assert np.abs(full).max() == pytest.approx(90.0) and np.abs(full[[4, 6]]).tolist() == [90.0, 90.0]
    low = robot.servo_deg_to_model_rad(mapper.to_servo_deg(-np.ones(8) * 2))   # beyond the range: the envelope
    np.testing.assert_allclose(np.rad2deg(low[[1, 3, 5, 7]]), [-45.0] * 4)     # knees stop at -45 deg
    hw.close()


def test_simulated_robot_keeps_the_cause_of_the_fall_after_more_steps():
    hw = MujocoHardware(randomize=False, seed=0)
    lean = -np.ones(8)                                     # kneel on the right only: it tips onto its side
    lean[[0, 1, 4, 5]] = 1.0
    servo = robot.model_rad_to_servo_deg(robot.action_to_leg_rad(lean))
    first, later = None, set()
    for _ in range(300):
        hw.write_legs(servo)
        if hw.terminated:
            first = first or hw.info["fall_cause"]
            later.add(hw.info["fall_cause"])
    assert first in ("tilt", "torso_touch", "head_touch") and later           # it fell, and stayed down
    assert hw.fall_cause == first                        # whatever each later step reports
    hw.teleport_pose(robot.POSES_DEG["stand"])             # a new episode forgets it
    assert not hw.terminated and hw.fall_cause == ""
    hw.close()


def test_safety_clamps_rate_limits_and_rejects_nan():
    s = SafetyLayer([[-90.0, 90.0]] * 8, 428.0, 0.02, np.zeros(8), fall_tilt_deg=60)
    out = s.filter(np.full(8, 500.0))
    np.testing.assert_allclose(out, np.full(8, 8.56))                     # 428 deg/s * 20 ms
    for _ in range(20):
        out = s.filter(np.full(8, 500.0))
    np.testing.assert_allclose(out, np.full(8, 90.0))                     # clamped to the servo range
    held = s.filter(np.array([np.nan] + [0.0] * 7))
    np.testing.assert_allclose(held, np.full(8, 90.0))                    # NaN: hold the last command
    assert s.filter(np.full(8, np.inf)).tolist() == held.tolist() and s.rejected == 2
    assert s.tilted(np.array([0.0, -0.9, -0.43])) and not s.tilted(np.array([0.0, 0.1, -0.99]))


def test_chip_axes_and_pidog_conf(tmp_path):
    np.testing.assert_allclose(chip_to_body(np.array([1.0, 2.0, 3.0])), [-2.0, 3.0, -1.0])
    conf = tmp_path / "pidog.conf"
    conf.write_text("[x]\nlegs_servo_offset_list = [1.5, -2, 0, 0, 0, 0, 0, 3]\nhead_servo_offset_list = [0, 0, 0]\n")
    offsets = read_pidog_conf(conf)
    assert offsets["legs_servo_offset_list"] == [1.5, -2.0, 0, 0, 0, 0, 0, 3.0]


def test_safety_envelope_matches_the_models_joint_ranges():
    from pidog_env.model import load_model
    m = load_model()
    for j, name in enumerate(robot.LEG_JOINTS):
        np.testing.assert_allclose(np.rad2deg(m.joint(name).range), robot.LEG_ENVELOPE_DEG[j], atol=1e-9)
    spec = spec_stub()
    s = SafetyLayer(spec.leg_servo_limits_deg, 1e6, 0.02, STAND_DEG, 60.0)
    out = s.filter(np.full(8, 89.0))
    assert out.tolist() == [89.0, 75.0, 80.0, 45.0, 89.0, 75.0, 80.0, 45.0]    # right side mirrored
    out = s.filter(np.full(8, -89.0))
    assert out.tolist() == [-80.0, -45.0, -89.0, -75.0, -80.0, -45.0, -89.0, -75.0]


BLOCKER = """
import builtins, sys
_real = builtins.__import__
def _guard(name, *a, **k):
    if name.split('.')[0] in ('torch', 'mujoco', 'gymnasium', 'stable_baselines3', 'imitation'):
        raise ImportError('blocked on the robot: ' + name)
    return _real(name, *a, **k)
builtins.__import__ = _guard
"""


@pytest.mark.slow
def test_bundle_runs_with_numpy_and_onnxruntime_only(exported, tmp_path):
    import subprocess
    import tarfile
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    loop = ControlLoop(exported["spec"], exported["onnx"], MujocoHardware(seed=2), realtime=False, log=True)
    loop.run(seconds=0.5)
    loop.save_log(tmp_path / "run.npz")
    out = tmp_path / "bundle.tar.gz"
    subprocess.run([str(root / "deploy" / "bundle.sh"), str(exported["dir"] / "export"), str(out)], check=True,
                   capture_output=True)
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "pi", filter="data")
    bundle = tmp_path / "pi" / "pidog_deploy"
    (bundle / "sitecustomize.py").write_text(BLOCKER)
    proc = subprocess.run([sys.executable, "-m", "deploy.runtime", "--policy", "policy/policy.onnx", "--replay",
                           str(tmp_path / "run.npz")], cwd=bundle, capture_output=True, text=True,
                          env={"PYTHONPATH": str(bundle), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and "max |action - logged action| = 0.00e+00" in proc.stdout, proc.stderr
    # The robot path (vendor adapter, watchdogs, poses) with the recording fake vendor stack, still without torch & co.
    proc = subprocess.run([sys.executable, "-m", "deploy.runtime", "--policy", "policy/policy.onnx", "--hardware", "fake",
                           "--stand-only", "--seconds", "0.3", "--conf", str(tmp_path / "pidog.conf")], cwd=bundle,
                          capture_output=True, text=True, env={"PYTHONPATH": str(bundle), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and "stopped: time limit reached" in proc.stdout, proc.stdout + proc.stderr
    # The hard-coded trot through the runtime (the first-run guide's step before a policy), from the bundle too.
    proc = subprocess.run([sys.executable, "-m", "deploy.runtime", "--gait", "trot", "--hardware", "fake",
                           "--seconds", "0.3", "--conf", str(tmp_path / "pidog.conf")], cwd=bundle,
                          capture_output=True, text=True, env={"PYTHONPATH": str(bundle), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and "stopped: time limit reached" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["TD3"])        # SAC: exported and run in tests/test_other_clis.py
def test_off_policy_actors_export_with_parity(algo, tmp_path):
    import stable_baselines3 as sb3

    from training.export import export
    from training.common import make_vec_env
    from training.config import PolicyConfig
    from training.policies import add_meta_to_zip, policy_meta
    venv = make_vec_env(EnvConfig(), 1, 0, subprocess=False)
    model = getattr(sb3, algo)("MlpPolicy", venv, policy_kwargs={"net_arch": list(PolicyConfig().net_arch)},
                               seed=0, device="cpu", learning_starts=10)
    model.learn(64)                                          # a few updates: weights that are not the init
    venv.close()
    model.save(tmp_path / "m.zip")
    add_meta_to_zip(tmp_path / "m.zip", {**policy_meta(model.policy, PolicyConfig(), EnvConfig(), stage="rl", algo=algo),
                                         "timesteps": 64})
    info = export(tmp_path / "m.zip", tmp_path / "export", check_steps=100)
    assert info["max_abs_diff"] <= 1e-5 and info["checked"] == 100
    spec = PolicySpec.load(tmp_path / "export" / "policy.json")
    onnx = OnnxPolicy(tmp_path / "export" / "policy.onnx", spec)
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 16)).astype(np.float32)
    np.testing.assert_allclose(np.stack([onnx(o) for o in obs]), model.predict(obs, deterministic=True)[0], atol=1e-5)


def test_the_documented_runtime_commands_start_the_command_line():
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    procs = [subprocess.Popen([sys.executable, *how, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=root) for how in (["-m", "deploy.runtime"], [str(root / "deploy" / "runtime.py")])]
    for proc in procs:                                               # both at once
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "usage: python -m deploy.runtime" in stdout, stderr
        assert "--imu-check" in stdout and "--stand-only" in stdout
