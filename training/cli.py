"""`pidog`: the project's one command line.

    pidog train     demonstrations -> BC -> RL                     (= python train_pretrain_finetune.py)
    pidog imitate   demonstrations -> BC only                      (= python training/train_imitation.py)
    pidog rl        RL from scratch or from a saved BC policy      (= python training/train_rl.py)
    pidog evaluate  a table of figures for a saved policy          (= python training/evaluate.py)
    pidog visualize watch or record a policy                       (= python training/visualize.py)
    pidog export    ONNX + policy.json for the robot               (= python -m training.cli export)
    pidog config    print every setting (with presets and --set applied) and exit

Any setting of the config tree (`training/config.py`, `pidog config` lists them) can be set with
`--set key.path=value` (repeatable; values are JSON literals: 1e-4, true, [0.5, 1.2], null).
Presets are named sets of settings in `training/presets/` (`--preset quick`, or a path to a .json).
The documented flags are aliases of settings; later flags win. Every error is one line with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import pidog_env  # noqa: F401  (defaults MUJOCO_GL before anything imports mujoco)
from pidog_env import config_tree
from pidog_env.config_tree import ConfigError
from training.common import PipelineError, check_output_dir
from training.config import PipelineConfig
from training.presets import PRESETS, build_config
from training.stopping import Interrupted

RUN_IDENTITY = ("experiment_name", "output_dir", "resume")     # find the run; not settings changes


# ---------------------------------------------------------------- errors
def run_guarded(fn: Callable[[], Any]) -> int:
    """Run `fn`: a user-facing error -> 'error: ...' (one line) and exit 2; a stop signal -> one line
    saying what was saved and how to continue, exit 130 (SIGINT) or 143 (SIGTERM)."""
    try:
        fn()
    except (PipelineError, ConfigError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(exc.line(), file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    return 0


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (usage is one `--help` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


# ---------------------------------------------------------------- settings on the command line
@dataclass(frozen=True)
class Alias:
    flag: str
    keys: tuple[str, ...]          # setting(s) it sets
    const: str | None = None       # a flag without a value sets this text (e.g. "true")


def alias(flag: str, *keys: str, const: str | None = None) -> Alias:
    return Alias(flag, keys, const)


class _Assign(argparse.Action):
    """Appends (key, text) pairs to `namespace.assignments`, in command-line order."""

    def __init__(self, option_strings, dest, keys: tuple[str, ...] = (), const_text: str | None = None,
                 mapping: dict[str, str] | None = None, **kw):
        self.keys, self.const_text, self.mapping = keys, const_text, mapping
        super().__init__(option_strings, dest, nargs=0 if const_text is not None else None, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        pairs = getattr(namespace, "assignments", None) or []
        if self.dest == "set_":
            try:
                key, _ = config_tree.parse_assignment(values)
            except ConfigError as exc:
                parser.error(str(exc))
            pairs.append((key, values.partition("=")[2].strip()))
        elif self.dest == "preset":
            pairs.append(("@preset", values))
        elif self.dest == "actuator":                     # pidog sysid fit's actuator.json: its settings
            from training.sysid.actuator_file import actuator_settings
            try:
                pairs.extend(actuator_settings(values))
            except ValueError as exc:
                parser.error(f"--actuator {exc}")
        else:
            text = self.const_text if self.const_text is not None else values
            if self.mapping is not None:                  # a named choice for a setting's value
                text = self.mapping[text]
            pairs.extend((key, text) for key in self.keys)
        namespace.assignments = pairs


GENERATED_DEFAULTS = {"experiment_name": "bc_rl_<date>_<time>"}     # made when the run starts


def _help_for(keys: tuple[str, ...]) -> str:
    fields = dict((k, (v, h)) for k, v, h in config_tree.describe(PipelineConfig()))
    key = keys[0]
    value, text = fields.get(key, (None, ""))
    shown = GENERATED_DEFAULTS.get(key) or json.dumps(value, default=str)
    return f"{text} [{key}, default {shown}]" if key in fields else key


def add_aliases(parser: argparse.ArgumentParser, title: str, aliases: list[Alias]) -> None:
    group = parser.add_argument_group(title)
    for a in aliases:
        group.add_argument(a.flag, action=_Assign, keys=a.keys, const_text=a.const, dest=a.flag.lstrip("-").replace("-", "_"),
                           default=argparse.SUPPRESS, help=_help_for(a.keys))


def add_settings_options(parser: argparse.ArgumentParser, quick: bool = True) -> None:
    """--set, --preset, --quick (unless `quick` is False: a command whose --quick means something else),
    --use-camera and --task."""
    g = parser.add_argument_group("settings (any of `pidog config`)")
    g.add_argument("--set", dest="set_", action=_Assign, metavar="KEY=VALUE", default=argparse.SUPPRESS,
                   help="set any setting, e.g. --set ppo.gamma=0.99 --set env.reward.scales.fall=-100 (repeatable)")
    g.add_argument("--preset", dest="preset", action=_Assign, metavar="NAME", default=argparse.SUPPRESS,
                   help=f"apply a preset: {', '.join(p.stem for p in sorted(PRESETS.glob('*.json')))} or a .json path")
    g.add_argument("--actuator", dest="actuator", action=_Assign, metavar="ACTUATOR_JSON", default=argparse.SUPPRESS,
                   help="the servo values pidog sysid fit identified on your robot (its actuator.json: "
                        "env.physical.servo_* settings; docs/sysid.md)")
    if quick:
        g.add_argument("--quick", dest="quick", action=_Assign, keys=("@preset",), const_text="quick",
                       default=argparse.SUPPRESS, help="= --preset quick: tiny budgets for a first look (a few minutes)")
    g.add_argument("--use-camera", dest="use_camera", action=_Assign, keys=("@preset",), const_text="camera",
                   default=argparse.SUPPRESS, help="= --preset camera: a CNN+MLP policy on the head camera too")
    g.add_argument("--task", dest="task", action=_Assign, keys=("env.command.enabled",), choices=list(TASKS),
                   mapping=TASKS, default=argparse.SUPPRESS,
                   help="forward: walk straight ahead (default); command: follow velocity and turn commands "
                        "(= --set env.command.enabled=true)")


TASKS = {"forward": "false", "command": "true"}       # --task NAME -> env.command.enabled


# ---------------------------------------------------------------- train / imitate / rl
RUN = [alias("--experiment-name", "experiment_name"), alias("--output-dir", "output_dir"), alias("--seed", "seed"),
       alias("--resume", "resume", const="true"), alias("--live", "live", const="true"),
       alias("--no-live", "live", const="false")]
DEMOS = [alias("--demo-source", "demo.source"), alias("--n-demo-episodes", "demo.n_episodes"),
         alias("--demo-noise", "demo.noise"), alias("--allow-pickle", "demo.allow_pickle", const="true")]
BC = [alias("--skip-bc", "skip_bc", const="true"), alias("--pretrained-model", "pretrained_model"),
      alias("--total-bc-epochs", "bc.epochs"), alias("--bc-batch-size", "bc.batch_size"),
      alias("--bc-learning-rate", "bc.learning_rate"), alias("--bc-val-fraction", "bc.val_fraction"),
      alias("--bc-eval-episodes", "bc.eval_episodes")]
RL = [alias("--total-rl-timesteps", "rl.total_timesteps"), alias("--n-envs", "rl.n_envs"),
      alias("--vec-env", "rl.vec_env"), alias("--learning-rate", "ppo.learning_rate"), alias("--gamma", "ppo.gamma"),
      alias("--init-log-std", "ppo.init_log_std"), alias("--value-warmup-steps", "ppo.value_warmup_steps"),
      alias("--actor-ramp-steps", "ppo.actor_ramp_steps"), alias("--bc-coef", "ppo.bc_coef"),
      alias("--bc-decay-steps", "ppo.bc_decay_steps"),
      alias("--eval-freq", "rl.eval_freq"), alias("--eval-episodes", "rl.eval_episodes"),
      alias("--final-eval-episodes", "rl.final_eval_episodes"), alias("--checkpoint-freq", "rl.checkpoint_freq"),
      alias("--visualize-freq", "rl.visualize_freq")]
IMITATE = [alias("--demos", "demo.path"), alias("--n-demo-episodes", "demo.n_episodes"),
           alias("--demo-noise", "demo.noise"), alias("--epochs", "bc.epochs"),
           alias("--allow-pickle", "demo.allow_pickle", const="true")]
RL_ONLY = [alias("--algo", "rl.algo"), alias("--timesteps", "rl.total_timesteps"),
           alias("--pretrained-model", "pretrained_model"),
           alias("--learning-rate", "ppo.learning_rate", "off_policy.learning_rate"),
           alias("--critic-warmup-steps", "off_policy.critic_warmup_steps"), alias("--n-envs", "rl.n_envs"),
           alias("--vec-env", "rl.vec_env"), alias("--demo-ratio", "off_policy.demo_ratio"),
           alias("--demo-ratio-decay-steps", "off_policy.demo_ratio_decay_steps"),
           alias("--intervention", "off_policy.intervention"),
           alias("--intervention-penalty", "off_policy.intervention_penalty"), alias("--n-step", "off_policy.n_step"),
           alias("--bc-coef", "ppo.bc_coef", "off_policy.bc_coef"),
           alias("--bc-decay-steps", "ppo.bc_decay_steps", "off_policy.bc_decay_steps")]

PIPELINES: dict[str, tuple[str, list[tuple[str, Any]], list[tuple[str, list[Alias]]]]] = {
    "train": ("demonstrations -> BC -> RL, in one command",
              [], [("run", RUN), ("demonstrations", DEMOS), ("behavior cloning", BC), ("RL fine-tuning", RL)]),
    "imitate": ("demonstrations -> behavior cloning, without RL",
                [("rl.total_timesteps", 0)], [("run", RUN), ("imitation", IMITATE)]),
    "rl": ("RL on the env alone (PPO, SAC or TD3), from scratch or from a BC policy",
           [("skip_bc", True)], [("run", RUN), ("RL", RL_ONLY)]),
}


def run_pipeline(command: str, args: argparse.Namespace) -> None:
    _, base, _ = PIPELINES[command]
    typed: list[tuple[str, str]] = getattr(args, "assignments", [])
    cfg = build_config(base, typed)
    if cfg.resume and any(k == "@preset" for k, _ in typed):
        raise ConfigError("presets apply to new runs; --resume continues with the run's saved settings")
    if args.command == "config":
        if args.markdown:
            print(settings_markdown(cfg), end="")
            return
        for key, value, text in config_tree.describe(cfg):
            print(f"{key} = {json.dumps(value, default=str)}" + (f"    # {text}" if text else ""))
        return
    # Where the run writes, checked before anything is loaded or created.
    check_output_dir(cfg.experiment_dir if cfg.resume else cfg.output_dir,
                     "--resume: the experiment folder" if cfg.resume else "--output-dir")
    from training.pipeline import run
    run(cfg, [(k, t) for k, t in typed if k not in RUN_IDENTITY])


def settings_markdown(cfg: PipelineConfig) -> str:
    """`pidog config --markdown`: one Markdown table per group of settings (docs/configuration.md's reference)."""
    groups: dict[str, list[str]] = {}
    for key, value, text in config_tree.describe(cfg):
        shown = json.dumps(value, default=str)
        if key == "experiment_name" and re.fullmatch(r'"bc_rl_\d{8}_\d{6}"', shown):
            shown = '"bc_rl_<date>_<time>"'                   # the default: the run's start time
        group = key.split(".")[0] if "." in key else "run"
        row = [f"`{key}`", f"`{shown}`", text]
        groups.setdefault(group, []).append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    out = []
    for group, rows in groups.items():
        out += [f"### {group}", "", "| setting | value | what it does |", "|---|---|---|", *rows, ""]
    return "\n".join(out)


# ---------------------------------------------------------------- evaluate / visualize / export
def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high if high is not None else 'inf'}), got {value}")
        return value
    return parse


