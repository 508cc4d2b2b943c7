import numpy as np
import pytest
import yaml
from conftest import make_plane_layout

from sim2real_kit.camera import Camera
from sim2real_kit.data.layout import DepthLayout, FrameRef, read_pose, split_sizes, validate
from sim2real_kit.errors import ConfigError, LayoutError, PoseError


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


# ---------------------------------------------------------------------- the benchmark split
def _move_scene(lay, scene, src, dst):
    """Move every frame of `scene` from split `src` to split `dst` (the list files only)."""
    refs = lay.frames(src)
    lay.write_split(src, [r for r in refs if r.scene != scene])
    lay.write_split(dst, [r for r in refs if r.scene == scene] + (lay.frames(dst) if lay.has_split(dst) else []))


def test_benchmark_split_is_optional_and_read_like_the_others(tmp_path):
    lay = make_plane_layout(tmp_path / "ds", scenes=3)
    assert not lay.has_split("benchmark") and validate(lay.root) == []  # an old dataset: valid, no benchmark split
    with pytest.raises(LayoutError, match="benchmark.lst is missing: this dataset has no benchmark split"):
        lay.frames("benchmark")
    _move_scene(lay, "s01", "train", "benchmark")
    assert lay.has_split("benchmark") and lay.scenes("benchmark") == ["s01"] and lay.scenes("train") == ["s00"]
    assert [str(r) for r in lay.frames("benchmark")] == ["s01/000", "s01/001", "s01/002"]
    assert validate(lay.root) == []
    (lay.root / "lasa_depth" / "benchmark.lst").write_text("")
    assert any("benchmark.lst is empty" in p for p in validate(lay.root))
    lay.remove_split("benchmark")
    assert not lay.has_split("benchmark") and validate(lay.root) == []
    with pytest.raises(LayoutError, match="unknown split 'test'"):
        lay.frames("test")


def test_validate_refuses_a_scene_in_two_lists(tmp_path):
    lay = make_plane_layout(tmp_path / "ds", scenes=3)
    refs = lay.frames("train")
    lay.write_split("train", [r for r in refs if r.frame != "002"])
    lay.write_split("benchmark", [r for r in refs if r.frame == "002"])  # frames of s00, s01 in two lists
    probs = [p for p in validate(lay.root) if "benchmark.lst" in p]
    assert len(probs) == 2 and all("is also in train.lst" in p for p in probs)
    assert "scene s00" in probs[0] and "scene s01" in probs[1]
    # a dataset that declares frame-wise splits (an importer's one-video dataset) may share scenes
    meta = yaml.safe_load((lay.root / "dataset.yaml").read_text())
    (lay.root / "dataset.yaml").write_text(yaml.safe_dump({**meta, "splits": {"unit": "frame"}}))
    assert validate(lay.root) == []


@pytest.mark.parametrize(
    "n, vf, bf, expected",
    [(16, 0.25, 0.25, (4, 4)), (6, 0.25, 0.25, (2, 2)), (3, 0.34, 0.25, (1, 1)), (2, 0.25, 0.25, (1, 0)),
     (8, 0.25, 0.0, (2, 0)), (4, 0.5, 0.4, (2, 1)), (5, 0.2, 0.25, (1, 1))],
)  # fmt: skip
def test_split_sizes(n, vf, bf, expected):
    n_val, n_bench = split_sizes(n, vf, bf)
    assert (n_val, n_bench) == expected and n - n_val - n_bench >= 1


def test_split_sizes_refuses_bad_fractions():
    for vf, bf in ((0.0, 0.2), (1.0, 0.0), (0.5, 0.5), (0.2, -0.1), (0.2, 1.0)):
        with pytest.raises(ConfigError):
            split_sizes(10, vf, bf)
    with pytest.raises(ConfigError, match="at least 2"):
        split_sizes(1, 0.25, 0.25)
