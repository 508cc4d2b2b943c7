"""YCB-Video / BOP import into the lasa_depth layout, on the shipped five-frame sample (data/ycbv_sample).

The sample is imported once per session (YCB-Video, then exported to BOP and imported again); the
bad-input tests use two-frame copies and fail before or during rendering."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import yaml
from PIL import Image
from scipy.spatial import cKDTree

from sim2real_kit.camera import Camera
from sim2real_kit.data.convert import (
    REPORT_NAME,
    camera_from_opencv_K,
    export_bop,
    import_bop,
    import_ycbv,
    read_report,
    render_objects,
)
from sim2real_kit.data.layout import DepthLayout, FrameRef, validate
from sim2real_kit.errors import DepthFormatError, LayoutError, PoseError, Sim2RealError

pytest.importorskip("open3d")

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "ycbv_sample"
FRAMES = [f"{i:06d}" for i in range(1, 6)]


def _meta(frame: str) -> dict:
    return sio.loadmat(SAMPLE / "data" / "0000" / f"{frame}-meta.mat")


def _pose(meta: dict, i: int) -> np.ndarray:
    pose = np.eye(4)
    pose[:3] = meta["poses"][:, :, i]
    return pose


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    ycbv = import_ycbv(SAMPLE, root / "ycbv_ds", progress=False)
    bop_src = export_bop(SAMPLE, root / "bop_src")
    bop = import_bop(bop_src, root / "bop_ds", progress=False)
    return {"ycbv": ycbv, "bop": bop, "bop_src": bop_src, "root": root}


def _all_refs(lay: DepthLayout) -> list[FrameRef]:
    return lay.frames("train") + (lay.frames("benchmark") if lay.has_split("benchmark") else []) + lay.frames("val")


# ---------------------------------------------------------------------- the sample
def test_import_validates_with_fine_unit_and_shifted_intrinsics(imported):
    lay = imported["ycbv"]
    assert validate(lay.root) == []
    assert lay.depth_unit_m == pytest.approx(1e-4)  # 0.1 mm source: kept, not rounded to mm
    K = _meta("000001")["intrinsic_matrix"]
    cam = Camera.load_json(lay.root / "intrinsics.json")
    assert (cam.fx, cam.fy, cam.width, cam.height) == (K[0, 0], K[1, 1], 640, 480)
    assert cam.cx == pytest.approx(312.9869 + 0.5) and cam.cy == pytest.approx(241.3109 + 0.5)
    assert [str(r) for r in lay.frames("train")] == [f"0000/{f}" for f in FRAMES[:3]]
    assert [str(r) for r in lay.frames("benchmark")] == ["0000/000004"]  # one video: split by frames, like val
    assert [str(r) for r in lay.frames("val")] == ["0000/000005"]
    meta = yaml.safe_load((lay.root / "dataset.yaml").read_text())
    assert meta["splits"]["unit"] == "frame" and meta["splits"]["benchmark"] == 1  # validate allows shared scenes
    assert meta["splits"]["benchmark_nearest_train_frame"]["max_translation_mm"] < 3.0
    assert meta["classes"] == {8: "009_gelatin_box", 14: "025_mug", 21: "061_foam_brick"}
    assert any("holds out (almost) nothing" in n for n in meta["notes"])
    assert meta["splits"]["val_nearest_train_frame"]["max_translation_mm"] < 2.0  # neighbouring frames ~1 mm apart
    assert not list(lay.root.parent.glob(".ycbv_ds.*"))  # no staging folder left behind


def test_real_depth_is_copied_losslessly(imported):
    lay = imported["ycbv"]
    for frame in FRAMES:
        src = np.asarray(Image.open(SAMPLE / "data" / "0000" / f"{frame}-depth.png"))
        dst = np.asarray(Image.open(lay.depth_path(FrameRef("0000", frame), "scan")))
        np.testing.assert_array_equal(dst.astype(np.int64), src.astype(np.int64))


def test_cad_depth_matches_real_on_object_pixels(imported):
    """Median |CAD - real| on labelled object pixels below 2 mm per frame (about 0.9 mm on this sample)."""
    lay = imported["ycbv"]
    report = {r["frame"]: r for r in read_report(lay.root)}
    medians = {}
    for ref in _all_refs(lay):
        fr = lay.read_frame(ref, instance=True)
        mask = (fr["instance"] > 0) & (fr["cad"] > 0) & (fr["real"] > 0)
        assert mask.sum() > 50_000
        medians[ref.frame] = float(np.median(np.abs(fr["cad"][mask] - fr["real"][mask]))) * 1000
        # the files hold whole 0.1 mm counts (median of integer differences); the report used the unrounded CAD
        assert medians[ref.frame] == pytest.approx(report[ref.frame]["median_abs_mm"], abs=0.1)
        assert (fr["cad"][fr["instance"] == 0] > 0).mean() < 0.02  # CAD only on the objects
    print("median |CAD - real| mm per frame:", {k: round(v, 3) for k, v in medians.items()})
    assert all(0.5 < m < 2.0 for m in medians.values()), medians
    assert lay.meta["agreement"]["median_abs_mm"]["max"] < 2.0


def test_instance_ids_are_the_label_image_and_match_the_rendering(imported):
    lay = imported["ycbv"]
    for ref in _all_refs(lay):
        label = np.asarray(Image.open(SAMPLE / "data" / "0000" / f"{ref.frame}-label.png"))
        inst = np.asarray(Image.open(lay.depth_path(ref, "inst")))
        np.testing.assert_array_equal(inst.astype(np.int64), label.astype(np.int64))
        cad = lay.read_depth(ref, "gt")
        iou = ((cad > 0) & (inst > 0)).sum() / ((cad > 0) | (inst > 0)).sum()
        assert iou > 0.995, (ref, iou)
    assert all(r["label_match"] > 0.998 for r in read_report(lay.root))


def test_pixel_centre_shift_is_the_right_convention(imported):
    """Rendering with the unshifted (OpenCV) principal point fits the real frame worse."""
    meta = _meta("000001")
    classes = (SAMPLE / "image_sets" / "classes.txt").read_text().split()
    ids = [int(c) for c in meta["cls_indexes"].ravel()]
    import open3d as o3d

    meshes = {}
    for c in ids:
        m = o3d.io.read_triangle_mesh(str(SAMPLE / "models" / classes[c - 1] / "textured.obj"))
        meshes[c] = (np.asarray(m.vertices), np.asarray(m.triangles))
    poses = [_pose(meta, i) for i in range(len(ids))]
    real = np.asarray(Image.open(SAMPLE / "data" / "0000" / "000001-depth.png")) / float(meta["factor_depth"].item())
    label = np.asarray(Image.open(SAMPLE / "data" / "0000" / "000001-label.png")).astype(np.int32)

    def fit(camera):
        cad, cls = render_objects(meshes, ids, poses, camera)
        mask = (label > 0) & (cad > 0) & (real > 0)
        union = (label > 0) | (cls > 0)
        return np.median(np.abs(cad[mask] - real[mask])) * 1000, (label[union] == cls[union]).mean()

    right = fit(camera_from_opencv_K(meta["intrinsic_matrix"], 640, 480))
    wrong = fit(Camera.from_K(meta["intrinsic_matrix"], 640, 480))
    print(
        f"kit convention: median {right[0]:.3f} mm, label match {right[1]:.4f}; unshifted K: {wrong[0]:.3f} mm, {wrong[1]:.4f}"
    )
    assert right[0] < wrong[0] - 0.03
    assert right[1] > wrong[1] + 0.005 and right[1] > 0.998
    cad_written = imported["ycbv"].read_depth(FrameRef("0000", "000001"), "gt")
    cad_right, cls_right = render_objects(meshes, ids, poses, camera_from_opencv_K(meta["intrinsic_matrix"], 640, 480))
    assert np.abs(cad_written - cad_right).max() <= 0.6e-4  # the written CAD is this rendering (0.1 mm rounding)
    # the CAD side's object masks are this rendering's class ids, not the source's label image
    np.testing.assert_array_equal(imported["ycbv"].cad_instance(FrameRef("0000", "000001")), cls_right)
    assert (cls_right != label).any()


def test_camera_poses_make_the_objects_static(imported):
    lay = imported["ycbv"]
    refs = _all_refs(lay)
    c2w = {r.frame: lay.read_pose(r) for r in refs}
    np.testing.assert_allclose(c2w["000001"], np.linalg.inv(_pose(_meta("000001"), 0)), atol=1e-6)  # world = object 8
    for k in range(3):
        world = [c2w[f] @ _pose(_meta(f), k) for f in FRAMES]  # object-to-world from every frame
        for w in world[1:]:
            np.testing.assert_allclose(w, world[0], atol=1e-6)
    pc = lay.meta["pose_consistency"]
    assert pc["max_translation_mm"] < 1e-3 and pc["max_rotation_deg"] < 1e-3
    assert set(pc["per_object"]) == {"025_mug", "061_foam_brick"}
    assert pc["source_extrinsics"]["max_translation_mm"] < 0.5  # vs the meta's rotation_translation_matrix
    # CAD surface back-projected with the written poses lands on the same world points in frames 1 and 5
    pts = []
    for r in (refs[0], refs[-1]):
        fr = lay.read_frame(r)
        pts.append(lay.camera.backproject(fr["cad"].astype(np.float64), fr["pose"])[fr["cad"] > 0])
    dist, _ = cKDTree(pts[0]).query(pts[1])
    assert np.median(dist) < 1e-3, np.median(dist)


def test_bop_round_trip_gives_the_same_frames(imported):
    ycbv, bop = imported["ycbv"], imported["bop"]
    assert validate(bop.root) == []
    assert bop.depth_unit_m == pytest.approx(1e-4) and bop.camera == ycbv.camera
    cam = json.loads((imported["bop_src"] / "test" / "000000" / "scene_camera.json").read_text())
    assert cam["1"]["depth_scale"] == pytest.approx(0.1)
    assert [r.frame for r in _all_refs(bop)] == FRAMES
    for ry, rb in zip(_all_refs(ycbv), _all_refs(bop)):
        fy, fb = ycbv.read_frame(ry, rgb=True, instance=True), bop.read_frame(rb, rgb=True, instance=True)
        assert np.abs(fy["cad"] - fb["cad"]).max() <= 1e-4 + 1e-7  # within 0.1 mm
        np.testing.assert_array_equal(fy["real"], fb["real"])
        np.testing.assert_array_equal(fy["instance"], fb["instance"])  # mask_visib carries the label image
        np.testing.assert_array_equal(fy["rgb"], fb["rgb"])
        np.testing.assert_allclose(fy["pose"], fb["pose"], atol=1e-9)
    assert bop.meta["pose_consistency"]["source_extrinsics"]["max_translation_mm"] < 0.5  # cam_R_w2c / cam_t_w2c


# ---------------------------------------------------------------------- bad input
def _small_copy(tmp_path: Path, frames=("000001", "000002")) -> Path:
    src = tmp_path / "src"
    (src / "data" / "0000").mkdir(parents=True)
    shutil.copytree(SAMPLE / "image_sets", src / "image_sets")
    shutil.copytree(SAMPLE / "models", src / "models")
    for f in frames:
        for kind in ("depth.png", "label.png", "meta.mat"):  # colour left out: optional, keeps the copy small
            shutil.copy(SAMPLE / "data" / "0000" / f"{f}-{kind}", src / "data" / "0000" / f"{f}-{kind}")
    return src


def _rewrite_meta(src: Path, frame: str, **changes) -> Path:
    path = src / "data" / "0000" / f"{frame}-meta.mat"
    keys = ("intrinsic_matrix", "factor_depth", "cls_indexes", "poses", "rotation_translation_matrix")
    meta = {k: v for k, v in sio.loadmat(path).items() if k in keys}
    meta.update(changes)
    path.unlink()
    sio.savemat(path, meta)
    return path


def _assert_nothing_written(out: Path):
    assert not out.exists() or not any(out.iterdir())
    assert validate(out) != []  # `out` does not look like a dataset
    assert not list(out.parent.glob(f".{out.name}.*")), "staging folder left behind"


def test_small_copy_imports(tmp_path):
    lay = import_ycbv(_small_copy(tmp_path), tmp_path / "out", progress=False)
    assert validate(lay.root) == [] and len(lay.frames("train")) == 1 and len(lay.frames("val")) == 1
    assert not lay.depth_path(FrameRef("0000", "000001"), "rgb").exists()


def test_missing_class_model(tmp_path):
    src = _small_copy(tmp_path)
    shutil.rmtree(src / "models" / "025_mug")
    with pytest.raises(LayoutError, match=r"025_mug/textured\.obj.*missing"):
        import_ycbv(src, tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path / "out")


def test_pose_count_mismatch(tmp_path):
    src = _small_copy(tmp_path)
    poses = _meta("000002")["poses"][:, :, :2]
    _rewrite_meta(src, "000002", poses=poses)
    with pytest.raises(PoseError, match=r"000002-meta\.mat: 2 poses for 3 classes"):
        import_ycbv(src, tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path / "out")


def test_depth_factor_zero(tmp_path):
    src = _small_copy(tmp_path)
    _rewrite_meta(src, "000001", factor_depth=np.array([[0]], dtype=np.uint16))
    with pytest.raises(DepthFormatError, match=r"000001-meta\.mat: factor_depth must be one positive"):
        import_ycbv(src, tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path / "out")


def test_mesh_without_faces(tmp_path):
    src = _small_copy(tmp_path)
    obj = src / "models" / "061_foam_brick" / "textured.obj"
    obj.write_text("".join(ln + "\n" for ln in obj.read_text().splitlines() if ln.startswith("v ")))
    with pytest.raises(LayoutError, match=r"061_foam_brick/textured\.obj: .*no faces"):
        import_ycbv(src, tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path / "out")


def test_intrinsics_differing_between_frames(tmp_path):
    src = _small_copy(tmp_path)
    K = _meta("000002")["intrinsic_matrix"].copy()
    K[0, 0] += 10
    _rewrite_meta(src, "000002", intrinsic_matrix=K)
    with pytest.raises(LayoutError, match=r"000002-meta\.mat: intrinsics .* differ"):
        import_ycbv(src, tmp_path / "out", progress=False)


def test_failure_after_frames_were_written_leaves_nothing(tmp_path):
    """Frame 1 is rendered and written, frame 2's depth is corrupt: `out` must not appear."""
    src = _small_copy(tmp_path)
    depth2 = src / "data" / "0000" / "000002-depth.png"
    depth2.write_bytes(depth2.read_bytes()[:2000])  # truncated PNG: the header still opens
    with pytest.raises(DepthFormatError, match=r"000002-depth\.png"):
        import_ycbv(src, tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path / "out")


