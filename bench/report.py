"""Render the documentation's generated parts from committed data.

    python -m bench.report            # rewrite every generated block
    python -m bench.report --check    # exit 1 and name the files whose generated blocks are out of date

What it renders:
- docs/results.md, whole, from the published bench runs in docs/results/data/ (`python -m bench.publish`);
- the README's blocks `results-headline` and `main-job`, from the same runs;
- docs/configuration.md's block `settings`, from the config tree (`pidog config --markdown`).

A generated block sits between `<!-- generated: NAME (python -m bench.report) -->` and
`<!-- end generated: NAME -->`. Every table says where and when it was measured and how to reproduce it;
fall rates are counts with the number of episodes and a 95 % Wilson interval; a run whose defaults hash
(bench/_common.defaults_hashes) differs from today's is marked "measured with earlier defaults".
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench._common import ROOT, defaults_hashes
from bench.publish import DATA, Parser, PublishError, read_run

RESULTS_MD = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) \(python -m bench\.report\) -->\n)(?P<body>.*?)"
                   r"(<!-- end generated: (?P=name) -->)", re.S)


# ---------------------------------------------------------------- numbers
def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a rate k/n."""
    if n <= 0:
        raise ValueError("no episodes")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def percent(x: float) -> str:
    value = 100 * x
    return f"{value:.1f}" if 0 < value < 10 else f"{value:.0f}"


def falls(k: int, n: int) -> str:
    """'1/40 (0.4-13 %)': falls over episodes, with the 95 % interval of the rate."""
    lo, hi = wilson(k, n)
    return f"{k}/{n} ({percent(lo)}-{percent(hi)} %)"


def number(x: float, digits: int = 3) -> str:
    """A figure for a table: thousands separated, about `digits` significant digits below 100."""
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


# ---------------------------------------------------------------- runs
def load_runs(folder: Path = DATA) -> list[dict]:
    """Every published run, oldest first (a damaged file is an error: the docs would not say what it holds)."""
    runs = []
    for path in sorted(folder.glob("*.json")):
        data = read_run(path)
        data["_file"] = path.name
        runs.append(data)
    return sorted(runs, key=lambda d: (d["machine"]["time"], d["_file"]))


def variant(data: dict) -> str:
    """main_job runs come as the default job (""), as --quick ("quick"), or with other presets (a smoke
    test's budget: named after them, and never shown as the job's time)."""
    settings = data["run"].get("settings") or {}
    quick = (data["job"] == "quick" if "job" in data
             else settings.get("--quick") is True or data.get("preset") == "quick")
    presets = [p for p in data.get("presets") or [] if p != "quick"]
    return "+".join(["quick"] * quick + presets)


def latest(runs: list[dict], bench: str, kind: str = "") -> dict | None:
    found = [d for d in runs if d["run"]["bench"] == bench and variant(d) == kind]
    return found[-1] if found else None


def earlier_defaults(data: dict, today: dict) -> bool:
    scope = bench_of(data["run"]["bench"]).scope
    return data["run"]["defaults"].get(scope) != today[scope]


def measured_on(data: dict, today: dict) -> str:
    """The 'measured on / reproduce with' line under every table."""
    run, host = data["run"], data["machine"]
    load = host.get("load_average")
    busy = f", load average {load[0]:g}" if load else ""
    dirty = " with uncommitted changes" if run.get("dirty") else ""
    line = (f"Measured on {host['cpu_model']} ({host.get('usable_cores') or host.get('cpu_count')} cores{busy}), "
            f"{host['time'][:10]}, commit `{run['commit'][:7]}`{dirty}, {number(run['wall_seconds'])} s wall time. "
            f"Reproduce with: `{run['command'] or 'python bench/...'}` at that commit "
            f"([data](results/data/{data['_file']})).")
    if earlier_defaults(data, today):
        line += " **Measured with earlier defaults** (the defaults hash differs from today's)."
    return line


