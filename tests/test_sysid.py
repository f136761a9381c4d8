"""The identification kit on the computer (training/sysid/): marker angles, tracking a synthetic phone clip,
the fit recovering a known leg, the protocol's files, and bad inputs as one-line errors that leave nothing
behind. The robot's recorder: tests/test_sysid_record.py; the whole roundtrip: bench/sysid_roundtrip.py."""

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.sysid import markers
from training.sysid.leg import LegParams
from training.sysid.synthetic import RenderSettings, Scene, render, synthetic_log, write_log
from training.sysid.track import angles, centre, plane_map, to_plane

ROOT = Path(__file__).resolve().parent.parent


class Ran:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def pidog(capsys, monkeypatch):
    """`pidog ARGS` as typed in the folder `cwd` (in this process: the command line's main and its error handling)."""
    from training.cli import main

    def run(*args, cwd):
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)
    return run


def one_line_error(proc, says: str) -> None:
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and says in err, proc.stderr[-2000:]


@pytest.mark.parametrize("leg", ["LF", "RH"])
def test_marker_angles_of_rendered_frames(leg):
    """A frame drawn at known joint angles, seen by a tilted phone: the detector and the body marker's plane
    give the angles back within a degree."""
    scene = Scene(leg, RenderSettings(), np.random.default_rng(1))     # rolled, pitched and yawed 3-6 deg
    det = markers.detector()
    side = 1.0 if leg[0] == "L" else -1.0
    for q_deg in ([40.0, 15.0], [-10.0, 50.0], [20.0, -30.0]):
        img = cv2.GaussianBlur(scene.draw(np.deg2rad(q_deg), 0.0), (0, 0), 0.7)
        corners, ids, _ = det.detectMarkers(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
        found = {int(i): c.reshape(4, 2) for c, i in zip(corners, ids.ravel())}
        assert set(found) == {0, 1, 2, 3}
        H = plane_map(found[markers.BODY])
        pts = {m: to_plane(H, centre(found[m])) for m in (markers.HIP, markers.KNEE, markers.FOOT)}
        hip, knee, _ = angles(pts, side)
        assert np.allclose(np.rad2deg([hip, knee]), q_deg, atol=1.0), (q_deg, np.rad2deg([hip, knee]))


def short_log(segments: int = 5, seed: int = 0) -> dict:
    """The quick protocol's first segments as the robot logs them (jittered ticks)."""
    log = synthetic_log("LF", True, np.random.default_rng(seed), 0.0004)
    n = int(np.searchsorted(log["segment"], segments))
    return {**log, "t": log["t"][:n], "command_deg": log["command_deg"][:n], "segment": log["segment"][:n],
            "segment_kind": log["segment_kind"][:segments], "flash_t": log["flash_t"][:segments],
            "battery_t": log["battery_t"][:2], "battery_v": log["battery_v"][:2]}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A short synthetic phone clip (60 fps, motion blur, noise, jitter, offset) of a known leg, and its log."""
    folder = tmp_path_factory.mktemp("clip")
    log = short_log()
    write_log(folder / "log.npz", log)
    settings = dataclasses.replace(RenderSettings(), fps=60.0, exposure=0.5 / 60, subframes=2, tail_s=0.3)
    truth = render(folder / "video.mp4", log, LegParams(), settings, seed=3)
    return folder, log, truth


@pytest.mark.slow
def test_tracking_a_synthetic_clip_recovers_the_angles_within_a_degree(clip, tmp_path, pidog):
    folder, log, truth = clip
    proc = pidog("sysid", "track", folder / "video.mp4", "--log", folder / "log.npz", "--out", "track.npz",
                 "--preview", "preview.mp4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "preview.mp4").stat().st_size > 1000
    with np.load(tmp_path / "track.npz") as tr:
        valid = tr["valid"]
        assert valid.mean() > 0.9
        err = np.rad2deg(np.abs(tr["q"][valid] - truth["q"][valid]))
        assert err.max() < 1.0, err.max(axis=0)
        assert np.abs(tr["t_log"] - truth["t_frame"]).max() < 0.5 / 60      # within half a frame of the log's clock
        assert json.loads(str(tr["meta"]))["flashes_matched"] == len(log["flash_t"])


def _no_outputs(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir()], list(folder.iterdir())


@pytest.mark.slow
def test_a_log_that_does_not_match_the_video_is_one_line_and_leaves_nothing(clip, tmp_path, pidog):
    folder, log, _ = clip
    other = {**log, "flash_t": log["flash_t"] + np.array([0.0, 0.31, -0.27, 0.45, 0.13])}   # another recording
    write_log(tmp_path.parent / f"{tmp_path.name}_other.npz", other)
    out = tmp_path / "out"
    out.mkdir()
    proc = pidog("sysid", "track", folder / "video.mp4", "--log", tmp_path.parent / f"{tmp_path.name}_other.npz",
                 "--out", "track.npz", cwd=out)
    one_line_error(proc, "do not match")
    _no_outputs(out)


@pytest.mark.slow
def test_a_video_without_markers_is_one_line_and_leaves_nothing(tmp_path, pidog):
    import imageio.v2 as imageio
    write_log(tmp_path / "log.npz", short_log())
    rng = np.random.default_rng(0)
    with imageio.get_writer(str(tmp_path / "empty.mp4"), fps=30, codec="libx264", macro_block_size=8,
                            ffmpeg_log_level="error") as w:
        for _ in range(8):
            w.append_data(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    proc = pidog("sysid", "track", tmp_path / "empty.mp4", "--log", tmp_path / "log.npz", "--out", "track.npz", cwd=out)
    one_line_error(proc, "no markers found")
    _no_outputs(out)


@pytest.mark.parametrize("field", ["command_deg", "flash_t", "t"])
def test_non_finite_log_values_are_one_line_and_leave_nothing(field, tmp_path, pidog):
    log = short_log()
    bad = np.array(log[field], dtype=np.float64)
    bad.flat[3] = np.nan
    write_log(tmp_path / "log.npz", {**log, field: bad})
    (tmp_path / "video.mp4").write_bytes(b"not checked: the log is read first")
    out = tmp_path / "out"
    out.mkdir()
    proc = pidog("sysid", "track", tmp_path / "video.mp4", "--log", tmp_path / "log.npz", "--out", "track.npz", cwd=out)
    one_line_error(proc, "non-finite")
    _no_outputs(out)


def test_a_track_with_non_finite_values_is_refused_by_fit(tmp_path, pidog):
    from training.sysid.files import save_npz
    n = 400
    arrays = {"t_log": np.linspace(0, 8, n), "q": np.zeros((n, 2)), "valid": np.ones(n, bool),
              "t": np.arange(400) * 0.02, "q_cmd": np.zeros((400, 2)), "segment": np.zeros(400, int),
              "segment_kind": np.array(["hold"]), "flash_t": np.zeros(1), "battery_v": np.zeros(0),
              "meta": np.asarray(json.dumps({"leg": "LF"}))}
    arrays["q"][17, 1] = np.inf
    save_npz(tmp_path / "track.npz", **arrays)
    proc = pidog("sysid", "fit", tmp_path / "track.npz", "--out", tmp_path / "fitted", cwd=tmp_path)
    one_line_error(proc, "non-finite")
    assert not (tmp_path / "fitted").exists()


@pytest.mark.slow
def test_the_protocol_kit_prints_at_true_scale_and_is_never_overwritten(tmp_path, pidog):
    proc = pidog("sysid", "protocol", "--out", "kit", "--leg", "RH", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    kit = tmp_path / "kit"
    assert sorted(p.name for p in kit.iterdir()) == ["markers.pdf", "markers.png", "placement.png", "protocol.md"]
    pdf = (kit / "markers.pdf").read_bytes()
    assert b"/MediaBox [ 0 0 595.27" in pdf                          # A4 in points: the sheet prints at 100 %
    page = cv2.imread(str(kit / "markers.png"), cv2.IMREAD_GRAYSCALE)
    corners, ids, _ = markers.detector().detectMarkers(page)
    assert sorted(ids.ravel().tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    px_per_mm = 300 / 25.4
    for c, i in zip(corners, ids.ravel()):
        side = np.linalg.norm(c[0][1] - c[0][0]) / px_per_mm
        assert side == pytest.approx(markers.SIZES_MM[int(i)], abs=0.3)
    assert "--leg RH" in (kit / "protocol.md").read_text()
    again = pidog("sysid", "protocol", "--out", "kit", cwd=tmp_path)
    one_line_error(again, "exists")


@pytest.mark.slow
def test_a_fast_fit_recovers_a_known_single_leg_model():
    """Angles simulated from known servo parameters (and a tenth of a degree of tracking noise) on the quick
    protocol: the fit finds the parameters again, and predicts the held-out trot replay."""
    from training.sysid.fit import FitData, fit
    from training.sysid.files import leg_commands
    from training.sysid.synthetic import simulate_truth
    log = short_log(segments=15, seed=1)                     # the whole quick protocol
    true = LegParams(stall_torque=0.15, damping=0.0195, kp=2.4, frictionloss=0.012, delay=0.030)
    t_cmd, q_cmd = leg_commands(log)
    t = np.arange(0.0, t_cmd[-1], 1 / 120)
    rng = np.random.default_rng(0)
    q = simulate_truth(log, true, t) + np.deg2rad(rng.normal(0.0, 0.1, (len(t), 2)))
    kind = np.asarray(log["segment_kind"])[log["segment"][np.searchsorted(t_cmd, t, side="right") - 1]]
    data = FitData("LF", t_cmd, q_cmd, t, q, kind)
    result = fit(data, holdout="trot", repeats=1, max_evals=250, seed=0, say=lambda *a: None)
    got = result["params"]
    for name in ("stall_torque", "damping", "kp"):
        assert getattr(got, name) == pytest.approx(getattr(true, name), rel=0.10), name      # the acceptance bar
    assert got.delay == pytest.approx(true.delay, abs=0.002)
    assert result["holdout_mae_deg"] < 0.3


def test_actuator_json_sets_the_identified_servo_values_and_later_flags_win(tmp_path):
    from training.cli import build_parser
    from training.presets import build_config
    from training.sysid.fit import FitData, actuator_json
    p = LegParams(stall_torque=0.16, damping=0.018, kp=2.6, frictionloss=0.02, armature=9e-5, delay=0.031)
    data = FitData("LF", np.zeros(2), np.zeros((2, 2)), np.zeros(2), np.zeros((2, 2)), np.array(["hold", "trot"]))
    result = {"params": p, "spread": dict.fromkeys(("stall_torque", "damping", "kp", "frictionloss", "armature", "delay"), 0.0),
              "runs": [(0.0, p)], "offsets_deg": np.zeros(2), "train_mae_deg": 0.1, "holdout_mae_deg": 0.2}
    (tmp_path / "actuator.json").write_text(json.dumps(actuator_json(result, data, "trot", {})))
    args = build_parser().parse_args(["train", "--actuator", str(tmp_path / "actuator.json"),
                                      "--set", "env.physical.servo_kp=3.5"])
    cfg = build_config([], args.assignments)
    phys = cfg.env.physical
    assert (phys.servo_torque, phys.joint_friction, phys.armature, phys.servo_dead_time) == (0.16, 0.02, 9e-5, 0.031)
    assert phys.servo_speed == pytest.approx(0.16 / 0.018) and phys.servo_kp == 3.5


@pytest.mark.parametrize("text,says", [("{", "not an actuator.json"), ('{"settings": {}}', "must name"),
                                       (None, "not found")])
def test_a_bad_actuator_json_is_one_line_and_exit_2(text, says, tmp_path, pidog):
    if text is not None:
        (tmp_path / "a.json").write_text(text)
    proc = pidog("train", "--actuator", "a.json", "--output-dir", "out", cwd=tmp_path)
    one_line_error(proc, says)
    assert not (tmp_path / "out").exists()