def test_existing_output_is_refused_or_replaced_only_on_success(tmp_path):
    src = _small_copy(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(LayoutError, match="not empty"):
        import_ycbv(src, out, progress=False)
    shutil.rmtree(src / "models" / "025_mug")
    with pytest.raises(LayoutError):
        import_ycbv(src, out, progress=False, overwrite=True)
    assert (out / "precious.txt").read_text() == "keep me"  # a failed overwrite keeps the old folder
    shutil.copytree(SAMPLE / "models" / "025_mug", src / "models" / "025_mug")
    lay = import_ycbv(src, out, progress=False, overwrite=True)
    assert validate(lay.root) == [] and not (out / "precious.txt").exists() and (out / REPORT_NAME).is_file()
    assert not list(tmp_path.glob(".out.*"))


def test_bop_bad_depth_scale_and_missing_model(tmp_path, imported):
    src = tmp_path / "bop"
    shutil.copytree(imported["bop_src"], src)
    cam_path = src / "test" / "000000" / "scene_camera.json"
    cams = json.loads(cam_path.read_text())
    cams["3"]["depth_scale"] = 0
    cam_path.write_text(json.dumps(cams))
    with pytest.raises(DepthFormatError, match=r"scene_camera\.json: image 3: depth_scale must be > 0"):
        import_bop(src, tmp_path / "out", progress=False)
    _assert_nothing_written(tmp_path / "out")
    cams["3"]["depth_scale"] = 0.1
    cam_path.write_text(json.dumps(cams))
    (src / "models" / "obj_000014.ply").unlink()
    with pytest.raises(LayoutError, match=r"obj_000014\.ply: model of obj_id 14 is missing"):
        import_bop(src, tmp_path / "out", progress=False)
    with pytest.raises(Sim2RealError, match="split folder 'train'"):
        import_bop(src, tmp_path / "out", split="train", progress=False)


# ---------------------------------------------------------------------- the refactor's reference
def _digest(*parts) -> str:
    """sha256 (first 16 hex digits) of arrays (dtype, shape and bytes), strings and bytes, in order."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, str):
            p = p.encode()
        elif not isinstance(p, bytes):
            a = np.ascontiguousarray(p)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            p = a.tobytes()
        h.update(p)
    return h.hexdigest()[:16]


def _tree_fingerprint(root: Path, replace: dict[str, str]) -> dict[str, str]:
    """Per kind of file (PNG suffix or folder, meshes, poses, metadata): digest of the decoded contents
    (PNG pixels, PLY vertices / triangles, text with the machine's paths replaced), in path order."""
    import open3d as o3d

    groups: dict[str, list] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if path.suffix == ".png":
            kind = rel.parent.name if rel.parent.name in ("depth", "rgb", "mask_visib") else rel.stem.rsplit("_")[-1]
            with Image.open(path) as im:
                content = _digest(np.asarray(im))
        elif path.suffix == ".ply":
            kind = "models"
            mesh = o3d.io.read_triangle_mesh(str(path))
            content = _digest(np.asarray(mesh.vertices), np.asarray(mesh.triangles))
        else:
            kind = "poses" if rel.parts[0] == "lasa_pose" else "metadata"
            text = path.read_text()
            for old, new in replace.items():
                text = text.replace(old, new)
            content = _digest(text)
        groups.setdefault(kind, []).append(f"{rel.as_posix()}={content}")
    return {kind: _digest("\n".join(items)) for kind, items in sorted(groups.items())}


def _import_fingerprint(root: Path) -> dict[str, dict[str, str]]:
    """The YCB-Video import, its BOP export and the BOP import of the shipped sample under `root`."""
    replace = {str(SAMPLE.resolve()): "<SAMPLE>", str(root.resolve()): "<ROOT>", str(root): "<ROOT>"}
    return {name: _tree_fingerprint(root / name, replace) for name in ("ycbv_ds", "bop_src", "bop_ds")}


# Reference of the module split of convert.py (a pure refactor, "every number held"): these digests
# were computed by the code *before* the split (commit ad6e622) and must come out unchanged. They
# are hard-coded on purpose: they are the reference, not a property. Should ray casting or PNG / PLY
# decoding of another machine or library version ever be the cause of a failure, recompute them by
# running `_import_fingerprint` on the code of ad6e622 on that machine, never from the code under test.
# That happened on 2026-12-06: on that session's machine ad6e622 itself rendered both imports' CAD depth (`gt`)
# to other digests (the instance masks, so every silhouette, unchanged: the ray caster's float rounding differs
# between CPUs), so `gt` lists the digest of each machine; everything else has one.
IMPORT_FINGERPRINT = {
    "ycbv_ds": {
        "gt": ("52ecf7c1e634e0dd", "cda0b552833740e3"),
        "inst": "3434d8ab67dd5e65",
        "metadata": "c16109938eb969d7",
        "poses": "fe036d8c106fe07a",
        "rgb": "92868a6526c80fa6",
        "scan": "bd35a7c9b1abc6f1",
    },
    "bop_src": {
        "depth": "b9a804680ea884c5",
        "mask_visib": "0c25629a57f80715",
        "metadata": "48d7435e2dd8567a",
        "models": "49ae338361a39f6a",
        "rgb": "04cec13ce85e8b4e",
    },
    "bop_ds": {
        "gt": ("53f896e04fc5de7f", "dd7ff6fff3afa0fe"),
        "inst": "237211979220e1a7",
        "metadata": "0e0bf7fb11347a1e",
        "poses": "2d6baa20ec3bcf09",
        "rgb": "2b133af67cdfef7a",
        "scan": "a6dbf6334e631729",
    },
}


# Not in the reference: the split lists, dataset.yaml and import_report.csv ("metadata": the benchmark split
# changed them) and `_cadinst.png` (new); the tests above check those.
_NEW_KINDS = ("metadata", "cadinst")


def test_imports_are_bit_identical_to_the_reference(imported):
    got = _import_fingerprint(imported["root"])
    for name, kinds in IMPORT_FINGERPRINT.items():
        assert set(got[name]) - set(_NEW_KINDS) == set(kinds) - set(_NEW_KINDS), name
        for kind, want in kinds.items():
            if kind not in _NEW_KINDS:
                assert got[name][kind] in (want if isinstance(want, tuple) else (want,)), (name, kind)
    assert "cadinst" in got["ycbv_ds"] and "cadinst" in got["bop_ds"]


def test_convert_keeps_its_public_names_after_the_split():
    """`sim2real_kit.data.convert` re-exports the names that moved to convert_build.py / convert_bop.py."""
    from sim2real_kit.data import convert, convert_bop, convert_build

    assert set(convert.__all__) >= {
        "REPORT_NAME",
        "import_ycbv",
        "import_bop",
        "export_bop",
        "camera_from_opencv_K",
        "render_objects",
        "read_report",
    }
    for name in ("REPORT_NAME", "camera_from_opencv_K", "render_objects", "read_report"):
        assert getattr(convert, name) is getattr(convert_build, name), name
    assert convert.export_bop is convert_bop.export_bop


def test_several_videos_are_split_whole_into_train_benchmark_and_val(tmp_path):
    """Several videos: val takes the last, benchmark the one before (held out of every simulator's training), no
    video in two lists; with two videos there is no room for a benchmark split and dataset.yaml says so."""
    src = _small_copy(tmp_path)
    for video in ("0001", "0002"):
        shutil.copytree(src / "data" / "0000", src / "data" / video)
    lay = import_ycbv(src, tmp_path / "out", progress=False)
    assert validate(lay.root) == []
    assert lay.scenes("train") == ["0000"] and lay.scenes("benchmark") == ["0001"] and lay.scenes("val") == ["0002"]
    assert lay.meta["splits"]["unit"] == "scene" and lay.meta["splits"]["benchmark_scenes"] == ["0001"]
    rows = read_report(lay.root)
    assert {r["scene"]: r["split"] for r in rows} == {"0000": "train", "0001": "benchmark", "0002": "val"}
    two = import_ycbv(src, tmp_path / "two", videos=["0000", "0001"], progress=False)
    assert not two.has_split("benchmark") and validate(two.root) == []
    assert any("no benchmark split" in n for n in two.meta["notes"])
    with pytest.raises(LayoutError, match="no benchmark split"):
        two.frames("benchmark")


def test_bop_rotations_rounded_to_a_few_digits_import_and_wrong_ones_are_refused(tmp_path, imported):
    """LM-O stores cam_R_m2c with a few digits (the driller's |RR^T - I| is 2.0e-3): such a rotation is
    projected to the nearest one, and the import matches the exact one's to well under a millimetre. A
    matrix that is no rotation (|RR^T - I| = 0.1) is still refused, naming the file."""
    src = tmp_path / "bop"
    shutil.copytree(imported["bop_src"], src)
    gt_path = src / "test" / "000000" / "scene_gt.json"
    gts = json.loads(gt_path.read_text())
    exact = import_bop(src, tmp_path / "exact", progress=False)
    for entries in gts.values():
        for g in entries:
            g["cam_R_m2c"] = [round(v * 1.002, 3) for v in g["cam_R_m2c"]]  # scaled by 0.2 %, 3 digits: as LM-O's
    gt_path.write_text(json.dumps(gts))
    rounded = import_bop(src, tmp_path / "rounded", progress=False)
    assert validate(rounded.root) == []
    for ref in _all_refs(exact):
        a, b = exact.read_frame(ref), rounded.read_frame(ref)
        both = (a["cad"] > 0) & (b["cad"] > 0)
        assert both.mean() > 0.1 and np.median(np.abs(a["cad"] - b["cad"])[both]) < 5e-4  # metres
    key = next(iter(gts))
    gts[key][0]["cam_R_m2c"] = [1.1, 0, 0, 0, 1, 0, 0, 0, 1]
    gt_path.write_text(json.dumps(gts))
    with pytest.raises(PoseError, match=r"scene_gt\.json: rotation part is not a rotation"):
        import_bop(src, tmp_path / "bad", progress=False)
    _assert_nothing_written(tmp_path / "bad")


# ---------------------------------------------------------------------- one frame: a test-only sample (issue 23)
def test_one_frame_imports_as_a_test_only_sample(tmp_path, capsys):
    from sim2real_kit.cli import main
    from sim2real_kit.data.dataset import PairedDepthDataset

    src = export_bop(_small_copy(tmp_path, frames=("000001",)), tmp_path / "bop_one")
    assert main(["import", "bop", str(src), "--out", str(tmp_path / "out")]) == 0
    assert "test-only" in capsys.readouterr().out
    lay = DepthLayout(tmp_path / "out")
    assert validate(lay.root) == [] and lay.test_only
    assert lay.frames("val") == [FrameRef("000000", "000001")] and not lay.has_split("train")
    assert lay.meta["splits"]["test_only"] is True and any("test-only" in n for n in lay.meta["notes"])
    with pytest.raises(LayoutError, match=r"train\.lst: .*test-only sample \(1 frame, .*--test-sample"):
        lay.frames("train")
    with pytest.raises(LayoutError, match="test-only"):
        PairedDepthDataset(lay, "train")  # what every trainer opens first
    two = import_bop(export_bop(_small_copy(tmp_path / "b"), tmp_path / "bop_two"), tmp_path / "out2", progress=False)
    assert not two.test_only and len(two.frames("train")) == 1  # two frames: train and val as before


LMO = Path("/work/shared/data/lmo_sample")


@pytest.mark.skipif(not (LMO / "camera.json").is_file(), reason="the LM-O sample is not on this machine")
def test_lmo_sample_imports_and_lines_up(tmp_path):
    lay = import_bop(LMO, tmp_path / "lmo", progress=False)
    assert validate(lay.root) == [] and lay.test_only and (lay.camera.width, lay.camera.height) == (640, 480)
    frame = lay.read_frame(lay.frames("val")[0], instance=True)
    on = (frame["instance"] > 0) & (frame["cad"] > 0) & (frame["real"] > 0)
    diff_mm = 1000 * np.abs(frame["cad"] - frame["real"])[on]
    assert on.sum() > 15_000 and 3.0 < np.median(diff_mm) < 5.5  # the sample's README: 19 163 px, median 4.2 mm