# ---------------------------------------------------------------- one table per bench
Row = tuple[str, Callable[[dict], str], str]          # (figure, its value in a run, target)
MAX_COLUMNS = 4                                       # runs side by side in one table


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [row(header), row(["---"] * len(header)), *[row(r) for r in rows]]


def trot_falls(d: dict) -> tuple[int, int]:
    n = d["seeds"]
    return round(d["falls_of_10"] * n / 10), n


def trot_rows(d: dict) -> list[Row]:
    return [
        ("forward speed, randomization off (seed 0)", lambda d: f"{d['forward_speed_mps']:.3f} m/s", ">= 0.12 m/s"),
        ("lateral drift / forward distance", lambda d: f"{100 * d['lateral_drift_ratio']:.1f} %", "< 15 %"),
        ("heading change over 20 s", lambda d: f"{abs(d['heading_change_deg']):.1f} deg", "< 15 deg"),
        ("falls in the randomized 20 s episodes", lambda d: falls(*trot_falls(d)), "<= 1 in 10"),
        ("mean speed over those episodes", lambda d: f"{d['randomized_mean_speed_mps']:.3f} m/s", ""),
        ("return of the nominal episode", lambda d: f"{d['nominal_return']:.0f}", "")]


def env_rows(d: dict) -> list[Row]:
    return [
        ("PiDog env steps per second (random actions, one core)", lambda d: number(d["pidog_steps_per_s"]), ""),
        ("its physics ceiling (the same controls through bare `mj_step`)",
         lambda d: number(d["physics_ceiling_steps_per_s"]), ""),
        ("gymnasium's Ant-v5, same protocol", lambda d: number(d["ant_v5_steps_per_s"]), ""),
        ("PiDog / Ant-v5", lambda d: f"{d['pidog_vs_ant_ratio']:.2f}x", ">= 1.5x"),
        ("PiDog / its physics ceiling", lambda d: f"{d['pidog_vs_ceiling_ratio']:.2f}", ">= 0.6"),
        ("camera mode (48x48 head camera) steps per second", lambda d: number(d["camera_steps_per_s"]), ">= 150")]


def deploy_rows(d: dict) -> list[Row]:
    rows: list[Row] = [
        ("ONNX inference per tick, p50 / p99", lambda d: f"{d['inference_p50_ms']:.2f} / {d['inference_p99_ms']:.2f} ms",
         "p99 < 0.5 ms"),
        ("loop jitter p99 at 50 Hz on the simulated robot / overruns",
         lambda d: f"{d['jitter_p99_ms']:.2f} ms / {d['overruns']}", "< 2 ms"),
        ("fake vendor stack, as the runtime drives it: tick p99 / period p99",
         lambda d: f"{d['vendor_fake_tick_duration_p99_ms']:.1f} / {d['vendor_fake_period_p99_ms']:.1f} ms",
         "< 10 / < 22 ms")]
    if "vendor_fake_busy_thread_tick_duration_p99_ms" in d:
        rows.append(("stress: a GIL-holding vendor thread in the process: tick p99",
                     lambda d: f"{d['vendor_fake_busy_thread_tick_duration_p99_ms']:.1f} ms", ""))
    if "vendor_fake_pidog_in_process_tick_duration_p99_ms" in d:
        rows.append(("the previous runtime (`Pidog()` in the process): tick p99",
                     lambda d: f"{d['vendor_fake_pidog_in_process_tick_duration_p99_ms']:.1f} ms", ""))
    rows.append((f"exported policy ({d.get('policy', 'trot-BC')}), {d['walk_episodes']} randomized episodes: speed "
                 "through the runtime on the simulated robot / in the env",
                 lambda d: f"{d['sim_runtime_speed_mps']:.3f} / {d['in_env_speed_mps']:.3f} m/s (ratio "
                           f"{d['sim_runtime_speed_ratio']:.2f})", ">= 0.8"))
    return rows


