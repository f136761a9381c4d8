"""The documentation's checks. One source per fact: the env's docstring is its spec, docs/environment.md
copies its tables, and both agree with the configuration. And for README.md, CONTRIBUTING.md and docs/:
no run or process vocabulary (here and in every --help), every command shown parses with the real argument
parsers, every relative link resolves, the generated parts equal a fresh render, and the output folder drawn
in the README is `training.experiment.Experiment`'s. Each check has a test that shows it failing on a
violation."""

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from pidog_env.config import REWARD_TERMS, EnvConfig
from pidog_env.env import PiDogEnv
from pidog_env.observation import GYRO_SCALE

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOC = PiDogEnv.__doc__
ENV_PAGE = (ROOT / "docs" / "environment.md").read_text()
# The pages these checks cover. docs/experiments/ is a frozen record: its commands ran at the commits it
# names (several options are gone since), so it is checked for vocabulary and links, not for commands.
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
COMMAND_PAGES = [p for p in PAGES if "experiments" not in p.relative_to(ROOT).parts]


def flat(text: str) -> str:
    """Text with every run of whitespace one space (the docs wrap lines anywhere)."""
    return " ".join(text.split())


def table_after(text: str, heading: str) -> list[str]:
    lines = text[text.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    out = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        out.append(line)
    return out


def section(text: str, heading: str) -> str:
    """From `heading` to the next heading of the same or a higher level."""
    level = heading.split()[0]
    start = text.index(heading)
    nxt = re.search(rf"^#{{1,{len(level)}}} ", text[start + len(heading):], re.M)
    return text[start:start + len(heading) + nxt.start()] if nxt else text[start:]


# ---------------------------------------------------------------- the env's facts
@pytest.mark.parametrize("heading", ["## Observation space", "## Rewards"])
def test_environment_page_carries_the_env_docstring_tables_verbatim(heading):
    table = "\n".join(table_after(DOC, heading))
    assert table in ENV_PAGE, f"docs/environment.md's copy of the env docstring table under {heading!r} is out of date"


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
    assert f"`ctrl_dt` {cfg.ctrl_dt} s over `sim_dt` {cfg.sim_dt} s" in ENV_PAGE
    assert f"`episode_seconds` {cfg.episode_seconds:.0f} s = {cfg.episode_steps} steps" in ENV_PAGE
    assert f"`fall_tilt_deg` ({cfg.fall_tilt_deg:.0f} deg" in DOC
    # The page states the gait period once more in prose: the trot's period, rounded.
    assert f"period {cfg.gait_period:.2f} s" in ENV_PAGE
    assert not re.search(r"gait clock[^|\n]*0\.54", ENV_PAGE)


def test_standing_and_trot_returns_are_current():
    import gymnasium as gym
    import pidog_env
    import numpy as np

    from pidog_env.env import STAND_ACTION
    from pidog_env.evaluation import run_episode
    from pidog_env.gaits import TrotGait
    env = gym.make(pidog_env.ENV_ID, randomize=False)
    stand = run_episode(lambda obs: STAND_ACTION.astype(np.float32), env, seed=0)["return"]
    trot = run_episode(TrotGait.for_env(env), env, seed=0)["return"]
    env.close()
    m = re.search(r"earns ([\d,]+) per\s+episode against the trot's ([\d,]+)", ENV_PAGE)
    assert m, "docs/environment.md no longer states the standing and trot returns"
    page_stand, page_trot = (float(x.replace(",", "")) for x in m.groups())
    # MuJoCo's floating point differs slightly between CPUs (vector code paths): 1 % covers that, not a change.
    assert page_stand == pytest.approx(stand, rel=0.01) and page_trot == pytest.approx(trot, rel=0.01), (stand, trot)


def test_command_task_figures_match_the_config():
    from pidog_env.observation import CMD_VX_SCALE, CMD_WZ_SCALE
    c, r = EnvConfig().command, EnvConfig().reward
    text = flat(section(ENV_PAGE, "## The command task"))
    assert f"({c.vx_range[0]:g}-{c.vx_range[1]:g} m/s)" in text and f"(+-{c.wz_range[1]:g} rad/s)" in text
    assert f"`zero_share` of {c.zero_share * 100:.0f} %" in text
    assert f"every {c.resample_s[0]:g}-{c.resample_s[1]:g} s" in text
    assert f"sigma {r.tracking_sigma_vx:g} (m/s)^2 and {r.tracking_sigma_wz:g} (rad/s)^2" in text
    assert f"(x {CMD_VX_SCALE:g} and x {CMD_WZ_SCALE:g})" in text
    assert f"/ {r.tracking_sigma_vx:g})" in DOC and f"/ {r.tracking_sigma_wz:g})" in DOC


def test_off_policy_defaults_match_the_config():
    from training.config import OffPolicyConfig
    from training.interventions import RELEASE_STEPS, TAKE_OVER_RATE, TAKE_OVER_TILT_DEG
    o, fall = OffPolicyConfig(), -EnvConfig().reward.scales["fall"]
    text = flat((ROOT / "docs" / "off-policy.md").read_text())
    assert f"`off_policy.bc_coef` ({o.bc_coef:g})" in text
    assert f"`off_policy.bc_decay_steps` ({o.bc_decay_steps // 1000}k)" in text
    assert f"`off_policy.learning_rate` is {o.learning_rate:.0e}".replace("e-03", "e-3") in text
    assert f"from {o.n_step}-step returns" in text and o.intervention_penalty is None
    assert f"the env's fall penalty, {fall:g})" in text
    assert f"tilt passes {TAKE_OVER_TILT_DEG:g} deg or the roll/pitch rate {TAKE_OVER_RATE:g} rad/s" in text
    assert f"until {RELEASE_STEPS * EnvConfig().ctrl_dt:g} s of calm" in text


def test_selection_defaults_match_the_config():
    from training.config import RLConfig
    r = RLConfig()
    text = flat((ROOT / "docs" / "training.md").read_text())
    assert f"`rl.select_max_fall_rate` ({r.select_max_fall_rate:.0%})".replace("%", " %") in text
    assert f"(`rl.eval_episodes`, {r.eval_episodes};" in text
    assert f"`rl.confirm_episodes` ({r.confirm_episodes}) more seeded episodes" in text
    assert f"pooled over all {r.eval_episodes + r.confirm_episodes} decide" in text
    assert f"`rl.final_eval_episodes` ({r.final_eval_episodes}) episodes" in text


# ---------------------------------------------------------------- the README's shape
def readme_problems(text: str) -> list[str]:
    """A landing page: at most 300 lines; its first 40 hold the install, test and Docker commands, which are
    the ones CI runs."""
    problems = []
    lines = text.splitlines()
    if len(lines) > 300:
        problems.append(f"{len(lines)} lines (at most 300)")
    first = "\n".join(lines[:40])
    ci = (ROOT / ".ci" / "run").read_text()
    for command, why in (("./install.sh", "the install"), (".venv/bin/python -m pytest", "the test command"),
                         ("docker compose run", "the Docker command")):
        if command not in first:
            problems.append(f"{why} ({command}) is not in the first 40 lines")
        elif command != "docker compose run" and command not in ci:
            problems.append(f"{command} is not what .ci/run runs")
    return problems


def test_readme_is_a_landing_page():
    assert readme_problems(README) == []


def test_readme_check_fails_when_long_or_when_the_first_screen_lacks_a_command():
    assert any("301 lines" in p for p in readme_problems(README + "\n" * (301 - len(README.splitlines()))))
    moved = README.replace("docker compose run --rm pidog_rl python train_pretrain_finetune.py --quick", "", 1)
    assert any("Docker" in p for p in readme_problems(moved))


# ---------------------------------------------------------------- vocabulary
FORBIDDEN = {
    "a run label": r"\bstops? \d+\b|\b(?:this|last|next|previous|that) stop\b",
    "an issue number": r"\bissues? #?\d+",
    "machine talk": r"\bthis (?:VM|box)\b|\b(?:slow|slower|fast|faster|quiet|busy|good|bad) day\b"
                    r"|\banother (?:CPU|VM)\b|\bthe other (?:CPU|VM)\b",
}


def vocabulary(text: str) -> list[str]:
    """Every forbidden phrase in `text`, with what it is."""
    return [f"{what}: {m.group(0)!r}" for what, pattern in FORBIDDEN.items()
            for m in re.finditer(pattern, text, re.I)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_run_or_process_vocabulary_in_the_docs(page):
    assert vocabulary(page.read_text()) == []


def test_no_run_or_process_vocabulary_in_pidogs_help():
    from training.cli import build_parser
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in {"pidog": parser, **subparsers}.items():
        assert vocabulary(sub.format_help()) == [], name


@pytest.mark.slow
@pytest.mark.parametrize("module", [*(f"bench.{p.stem}" for p in sorted((ROOT / "bench").glob("[!_]*.py"))),
                                    "training.sweep", "deploy.cli"])
def test_no_run_or_process_vocabulary_in_the_other_commands_help(module, capsys):
    import importlib
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "usage:" in out and vocabulary(out) == []


@pytest.mark.parametrize("text", ["measured at stop 12", "stop 38's CPU", "stops 23-40", "see issue 10",
                                  "on this VM", "on a slow day", "on another CPU", "the next stop"])
def test_vocabulary_check_catches_run_labels_issue_numbers_and_machine_talk(text):
    assert vocabulary(f"Figures {text}, as before.")
    assert vocabulary("Measured on 2026-12-04, commit 1357fe5, on a 2-core AMD EPYC; stop the run.") == []


# ---------------------------------------------------------------- commands
class _Parsed(Exception):
    pass


@contextlib.contextmanager
def parse_only():
    """argparse parses as usual and then stops the program before it does anything."""
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise _Parsed

    argparse.ArgumentParser.parse_args = parse_args
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = original


# Programs the docs may show that are not this project's; their arguments are not checked here
# (docker compose commands are: tests/test_docker.py).
EXTERNAL = {"tensorboard", "docker", "docker-compose", "xhost", "export", "mkdir", "ssh", "scp", "tar", "cd",
            "ray", "git", "cp", "ls", "rm", "bash", "time", "pip", "$FFMPEG", "COMPOSE=docker-compose",
            "SMOKE_COMPOSE_FILES=docker/compose.host-network.yml"}
SHIMS = {"train_pretrain_finetune.py": "train", "training/train_imitation.py": "imitate",
         "training/train_rl.py": "rl", "training/evaluate.py": "evaluate", "training/visualize.py": "visualize"}
MODULES = {"bench.publish": "bench.publish", "bench.report": "bench.report", "deploy.runtime": "deploy.cli",
           "training.cli": "training.cli"}


def shown_commands(text: str) -> list[str]:
    """Every command in the text's ```bash blocks, continuation lines joined, one per && or ;."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split, lexer.commenters = True, "#"
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token in (";", "&&", "||", "|", "&"):
                    if words:
                        out.append(shlex.join(words))
                    words = []
                else:
                    words.append(token)
    return out


def command_problem(command: str) -> str | None:
    """Why `command` would not run as shown, or None: the project's commands go through their real parsers."""
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0], re.S) and words[0] not in EXTERNAL:
        words = words[1:]                                        # VAR=value (before a command, or alone)
    if not words or words[0] in EXTERNAL:
        return None
    program, args = words[0].removeprefix(".venv/bin/"), words[1:]
    if program == "pidog":
        return _pidog(args)
    if program.startswith("./") or program.endswith(".sh"):
        script = ROOT / program.removeprefix("./")
        if not script.is_file():
            return f"{program} does not exist"
        text = script.read_text()
        unknown = [a for a in args if a.startswith("-") and a not in text]
        return f"{program} takes no {unknown[0]}" if unknown else None
    if program not in ("python", "python3"):
        return f"unknown program {program!r} (add it to EXTERNAL if it is not this project's)"
    if args[:1] == ["-m"]:
        module, args = args[1], args[2:]
        if module == "pytest":
            return None
        if module not in MODULES:
            return f"python -m {module}: not a command of this project"
        if module == "training.cli":
            return _pidog(args)
        return _main(MODULES[module], args)
    script, args = args[0], args[1:]
    if script in SHIMS:
        return _pidog([SHIMS[script], *args])
    if not (ROOT / script).is_file():
        return f"{script} does not exist"
    if script.startswith("bench/") or script == "training/sweep.py":
        return _main(script.removesuffix(".py").replace("/", "."), args)
    return f"{script}: no parser known for it"


