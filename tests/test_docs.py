"""One source per fact: the env's docstring is its spec; the README copies its tables, and both agree
with the configuration."""

import re
from pathlib import Path

import pytest

from pidog_env.config import REWARD_TERMS, EnvConfig
from pidog_env.env import PiDogEnv
from pidog_env.observation import GYRO_SCALE

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOC = PiDogEnv.__doc__


def table_after(text: str, heading: str) -> list[str]:
    lines = text[text.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    out = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        out.append(line)
    return out


@pytest.mark.parametrize("heading", ["## Observation space", "## Rewards"])
def test_readme_carries_the_env_docstring_tables_verbatim(heading):
    table = "\n".join(table_after(DOC, heading))
    assert table in README, f"README's copy of the env docstring table under {heading!r} is out of date"


def test_docstring_reward_table_matches_the_config():
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table_after(DOC, "## Rewards")[2:]]
    scales = EnvConfig().reward.scales
    assert [r[0] for r in rows] == list(REWARD_TERMS)
    assert {r[0]: float(r[2]) for r in rows} == scales
    assert f"({EnvConfig().reward.target_speed:.2f} m/s)" in DOC
    cfg = EnvConfig()
    row = {r[0]: r[1] for r in rows}
    assert f"`reward.min_body_height`, {cfg.reward.min_body_height} m" in row["body_height"]
    assert f"rated torque ({cfg.physical.servo_torque} N m)" in row["torque_limit"]
    assert f"`reward.torque_soft_limit` ({cfg.reward.torque_soft_limit})" in row["torque_limit"]


def test_docstring_timing_and_scales_match_the_config():
    cfg = EnvConfig()
    assert f"period `gait_period`, {cfg.gait_period} s" in DOC
    assert f"rad/s x {GYRO_SCALE}" in DOC
    assert f"`episode_seconds` ({cfg.episode_seconds:.0f} s = {cfg.episode_steps} steps at `ctrl_dt` {cfg.ctrl_dt} s)" in DOC
    assert f"`ctrl_dt` {cfg.ctrl_dt} s over `sim_dt` {cfg.sim_dt} s" in README
    assert f"`episode_seconds` {cfg.episode_seconds:.0f} s = {cfg.episode_steps} steps" in README
    assert f"`fall_tilt_deg` ({cfg.fall_tilt_deg:.0f} deg" in DOC
    # The README states the gait period once more in prose: the trot's period, rounded.
    assert f"period {cfg.gait_period:.2f} s" in README
    assert not re.search(r"gait clock[^|\n]*0\.54", README)


def test_readme_standing_and_trot_returns_are_current():
    import gymnasium as gym
    import numpy as np

    from pidog_env.env import STAND_ACTION
    from pidog_env.evaluation import run_episode
    from pidog_env.gaits import TrotGait
    env = gym.make("PiDog-v1", randomize=False)
    stand = run_episode(lambda obs: STAND_ACTION.astype(np.float32), env, seed=0)["return"]
    trot = run_episode(TrotGait.for_env(env), env, seed=0)["return"]
    env.close()
    m = re.search(r"earns ([\d,]+) per episode against the trot's ([\d,]+)", README)
    assert m, "README no longer states the standing and trot returns"
    readme_stand, readme_trot = (float(x.replace(",", "")) for x in m.groups())
    # MuJoCo's floating point differs slightly between CPUs (vector code paths): 1 % covers that, not a change.
    assert readme_stand == pytest.approx(stand, rel=0.01) and readme_trot == pytest.approx(trot, rel=0.01), (stand, trot)


def test_readme_command_task_figures_match_the_config():
    from pidog_env.observation import CMD_VX_SCALE, CMD_WZ_SCALE
    c, r = EnvConfig().command, EnvConfig().reward
    section = README[README.index("## Steering the dog"):README.index("## Watching it learn")]
    assert f"({c.vx_range[0]:g}-{c.vx_range[1]:g} m/s)" in section and f"(+-{c.wz_range[1]:g} rad/s)" in section
    assert f"`zero_share` of {c.zero_share * 100:.0f} %" in section
    assert f"every {c.resample_s[0]:g}-{c.resample_s[1]:g} s" in section
    assert f"sigma {r.tracking_sigma_vx:g} (m/s)^2 and {r.tracking_sigma_wz:g} (rad/s)^2" in section
    assert f"(x {CMD_VX_SCALE:g} and x {CMD_WZ_SCALE:g})" in section
    assert f"/ {r.tracking_sigma_vx:g})" in DOC and f"/ {r.tracking_sigma_wz:g})" in DOC


def test_readme_off_policy_defaults_match_the_config():
    from training.config import OffPolicyConfig
    from training.interventions import RELEASE_STEPS, TAKE_OVER_RATE, TAKE_OVER_TILT_DEG
    o, fall = OffPolicyConfig(), -EnvConfig().reward.scales["fall"]
    section = README[README.index("### Off-policy fine-tuning: SAC/TD3"):README.index("### Scaling out")]
    assert f"`off_policy.bc_coef` ({o.bc_coef:g})" in section
    assert f"`off_policy.bc_decay_steps` ({o.bc_decay_steps // 1000}k)" in section
    assert f"`off_policy.learning_rate` is {o.learning_rate:.0e}".replace("e-03", "e-3") in section
    assert f"from {o.n_step}-step returns" in section and o.intervention_penalty is None
    assert f"the env's fall penalty, {fall:g})" in section
    assert f"tilt passes {TAKE_OVER_TILT_DEG:g} deg or the roll/pitch rate\n{TAKE_OVER_RATE:g} rad/s" in section
    assert f"until {RELEASE_STEPS * EnvConfig().ctrl_dt:g} s of calm" in section


def test_readme_selection_defaults_match_the_config():
    from training.config import RLConfig
    r = RLConfig()
    text = " ".join(README.split())                       # the README wraps lines anywhere
    assert f"`rl.select_max_fall_rate` ({r.select_max_fall_rate:.0%})".replace("%", " %") in text
    assert f"(`rl.eval_episodes`, {r.eval_episodes};" in text
    assert f"`rl.confirm_episodes` ({r.confirm_episodes}) more seeded episodes" in text
    assert f"pooled over all {r.eval_episodes + r.confirm_episodes} decide" in text
    assert f"`rl.final_eval_episodes` ({r.final_eval_episodes}) episodes" in text
