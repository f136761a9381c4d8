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
    """main_job runs come as the default job and as --quick."""
    settings = data["run"].get("settings") or {}
    return "quick" if settings.get("--quick") or data.get("preset") == "quick" else ""


def latest(runs: list[dict], bench: str, kind: str = "") -> dict | None:
    found = [d for d in runs if d["run"]["bench"] == bench and variant(d) == kind]
    return found[-1] if found else None


def earlier_defaults(data: dict, today: dict) -> bool:
    scope = BENCHES[data["run"]["bench"]].scope if data["run"]["bench"] in BENCHES else "pipeline"
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
def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [row(header), row(["---"] * len(header)), *[row(r) for r in rows]]


def trot_table(d: dict) -> list[str]:
    n = d["seeds"]
    k = round(d["falls_of_10"] * n / 10)
    return table(["figure", "measured", "target"], [
        ["forward speed, randomization off (seed 0)", f"{d['forward_speed_mps']:.3f} m/s", ">= 0.12 m/s"],
        ["lateral drift / forward distance", f"{100 * d['lateral_drift_ratio']:.1f} %", "< 15 %"],
        ["heading change over 20 s", f"{abs(d['heading_change_deg']):.1f} deg", "< 15 deg"],
        [f"falls in {n} randomized 20 s episodes", falls(k, n), "<= 1 in 10"],
        ["mean speed over those episodes", f"{d['randomized_mean_speed_mps']:.3f} m/s", ""],
        ["return of the nominal episode", f"{d['nominal_return']:.0f}", ""]])


def env_table(d: dict) -> list[str]:
    return table(["figure", "measured", "target"], [
        ["PiDog-v1 env steps per second (random actions, one core)", number(d["pidog_steps_per_s"]), ""],
        ["its physics ceiling (the same controls through bare `mj_step`)", number(d["physics_ceiling_steps_per_s"]), ""],
        ["gymnasium's Ant-v5, same protocol", number(d["ant_v5_steps_per_s"]), ""],
        ["PiDog-v1 / Ant-v5", f"{d['pidog_vs_ant_ratio']:.2f}x", ">= 1.5x"],
        ["PiDog-v1 / its physics ceiling", f"{d['pidog_vs_ceiling_ratio']:.2f}", ">= 0.6"],
        ["camera mode (48x48 head camera) steps per second", number(d["camera_steps_per_s"]), ">= 150"]])


def deploy_table(d: dict) -> list[str]:
    rows = [
        ["ONNX inference per tick, p50 / p99", f"{d['inference_p50_ms']:.2f} / {d['inference_p99_ms']:.2f} ms", "p99 < 0.5 ms"],
        ["loop jitter p99 at 50 Hz on the simulated robot / overruns", f"{d['jitter_p99_ms']:.2f} ms / {d['overruns']}",
         "< 2 ms"],
        ["fake vendor stack, as the runtime drives it: tick p99 / period p99",
         f"{d['vendor_fake_tick_duration_p99_ms']:.1f} / {d['vendor_fake_period_p99_ms']:.1f} ms", "< 10 / < 22 ms"],
    ]
    if "vendor_fake_busy_thread_tick_duration_p99_ms" in d:
        rows.append(["stress: a GIL-holding vendor thread in the process: tick p99",
                     f"{d['vendor_fake_busy_thread_tick_duration_p99_ms']:.1f} ms", ""])
    if "vendor_fake_pidog_in_process_tick_duration_p99_ms" in d:
        rows.append(["the previous runtime (`Pidog()` in the process): tick p99",
                     f"{d['vendor_fake_pidog_in_process_tick_duration_p99_ms']:.1f} ms", ""])
    rows.append([f"exported policy ({d.get('policy', 'trot-BC')}), {d['walk_episodes']} randomized episodes: speed "
                 "through the runtime on the simulated robot / in the env",
                 f"{d['sim_runtime_speed_mps']:.3f} / {d['in_env_speed_mps']:.3f} m/s (ratio "
                 f"{d['sim_runtime_speed_ratio']:.2f})", ">= 0.8"])
    return table(["figure", "measured", "target"], rows)


def generic_table(d: dict) -> list[str]:
    """Any other bench: its top-level numbers, with the target it states where it states one."""
    targets = d.get("targets") or {}
    rows = []
    for key, value in d.items():
        if key.startswith("_") or key in ("machine", "run", "targets"):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append([f"`{key}`", number(value, 4), str(targets.get(key, ""))])
    return table(["figure", "measured", "target"], rows)


def main_job_table(d: dict) -> list[str]:
    total = d.get("total_s", d["run"]["wall_seconds"])
    rows = [["wall time, whole job", f"{total / 60:.1f} min"]]
    for stage, seconds in (d.get("stages") or {}).items():
        rows.append([f"stage: {stage}", f"{seconds:.0f} s"])
    shipped = d.get("shipped") or {}
    if "speed_mps" in shipped:
        rows.append(["shipped model: speed", f"{shipped['speed_mps']:.3f} m/s"])
    return table(["figure", "measured"], rows)


