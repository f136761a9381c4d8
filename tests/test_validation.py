"""Every file and path a command takes is checked before anything is written: bad input is one line on
stderr and exit code 2, never a traceback, and leaves no file or folder behind.

Each test runs the real command line in-process (`pidog ...` through `training.cli.main`, the robot
runtime through `deploy.cli.main`) on bad files made in tmp_path.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from deploy import cli as runtime      # the robot runtime's command line
from deploy.vendor import read_pidog_conf
from pidog_env import config_tree, files
from pidog_env.config import EnvConfig
from pidog_env.env import action_space, observation_space
from training import cli
from training import demos as demo_io
from training.common import describe_space
from training.config import PolicyConfig
from training.policies import POLICY_FORMAT, make_policy, policy_meta, save_policy

ENV = EnvConfig()
OBS, ACT = observation_space(ENV).shape[0], action_space(ENV).shape[0]


def tree(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def one_error(capsys, *words: str) -> str:
    """The one line on stderr; it must contain each of `words`."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def refused(capsys, root: Path, run, *words: str) -> str:
    """`run()` exits 2 with one line naming `words`, and nothing new appears under `root`."""
    before = tree(root)
    try:
        code = run()
    except SystemExit as exc:                       # argparse's errors (one line too, see cli.Parser)
        code = exc.code
    assert code == 2
    line = one_error(capsys, *words)
    assert tree(root) == before, tree(root) - before
    return line


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder nobody may write in. root writes anywhere, so for root `os.access` answers as the OS
    answers every other user (the code under test asks it; without the check the test still fails,
    as the folder then gets written)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:
        real = os.access

        def access(path, mode, *args, **kwargs):
            if mode & os.W_OK and os.path.realpath(path) == os.path.realpath(ro):
                return False
            return real(path, mode, *args, **kwargs)
        monkeypatch.setattr(files.os, "access", access)
    yield ro
    ro.chmod(0o755)


# ---------------------------------------------------------------- 1. demonstration files
def demo(steps: int = 20, obs: int = OBS, act: int = ACT) -> demo_io.Demonstrations:
    meta = {"format": "pidog-demos-v1", "env_config": ENV.to_dict(), "env_config_hash": ENV.hash(),
            "observation_space": describe_space(observation_space(ENV)),
            "action_space": describe_space(action_space(ENV)), "source": "trot"}
    half = steps // 2
    return demo_io.Demonstrations(np.zeros((steps, obs), np.float32), np.zeros((steps, act), np.float32),
                                  np.array([half, steps - half]), np.zeros(2), np.zeros(2), np.zeros(2, bool), meta,
                                  np.zeros((steps, act), np.float32), np.zeros(steps, np.float32),
                                  np.zeros((2, obs), np.float32))


def _nan_obs(d):
    d.obs[3, 2] = np.nan


def _inf_acts(d):
    d.acts[5, 0] = np.inf


def _nan_rews(d):
    d.rews[7] = np.nan


def _lengths(d):
    d.episode_lengths = np.array([10, 15])


def _rows(d):
    d.acts = d.acts[:15]


DEMO_CASES = {
    "nan observation": (lambda d: _nan_obs(d) or d, "obs holds 1 non-finite"),
    "inf action": (lambda d: _inf_acts(d) or d, "acts holds 1 non-finite"),
    "nan reward": (lambda d: _nan_rews(d) or d, "rews holds 1 non-finite"),
    "observation size": (lambda d: demo(obs=OBS - 4), f"obs rows have size {OBS - 4}; the env observes {OBS}"),
    "action size": (lambda d: demo(act=ACT - 2), f"acts rows have size {ACT - 2}"),
    "episode lengths": (lambda d: _lengths(d) or d, "episode_lengths sum to 25 steps but acts has 20 rows"),
    "array lengths": (lambda d: _rows(d) or d, "obs has 20 rows but acts has 15"),
}


def run_train(out: Path, *flags: str) -> int:
    return cli.main(["train", "--output-dir", str(out), "--experiment-name", "x", "--set", "rl.total_timesteps=0",
                     *flags])