def _pidog(args: list[str]) -> str | None:
    from training.cli import PIPELINES, build_parser
    from training.presets import build_config
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parsed = build_parser().parse_args(args)
    except SystemExit as exc:
        return f"pidog {shlex.join(args)}: exit {exc.code}: {err.getvalue().strip()}"
    command = "train" if parsed.command == "config" else parsed.command
    if command in PIPELINES:                                     # the settings themselves, validated
        try:
            build_config(PIPELINES[command][1], getattr(parsed, "assignments", []))
        except Exception as exc:                                 # ConfigError, PipelineError
            return f"pidog {shlex.join(args)}: {exc}"
    return None


def _main(module: str, args: list[str]) -> str | None:
    import importlib
    main = importlib.import_module(module).main
    err = io.StringIO()
    try:
        with parse_only(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(args)
    except _Parsed:
        return None
    except SystemExit as exc:
        if exc.code == 0:                                        # --help
            return None
        return f"{module} {shlex.join(args)}: exit {exc.code}: {err.getvalue().strip()}"
    return f"{module} {shlex.join(args)} ran without parsing its arguments"


@pytest.fixture
def in_a_fresh_folder(tmp_path, monkeypatch):
    """Commands as a user types them in a fresh clone: relative paths (--record x.mp4, outputs/) resolve
    in an empty folder with an outputs/ folder."""
    (tmp_path / "outputs").mkdir()
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("page", COMMAND_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_shown_parses(page, in_a_fresh_folder):
    problems = [p for c in shown_commands(page.read_text()) if (p := command_problem(c))]
    assert problems == []


def test_command_check_catches_unknown_flags_settings_scripts_and_programs(in_a_fresh_folder):
    text = """```bash
pidog train --quick --set ppo.gamma=0.99   # fine
pidog train --quik
pidog train --set ppo.gama=0.99
pidog evaluate --model m.zip --episodes 0
python train_pretrain_finetune.py --total-rl-timesteps ten && python training/nothing.py
./install.sh --with-rays
python -m bench.publish
pidgo train
```"""
    commands = shown_commands(text)
    assert len(commands) == 9 and commands[0] == "pidog train --quick --set ppo.gamma=0.99"
    problems = [command_problem(c) for c in commands]
    assert problems[0] is None and all(problems[1:]), problems
    assert "ppo.gama" in problems[2] and "does not exist" in problems[5] and "--with-rays" in problems[6]


# ---------------------------------------------------------------- links
def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def broken_links(page: Path, text: str) -> list[str]:
    """Relative links (and anchors into Markdown files) in `text` that do not resolve from `page`."""
    broken = []
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):
            continue                                              # https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text()):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert broken_links(page, page.read_text()) == []


def test_link_check_catches_missing_files_and_anchors():
    page = ROOT / "README.md"
    text = ("[a](docs/training.md) [b](docs/nothing.md) [c](docs/training.md#where-training-runs-cpu) "
            "[d](docs/training.md#no-such-heading) [e](https://example.org/x) [f](#license)\n"
            "```\n[g](not/checked/in/code.md)\n```\n## License\n")
    assert broken_links(page, text) == ["docs/nothing.md", "docs/training.md#no-such-heading"]
    assert slug("The trot (`bench/trot_check.py`)") == "the-trot-benchtrot_checkpy"


# ---------------------------------------------------------------- generated parts
def out_of_date(pages: dict[Path, str]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p, text in pages.items() if not p.is_file() or p.read_text() != text]


def test_generated_parts_equal_a_fresh_render():
    from bench import report
    assert out_of_date(report.rendered()) == [], "run python -m bench.report"


def test_generated_parts_check_catches_data_changed_without_a_render():
    from bench import report
    runs = report.load_runs()
    trot = report.latest(runs, "trot")
    trot["forward_speed_mps"] += 0.01                             # a published figure edited by hand
    assert set(out_of_date(report.rendered(runs))) >= {"README.md", "docs/results.md"}


def test_settings_reference_lists_every_setting_once():
    from pidog_env import config_tree
    from training.cli import settings_markdown
    from training.config import PipelineConfig
    text = settings_markdown(PipelineConfig())
    keys = [k for k, _, _ in config_tree.describe(PipelineConfig())]
    assert all(text.count(f"| `{k}` |") == 1 for k in keys)
    assert len(re.findall(r"^\| `", text, re.M)) == len(keys)
    assert '`"bc_rl_<date>_<time>"`' in text                    # not the time of the render


# ---------------------------------------------------------------- the output folder
def drawn_tree(text: str) -> set[str]:
    """The paths of the folder drawn under the README's "What a run writes" (first column of each line)."""
    block = re.search(r"```\n(outputs/.*?)```", section(text, "## What a run writes"), re.S).group(1)
    paths, parents = set(), []
    for line in block.splitlines()[1:]:
        m = re.match(r"^((?:[│ ] {3})*)[├└]── (\S+)", line)
        assert m, f"not a tree line: {line!r}"
        depth, name = len(m.group(1)) // 4, m.group(2).rstrip("/")
        parents = parents[:depth] + [name]
        paths.add("/".join(parents))
    return paths


def tree_problems(paths: set[str]) -> list[str]:
    from training.experiment import Experiment
    names = {v for k, v in vars(Experiment).items() if k.isupper() and isinstance(v, str)}
    tops = {n.split("/")[0] for n in names}
    problems = [f"{n} is missing" for n in sorted(names - paths)]
    problems += [f"{p} is not an Experiment name" for p in sorted(paths) if p.split("/")[0] not in tops]
    return problems


def test_readme_draws_the_experiment_folder():
    assert tree_problems(drawn_tree(README)) == []


def test_tree_check_catches_missing_and_unknown_entries():
    paths = drawn_tree(README)
    assert tree_problems(paths - {"summary.json"}) == ["summary.json is missing"]
    assert tree_problems(paths | {"extra.json"}) == ["extra.json is not an Experiment name"]
    assert "plots/training_curves.png" in paths and "videos/step_<N>.mp4" in paths