def generic_rows(d: dict) -> list[Row]:
    """Any other bench: its top-level numbers, with the target it states where it states one."""
    targets = d.get("targets") or {}
    return [(f"`{key}`", lambda d, key=key: number(d[key], 4) if key in d else "", str(targets.get(key, "")))
            for key, value in d.items()
            if not key.startswith("_") and key not in ("machine", "run", "targets")
            and isinstance(value, (int, float)) and not isinstance(value, bool)]


def main_job_rows(d: dict) -> list[Row]:
    rows: list[Row] = [("wall time, whole job", lambda d: f"{d.get('total_s', d['run']['wall_seconds']) / 60:.1f} min", "")]
    for stage in d.get("stages") or {}:
        rows.append((f"stage: {stage}", lambda d, stage=stage: f"{d['stages'][stage]:.0f} s" if stage in
                     (d.get("stages") or {}) else "", ""))
    if d.get("evaluation_fraction") is not None:
        rows.append(("share of the time spent evaluating", lambda d: f"{100 * d['evaluation_fraction']:.0f} %", ""))
    if d.get("ppo_learning_steps_per_s") is not None:
        rows.append(("PPO learning steps per second", lambda d: number(d["ppo_learning_steps_per_s"]), ""))
    if "speed_mps" in (d.get("shipped") or {}):
        rows.append(("shipped model: speed / falls", lambda d: f"{d['shipped']['speed_mps']:.3f} m/s / " + (
            falls(round(d["shipped"]["fall_rate"] * d["shipped"]["episodes"]), d["shipped"]["episodes"])
            if d["shipped"].get("episodes") else f"{100 * d['shipped']['fall_rate']:.0f} %"), ""))
    return rows


def vendor_gait_rows(d: dict) -> list[Row]:
    """bench/vendor_gaits.py: per vendor gait, the randomized episodes that walked forward (no fall, far
    enough, upright), the falls, the mean speed and kneeling share, and the nominal episode."""
    def gait(d: dict, name: str) -> dict:
        return d["gaits"][name]
    rows: list[Row] = []
    for name in d.get("gaits") or {}:
        rows += [
            (f"`{name}`: walked forward (no fall, far enough, upright) in the randomized episodes",
             lambda d, name=name: f"{gait(d, name)['walked_forward']} of {gait(d, name)['episodes']}", ">= 9 of 10"),
            (f"`{name}`: falls in those episodes",
             lambda d, name=name: falls(gait(d, name)["falls"], gait(d, name)["episodes"]), ""),
            (f"`{name}`: mean speed over those episodes",
             lambda d, name=name: f"{gait(d, name)['mean_speed_mps']:.3f} m/s", ""),
            (f"`{name}`: mean share of the steps with a thigh on the floor",
             lambda d, name=name: f"{100 * gait(d, name)['mean_kneel_share']:.0f} %", ""),
            (f"`{name}`: nominal episode (randomization off): speed, fell",
             lambda d, name=name: f"{gait(d, name)['nominal_speed_mps']:.3f} m/s, "
                                  + ("fell" if gait(d, name)["nominal_fell"] else "did not fall"), "")]
    return rows


def off_by(measured: float, parameter: float) -> str:
    return f"{round(100 * (measured / parameter - 1), 1) + 0.0:+.1f} %"          # + 0.0: no "-0.0"


def actuator_rows(d: dict) -> list[Row]:
    """bench/actuator_check.py: the servo model's measured stall torque and no-load speed against its
    parameters, the DC line's peak power, and per gait the peak power and the power above the DC line."""
    rows: list[Row] = [
        ("servo stall torque: parameter / measured",
         lambda d: f"{d['servo']['stall_torque_nm']:.3f} / {d['servo']['measured_stall_torque_nm']:.3f} N m ("
                   + off_by(d["servo"]["measured_stall_torque_nm"], d["servo"]["stall_torque_nm"]) + ")",
         "within 5 %"),
        ("servo no-load speed: parameter / measured",
         lambda d: f"{d['servo']['no_load_speed_rad_s']:.2f} / {d['servo']['measured_no_load_speed_rad_s']:.2f} "
                   "rad/s (" + off_by(d["servo"]["measured_no_load_speed_rad_s"],
                                      d["servo"]["no_load_speed_rad_s"]) + ")", "within 5 %"),
        ("servo peak power (the DC line's maximum)", lambda d: f"{d['servo']['peak_power_w']:.3f} W", "")]
    for name in d.get("gaits") or {}:
        rows += [
            (f"`{name}`: peak joint power, nominal episode",
             lambda d, name=name: f"{d['gaits'][name]['peak_power_w']:.3f} W", ""),
            (f"`{name}`: power above the DC line (excess)",
             lambda d, name=name: f"{d['gaits'][name]['excess_power_w']:.3f} W", "<= 0.01 W")]
    return rows