def test_a_good_demonstrations_file_loads(tmp_path):
    demo_io.save(demo(), tmp_path / "good.npz")
    assert len(demo_io.load(tmp_path / "good.npz", observation_space(ENV), action_space(ENV))) == 20


@pytest.mark.parametrize("case", sorted(DEMO_CASES))
def test_bad_demonstrations_are_one_line_and_no_experiment_folder(tmp_path, capsys, case):
    spoil, words = DEMO_CASES[case]
    bad = tmp_path / "bad.npz"
    demo_io.save(spoil(demo()), bad)
    refused(capsys, tmp_path, lambda: run_train(tmp_path / "out", "--set", f"demo.path={bad}"), str(bad), words)


@pytest.mark.parametrize("case", ["missing key", "not an npz", "damaged zip", "not JSON meta", "folder", "missing"])
def test_unreadable_demonstrations_are_one_line_and_no_experiment_folder(tmp_path, capsys, case):
    bad = tmp_path / "bad.npz"
    demo_io.save(demo(), tmp_path / "good.npz")
    arrays = dict(np.load(tmp_path / "good.npz"))
    words = {"missing key": "no episode_lengths array", "not an npz": "is not an .npz file",
             "damaged zip": "not a readable demonstrations file", "not JSON meta": "meta array is not a JSON object",
             "folder": "is a folder", "missing": "not found"}[case]
    if case == "missing key":
        np.savez(bad, **{k: v for k, v in arrays.items() if k != "episode_lengths"})
    elif case == "not an npz":
        bad.write_text("obs,acts\n1,2\n")
    elif case == "damaged zip":
        data = (tmp_path / "good.npz").read_bytes()
        bad.write_bytes(data[:60] + bytes(200) + data[260:])          # damaged member data, intact directory
    elif case == "not JSON meta":
        np.savez(bad, **{**arrays, "meta": np.array("{not json")})
    elif case == "folder":
        bad.mkdir()
    refused(capsys, tmp_path, lambda: run_train(tmp_path / "out", "--set", f"demo.path={bad}"), str(bad), words)


# ---------------------------------------------------------------- 2. policy files
@pytest.fixture(scope="module")
def good_policy(tmp_path_factory) -> Path:
    """A policy file as behavior cloning saves it (default network, untrained)."""
    path = tmp_path_factory.mktemp("policy") / "bc.pth"
    policy = make_policy(observation_space(ENV), action_space(ENV), PolicyConfig(), env_cfg=ENV)
    save_policy(path, policy, policy_meta(policy, PolicyConfig(), ENV))
    return path


def bad_policy(good: Path, tmp_path: Path, case: str) -> tuple[Path, str]:
    """A spoiled copy of `good` and the words its error names."""
    blob = torch.load(good, weights_only=True)
    state = dict(blob["state_dict"])
    path = tmp_path / "bad.pth"
    if case == "non-finite weights":
        name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 2)
        state[name] = state[name].clone()
        state[name][0, 0] = float("nan")
        words = f"weight {name} holds 1 non-finite"
    elif case == "wrong observation size":
        name = next(k for k, v in state.items() if v.ndim == 2 and v.shape[1] == OBS)
        state[name] = torch.zeros(state[name].shape[0], OBS + 4)
        words = f"{name} has shape ({state[name].shape[0]}, {OBS + 4})"
    elif case == "wrong action size":
        name = next(k for k, v in state.items() if v.ndim == 2 and v.shape[0] == ACT)
        state[name] = torch.zeros(ACT - 2, state[name].shape[1])
        words = f"{name} has shape ({ACT - 2}, "
    elif case == "corrupt":
        path.write_bytes(good.read_bytes()[:300])
        return path, "is not a policy saved by this project"
    elif case == "not JSON meta":
        blob = {**blob, "meta": "{not json"}
        words = "metadata is not a JSON object"
    elif case == "folder":
        path.mkdir()
        return path, "is a folder"
    elif case == "missing":
        return path, "not found"
    torch.save({**blob, "format": POLICY_FORMAT, "state_dict": state}, path)
    return path, words


POLICY_CASES = ["non-finite weights", "wrong observation size", "wrong action size", "corrupt", "not JSON meta",
                "folder", "missing"]
