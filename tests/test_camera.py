import numpy as np
import pytest
import torch

from sim2real_kit.camera import Camera, check_pose, invert_pose, look_at
from sim2real_kit.errors import PoseError, Sim2RealError


def test_lasa_intrinsics_mapping():
    cam = Camera.lasa().center_crop(192).resize(512)
    assert cam.width == cam.height == 512
    assert cam.fx == pytest.approx(565.20, abs=0.01)
    assert cam.fy == pytest.approx(565.20, abs=0.01)
    assert cam.cx == pytest.approx(256.0) and cam.cy == pytest.approx(256.0)


def test_plane_backprojects_to_constant_z():
    cam = Camera.lasa()
    depth = np.full((cam.height, cam.width), 2.0)
    pts = cam.backproject(depth)
    assert pts.shape == (192, 256, 3)
    np.testing.assert_allclose(pts[..., 2], 2.0)
    # the centre pixel's corner at (cx, cy) is on the optical axis: x grows with u by z / fx per pixel
    np.testing.assert_allclose(pts[0, 1, 0] - pts[0, 0, 0], 2.0 / cam.fx)


def test_project_backproject_identity_numpy_and_torch():
    cam = Camera(300.0, 310.0, 64.3, 47.9, 128, 96)
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 4.5, (96, 128))
    pose = look_at([1.0, -2.0, 1.4], [0.2, 0.5, 0.8])
    pts = cam.backproject(depth, pose)
    uv, z = cam.project(pts, pose)
    u, v = np.meshgrid(np.arange(128) + 0.5, np.arange(96) + 0.5)
    np.testing.assert_allclose(uv[..., 0], u, atol=1e-5)
    np.testing.assert_allclose(uv[..., 1], v, atol=1e-5)
    np.testing.assert_allclose(z, depth, atol=1e-5)
    ptst = cam.backproject(torch.tensor(depth), torch.tensor(pose))
    np.testing.assert_allclose(ptst.numpy(), pts, atol=1e-6)


def test_crop_resize_keep_geometry():
    cam = Camera(200.0, 200.0, 64, 48, 128, 96)
    # a point seen at pixel centre (70.5, 30.5) in the full frame
    sub = cam.crop(10, 5, 80, 80).resize(40)
    p = cam.backproject(np.full((96, 128), 3.0))[30, 70]
    uv, _ = sub.project(p)
    np.testing.assert_allclose(uv, [(70.5 - 10) / 2, (30.5 - 5) / 2], atol=1e-9)


def test_batch_backprojection_with_batched_poses():
    cam = Camera(50.0, 50.0, 8, 8, 16, 16)
    depth = torch.full((3, 16, 16), 1.5)
    poses = torch.stack([torch.tensor(look_at([i, 0, 1], [i, 5, 1]), dtype=torch.float32) for i in range(3)])
    pts = cam.backproject(depth, poses)
    assert pts.shape == (3, 16, 16, 3)
    np.testing.assert_allclose(pts[:, 8, 8, 1].numpy(), 1.5 + 0.0 * pts[:, 8, 8, 1].numpy() + 0.0, atol=0.05)


def test_pose_checks():
    check_pose(np.eye(4))
    with pytest.raises(PoseError, match="4x4"):
        check_pose(np.eye(3), "p.txt")
    bad = np.eye(4)
    bad[0, 0] = 2
    with pytest.raises(PoseError, match="not a rotation"):
        check_pose(bad, "p.txt")
    pose = look_at([1, 2, 3], [0, 0, 0])
    np.testing.assert_allclose(invert_pose(pose) @ pose, np.eye(4), atol=1e-12)


def test_bad_camera():
    with pytest.raises(Sim2RealError):
        Camera(0, 1, 0, 0, 10, 10)
    with pytest.raises(Sim2RealError, match="does not fit"):
        Camera.lasa().center_crop(300)
