"""Camera model: file formats, projection round trips, undistortion, errors on bad files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.camera import CameraModel
from perception.errors import UserError

REPO = Path(__file__).resolve().parents[1]
OPENCV_SAMPLE = Path("/usr/share/doc/opencv-doc/examples/data/left_intrinsics.yml")

K = [[500.0, 0.0, 322.5], [0.0, 505.0, 238.0], [0.0, 0.0, 1.0]]
MODELS = {
    "plumb_bob": [-0.3, 0.11, 0.001, -0.0008, -0.02],
    "rational_polynomial": [1.8, 0.6, 0.0008, -0.0005, 0.02, 2.1, 1.1, 0.08],
    "equidistant": [0.06, -0.02, 0.008, -0.003],
}


def make(model: str, **kw: object) -> CameraModel:
    T = np.eye(4)
    T[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]
    T[:3, 3] = [1.9, 0.1, 1.3]
    return CameraModel(
        name="cam",
        width=640,
        height=480,
        K=K,
        D=MODELS[model],
        distortion_model=model,
        T_vehicle_camera=T,
        **kw,  # type: ignore[arg-type]
    )


def grid_pixels(cam: CameraModel, n: int = 25) -> np.ndarray:
    u, v = np.meshgrid(np.linspace(0, cam.width - 1, n), np.linspace(0, cam.height - 1, n))
    return np.column_stack([u.ravel(), v.ravel()])


def test_synthetic_front_file_and_extrinsics() -> None:
    cam = CameraModel.load(REPO / "calibration" / "synthetic_front.yaml")
    assert (cam.width, cam.height, cam.name, cam.frame_id) == (640, 384, "front", "front_optical")
    # A point 20 m ahead of the camera, at camera height, is on the optical axis.
    uv, z = cam.project_vehicle(np.array([[21.5, 0.0, 1.5]]))
    np.testing.assert_allclose(uv, [[319.5, 191.5]], atol=1e-9)
    assert z[0] == pytest.approx(20.0)
    # Left of the car (+y) is left in the image (smaller u); up (+z) is up (smaller v).
    uv2, _ = cam.project_vehicle(np.array([[21.5, 2.0, 2.5]]))
    assert uv2[0, 0] < 319.5 and uv2[0, 1] < 191.5


@pytest.mark.parametrize("model", list(MODELS))
def test_project_backproject_round_trip(model: str) -> None:
    cam = make(model)
    uv = grid_pixels(cam)
    z = np.random.default_rng(1).uniform(0.5, 80.0, len(uv))
    pts = cam.backproject(uv, z)
    uv2, z2 = cam.project_with_depth(pts)
    assert np.abs(uv2 - uv).max() < 1e-6
    np.testing.assert_allclose(z2, z, rtol=0, atol=1e-12)
    # And the other way round: 3D points -> pixels -> the same 3D points.
    pts_v = cam.backproject_vehicle(uv, z)
    uv3, z3 = cam.project_vehicle(pts_v)
    assert np.abs(cam.backproject_vehicle(uv3, z3) - pts_v).max() < 1e-6
    # Distortion is really in play: the pinhole projection differs by pixels at the corners.
    pin = pts[:, :2] / pts[:, 2:] @ cam.K[:2, :2].T + cam.K[:2, 2]
    assert np.abs(pin - uv).max() > 5.0


@pytest.mark.parametrize("model", ["plumb_bob", "rational_polynomial"])
def test_undistorting_without_distortion_is_opencvs_pinhole_inverse(model: str) -> None:
    # Skew in K is ignored, as OpenCV's projection and undistortion ignore it.
    skewed_k = [[500.0, 2.0, 322.5], [0.0, 505.0, 238.0], [0.0, 0.0, 1.0]]
    cam = CameraModel("cam", 640, 480, skewed_k, np.zeros(len(MODELS[model])), model)
    uv = grid_pixels(cam)
    ours = cam.undistort_points(uv)
    opencv = cv2.undistortPoints(uv.reshape(-1, 1, 2), cam.K, cam.D).reshape(-1, 2)
    np.testing.assert_allclose(ours, opencv, rtol=0, atol=1e-12)
    uv2 = cam.project(np.column_stack([ours, np.ones(len(ours))]))
    np.testing.assert_allclose(uv2, uv, rtol=0, atol=1e-9)


def test_points_behind_the_camera_are_nan() -> None:
    uv, z = make("plumb_bob").project_with_depth(np.array([[0.0, 0.0, -1.0], [0.1, 0.0, 2.0]]))
    assert np.isnan(uv[0]).all() and np.isfinite(uv[1]).all() and z[0] == -1.0


@pytest.mark.parametrize("model", list(MODELS))
def test_ros_file_round_trips(model: str, tmp_path: Path) -> None:
    cam = make(model, frame_id="front_cam_optical")
    cam.P = np.hstack([cam.optimal_new_camera_matrix(0.3), np.zeros((3, 1))])
    cam.save(tmp_path / "sub" / "c.yaml", comment="a test file\nsecond line")
    text = (tmp_path / "sub" / "c.yaml").read_text()
    assert text.startswith("# a test file\n# second line\n")
    for key in (
        "image_width",
        "camera_matrix",
        "distortion_model",
        "distortion_coefficients",
        "rectification_matrix",
        "projection_matrix",
        "extrinsics",
    ):
        assert f"\n{key}:" in text
    back = CameraModel.load(tmp_path / "sub" / "c.yaml")
    for attr in ("K", "D", "R", "P", "T_vehicle_camera"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(cam, attr))
    assert (back.name, back.width, back.height, back.distortion_model, back.frame_id) == (
        cam.name,
        cam.width,
        cam.height,
        cam.distortion_model,
        cam.frame_id,
    )


def test_message_round_trip() -> None:
    cam = make("rational_polynomial")
    back = CameraModel.from_msg(cam.to_msg())
    np.testing.assert_array_equal(back.D, cam.D)
    np.testing.assert_array_equal(back.T_vehicle_camera, cam.T_vehicle_camera)


def _write_opencv(path: Path, D: np.ndarray, fisheye: bool = False) -> None:
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    fs.write("image_width", 640)
    fs.write("image_height", 480)
    fs.write("camera_matrix", np.array(K))
    fs.write("distortion_coefficients", np.asarray(D, np.float64).reshape(-1, 1))
    if fisheye:
        fs.write("fisheye_model", 1)
    fs.release()


@pytest.mark.parametrize("suffix", [".yml", ".xml", ".json"])
@pytest.mark.parametrize("model", list(MODELS))
def test_opencv_files_load(model: str, suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"ocv{suffix}"
    _write_opencv(path, np.array(MODELS[model]), fisheye=model == "equidistant")
    cam = CameraModel.load(path)
    assert cam.distortion_model == model
    np.testing.assert_allclose(cam.K, K)
    np.testing.assert_allclose(cam.D, MODELS[model])
    assert (cam.width, cam.height) == (640, 480)


@pytest.mark.skipif(not OPENCV_SAMPLE.exists(), reason="opencv-doc not installed")
def test_opencv_sample_calibration_file() -> None:
    cam = CameraModel.load(OPENCV_SAMPLE)
    assert cam.K[0, 0] == pytest.approx(535.9157, rel=1e-6)
    assert cam.distortion_model == "plumb_bob" and len(cam.D) == 5


def _blob_image(cam: CameraModel, uv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Gaussian blobs (sigma 1.5 px) at the given pixel positions."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w))
    for u, v in uv:
        img += np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 1.5**2))
    return np.clip(img * 250, 0, 255).astype(np.uint8)


def _centroids(img: np.ndarray, uv_guess: np.ndarray) -> np.ndarray:
    out = []
    yy, xx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]].astype(np.float64)
    for u, v in uv_guess:
        win = (np.abs(xx - u) < 6) & (np.abs(yy - v) < 6)
        w = img.astype(np.float64) * win
        out.append([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])
    return np.array(out)


@pytest.mark.parametrize("model", ["plumb_bob", "equidistant"])
def test_undistort_image_moves_points_to_the_pinhole_projection(model: str) -> None:
    cam = make(model)
    newK = cam.optimal_new_camera_matrix(1.0)  # keep every source pixel
    cam.P = np.hstack([newK, np.zeros((3, 1))])
    pts = cam.backproject(
        np.array([[60.0, 50.0], [580.0, 420.0], [330.0, 240.0], [600.0, 60.0]]), np.full(4, 5.0)
    )
    expected = pts[:, :2] / pts[:, 2:] @ newK[:2, :2].T + newK[:2, 2]
    img = _blob_image(cam, cam.project(pts), cam.size)
    out = cam.undistort_image(img)
    assert out.shape == img.shape
    found = _centroids(out, expected)
    assert np.abs(found - expected).max() < 0.25
    # Maps are computed once per size and reused.
    m1 = cam.undistortion_maps(640, 480)
    assert cam.undistortion_maps(640, 480)[0] is m1[0]
    # Half resolution: same geometry, scaled.
    half = cam.undistort_image(cv2.resize(img, (320, 240), interpolation=cv2.INTER_AREA))
    assert half.shape == (240, 320)
    assert len(cam._maps) == 2
    # Replacing P gives new maps, not stale ones.
    cam.P = np.hstack([cam.K, np.zeros((3, 1))])
    assert cam.undistortion_maps(640, 480)[0] is not m1[0]


def test_scaled_camera_matches_resized_pixels() -> None:
    cam = make("plumb_bob")
    small = cam.scaled(320, 240)
    pts = cam.backproject(grid_pixels(cam, 7), np.full(49, 3.0))
    np.testing.assert_allclose(small.project(pts), (cam.project(pts) + 0.5) * 0.5 - 0.5, atol=1e-9)


def test_bad_files_raise_user_errors(tmp_path: Path) -> None:
    good = make("plumb_bob").to_ros_dict()

    def write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    import yaml

    def variant(**changes: object) -> str:
        doc = dict(good)
        doc.update(changes)
        return yaml.safe_dump({k: v for k, v in doc.items() if v is not None})

    cases = {
        "missing.yaml": (None, "does not exist"),
        "notyaml.yaml": ("camera_matrix: [1, 2\n", "not valid YAML"),
        "list.yaml": ("- 1\n- 2\n", "no camera_matrix"),
        "k.yaml": (variant(camera_matrix={"rows": 3, "cols": 3, "data": [1, 2, 3]}), "3x3"),
        "size.yaml": (variant(image_width=None), "image_width"),
        "model.yaml": (variant(distortion_model="kannala"), "not one of"),
        "dlen.yaml": (variant(distortion_coefficients={"data": [0.1, 0.2, 0.3]}), "takes 5 or 4"),
        "nan.yaml": (
            variant(camera_matrix={"data": [1, 0, 0, 0, float("nan"), 0, 0, 0, 1]}),
            "finite",
        ),
        "focal.yaml": (variant(camera_matrix={"data": [-5, 0, 1, 0, 5, 1, 0, 0, 1]}), "positive"),
        "rot.yaml": (
            variant(extrinsics={"translation": [0, 0, 0], "rotation": {"data": [1] * 9}}),
            "rotation",
        ),
        "ext.yaml": (variant(extrinsics=[1, 2]), "extrinsics must be a mapping"),
        "ocv.yml": ("%YAML:1.0\n---\nfoo: 1\n", "without camera_matrix"),
        "ocvbad.yml": ("%YAML:1.0\n---\ncamera_matrix: !!opencv-matrix\n  rows: [\n", "OpenCV"),
        "binary.yaml": (None, "cannot be read"),
    }
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81")
    for name, (text, message) in cases.items():
        path = write(name, text) if text is not None else tmp_path / name
        with pytest.raises(UserError, match=message):
            CameraModel.load(path)
    with pytest.raises(UserError, match="cannot write"):
        make("plumb_bob").save(tmp_path / "binary.yaml" / "x.yaml")