COMMANDS = {
    "evaluate": lambda model, tmp: ["evaluate", "--model", str(model), "--episodes", "1"],
    "export": lambda model, tmp: ["export", "--model", str(model), "--out", str(tmp / "export"), "--check-steps", "5"],
    "visualize": lambda model, tmp: ["visualize", "--model", str(model), "--record", str(tmp / "walk.mp4")],
    "train": lambda model, tmp: ["train", "--skip-bc", "--pretrained-model", str(model), "--output-dir",
                                 str(tmp / "out"), "--experiment-name", "x", "--set", "rl.total_timesteps=0"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", POLICY_CASES)
def test_bad_policy_files_are_one_line_and_write_nothing(good_policy, tmp_path, capsys, command, case):
    path, words = bad_policy(good_policy, tmp_path, case)
    refused(capsys, tmp_path, lambda: cli.main(COMMANDS[command](path, tmp_path)), str(path), words)


def test_foreign_model_zips_still_need_allow_pickle(tmp_path, capsys):
    import zipfile
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("data", "{}")
    refused(capsys, tmp_path, lambda: cli.main(["evaluate", "--model", str(foreign)]), str(foreign), "--allow-pickle")
    with pytest.warns(UserWarning, match="unpickles"):
        refused(capsys, tmp_path, lambda: cli.main(["evaluate", "--model", str(foreign), "--allow-pickle"]),
                str(foreign), "could not be loaded")


def test_a_model_zip_is_no_pretrained_bc_policy(good_policy, tmp_path, capsys):
    import io
    import zipfile
    blob = torch.load(good_policy, weights_only=True)
    model = tmp_path / "final_model.zip"
    buffer = io.BytesIO()
    torch.save(blob["state_dict"], buffer)
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("policy.pth", buffer.getvalue())
        zf.writestr("pidog_meta.json", blob["meta"])
    refused(capsys, tmp_path, lambda: cli.main(COMMANDS["train"](model, tmp_path)), str(model), "BC policy .pth")


# ---------------------------------------------------------------- 3. runtime logs (--replay, --commands LOG)
def runtime_policy(folder: Path, command: bool = False) -> Path:
    """policy.json as `pidog export` writes it and a policy.onnx of that size that always acts 0."""
    import onnx
    from onnx import TensorProto, helper
    from training.export import spec_for
    cfg = config_tree.apply(EnvConfig(), "command.enabled", True) if command else EnvConfig()
    spec = spec_for(cfg, "test")
    folder.mkdir()
    spec.save(folder / "policy.json")
    n = spec.obs_size
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "w"], ["y"]), helper.make_node("Add", ["y", "b"], ["action"])], "zero",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor("w", TensorProto.FLOAT, [n, 8], [0.0] * (n * 8)),
         helper.make_tensor("b", TensorProto.FLOAT, [8], [0.0] * 8)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "policy.onnx")
    return folder / "policy.onnx"


@pytest.fixture(scope="module")
def onnx_policy(tmp_path_factory) -> Path:
    return runtime_policy(tmp_path_factory.mktemp("runtime") / "policy")


def good_log(obs_size: int, ticks: int = 6) -> dict[str, np.ndarray]:
    return {"obs": np.zeros((ticks, obs_size)), "action": np.zeros((ticks, 8)), "command_deg": np.zeros((ticks, 8))}