def sysid_case(d: dict, name: str) -> dict:
    found = [c for c in d["cases"] if c["name"] == name]
    if not found:
        raise KeyError(name)
    return found[0]


def sysid_rows(d: dict) -> list[Row]:
    """bench/sysid_roundtrip.py: per synthetic robot, how far the identified servo is from the true one."""
    rows: list[Row] = []
    for name in [c["name"] for c in d.get("cases") or []]:
        rows += [
            (f"`{name}`: relative error of stall torque / damping / kp",
             lambda d, name=name: " / ".join(f"{100 * sysid_case(d, name)['relative_error'][k]:+.1f}"
                                             for k in ("stall_torque", "damping", "kp")) + " %", "<= 10 % each"),
            (f"`{name}`: delay error",
             lambda d, name=name: f"{sysid_case(d, name)['delay_error_ms']:.2f} ms", "<= 4 ms"),
            (f"`{name}`: mean absolute error on the held-out motion",
             lambda d, name=name: f"{sysid_case(d, name)['holdout_mae_deg']:.3f} deg", "<= 1.0 deg")]
    return rows


ROBUST_LABELS = ("trot", "default_recipe", "smoothness", "teacher", "student")


def robust_rows(d: dict) -> list[Row]:
    """bench/robust_recipe.py: per policy, the nominal speed and the worst condition's falls (pooled over the
    seeds), each out-of-range condition's falls against the trot's, peak joint power, and the checks."""
    pol = d["policies"]

    def cond(label: str, name: str) -> str:
        c = pol[label]["conditions"][name]
        return falls(c["falls"], c["episodes"])
    rows: list[Row] = []
    for label in [x for x in ROBUST_LABELS if x in pol]:
        rows.append((f"`{label}`: nominal speed; worst condition, its falls",
                     lambda d, label=label: f"{pol[label]['nominal_speed_mps']:.3f} m/s; {pol[label]['worst_condition']}, "
                                            + cond(label, pol[label]["worst_condition"]), ""))
    for name in pol["trot"]["conditions"]:
        where = "in range" if pol["trot"]["conditions"][name]["in_range"] else "outside"
        rows.append((f"`{name}` ({where}): falls of the trot / default recipe / student",
                     lambda d, name=name: " / ".join(cond(x, name) for x in ("trot", "default_recipe", "student")
                                                     if x in pol),
                     "student <= trot" + ("" if where == "in range" else " + 5 points")))
    for label, p in (d.get("joint_power") or {}).items():
        rows.append((f"`{label}`: peak joint power (99th percentile, nominal)",
                     lambda d, label=label: f"{d['joint_power'][label]['p99_w']:.2f} W", ""))
    for key, ok in (d.get("acceptance") or {}).items():
        if isinstance(ok, bool):
            rows.append((key.replace("_", " "), lambda d, key=key: "yes" if d["acceptance"][key] else "no", "yes"))
    return rows


@dataclass(frozen=True)
class Bench:
    title: str
    script: str
    scope: str                                   # which defaults hash decides "earlier defaults": env or pipeline
    rows: Callable[[dict], list[Row]]