positive_int, seed_int = int_in(1), int_in(0, 2**31)


def level_float(text: str) -> float:
    """An argparse type: a randomization level in [0, 3] (pidog_env.curriculum.scaled)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 3:
        raise argparse.ArgumentTypeError(f"must be in [0, 3], got {value:g}")
    return value


def new_file(text: str) -> Path:
    """An argparse type: a file to create, in an existing folder this user can write in."""
    from pidog_env.files import new_file_problem
    problem = new_file_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return Path(text)


def add_model_source(parser: argparse.ArgumentParser, compare: bool = False) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="SB3 .zip or BC .pth written by this project")
    src.add_argument("--gait", choices=["trot"], help="the hard-coded gait instead")
    if compare:
        src.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two models (or 'trot') side by side")
    parser.add_argument("--episodes", type=positive_int, default=None if not compare else 1,
                        help="episodes (default 10; a suite: 20 per condition, 10 per command cell)" if not compare
                        else "episodes per model")
    parser.add_argument("--seed", type=seed_int, default=None)
    parser.add_argument("--no-randomization", action="store_true")
    parser.add_argument("--allow-pickle", action="store_true", help="allow SB3 zips not written by this project")


SUITES = ("robustness", "commands")


def evaluated_config(args: argparse.Namespace):
    """(policy or None for the trot, the env config to evaluate on): the policy's own, then --set env.*."""
    from pidog_env.config import EnvConfig
    policy, env_cfg = None, EnvConfig()
    if args.model and not (args.suite and args.model.endswith(".onnx")):
        from training.policies import load_policy
        policy, meta = load_policy(args.model, allow_pickle=args.allow_pickle)
        env_cfg = meta.get("env_config_obj") or env_cfg
    elif args.model:
        from deploy.policy_spec import PolicySpec
        spec_path = Path(args.model).with_name("policy.json")
        for path in (Path(args.model), spec_path):
            if not path.is_file():
                raise PipelineError(f"{path} not found (an exported policy.onnx needs its policy.json beside it)")
        try:
            spec = PolicySpec.load(spec_path)
        except (ValueError, TypeError, OSError) as exc:
            raise PipelineError(f"{spec_path} is not a policy.json this runtime reads ({exc})") from None
        env_cfg = config_tree.apply(env_cfg, "command.enabled", bool(spec.command))
    for key, text in getattr(args, "assignments", []):
        if not key.startswith("env."):
            raise ConfigError(f"evaluate takes env.* settings only (the policy fixes the rest), got {key}")
        if key.startswith("env.obs.") or key in ("env.use_camera", "env.camera_size"):
            raise ConfigError(f"{key} changes what the policy observes; it cannot be evaluated that way")
        env_cfg = config_tree.apply_text(env_cfg, key[len("env."):], text)
    if args.randomization_level is not None:
        from pidog_env.curriculum import scaled
        env_cfg = replace(env_cfg, randomization=scaled(env_cfg.randomization, args.randomization_level))
    config_tree.validate(env_cfg)
    return policy, env_cfg


