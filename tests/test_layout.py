import numpy as np
import pytest

from sim2real_kit.camera import Camera
from sim2real_kit.data.layout import DepthLayout, FrameRef, read_pose, validate
from sim2real_kit.errors import LayoutError, PoseError


def test_written_layout_validates(plane_layout):
    assert validate(plane_layout.root) == []
    lay = DepthLayout(plane_layout.root)
    refs = lay.frames("train")
    assert refs[0] == FrameRef("s00", "000") and len(refs) == 3
    fr = lay.read_frame(refs[0])
    assert fr["cad"].shape == (24, 32) and fr["pose"].shape == (4, 4)
    assert (plane_layout.root / "lasa_depth" / "s00" / "000_gt.png").is_file()
    assert (plane_layout.root / "lasa_pose" / "s00" / "000.txt").is_file()


def test_validate_reports_every_problem(plane_layout):
    root = plane_layout.root
    (root / "lasa_depth" / "s00" / "001_scan.png").unlink()
    (root / "lasa_pose" / "s00" / "002.txt").write_text("1 0 0\n0 1 0\n0 0 1\n")
    with open(root / "lasa_depth" / "train.lst", "a") as f:
        f.write("garbage\ns09/000\n")
    probs = validate(root)
    text = "\n".join(probs)
    assert "001_scan.png: missing" in text
    assert "002.txt" in text and "4x4" in text
    assert "garbage" in text
    assert "s09/000_gt.png: missing" in text
    assert len(probs) >= 5


def test_missing_and_empty_lists(plane_layout):
    (plane_layout.root / "lasa_depth" / "val.lst").write_text("")
    with pytest.raises(LayoutError, match="val.lst is empty"):
        plane_layout.frames("val")
    (plane_layout.root / "lasa_depth" / "val.lst").unlink()
    with pytest.raises(LayoutError, match="val.lst is missing"):
        plane_layout.frames("val")
    assert any("val.lst is missing" in p for p in validate(plane_layout.root))


def test_root_missing(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        DepthLayout(tmp_path / "nope")
    assert "does not exist" in validate(tmp_path / "nope")[0]


def test_size_mismatch_named(plane_layout):
    ref = FrameRef("s00", "000")
    from sim2real_kit.depth import write_depth_png

    write_depth_png(plane_layout.depth_path(ref, "scan"), np.ones((10, 10)))
    with pytest.raises(LayoutError, match="000_scan.png"):
        plane_layout.read_frame(ref)
    assert any("000_scan.png" in p and "differs" in p for p in validate(plane_layout.root))


def test_pose_not_rigid(tmp_path):
    p = tmp_path / "p.txt"
    np.savetxt(p, np.diag([1, 2, 1, 1.0]))
    with pytest.raises(PoseError, match="p.txt"):
        read_pose(p)


def test_refuse_mixing_datasets(tmp_path):
    cam = Camera(10, 10, 5, 5, 10, 10)
    DepthLayout.create(tmp_path / "d", cam, meta={"seed": 1})
    DepthLayout.create(tmp_path / "d", cam, meta={"seed": 1})  # same dataset: reopen for resume
    with pytest.raises(LayoutError, match="different dataset.*seed"):
        DepthLayout.create(tmp_path / "d", cam, meta={"seed": 2})
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("user data")
    with pytest.raises(LayoutError, match="not empty"):
        DepthLayout.create(tmp_path / "other", cam)
    assert (tmp_path / "other" / "x.txt").read_text() == "user data"


def test_finer_depth_unit(tmp_path):
    cam = Camera(10, 10, 5, 5, 10, 10)
    lay = DepthLayout.create(tmp_path / "d", cam, depth_unit_m=0.0001)
    ref = FrameRef("a", "0")
    d = np.full((10, 10), 1.23456, np.float32)
    lay.write_frame(ref, d, d, np.eye(4))
    back = DepthLayout(tmp_path / "d").read_frame(ref)["real"]
    np.testing.assert_allclose(back, 1.2346, atol=1e-6)


def test_lasa_root_without_meta_uses_lasa_camera(tmp_path):
    (tmp_path / "lasa_depth").mkdir()
    lay = DepthLayout(tmp_path)
    assert lay.camera == Camera.lasa() and lay.depth_unit_m == 0.001