BENCHES = {
    "trot": Bench("The trot", "bench/trot_check.py", "env", trot_rows),
    "env_throughput": Bench("Environment throughput", "bench/env_throughput.py", "env", env_rows),
    "deploy_latency": Bench("Robot runtime timing", "bench/deploy_latency.py", "pipeline", deploy_rows),
    "ppo_throughput": Bench("PPO training throughput", "bench/ppo_throughput.py", "pipeline", generic_rows),
    "visualization_overhead": Bench("What training clips cost", "bench/visualization_overhead.py", "pipeline",
                                    generic_rows),
    "sample_efficiency": Bench("Sample efficiency of the fine-tuning", "bench/sample_efficiency.py", "pipeline",
                               generic_rows),
    "main_job": Bench("The default job", "bench/main_job.py", "pipeline", main_job_rows),
    "vendor_gaits": Bench("The vendor's gaits", "bench/vendor_gaits.py", "env", vendor_gait_rows),
    "actuator_check": Bench("The servo model against its parameters", "bench/actuator_check.py", "env",
                            actuator_rows),
    "sysid_roundtrip": Bench("Servo identification, synthetic robots", "bench/sysid_roundtrip.py", "env",
                             sysid_rows),
    "robust_recipe": Bench("Teacher -> student against today's recipe and the trot", "bench/robust_recipe.py",
                           "pipeline", robust_rows),
}


def bench_of(name: str) -> Bench:
    return BENCHES.get(name, Bench(name, f"bench/{name}.py", "pipeline", generic_rows))


def comparable(runs: list[dict], newest: dict) -> list[dict]:
    """The published runs shown beside `newest`: the same bench (and variant), command, defaults and CPU
    model, newest first."""
    scope = bench_of(newest["run"]["bench"]).scope
    same = [d for d in runs if d["run"]["bench"] == newest["run"]["bench"] and variant(d) == variant(newest)
            and d["run"]["command"] == newest["run"]["command"]
            and d["run"]["defaults"].get(scope) == newest["run"]["defaults"].get(scope)
            and d["machine"]["cpu_model"] == newest["machine"]["cpu_model"]]
    return list(reversed(same))[:MAX_COLUMNS]


def column(d: dict) -> str:
    return f"{d['machine']['time'][:10]} {d['machine']['time'][11:16]}"


def bench_table(group: list[dict]) -> list[str]:
    rows = bench_of(group[0]["run"]["bench"]).rows(group[0])
    header = ["figure", *(column(d) if len(group) > 1 else "measured" for d in group), "target"]
    body = []
    for label, value, target in rows:
        cells = []
        for d in group:
            try:
                cells.append(value(d))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("")
        body.append([label, *cells, target])
    return table(header, body)


# ---------------------------------------------------------------- pages and blocks
def busy_note(data: dict) -> str:
    host = data["machine"]
    load, cores = host.get("load_average"), host.get("usable_cores") or host.get("cpu_count")
    if load and cores and load[0] > cores:
        return " The machine was shared with other work (load average above its cores): timings are pessimistic."
    return ""


def results_page(runs: list[dict], today: dict) -> str:
    out = ["# Results", "",
           "Generated by `python -m bench.report` from the published runs in [results/data/](results/data/); "
           "edit the data, not this page. Each table shows the latest published run of a bench, beside up to "
           f"{MAX_COLUMNS - 1} earlier ones of the same command, defaults and CPU; the lines below it say where and "
           "when each was measured and how to reproduce it. Fall rates are counts over episodes with a 95 % "
           "Wilson interval. A run measured with defaults other than today's is marked so automatically. How a "
           "run gets here: [CONTRIBUTING.md](../CONTRIBUTING.md#publishing-a-result). Dated figures from "
           "earlier research are in [experiments/](experiments/README.md); they are not re-measured here.", ""]
    known = [b for b in BENCHES if b != "main_job"] + sorted({d["run"]["bench"] for d in runs} - set(BENCHES))
    for name in ["main_job", *known]:
        bench = bench_of(name)
        for kind in (["", "quick"] if name == "main_job" else [""]):
            newest = latest(runs, name, kind)
            out += [f"## {bench.title}{' with `--quick`' if kind else ''} (`{bench.script}`)", ""]
            if newest is None:
                out += ["Not yet measured: no published run.", ""]
                continue
            group = comparable(runs, newest)
            out += [*bench_table(group), ""]
            for d in group:
                prefix = f"{column(d)}: " if len(group) > 1 else ""
                out += [prefix + measured_on(d, today) + busy_note(d), ""]
    out += ["## Published runs", ""]
    if runs:
        out += table(["file", "bench", "date", "commit", "CPU (cores)", "wall time"], [
            [f"[{d['_file']}](results/data/{d['_file']})", d["run"]["bench"], d["machine"]["time"][:10],
             f"`{d['run']['commit'][:7]}`" + (" (uncommitted changes)" if d["run"].get("dirty") else ""),
             f"{d['machine']['cpu_model']} ({d['machine'].get('usable_cores') or d['machine']['cpu_count']})",
             f"{number(d['run']['wall_seconds'])} s"] for d in reversed(runs)])
    else:
        out.append("None yet.")
    return "\n".join(out) + "\n"