def _nan_at_tick_2(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[2, 1] = np.nan
    return a


LOG_CASES = {
    "non-finite observation": (lambda g: {**g, "obs": _nan_at_tick_2(g["obs"])}, "obs holds 1 non-finite"),
    "observation size": (lambda g: {**g, "obs": g["obs"][:, :-3]}, "obs has shape"),
    "action size": (lambda g: {**g, "action": g["action"][:, :6]}, "action has shape (6, 6)"),
    "tick counts": (lambda g: {**g, "action": g["action"][:4]}, "action has 4 ticks but obs has 6"),
    "missing array": (lambda g: {"obs": g["obs"]}, "no action array"),
}


def test_a_good_runtime_log_replays(onnx_policy, tmp_path, capsys):
    from deploy.policy_spec import PolicySpec
    log = tmp_path / "run.npz"
    np.savez(log, **good_log(PolicySpec.load(onnx_policy.with_name("policy.json")).obs_size))
    assert runtime.main(["--policy", str(onnx_policy), "--replay", str(log)]) == 0


@pytest.mark.parametrize("case", sorted(LOG_CASES) + ["not an npz", "damaged zip"])
def test_bad_runtime_logs_are_one_line(onnx_policy, tmp_path, capsys, case):
    from deploy.policy_spec import PolicySpec
    log = tmp_path / "run.npz"
    good = good_log(PolicySpec.load(onnx_policy.with_name("policy.json")).obs_size)
    if case == "not an npz":
        log.write_text("tick,obs\n")
        words = "is not an .npz runtime log"
    elif case == "damaged zip":
        np.savez(tmp_path / "good.npz", **good)
        log.write_bytes((tmp_path / "good.npz").read_bytes()[:150])
        words = "is not an .npz runtime log"
    else:
        spoil, words = LOG_CASES[case]
        np.savez(log, **spoil(good))
    refused(capsys, tmp_path, lambda: runtime.main(["--policy", str(onnx_policy), "--replay", str(log)]),
            str(log), words)


def test_a_commands_log_with_non_finite_commands_is_one_line(tmp_path, capsys):
    policy = runtime_policy(tmp_path / "cmd", command=True)
    log = tmp_path / "commands.npz"
    np.savez(log, commands=np.array([[0.1, 0.0], [np.inf, 0.0]]))
    refused(capsys, tmp_path, lambda: runtime.main(["--policy", str(policy), "--dry-run", "--stand-only", "--seconds",
                                                    "0.1", "--conf", str(tmp_path / "none.conf"), "--commands",
                                                    str(log)]), str(log), "commands holds 1 non-finite")


# ---------------------------------------------------------------- 4. the vendor calibration file
CONF_CASES = {           # the lines after a two-line header; the problem is on line 3 (4 for "twice")
    "malformed line": ("legs_servo_offset_list = [0, 1, 2, 3\n", "must be a list of numbers"),
    "non-finite offset": ("legs_servo_offset_list = [0, 1, nan, 3, 4, 5, 6, 7]\n", "non-finite offset"),
    "out of range": ("legs_servo_offset_list = [0, 1, 2, 3, 4, 5, 6, 35]\n", "offset 35 deg is outside +-20 deg"),
    "wrong count": ("legs_servo_offset_list = [0, 1, 2]\n", "has 3 offsets; 8 expected"),
    "twice": ("head_servo_offset_list = [0, 0, 0]\n" * 2, "appears twice"),
}


def test_a_good_calibration_file_reads(tmp_path):
    conf = tmp_path / "pidog.conf"
    conf.write_text("# robot-hat config\n\nlegs_servo_offset_list = [1.5, -2, 0, 0, 0, 0, 0, 20]\n"
                    "head_servo_offset_list = [0, 0, -3]\ntail_servo_offset_list = [0]\nother = x\n")
    assert read_pidog_conf(conf)["legs_servo_offset_list"] == [1.5, -2.0, 0, 0, 0, 0, 0, 20.0]


@pytest.mark.parametrize("case", sorted(CONF_CASES))
def test_bad_calibration_files_are_one_line_before_anything_moves(onnx_policy, tmp_path, capsys, case):
    text, words = CONF_CASES[case]
    conf = tmp_path / "pidog.conf"
    conf.write_text("# robot-hat config\n\n" + text)
    refused(capsys, tmp_path, lambda: runtime.main(["--policy", str(onnx_policy), "--dry-run", "--stand-only",
                                                    "--seconds", "0.1", "--conf", str(conf)]),
            f"{conf}:{4 if case == 'twice' else 3}:", words)


# ---------------------------------------------------------------- 5. preset files
PRESET_CASES = {
    "not JSON": ("{ppo.gamma: 0.9", "is not valid JSON"),
    "not a mapping": ("[1, 2]", "must be a JSON object"),
    "bad value": ('{"ppo.gamma": 7}', "ppo.gamma must be <= 1"),
    "wrong type": ('{"ppo.gamma": "high"}', "ppo.gamma must be a number"),
    "unknown setting": ('{"ppo.gama": 0.9}', "unknown setting"),
}


@pytest.mark.parametrize("case", sorted(PRESET_CASES))
def test_bad_preset_files_are_one_line(tmp_path, capsys, case):
    text, words = PRESET_CASES[case]
    preset = tmp_path / "mine.json"
    preset.write_text(text)
    refused(capsys, tmp_path, lambda: run_train(tmp_path / "out", "--preset", str(preset)), str(preset), words)


def test_a_preset_path_that_is_a_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "mine.json").mkdir()
    refused(capsys, tmp_path, lambda: run_train(tmp_path / "out", "--preset", str(tmp_path / "mine.json")),
            "mine.json is not a file")