def cmd_evaluate(args: argparse.Namespace) -> None:
    from pidog_env.evaluation import tracking_text
    from pidog_env.gaits import TrotGait
    from training.evaluation import EVAL_SEED_BASE, evaluate_policy, format_table
    if args.randomization_level is not None and args.no_randomization:
        raise ConfigError("--randomization-level scales the randomization; it cannot be combined with "
                          "--no-randomization")
    if args.suite:
        return run_suite(args)
    for flag in ("out", "force", "workers", "conditions", "rescope"):
        if getattr(args, flag) not in (None, False):
            raise ConfigError(f"--{flag} applies to --suite runs")
    if args.model and args.model.endswith(".onnx"):
        raise ConfigError("an exported policy.onnx is evaluated through the runtime: --suite robustness")
    policy, env_cfg = evaluated_config(args)
    policy = policy or TrotGait.for_config(env_cfg)
    seed = EVAL_SEED_BASE if args.seed is None else args.seed
    episodes = args.episodes or 10
    result = evaluate_policy(policy, env_cfg, episodes, seed, randomize=not args.no_randomization)
    randomization = ("off" if args.no_randomization else "on" if args.randomization_level is None
                     else f"at level {args.randomization_level:g}")
    print(format_table(result["per_episode"]))
    print(f"\nmean return {result['mean_return']:.1f} | mean speed {result['mean_forward_speed']:.3f} m/s | "
          f"mean distance {result['mean_distance']:.2f} m | fall rate {result['fall_rate']:.0%} "
          f"({episodes} episodes, randomization {randomization}){tracking_text(result)}")
    if args.json:
        args.json.write_text(json.dumps({**result, "randomization_level": args.randomization_level}, indent=2))