def source(group: list[dict], today: dict) -> str:
    """Where the figures of `group` (newest first) were measured, in a few words."""
    host = group[0]["machine"]
    stale = "; measured with earlier defaults" if earlier_defaults(group[0], today) else ""
    when = host["time"][:10] if len(group) == 1 else f"{len(group)} runs to {host['time'][:10]}"
    commits = ", ".join(f"`{c}`" for c in dict.fromkeys(d["run"]["commit"][:7] for d in group))
    return (f"{host['cpu_model']}, {host.get('usable_cores') or host['cpu_count']} cores, {when}, "
            f"commit{'s' if ',' in commits else ''} {commits}{stale}")


def span(group: list[dict], key: str, fmt: Callable[[float], str]) -> str:
    values = sorted(d[key] for d in group if isinstance(d.get(key), (int, float)))
    if values[0] == values[-1]:
        return fmt(values[0])
    return f"{fmt(values[0])}-{fmt(values[-1])}"


def shipped_line(job: dict, today: dict) -> str:
    """The default job's shipped policy on its final randomized episodes, against the trot on the pipeline's
    evaluation episodes (bench/main_job.py's `trot_speed_mps`)."""
    shipped = job["shipped"]
    n = shipped.get("episodes")
    fell = (f"{falls(round(shipped['fall_rate'] * n), n)} falls" if n
            else f"a fall rate of {percent(shipped['fall_rate'])} %")
    trot = job.get("trot_speed_mps")
    versus = (f", {shipped['speed_mps'] / trot:.2f}x the trot's {trot:.3f} m/s on the same kind of episodes"
              if isinstance(trot, (int, float)) and trot > 0 else "")
    return (f"- The default job ships a policy walking {shipped['speed_mps']:.3f} m/s with {fell} on its final "
            f"randomized episodes{versus} ({source([job], today)}).")


def vendor_gaits_line(vendor: dict, today: dict) -> str:
    """How often the vendor's own gaits walk upright in the model (bench/vendor_gaits.py)."""
    gaits = vendor["gaits"]
    order = ["trot", *(g for g in gaits if g != "trot")] if "trot" in gaits else list(gaits)
    def of(g: str) -> str:
        return f"{gaits[g]['walked_forward']} of {gaits[g]['episodes']}"
    said = "".join(f", its {g} in {of(g)}" for g in order[1:])
    why = "the servo model" if vendor.get("passed") else "why not"          # the bench's own verdict
    return (f"- The vendor's own {order[0]} walks upright in {of(order[0])} randomized episodes in the model{said} "
            f"(target 9 of 10; {why}: "
            f"[docs/experiments/servo-model.md](docs/experiments/servo-model.md); {source([vendor], today)}).")


