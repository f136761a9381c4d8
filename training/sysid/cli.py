"""`pidog sysid ...`: identify a robot's servos with a phone (docs/sysid.md).

    pidog sysid protocol --out kit/                        # marker sheet (PNG, PDF at true scale) and the steps
    python -m deploy.sysid record --leg LF --out LF.npz    # on the robot (the runtime's dependencies only)
    pidog sysid track VIDEO --log LF.npz --out track.npz   # joint angles per frame, synchronized by the flashes
    pidog sysid fit track.npz --out identified/            # actuator.json and the measured-vs-simulated plot

Imports nothing heavy until a subcommand runs (the `pidog` parser builds this at every start).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HOLDOUT_KINDS = ("trot", "chirp", "step", "slew", "reversal", "none")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def _positive_float(text: str) -> float:
    import math
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_parser(sub) -> None:
    """`pidog sysid` and its subcommands, on the `pidog` parser's subparsers."""
    from pidog_env import robot
    p = sub.add_parser("sysid", help="identify the servos of your robot with a phone video (docs/sysid.md)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = p.add_subparsers(dest="sysid_command", required=True, metavar="STEP", parser_class=type(p))
    s = steps.add_parser("protocol", help="the printable marker sheet, a placement picture and the steps")
    s.add_argument("--out", type=Path, required=True, help="folder for markers.png/.pdf, placement.png, protocol.md")
    s.add_argument("--leg", choices=robot.LEGS, default="LF", help="the leg the picture and the steps show")
    s.set_defaults(sysid=cmd_protocol)
    s = steps.add_parser("track", help="joint angles per video frame, on the robot log's clock")
    s.add_argument("video", type=Path, help="the phone's video of the recording")
    s.add_argument("--log", type=Path, required=True, help="the robot's log (python -m deploy.sysid record)")
    s.add_argument("--out", type=Path, default=Path("track.npz"), help="the tracked angles to write (.npz; default track.npz)")
    s.add_argument("--preview", type=Path, default=Path("preview.mp4"),
                   help="the video with the tracked leg drawn on it (default preview.mp4)")
    s.add_argument("--no-preview", action="store_true", help="write no preview video")
    s.add_argument("--fps", type=_positive_float, default=None,
                   help="the capture rate, when the file's frame rate is the playback rate of a slow-motion video "
                        "(default: the file's, then 120/240/480/960 if its flashes do not match)")
    s.set_defaults(sysid=cmd_track)
    s = steps.add_parser("fit", help="fit the servo model to tracked angles: actuator.json and fit.png")
    s.add_argument("track", type=Path, help="the tracked angles (pidog sysid track)")
    s.add_argument("--out", type=Path, required=True, help="folder for actuator.json and fit.png")
    s.add_argument("--holdout", choices=HOLDOUT_KINDS, default="trot",
                   help="the segment kind left out of the fit and used to validate it (default trot; none: fit on all)")
    s.add_argument("--repeats", type=_int_at_least(1), default=3, help="CMA-ES fits from different seeds (default 3)")
    s.add_argument("--max-evals", type=_int_at_least(20), default=600, help="simulations per fit (default 600)")
    s.add_argument("--seed", type=_int_at_least(0), default=0)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--armature", type=_positive_float, default=None, metavar="KG_M2",
                   help="the servos' armature, held fixed (default: the prior of robot.PhysicalParams): a hanging leg "
                        "sets the torque scale only through the leg's inertia (docs/sysid.md)")
    g.add_argument("--fit-armature", action="store_true", help="fit the armature too (weakly determined by a hanging leg)")
    s.set_defaults(sysid=cmd_fit)


def _new(path: Path, flag: str, suffix: str) -> None:
    from pidog_env.files import new_file_problem
    from training.common import PipelineError
    if path.suffix != suffix:
        raise PipelineError(f"{flag} {path}: expected a {suffix} file")
    if problem := new_file_problem(path):
        raise PipelineError(f"{flag} {problem}")