def run_suite(args: argparse.Namespace) -> None:
    """`pidog evaluate --suite NAME`: everything checked before the folder is made, then the suite."""
    import importlib
    import time

    from training import suites
    for flag, given in (("--no-randomization", args.no_randomization), ("--json", args.json),
                        ("--randomization-level", args.randomization_level is not None)):
        if given:
            raise ConfigError(f"{flag} does not apply to --suite {args.suite} (it writes {args.suite}.json itself)")
    if args.conditions and args.suite != "robustness":
        raise ConfigError("--conditions applies to --suite robustness")
    if args.rescope:
        if args.suite != "commands":
            raise ConfigError("--rescope applies to --suite commands")
        if args.model:
            raise ConfigError("--rescope measures the trot's grid: --gait trot, not --model")
        for flag in ("out", "force", "allow_pickle"):
            if getattr(args, flag) not in (None, False):
                raise ConfigError(f"--{flag.replace('_', '-')} does not apply to --rescope (it writes "
                                  "training/suites/command_grid.json)")
    suite = importlib.import_module(f"training.suites.{args.suite}")
    policy, env_cfg = evaluated_config(args)
    if args.suite == "commands" and policy is not None and not env_cfg.command.enabled:
        raise PipelineError(f"{args.model} was trained on the forward task; --suite commands needs a command-task "
                            "policy (pidog train --task command)")
    if args.conditions:
        unknown = sorted(set(args.conditions) - set(suite.CONDITIONS))
        if unknown:
            raise ConfigError(f"no condition {unknown[0]!r} (known: {', '.join(suite.CONDITIONS)})")
    source = args.model or suites.TROT
    episodes = args.episodes or suite.DEFAULT_EPISODES
    seed = suite.SEED_BASE if args.seed is None else args.seed
    if args.rescope:
        argv = getattr(args, "argv", None)
        return rescope_commands(suite, env_cfg, episodes, seed, args.workers or 2,
                                shlex.join(["pidog", *argv]) if argv is not None else None)
    extra = {"conditions": args.conditions} if args.suite == "robustness" else {"grid": suite.load_grid()}
    folder = suites.output_folder(args.suite, args.model, args.out, args.force)
    print(f"{args.suite} suite: {source if source == suites.TROT else source + ' and the trot'}, {episodes} episodes per "
          f"{'condition' if args.suite == 'robustness' else 'command cell'}, seeds from {seed}", flush=True)
    t0 = time.perf_counter()
    result = suite.run(source, env_cfg, episodes, seed, args.workers or 2, args.allow_pickle, **extra)
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    for line in suite.summary_lines(result):
        print(line)
    path = suites.write_results(folder, args.suite, result)
    suite.plot(result, folder / f"{args.suite}.png")
    print(f"-> {path} and {folder / f'{args.suite}.png'}")


