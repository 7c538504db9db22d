"""Calibration tool on chessboards rendered through a known camera with lens distortion.

The renderer works per pixel in reverse: every (super-sampled) pixel is undistorted to its ray,
the ray is intersected with the board plane, and the board texture is evaluated there, so the
board's edges curve exactly as the lens model says. Averaging 3x3 samples per pixel gives the
anti-aliased edges sub-pixel corner detection needs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.calibration import Board, CalibrationLimits, Detection, View, calibrate
from perception.camera import CameraModel
from perception.errors import UserError

REPO = Path(__file__).resolve().parents[1]
OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")

BOARD = Board(cols=9, rows=6, square_m=0.03)
SUPERSAMPLE = 3


def true_camera(model: str = "plumb_bob") -> CameraModel:
    D = {
        "plumb_bob": [-0.28, 0.09, 0.0008, -0.0006, -0.01],
        "rational_polynomial": [1.2, 0.4, 0.0005, -0.0004, 0.01, 1.5, 0.7, 0.05],
        "equidistant": [0.08, -0.03, 0.01, -0.004],
    }[model]
    return CameraModel(
        name="truth",
        width=640,
        height=480,
        K=[[520.0, 0.0, 324.0], [0.0, 515.0, 236.0], [0.0, 0.0, 1.0]],
        D=D,
        distortion_model=model,
    )


def _pixel_rays(cam: CameraModel) -> np.ndarray:
    """(H*S, W*S, 2) normalized ray coordinates of the sub-pixel sample points."""
    s = SUPERSAMPLE
    offsets = (np.arange(s) + 0.5) / s - 0.5
    u = (np.arange(cam.width)[:, None] + offsets[None, :]).ravel()
    v = (np.arange(cam.height)[:, None] + offsets[None, :]).ravel()
    uu, vv = np.meshgrid(u, v)
    pix = np.stack([uu, vv], axis=-1).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-10)
    if cam.fisheye:
        xy = cv2.fisheye.undistortPoints(pix, cam.K, cam.D, criteria=crit)
    else:
        xy = cv2.undistortPoints(pix, cam.K, cam.D, criteria=crit)
    return xy.reshape(len(v), len(u), 2).astype(np.float32)


def render_view(
    rays: np.ndarray, board: Board, R: np.ndarray, t: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Grey image of the board at pose (R, t) (board -> camera), with a one-square white margin
    and a textured grey background, plus sensor noise."""
    d = np.concatenate([rays, np.ones((*rays.shape[:2], 1), np.float32)], axis=2)
    R32, t32 = R.astype(np.float32), t.astype(np.float32)
    n = R32[:, 2]
    denom = d @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.float32(n @ t32) / denom
    pts = d * s[..., None] - t32
    bx, by = pts @ R32[:, 0], pts @ R32[:, 1]
    q = board.square_m
    i = np.floor(bx / q).astype(int) + 1  # squares: -1 .. cols along x
    j = np.floor(by / q).astype(int) + 1
    inside = (i >= 0) & (i <= board.cols) & (j >= 0) & (j <= board.rows)
    margin = (
        (bx > -2 * q) & (bx < (board.cols + 1) * q) & (by > -2 * q) & (by < (board.rows + 1) * q)
    )
    val = np.where(inside, np.where((i + j) % 2 == 0, 20.0, 235.0), 235.0)
    background = 110.0 + 30.0 * np.sin(rays[..., 0] * 9.0) * np.cos(rays[..., 1] * 7.0)
    val = np.where(margin & (s > 0), val, background)
    hs, ws = val.shape
    img = val.reshape(hs // SUPERSAMPLE, SUPERSAMPLE, ws // SUPERSAMPLE, SUPERSAMPLE).mean((1, 3))
    img = img + rng.normal(0.0, 2.0, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _rotation(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    R, _ = cv2.Rodrigues(np.radians([rx_deg, 0.0, 0.0]))
    Ry, _ = cv2.Rodrigues(np.radians([0.0, ry_deg, 0.0]))
    Rz, _ = cv2.Rodrigues(np.radians([0.0, 0.0, rz_deg]))
    return R @ Ry @ Rz


def board_poses(cam: CameraModel, tilted: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """Board poses spread over the image: centres on a 3x3 grid of image positions, tilted
    25-40 deg in alternating directions (or all fronto-parallel when `tilted` is False)."""
    centre_b = np.array(
        [(BOARD.cols - 1) * BOARD.square_m / 2, (BOARD.rows - 1) * BOARD.square_m / 2, 0]
    )
    poses = []
    targets = [(u, v) for v in (130, 240, 350) for u in (170, 320, 470)] + [(320, 240), (250, 200)]
    tilts = [
        (30, 0),
        (-30, 10),
        (0, 35),
        (10, -35),
        (25, 25),
        (-25, -25),
        (35, -10),
        (-20, 30),
        (0, -30),
        (20, 20),
        (-35, 0),
    ]
    for k, (u, v) in enumerate(targets):
        rx, ry = tilts[k % len(tilts)] if tilted else (0.0, 0.0)
        R = _rotation(rx, ry, 5.0 * ((k % 3) - 1))
        dist = 0.55 + 0.05 * (k % 3)
        ray = cam.backproject(np.array([[u, v]], float), np.array([1.0]))[0]
        C = ray / np.linalg.norm(ray) * dist
        poses.append((R, C - R @ centre_b))
    return poses


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Plumb-bob views (tilted) and fronto-parallel views, written once as PNG files."""
    out = tmp_path_factory.mktemp("boards")
    cam = true_camera()
    rays = _pixel_rays(cam)
    rng = np.random.default_rng(0)
    for kind, tilted in (("tilted", True), ("flat", False)):
        (out / kind).mkdir()
        poses = board_poses(cam, tilted)
        for k, (R, t) in enumerate(poses if tilted else poses[:6]):
            cv2.imwrite(str(out / kind / f"view{k:02d}.png"), render_view(rays, BOARD, R, t, rng))
    blank = np.full((cam.height, cam.width), 128, np.uint8)
    cv2.imwrite(str(out / "tilted" / "zz_blank.png"), blank)
    return {"tilted": out / "tilted", "flat": out / "flat", "root": out}


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perception.commands.calibrate", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_recovers_known_camera_through_the_cli(rendered: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "calibration" / "synth.yaml"
    preview = tmp_path / "preview.png"
    res = run_tool(
        str(rendered["tilted"]),
        "--board",
        "9x6",
        "--square",
        "0.03",
        "-o",
        str(out),
        "--preview",
        str(preview),
    )
    assert res.returncode == 0, res.stderr + res.stdout
    assert "zz_blank.png" in res.stdout  # listed as not found
    assert "view00.png" in res.stdout and "RMS reprojection error" in res.stdout
    cam = CameraModel.load(out)
    truth = true_camera()
    for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)):
        assert cam.K[i, j] == pytest.approx(truth.K[i, j], rel=0.01), (i, j, cam.K)
    rms = float(res.stdout.split("RMS reprojection error")[1].split("px")[0])
    assert rms < 0.5
    # The distortion itself: where the lens moves pixels by 10-25 px, the calibrated model
    # reprojects the true rays within 2 px (the residue is the cx, cy error above).
    uv = np.array([[100.0, 80.0], [540.0, 400.0], [60.0, 240.0], [560.0, 90.0], [600.0, 240.0]])
    rays = truth.backproject(uv, np.ones(len(uv)))
    undistorted = rays[:, :2] @ truth.K[:2, :2].T + truth.K[:2, 2]
    assert np.linalg.norm(undistorted - uv, axis=1).min() > 10.0
    assert np.linalg.norm(cam.project(rays) - uv, axis=1).max() < 2.0
    assert cam.name == "synth" and cam.distortion_model == "plumb_bob"
    # The file round-trips through save/load exactly.
    cam.save(tmp_path / "again.yaml")
    again = CameraModel.load(tmp_path / "again.yaml")
    np.testing.assert_array_equal(again.K, cam.K)
    np.testing.assert_array_equal(again.D, cam.D)
    np.testing.assert_array_equal(again.P, cam.P)
    img = cv2.imread(str(preview))
    assert img is not None and img.shape == (480, 1280, 3)


def test_refuses_fronto_parallel_views(rendered: dict[str, Path], tmp_path: Path) -> None:
    res = run_tool(
        str(rendered["flat"]), "--board", "9x6", "--square", "0.03", "-o", str(tmp_path / "x.yaml")
    )
    assert res.returncode == 2
    assert "fronto-parallel" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_refuses_too_few_views(rendered: dict[str, Path], tmp_path: Path) -> None:
    files = sorted(str(p) for p in rendered["tilted"].glob("view0[0-2].png"))
    res = run_tool(*files, "--board", "9x6", "--square", "0.03", "-o", str(tmp_path / "x.yaml"))
    assert res.returncode == 2
    assert "found in 3 image(s), at least 5" in res.stderr


def test_refuses_wrong_board_and_bad_arguments(rendered: dict[str, Path], tmp_path: Path) -> None:
    view = str(rendered["tilted"] / "view00.png")
    res = run_tool(view, "--board", "7x5", "--square", "0.03", "-o", str(tmp_path / "x.yaml"))
    assert res.returncode == 2 and "found in 0 image(s)" in res.stderr
    assert "board not found in 1 image(s): view00.png" in res.stdout
    res = run_tool(view, "--board", "nine", "--square", "0.03", "-o", str(tmp_path / "x.yaml"))
    assert res.returncode == 2 and "COLSxROWS" in res.stderr
    res = run_tool(view, "--board", "9x6", "--square", "-1", "-o", str(tmp_path / "x.yaml"))
    assert res.returncode == 2 and "positive" in res.stderr
    res = run_tool(
        str(tmp_path / "missing.png"),
        "--board",
        "9x6",
        "--square",
        "0.03",
        "-o",
        str(tmp_path / "x.yaml"),
    )
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_refuses_poor_coverage() -> None:
    """Corners all in one small patch of the image (synthetic detections, no images needed)."""
    cam = true_camera()
    obj = BOARD.object_points()
    views = []
    for k, (rx, ry) in enumerate([(30, 0), (-30, 0), (0, 30), (0, -30), (20, 20), (-20, 20)]):
        R = _rotation(rx, ry, 0)
        t = np.array([-0.12, -0.08, 1.6 + 0.1 * k])  # far away: a small board near the centre
        views.append(View(f"v{k}", cam.project(obj @ R.T + t)))
    det = Detection(image_size=(640, 480), views=views)
    with pytest.raises(UserError, match="cover"):
        calibrate(det, BOARD)
    # The same views pass with the limit lowered, and still give a sane focal length.
    res = calibrate(det, BOARD, limits=CalibrationLimits(min_coverage=0.01))
    assert res.camera.K[0, 0] == pytest.approx(520.0, rel=0.05)


@pytest.mark.parametrize("model", ["rational_polynomial", "equidistant"])
def test_other_models_from_exact_corners(model: str) -> None:
    """Rational and fisheye models recover the camera from noise-free projected corners."""
    cam = true_camera(model)
    obj = BOARD.object_points()
    views = [View(f"v{k}", cam.project(obj @ R.T + t)) for k, (R, t) in enumerate(board_poses(cam))]
    det = Detection(image_size=(640, 480), views=views)
    res = calibrate(det, BOARD, model=model)
    assert res.rms_px < 0.01
    np.testing.assert_allclose(res.camera.K, cam.K, rtol=2e-3, atol=0.5)
    assert res.camera.distortion_model == model and len(res.camera.D) == len(cam.D)


@pytest.mark.skipif(not (OPENCV_SAMPLES / "left01.jpg").exists(), reason="opencv-doc not installed")
def test_opencv_sample_images(tmp_path: Path) -> None:
    """OpenCV's own 9x6 sample views; its reference file says fx = fy ~ 536 (aspect fixed)."""
    files = sorted(str(p) for p in OPENCV_SAMPLES.glob("left[01]*.jpg"))
    res = run_tool(*files, "--board", "9x6", "--square", "0.025", "-o", str(tmp_path / "l.yaml"))
    assert res.returncode == 0, res.stderr
    cam = CameraModel.load(tmp_path / "l.yaml")
    ref = CameraModel.load(OPENCV_SAMPLES / "left_intrinsics.yml")
    assert cam.K[0, 0] == pytest.approx(ref.K[0, 0], rel=0.02)
    assert cam.K[1, 1] == pytest.approx(ref.K[1, 1], rel=0.02)
    assert abs(cam.K[0, 2] - ref.K[0, 2]) < 5 and abs(cam.K[1, 2] - ref.K[1, 2]) < 5
    assert float(res.stdout.split("RMS reprojection error")[1].split("px")[0]) < 0.5


def test_register_adds_the_subcommand() -> None:
    import argparse

    from perception.commands import calibrate as cmd

    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["calibrate", "a.png", "--board", "9x6", "--square", "0.02", "-o", "x.yaml"]
    )
    assert args.func is cmd.handler and args.model == "plumb_bob" and args.min_views == 5
    help_text = parser._subparsers._group_actions[0].choices["calibrate"].format_help()  # type: ignore[union-attr]
    for option in ("--board", "--square", "--model", "--preview", "--min-spread-deg", "INNER"):
        assert option in help_text