@dataclass(frozen=True)
class Bench:
    title: str
    script: str
    scope: str                                   # which defaults hash decides "earlier defaults": env or pipeline
    render: Callable[[dict], list[str]]


BENCHES = {
    "trot": Bench("The trot", "bench/trot_check.py", "env", trot_table),
    "env_throughput": Bench("Environment throughput", "bench/env_throughput.py", "env", env_table),
    "deploy_latency": Bench("Robot runtime timing", "bench/deploy_latency.py", "pipeline", deploy_table),
    "ppo_throughput": Bench("PPO training throughput", "bench/ppo_throughput.py", "pipeline", generic_table),
    "visualization_overhead": Bench("What training clips cost", "bench/visualization_overhead.py", "pipeline",
                                    generic_table),
    "sample_efficiency": Bench("Sample efficiency of the fine-tuning", "bench/sample_efficiency.py", "pipeline",
                               generic_table),
    "main_job": Bench("The default job", "bench/main_job.py", "pipeline", main_job_table),
}


# ---------------------------------------------------------------- pages and blocks
def results_page(runs: list[dict], today: dict) -> str:
    out = ["# Results", "",
           "Generated by `python -m bench.report` from the published runs in [results/data/](results/data/); "
           "edit the data, not this page. Each table is one bench run, the latest published; its line below "
           "says where and when it was measured and how to reproduce it. Fall rates are counts over episodes "
           "with a 95 % Wilson interval. A run measured with defaults other than today's is marked so "
           "automatically. How a run gets here: [CONTRIBUTING.md](../CONTRIBUTING.md#publishing-a-result). "
           "Dated figures from earlier research are in [experiments/](experiments/README.md); they are not "
           "re-measured here.", ""]
    known = [b for b in BENCHES if b != "main_job"] + sorted({d["run"]["bench"] for d in runs} - set(BENCHES))
    for name in ["main_job", *known]:
        bench = BENCHES.get(name, Bench(name, f"bench/{name}.py", "pipeline", generic_table))
        kinds = ["", "quick"] if name == "main_job" else [""]
        for kind in kinds:
            data = latest(runs, name, kind)
            title = bench.title + (" with `--quick`" if kind else "")
            out += [f"## {title} (`{bench.script}`)", ""]
            if data is None:
                out += ["Not yet measured: no published run.", ""]
                continue
            out += [*bench.render(data), "", measured_on(data, today), ""]
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


def source(data: dict, today: dict) -> str:
    host, run = data["machine"], data["run"]
    stale = "; measured with earlier defaults" if earlier_defaults(data, today) else ""
    return (f"{host['cpu_model']}, {host.get('usable_cores') or host['cpu_count']} cores, {host['time'][:10]}, "
            f"commit `{run['commit'][:7]}`{stale}")


def headline(runs: list[dict], today: dict) -> str:
    lines = []
    trot = latest(runs, "trot")
    if trot:
        n = trot["seeds"]
        k = round(trot["falls_of_10"] * n / 10)
        lines.append(f"- The hand-written trot walks {trot['forward_speed_mps']:.3f} m/s with randomization off "
                     f"and fell in {falls(k, n)} randomized 20 s episodes ({source(trot, today)}).")
    env = latest(runs, "env_throughput")
    if env:
        lines.append(f"- PiDog-v1 steps {number(env['pidog_steps_per_s'])} times a second on one core, "
                     f"{env['pidog_vs_ant_ratio']:.2f}x gymnasium's Ant-v5 in the same run; with the head camera "
                     f"{number(env['camera_steps_per_s'])} ({source(env, today)}).")
    dep = latest(runs, "deploy_latency")
    if dep:
        lines.append(f"- The robot runtime's ONNX inference takes {dep['inference_p99_ms']:.2f} ms at the 99th "
                     f"percentile; against a fake of the vendor stack a 50 Hz tick takes "
                     f"{dep['vendor_fake_tick_duration_p99_ms']:.1f} ms (p99) ({source(dep, today)}).")
    if not lines:
        lines.append("- No published results yet.")
    lines.append("- Fine-tuned policies against the trot: not yet published as data; the dated research "
                 "figures are in [docs/experiments/](docs/experiments/README.md).")
    lines.append("")
    lines.append("Every figure: [docs/results.md](docs/results.md), with the command that reproduces it.")
    return "\n".join(lines) + "\n"


def main_job_block(runs: list[dict], today: dict) -> str:
    out = []
    for kind, what in (("", "The default job"), ("quick", "`--quick`")):
        data = latest(runs, "main_job", kind)
        if data is None:
            out.append(f"{what}: wall time not yet measured (no published run of `bench/main_job.py`).")
        else:
            total = data.get("total_s", data["run"]["wall_seconds"])
            out.append(f"{what}: {total / 60:.1f} min ({source(data, today)}).")
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