def rescope_commands(commands, env_cfg, episodes: int, seed: int, workers: int, command: str | None) -> None:
    """`pidog evaluate --suite commands --gait trot --rescope`: the trot on every candidate cell; the cells it
    reaches at least half of become the suite's grid (training/suites/command_grid.json)."""
    n = len(commands.CANDIDATE_VX) * len(commands.CANDIDATE_WZ)
    print(f"commands grid: the trot on {n} candidate cells, {episodes} episodes each, seeds from {seed}", flush=True)
    grid = commands.rescope(env_cfg, episodes, seed, workers, command)
    for line in commands.rescope_lines(grid):
        print(line)
    print(f"-> {commands.write_grid(grid)}")


def cmd_visualize(args: argparse.Namespace) -> None:
    from pidog_env.env import has_display
    from training.common import with_randomization
    from training.viewer import interactive, load_actor, record
    sources = args.compare or [args.model or args.gait]
    seed = 0 if args.seed is None else args.seed
    if args.compare and not args.record:
        try:
            args.record = new_file("compare.mp4")
        except argparse.ArgumentTypeError as exc:
            raise PipelineError(f"--compare records compare.mp4 unless --record names a file: {exc}") from None
    if args.teleop and (args.record or args.compare):
        raise PipelineError("--teleop drives one policy in the interactive viewer; it cannot record or compare")
    if args.record:
        record(sources, args.record, args.episodes, seed, not args.no_randomization, args.allow_pickle)
        return
    act, cfg, _ = load_actor(sources[0], args.allow_pickle, command=args.teleop)
    if args.teleop and not cfg.command.enabled:
        raise PipelineError(f"--teleop needs a command-task policy (trained with --task command); {sources[0]} "
                            "walks forward only")
    if not has_display():
        raise PipelineError("no display for the interactive viewer; pass --record out.mp4 to write a video")
    interactive(act, with_randomization(cfg, not args.no_randomization), args.episodes, seed, teleop=args.teleop)