def headline(runs: list[dict], today: dict) -> str:
    lines = []
    trot = latest(runs, "trot")
    if trot:
        k, n = trot_falls(trot)
        lines.append(f"- The hand-written trot walks {trot['forward_speed_mps']:.3f} m/s with randomization off "
                     f"and fell in {falls(k, n)} randomized 20 s episodes ({source([trot], today)}).")
    vendor = latest(runs, "vendor_gaits")
    if vendor and vendor.get("gaits"):
        lines.append(vendor_gaits_line(vendor, today))
    env = latest(runs, "env_throughput")
    if env:
        g = comparable(runs, env)
        lines.append(f"- The PiDog env steps {span(g, 'pidog_steps_per_s', number)} times a second on one core, "
                     f"{span(g, 'pidog_vs_ant_ratio', lambda x: f'{x:.2f}')}x gymnasium's Ant-v5 in the same run; "
                     f"with the head camera {span(g, 'camera_steps_per_s', number)} ({source(g, today)}).")
    dep = latest(runs, "deploy_latency")
    if dep:
        g = comparable(runs, dep)
        lines.append(f"- The robot runtime's ONNX inference takes {span(g, 'inference_p99_ms', lambda x: f'{x:.2f}')} "
                     f"ms at the 99th percentile; against a fake of the vendor stack a 50 Hz tick takes "
                     f"{span(g, 'vendor_fake_tick_duration_p99_ms', lambda x: f'{x:.1f}')} ms (p99) "
                     f"({source(g, today)}).")
    job = latest(runs, "main_job")
    shipped = (job or {}).get("shipped") or {}
    if isinstance(shipped.get("speed_mps"), (int, float)) and isinstance(shipped.get("fall_rate"), (int, float)):
        lines.append(shipped_line(job, today))
    else:
        if not lines:
            lines.append("- No published results yet.")
        lines.append("- Fine-tuned policies against the trot: not yet published as data; the dated research "
                     "figures are in [docs/experiments/](docs/experiments/README.md).")
    lines.append("")
    lines.append("Ranges are over the published runs of one command on one CPU; the machines were shared with "
                 "other work. Every figure, with the command that reproduces it: [docs/results.md](docs/results.md).")
    return "\n".join(lines) + "\n"


def main_job_block(runs: list[dict], today: dict) -> str:
    out = []
    for kind, what in (("", "The default job"), ("quick", "`--quick`")):
        data = latest(runs, "main_job", kind)
        if data is None:
            out.append(f"{what}: wall time not yet measured (no published run of `bench/main_job.py`).")
        else:
            total = data.get("total_s", data["run"]["wall_seconds"])
            out.append(f"{what}: {total / 60:.1f} min ({source([data], today)}).")
    return "  \n".join(out) + "\n"


def settings_block() -> str:
    from training.cli import settings_markdown
    from training.config import PipelineConfig
    return settings_markdown(PipelineConfig())


def replace_blocks(text: str, blocks: dict[str, str], where: str) -> str:
    """`text` with the body of each named generated block replaced; a missing block is an error."""
    found = {m.group("name") for m in BLOCK.finditer(text)}
    missing = sorted(set(blocks) - found)
    if missing:
        raise PublishError(f"{where} has no generated block {missing[0]!r} (its marker comments are missing)")
    return BLOCK.sub(lambda m: m.group(1) + blocks.get(m.group("name"), m.group("body")) + m.group(4), text)


def rendered(runs: list[dict] | None = None, today: dict | None = None) -> dict[Path, str]:
    """Every generated file's new text."""
    runs = load_runs() if runs is None else runs
    today = defaults_hashes() if today is None else today
    return {
        RESULTS_MD: results_page(runs, today),
        README: replace_blocks(README.read_text(), {"results-headline": headline(runs, today),
                                                    "main-job": main_job_block(runs, today)}, "README.md"),
        CONFIGURATION: replace_blocks(CONFIGURATION.read_text(), {"settings": settings_block()},
                                      "docs/configuration.md"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m bench.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a generated part is out of date")
    args = ap.parse_args(argv)
    try:
        pages = rendered()
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = [p for p, text in pages.items() if not p.is_file() or p.read_text() != text]
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)} (run python -m bench.report)")
        return 1 if stale else 0
    for path in stale:
        path.write_text(pages[path])
        print(f"wrote {path.relative_to(ROOT)}")
    if not stale:
        print("every generated part is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