# ---------------------------------------------------------------- 6. output paths
def short_run(out: Path | None, tmp_path: Path) -> int:
    """`pidog train` on a small good demonstrations file, one BC epoch (what would run if a check failed)."""
    good = tmp_path / "good.npz"
    if not good.exists():
        demo_io.save(demo(), good)
    flags = ["--set", f"demo.path={good}", "--set", "bc.epochs=1", "--set", "bc.eval_episodes=1",
             "--set", "rl.total_timesteps=0", "--experiment-name", "x"]
    return cli.main(["train", *(["--output-dir", str(out)] if out is not None else []), *flags])


def test_an_output_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "taken").write_text("results")
    demo_io.save(demo(), tmp_path / "good.npz")
    for out, words in ((tmp_path / "taken", "exists and is not a folder"),
                       (tmp_path / "taken" / "sub", "is a file, not a folder")):
        refused(capsys, tmp_path, lambda: short_run(out, tmp_path), f"--output-dir {out}", words)
    assert (tmp_path / "taken").read_text() == "results"


def test_an_unwritable_output_dir_is_one_line(tmp_path, capsys, read_only):
    demo_io.save(demo(), tmp_path / "good.npz")
    refused(capsys, tmp_path, lambda: short_run(read_only / "outputs", tmp_path),
            f"--output-dir {read_only / 'outputs'} cannot be created: {read_only} is not writable")
    refused(capsys, tmp_path, lambda: short_run(read_only, tmp_path), f"{read_only} is not writable")


def test_the_default_outputs_folder_in_an_unwritable_working_folder_is_one_line(tmp_path, capsys, read_only,
                                                                                monkeypatch):
    """The Docker image's case: no writable outputs/ mounted in a read-only /app."""
    demo_io.save(demo(), tmp_path / "good.npz")
    monkeypatch.chdir(read_only)
    refused(capsys, tmp_path, lambda: short_run(None, tmp_path), "--output-dir outputs cannot be created",
            "permission denied")


def test_evaluate_json_paths_are_checked_before_evaluating(tmp_path, capsys, read_only):
    (tmp_path / "taken.json").write_text("{}")
    for path, words in ((tmp_path / "taken.json", "exists"), (tmp_path / "nowhere" / "r.json", "does not exist"),
                        (tmp_path / "taken.json" / "r.json", "is not a folder"),
                        (read_only / "r.json", "is not writable")):
        refused(capsys, tmp_path, lambda: cli.main(["evaluate", "--gait", "trot", "--json", str(path)]), str(path),
                words)
    assert json.loads((tmp_path / "taken.json").read_text()) == {}


def test_export_out_paths_are_checked_before_loading(good_policy, tmp_path, capsys, read_only):
    (tmp_path / "taken").write_text("x")
    for out, words in ((tmp_path / "taken", "exists and is not a folder"),
                       (read_only / "export", "is not writable")):
        refused(capsys, tmp_path, lambda: cli.main(["export", "--model", str(good_policy), "--out", str(out)]),
                f"--out {out}", words)


def test_a_runtime_log_in_an_unwritable_folder_is_refused_before_the_run(onnx_policy, tmp_path, capsys, read_only):
    refused(capsys, tmp_path, lambda: runtime.main(["--policy", str(onnx_policy), "--dry-run", "--stand-only",
                                                    "--seconds", "0.1", "--log", str(read_only / "run.npz")]),
            str(read_only / "run.npz"), "is not writable")