def cmd_export(args: argparse.Namespace) -> None:
    from training.export import export
    from training.experiment import Experiment
    out = args.out or Path(args.model).parent / Experiment.EXPORT
    check_output_dir(out, "--out" if args.out else "the export folder")
    result = export(args.model, out, args.check_steps, args.force, args.allow_pickle)
    print(f"exported {result['onnx']} and {result['json']}; ONNX vs PyTorch max |diff| "
          f"{result['max_abs_diff']:.1e} over {result['checked']} recorded observations")


# ---------------------------------------------------------------- the parser
def build_parser() -> Parser:
    ap = Parser(prog="pidog", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name, (text, _, groups) in {**PIPELINES, "config": ("print every setting and exit", [], PIPELINES["train"][2])}.items():
        p = sub.add_parser(name, help=text, description=text)
        for title, aliases in groups:
            add_aliases(p, title, aliases)
        add_settings_options(p)

    sub.choices["config"].add_argument("--markdown", action="store_true",
                                       help="print the settings as Markdown tables (docs/configuration.md)")

    p = sub.add_parser("evaluate", help="a table of figures for a saved policy")
    add_model_source(p)
    p.add_argument("--randomization-level", type=level_float, default=None, metavar="L",
                   help="the randomization ranges scaled about their midpoints "
                        "(pidog_env/curriculum.py): 1 = the configured ranges, 1.5 = half as wide again, 0 = one "
                        "nominal robot; applied after --set")
    p.add_argument("--json", type=new_file, help="also write the figures to this (new) JSON file")
    g = p.add_argument_group("suites (training/suites/): a policy against the trot, written to a folder")
    g.add_argument("--suite", choices=SUITES, default=None,
                   help="robustness: through the robot runtime under conditions outside the training ranges; "
                        "commands: tracking over a grid of velocity and turn commands")
    g.add_argument("--conditions", nargs="+", metavar="NAME", default=None,
                   help="robustness conditions to run (default: all of training/suites/robustness.py)")
    g.add_argument("--workers", type=int_in(1, 65), default=None, help="processes in parallel (default 2)")
    g.add_argument("--out", type=Path, default=None, help="folder for <suite>.json and .png "
                                                           "(default: <model folder>/<suite>)")
    g.add_argument("--force", action="store_true", help="replace that folder's earlier results of the suite")
    g.add_argument("--rescope", action="store_true",
                   help="with --suite commands --gait trot: run the trot on every candidate command cell and "
                        "write the cells it reaches at least half of (the suite's grid) to "
                        "training/suites/command_grid.json")
    p.add_argument("--set", dest="set_", action=_Assign, metavar="env.KEY=VALUE", default=argparse.SUPPRESS,
                   help="evaluate under changed env settings, e.g. --set env.randomization.friction=[0.3,0.5]")

    p = sub.add_parser("visualize", help="watch a policy in MuJoCo's viewer or record a video")
    add_model_source(p, compare=True)
    p.add_argument("--record", type=new_file, help="write an mp4 instead of opening the viewer")
    p.add_argument("--teleop", action="store_true",
                   help="drive a command-task policy (or --gait trot) from the keyboard in the viewer")

    p = sub.add_parser("export", help="ONNX + policy.json for the robot runtime, parity-checked")
    p.add_argument("--model", required=True, help="SB3 .zip or BC .pth written by this project")
    p.add_argument("--out", type=Path, help="output folder (default: <model folder>/export)")
    p.add_argument("--check-steps", type=positive_int, default=500, help="recorded observations for the parity check")
    p.add_argument("--force", action="store_true", help="replace an existing export")
    p.add_argument("--allow-pickle", action="store_true")

    from training.sysid.cli import add_parser as add_sysid_parser      # pidog sysid protocol|track|fit
    add_sysid_parser(sub)
    return ap


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """`pidog ARGS`; the documented scripts call it with their subcommand and their own name as `prog`."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if prog and argv:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        if argv[0] in commands:
            commands[argv[0]].prog = prog
    args = parser.parse_args(argv)
    args.argv = list(argv)                      # as typed (after the program's name), for records of the command
    if args.command in PIPELINES or args.command == "config":
        return run_guarded(lambda: run_pipeline("train" if args.command == "config" else args.command, args))
    handler = {"evaluate": cmd_evaluate, "visualize": cmd_visualize, "export": cmd_export,
               "sysid": lambda a: a.sysid(a)}[args.command]
    return run_guarded(lambda: handler(args))


if __name__ == "__main__":
    sys.exit(main())