def cmd_protocol(args: argparse.Namespace) -> None:
    from training.sysid.protocol import write_protocol
    paths = write_protocol(args.out, args.leg)
    print("wrote " + ", ".join(str(p) for p in paths))
    print("next: print markers.pdf at 100 % and follow protocol.md (docs/sysid.md)")


def cmd_track(args: argparse.Namespace) -> None:
    from training.common import PipelineError
    from training.sysid.track import open_video, track
    _new(args.out, "--out", ".npz")
    preview = None if args.no_preview else args.preview
    if preview is not None:
        _new(preview, "--preview", ".mp4")
        if preview.resolve() == args.out.resolve():
            raise PipelineError("--preview and --out name the same file")
    from training.sysid.files import load_log
    load_log(args.log)                                  # every input checked before the long pass
    open_video(args.video)[0].release()
    s = track(args.video, args.log, args.out, preview, fps=args.fps)
    print(f"tracked {s['tracked_fraction']:.1%} of the frames while the log ran ({s['frames']} frames at "
          f"{s['capture_fps']:g} fps); {s['flashes_matched']} of {s['flashes_in_log']} flashes matched, "
          f"sync residual {s['sync_rms_ms']:.2f} ms rms")
    print(f"-> {args.out}" + (f" and {preview}" if preview else ""))


def cmd_fit(args: argparse.Namespace) -> None:
    import json
    import os

    from pidog_env.files import output_dir_problem
    from training.common import PipelineError
    from training.sysid.files import load_track
    from training.sysid.fit import FitData, actuator_json, fit
    from training.sysid.plot import plot_fit
    track = load_track(args.track)
    if problem := output_dir_problem(args.out):
        raise PipelineError(f"--out {problem}")
    targets = [args.out / "actuator.json", args.out / "fit.png"]
    for path in targets:
        if path.exists():
            raise PipelineError(f"{path} exists; choose another --out (earlier results are never replaced)")
    data = FitData.from_track(track)
    holdout = None if args.holdout == "none" else args.holdout
    print(f"fitting {data.leg}: {len(data.t)} tracked frames, {args.repeats} x {args.max_evals} simulations"
          + (f", {holdout} held out" if holdout else ""))
    from training.sysid.fit import PRIOR
    armature = None if args.fit_armature else (args.armature or PRIOR.armature)
    result = fit(data, holdout, args.repeats, args.max_evals, args.seed, armature=armature)
    doc = actuator_json(result, data, holdout, {"track": str(args.track), "video": track["meta"].get("video"),
                                                "log": track["meta"].get("log"), "repeats": args.repeats,
                                                "max_evals": args.max_evals, "seed": args.seed,
                                                "armature": "fitted" if armature is None else "fixed"})
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = [p.with_name(f".{p.stem}.{os.getpid()}.tmp{p.suffix}") for p in targets]
    try:
        tmp[0].write_text(json.dumps(doc, indent=2))
        plot_fit(data, result, holdout, tmp[1])
        for a, b in zip(tmp, targets):
            os.replace(a, b)
    finally:
        for p in tmp:
            p.unlink(missing_ok=True)
    v = doc["values"]
    print(f"stall torque {v['stall_torque_nm']:.3f} N m, no-load speed {v['no_load_speed_rad_s']:.2f} rad/s, "
          f"kp {v['kp_nm_per_rad']:.2f} N m/rad, friction {v['frictionloss_nm']:.4f} N m, armature "
          f"{v['armature_kgm2']:.2e} kg m^2, dead time {1000 * v['dead_time_s']:.1f} ms")
    if doc["holdout_mae_deg"] is not None:
        print(f"held-out {holdout} error {doc['holdout_mae_deg']:.2f} deg (fitted segments {doc['train_mae_deg']:.2f} deg)")
    print(f"-> {targets[0]} and {targets[1]}")
