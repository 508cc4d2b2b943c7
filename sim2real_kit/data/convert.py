"""Import real RGB-D data with object meshes and poses (YCB-Video, BOP) into the `lasa_depth` layout.

The paper's pairs are real captures with CAD depth rendered from aligned models (Sec. 4, LASA). Any
dataset of real depth + object meshes + object poses gives the same kind of pair: this module renders
each frame's CAD depth (open3d ray casting through `data.render.SceneRenderer`, 0 where no mesh)
with the frame's own intrinsics and object poses, and writes

- `_gt`  = CAD depth, `_scan` = real depth (in the source's unit: YCB-Video is 0.1 mm, so the layout
  records `depth_unit_m: 0.0001` and no precision is lost), `_rgb` = colour,
- `_inst` = class id per pixel from the source's segmentation (YCB-Video label image, BOP
  `mask_visib`), or from the rendering when the source has none,
- camera-to-world poses: the objects are static, so the world is the frame of a reference object
  (the first object of a scene's first frame) and cam-to-world = inv(reference object-in-camera);
  the other objects give independent estimates whose disagreement is measured and recorded,
- `intrinsics.json`, `dataset.yaml` (source, classes, conventions, pose consistency, CAD-vs-real
  agreement) and `import_report.csv` (one row per frame).

Intrinsics: YCB-Video and BOP use the OpenCV convention (pixel centres at integer u, v); the kit puts
pixel centres at (u + 0.5, v + 0.5), so the kit camera has cx = cx_cv + 0.5, cy = cy_cv + 0.5
(`camera_from_opencv_K`). On the YCB-Video sample the unshifted K gives a visibly worse fit
(median |CAD - real| 0.93-0.96 mm instead of 0.87-0.89 mm over the five frames; rendered ids agree
with the label image on 99.0 % instead of 99.9 % of object pixels).

Nothing is half-written: a dataset is built in a hidden temporary sibling of `out` and renamed onto
`out` at the end; on any error the temporary folder is removed and `out` is left as it was.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from sim2real_kit.camera import Camera
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.depth import read_depth_png
from sim2real_kit.errors import DepthFormatError, LayoutError, PoseError
from sim2real_kit.io import atomic_path, atomic_write_text, read_json_object

REPORT_NAME = "import_report.csv"
_K_ATOL = 1e-6  # pixels: intrinsics closer than this are one camera


# ---------------------------------------------------------------------- source description
@dataclass
class _SrcObject:
    class_id: int  # YCB class index (1-based into classes.txt) or BOP obj_id
    pose: np.ndarray  # [4, 4] object-in-camera, metres


@dataclass
class _SrcFrame:
    """One source frame, independent of the source format."""

    scene: str
    frame: str
    K: np.ndarray  # [3, 3] OpenCV convention (pixel centres at integer u, v)
    depth_path: Path
    depth_unit_m: float  # metres per count of the source depth PNG
    objects: list[_SrcObject]
    meta_path: Path  # file holding intrinsics / poses (named in errors)
    rgb_path: Path | None = None
    label_path: Path | None = None  # YCB: class id per pixel
    mask_paths: list[tuple[int, Path]] = field(default_factory=list)  # BOP: (obj_id, mask_visib)
    world_to_cam: np.ndarray | None = None  # [4, 4] the source's own extrinsics (cross-check only)

    @property
    def ref(self) -> FrameRef:
        return FrameRef(self.scene, self.frame)


@dataclass
class _Model:
    name: str
    path: Path
    scale: float  # file units -> metres


# ---------------------------------------------------------------------- public API
def camera_from_opencv_K(K, width: int, height: int) -> Camera:
    """Kit camera of an OpenCV-convention K (pixel centres at integer u): cx, cy shifted by +0.5 px."""
    K = np.asarray(K, dtype=np.float64).copy()
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return Camera.from_K(K, width, height)


def import_ycbv(
    src: str | Path,
    out: str | Path,
    videos: Sequence[str] | None = None,
    progress: bool = True,
    *,
    val_fraction: float = 0.2,
    overwrite: bool = False,
) -> DepthLayout:
    """Import YCB-Video (`data/<video>/<frame>-{depth,color,label}.png`, `-meta.mat`,
    `models/<class>/textured.obj`, `image_sets/classes.txt`) into a `lasa_depth` layout at `out`.

    `videos`: video folder names (default: all under `data/`); they must share one camera (YCB-Video
    videos 0048+ use a second camera: import them separately). Splits: see `_split` (whole videos
    held out when there are several, else the last frames). Returns the opened layout; its
    `meta` holds the pose-consistency and CAD-vs-real figures."""
    src = Path(src)
    classes, models = _ycbv_models(src)
    frames = _ycbv_frames(src, videos, classes, progress)
    source = {"kind": "ycbv", "root": str(src.resolve()), "scenes": sorted({f.scene for f in frames})}
    class_note = "class index, 1-based into image_sets/classes.txt"
    return _build_layout(frames, models, out, source, class_note, progress, val_fraction, overwrite)


def import_bop(
    src: str | Path,
    out: str | Path,
    split: str = "test",
    scenes: Sequence[str | int] | None = None,
    progress: bool = True,
    *,
    models_dir: str = "models",
    val_fraction: float = 0.2,
    overwrite: bool = False,
) -> DepthLayout:
    """Import a BOP-format dataset (`<split>/<scene>/scene_camera.json` cam_K + depth_scale,
    `scene_gt.json` cam_R_m2c / cam_t_m2c in mm, `depth/*.png`, optional `rgb/*.{png,jpg}` and
    `mask_visib/*.png`, `<models_dir>/obj_*.ply` in mm) into a `lasa_depth` layout at `out`.

    `scenes`: scene folder names or ids (default: all of the split). Instance ids come from
    `mask_visib` when present, else from the rendering. Same splits and report as `import_ycbv`."""
    src = Path(src)
    frames = _bop_frames(src, split, scenes)
    used = sorted({o.class_id for f in frames for o in f.objects})
    models = {}
    for obj_id in used:
        path = src / models_dir / f"obj_{obj_id:06d}.ply"
        if not path.is_file():
            raise LayoutError(f"model of obj_id {obj_id} is missing (BOP models are obj_XXXXXX.ply in mm)", path)
        models[obj_id] = _Model(f"obj_{obj_id:06d}", path, 0.001)
    source = {"kind": "bop", "root": str(src.resolve()), "split": split, "scenes": sorted({f.scene for f in frames})}
    class_note = "BOP obj_id"
    return _build_layout(frames, models, out, source, class_note, progress, val_fraction, overwrite)


def export_bop(ycbv_src: str | Path, out: str | Path, videos: Sequence[str] | None = None, split: str = "test") -> Path:
    """Write a BOP-format copy of a YCB-Video folder (depth copied byte for byte, poses in mm,
    meshes as `models/obj_<class id>.ply` in mm, label image as `mask_visib`, extrinsics as
    cam_R_w2c / cam_t_w2c). Scene = int(video), image id = int(frame). Built atomically; returns `out`."""
    import open3d as o3d
    from PIL import Image

    ycbv_src, out = Path(ycbv_src), Path(out)
    classes, models = _ycbv_models(ycbv_src)
    frames = _ycbv_frames(ycbv_src, videos, classes)
    with _staging(out, overwrite=False) as tmp:
        for cid in sorted({o.class_id for f in frames for o in f.objects}):
            verts, tris = _load_mesh(models[cid])
            mesh = o3d.geometry.TriangleMesh(
                o3d.utility.Vector3dVector(verts * 1000.0), o3d.utility.Vector3iVector(tris.astype(np.int32))
            )
            path = tmp / "models" / f"obj_{cid:06d}.ply"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not o3d.io.write_triangle_mesh(str(path), mesh):
                raise LayoutError("open3d could not write the mesh", path)
        by_scene: dict[str, list[_SrcFrame]] = {}
        for f in frames:
            by_scene.setdefault(f.scene, []).append(f)
        for scene, scene_frames in by_scene.items():
            sdir = tmp / split / f"{_int_name(scene, scene_frames[0].meta_path):06d}"
            cams, gts = {}, {}
            for f in scene_frames:
                im = _int_name(f.frame, f.meta_path)
                cam = {"cam_K": f.K.ravel().tolist(), "depth_scale": f.depth_unit_m * 1000.0}
                if f.world_to_cam is not None:
                    cam["cam_R_w2c"] = f.world_to_cam[:3, :3].ravel().tolist()
                    cam["cam_t_w2c"] = (f.world_to_cam[:3, 3] * 1000.0).tolist()
                cams[str(im)] = cam
                gts[str(im)] = [
                    {
                        "cam_R_m2c": o.pose[:3, :3].ravel().tolist(),
                        "cam_t_m2c": (o.pose[:3, 3] * 1000.0).tolist(),
                        "obj_id": o.class_id,
                    }  # fmt: skip
                    for o in f.objects
                ]
                (sdir / "depth").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f.depth_path, sdir / "depth" / f"{im:06d}.png")
                if f.rgb_path is not None:
                    (sdir / "rgb").mkdir(exist_ok=True)
                    shutil.copyfile(f.rgb_path, sdir / "rgb" / f"{im:06d}{f.rgb_path.suffix}")
                if f.label_path is not None:
                    label = _read_label(f.label_path)
                    (sdir / "mask_visib").mkdir(exist_ok=True)
                    for i, o in enumerate(f.objects):
                        mask = ((label == o.class_id) * 255).astype(np.uint8)
                        Image.fromarray(mask).save(sdir / "mask_visib" / f"{im:06d}_{i:06d}.png")
            (sdir / "scene_camera.json").write_text(json.dumps(cams, indent=1))
            (sdir / "scene_gt.json").write_text(json.dumps(gts, indent=1))
    return out


# ---------------------------------------------------------------------- YCB-Video reading
def _ycbv_models(src: Path) -> tuple[list[str], dict[int, _Model]]:
    """Class names of image_sets/classes.txt and {class index: model} (path may not exist)."""
    if not src.is_dir():
        raise LayoutError("YCB-Video source folder does not exist", src)
    cls_file = src / "image_sets" / "classes.txt"
    if not cls_file.is_file():
        raise LayoutError("class list is missing (YCB-Video has image_sets/classes.txt)", cls_file)
    classes = [ln.strip() for ln in cls_file.read_text().splitlines() if ln.strip()]
    if not classes:
        raise LayoutError("class list is empty", cls_file)
    models = {i + 1: _Model(name, src / "models" / name / "textured.obj", 1.0) for i, name in enumerate(classes)}
    return classes, models


def _ycbv_frames(
    src: Path, videos: Sequence[str] | None, classes: list[str], progress: bool = False
) -> list[_SrcFrame]:
    import scipy.io as sio
    from tqdm.auto import tqdm

    data = src / "data"
    if not data.is_dir():
        raise LayoutError("folder data/ is missing (YCB-Video frames live in data/<video>/)", data)
    if videos is None:
        videos = sorted(p.name for p in data.iterdir() if p.is_dir())
    frames: list[_SrcFrame] = []
    for video in tqdm(videos, desc="read ycbv meta files", unit="video", disable=not progress):
        vdir = data / str(video)
        if not vdir.is_dir():
            raise LayoutError(f"video {video!r} does not exist", vdir)
        for meta_path in sorted(vdir.glob("*-meta.mat")):
            name = meta_path.name[: -len("-meta.mat")]
            try:
                meta = sio.loadmat(
                    meta_path,
                    variable_names=["intrinsic_matrix", "factor_depth", "cls_indexes", "poses",
                                    "rotation_translation_matrix"],
                )  # fmt: skip
            except Exception as e:  # scipy raises several types on corrupt files
                raise LayoutError(f"cannot read MATLAB meta file: {e}", meta_path) from None
            for key in ("intrinsic_matrix", "factor_depth", "cls_indexes", "poses"):
                if key not in meta:
                    raise LayoutError(f"meta file lacks {key!r}", meta_path)
            factor = np.asarray(meta["factor_depth"], dtype=np.float64).ravel()
            if factor.size != 1 or not np.isfinite(factor[0]) or factor[0] <= 0:
                raise DepthFormatError(
                    f"factor_depth must be one positive number (depth counts per metre), got {factor.tolist()}",
                    meta_path,
                )
            cls = np.asarray(meta["cls_indexes"]).astype(np.int64).ravel()
            poses = np.asarray(meta["poses"], dtype=np.float64)
            if poses.ndim == 2:
                poses = poses[:, :, None]
            if poses.shape[:2] != (3, 4):
                raise PoseError(f"poses must be 3x4xN, got shape {poses.shape}", meta_path)
            if poses.shape[2] != len(cls):
                raise PoseError(
                    f"{poses.shape[2]} poses for {len(cls)} classes in cls_indexes; they must match", meta_path
                )
            bad = [int(c) for c in cls if not 1 <= c <= len(classes)]
            if bad:
                raise LayoutError(f"cls_indexes {bad} outside 1..{len(classes)} of image_sets/classes.txt", meta_path)
            objects = [_SrcObject(int(c), _pose34(poses[:, :, i], meta_path)) for i, c in enumerate(cls)]
            K = np.asarray(meta["intrinsic_matrix"], dtype=np.float64)
            if K.shape != (3, 3):
                raise LayoutError(f"intrinsic_matrix must be 3x3, got {K.shape}", meta_path)
            w2c = None
            if "rotation_translation_matrix" in meta and np.shape(meta["rotation_translation_matrix"]) == (3, 4):
                w2c = _pose34(np.asarray(meta["rotation_translation_matrix"], dtype=np.float64), meta_path)
            depth_path = vdir / f"{name}-depth.png"
            if not depth_path.is_file():
                raise LayoutError("depth image of the frame is missing", depth_path)
            rgb, label = vdir / f"{name}-color.png", vdir / f"{name}-label.png"
            frames.append(
                _SrcFrame(
                    scene=str(video),
                    frame=name,
                    K=K,
                    depth_path=depth_path,
                    depth_unit_m=1.0 / float(factor[0]),
                    objects=objects,
                    meta_path=meta_path,
                    rgb_path=rgb if rgb.is_file() else None,
                    label_path=label if label.is_file() else None,
                    world_to_cam=w2c,
                )  # fmt: skip
            )
    if not frames:
        raise LayoutError(f"no frames (<frame>-meta.mat) found in videos {list(videos)}", data)
    return frames


# ---------------------------------------------------------------------- BOP reading
def _bop_frames(src: Path, split: str, scenes: Sequence[str | int] | None) -> list[_SrcFrame]:
    sroot = src / split
    if not sroot.is_dir():
        raise LayoutError(f"split folder {split!r} does not exist", sroot)
    if scenes is None:
        names = sorted(p.name for p in sroot.iterdir() if p.is_dir())
    else:
        names = [f"{int(s):06d}" if str(s).isdigit() else str(s) for s in scenes]
    frames: list[_SrcFrame] = []
    for scene in names:
        sdir = sroot / scene
        if not sdir.is_dir():
            raise LayoutError(f"scene {scene!r} does not exist", sdir)
        cam_path, gt_path = sdir / "scene_camera.json", sdir / "scene_gt.json"
        cams, gts = read_json_object(cam_path, LayoutError), read_json_object(gt_path, LayoutError)
        bad_ids = [k for k in cams if not str(k).isdigit()]
        if bad_ids:
            raise LayoutError(f"image ids {bad_ids} are not integers", cam_path)
        for key in sorted(cams, key=int):
            cam = cams[key]
            im = int(key)
            try:
                K = np.asarray(cam["cam_K"], dtype=np.float64).reshape(3, 3)
                scale = float(cam["depth_scale"])
            except (KeyError, TypeError, ValueError) as e:
                raise LayoutError(f"image {key}: needs cam_K (9 numbers) and depth_scale ({e})", cam_path) from None
            if not math.isfinite(scale) or scale <= 0:
                raise DepthFormatError(f"image {key}: depth_scale must be > 0 (mm per count), got {scale}", cam_path)
            if key not in gts:
                raise LayoutError(f"image {key} of scene_camera.json has no entry", gt_path)
            objects = []
            for i, g in enumerate(gts[key]):
                try:
                    R = np.asarray(g["cam_R_m2c"], dtype=np.float64).reshape(3, 3)
                    t = np.asarray(g["cam_t_m2c"], dtype=np.float64).reshape(3) * 0.001
                    obj_id = int(g["obj_id"])
                except (KeyError, TypeError, ValueError) as e:
                    raise PoseError(
                        f"image {key}, object {i}: needs cam_R_m2c (9), cam_t_m2c (3, mm), obj_id ({e})", gt_path
                    ) from None
                objects.append(_SrcObject(obj_id, _pose34(np.concatenate([R, t[:, None]], 1), gt_path)))
            w2c = None
            if "cam_R_w2c" in cam and "cam_t_w2c" in cam:
                Rw = np.asarray(cam["cam_R_w2c"], dtype=np.float64).reshape(3, 3)
                tw = np.asarray(cam["cam_t_w2c"], dtype=np.float64).reshape(3, 1) * 0.001
                w2c = _pose34(np.concatenate([Rw, tw], 1), cam_path)
            depth_path = sdir / "depth" / f"{im:06d}.png"
            if not depth_path.is_file():
                raise LayoutError(f"depth image of image {key} is missing", depth_path)
            rgb = next((p for p in (sdir / "rgb" / f"{im:06d}{ext}" for ext in (".png", ".jpg")) if p.is_file()), None)
            masks = [(o.class_id, sdir / "mask_visib" / f"{im:06d}_{i:06d}.png") for i, o in enumerate(objects)]
            have = [p.is_file() for _, p in masks]
            if any(have) and not all(have):
                missing = next(p for (_, p), h in zip(masks, have) if not h)
                raise LayoutError("mask_visib of some objects of the image exist, this one is missing", missing)
            frames.append(
                _SrcFrame(
                    scene=scene,
                    frame=f"{im:06d}",
                    K=K,
                    depth_path=depth_path,
                    depth_unit_m=scale * 0.001,
                    objects=objects,
                    meta_path=gt_path,
                    rgb_path=rgb,
                    mask_paths=masks if all(have) else [],
                    world_to_cam=w2c,
                )  # fmt: skip
            )
    if not frames:
        raise LayoutError(f"no images found in scenes {names}", sroot)
    return frames


# ---------------------------------------------------------------------- common helpers
def _pose34(Rt: np.ndarray, source: Path) -> np.ndarray:
    """3x4 [R|t] -> 4x4, refusing non-finite values and non-rotations (names `source`)."""
    from sim2real_kit.camera import check_pose

    pose = np.eye(4)
    pose[:3] = Rt
    return check_pose(pose, source)


def _int_name(name: str, source: Path) -> int:
    if not name.isdigit():
        raise LayoutError(f"{name!r} is not numeric; BOP needs integer scene and image ids", source)
    return int(name)


def _load_mesh(model: _Model) -> tuple[np.ndarray, np.ndarray]:
    """(vertices [V, 3] float64 metres, triangles [F, 3] int64) of a model file; errors name the file."""
    import open3d as o3d

    if not model.path.is_file():
        raise LayoutError(f"mesh of class {model.name!r} is missing", model.path)
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        mesh = o3d.io.read_triangle_mesh(str(model.path))
    verts, tris = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.triangles, dtype=np.int64)
    if len(tris) == 0 or len(verts) == 0:
        raise LayoutError(f"mesh of class {model.name!r} has no faces (or could not be read)", model.path)
    if not np.isfinite(verts).all():
        raise LayoutError(f"mesh of class {model.name!r} has non-finite vertices", model.path)
    return verts * model.scale, tris


def _read_label(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except OSError as e:
        raise LayoutError(f"cannot decode label image: {e}", path) from None
    if arr.ndim != 2:
        raise LayoutError(f"label image must be single-channel, got shape {arr.shape}", path)
    return arr.astype(np.int64)


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as e:
        raise LayoutError(f"cannot decode colour image: {e}", path) from None


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except OSError as e:
        raise DepthFormatError(f"cannot open depth PNG: {e}", path) from None


def _rot_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """Angle between two rotations, degrees (chordal formula: accurate for tiny angles)."""
    chord = np.linalg.norm(Ra - Rb) / (2.0 * math.sqrt(2.0))
    return math.degrees(2.0 * math.asin(min(1.0, chord)))


def _pose_gap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(rotation deg, camera-centre distance mm) between two 4x4 cam-to-world poses."""
    return _rot_deg(a[:3, :3], b[:3, :3]), float(np.linalg.norm(a[:3, 3] - b[:3, 3]) * 1000.0)


def render_objects(
    meshes: dict[int, tuple[np.ndarray, np.ndarray]],
    class_ids: Sequence[int],
    poses_obj_in_cam: Sequence[np.ndarray],
    camera: Camera,
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast posed objects: (CAD depth [H, W] float32 metres, 0 = no mesh; class id [H, W] int32, 0 = none).

    `meshes`: {class id: (vertices [V, 3] metres, triangles [F, 3])}; `poses_obj_in_cam`: one 4x4
    object-in-camera pose (metres) per entry of `class_ids`. The meshes are placed in the camera frame
    and rendered with the identity camera pose by `data.render.SceneRenderer`."""
    from sim2real_kit.data.render import SceneRenderer

    placed = {}
    for i, (cid, pose) in enumerate(zip(class_ids, poses_obj_in_cam, strict=True)):
        verts, tris = meshes[cid]
        pose = np.asarray(pose, dtype=np.float64)
        placed[i + 1] = (verts @ pose[:3, :3].T + pose[:3, 3], tris)
    result = SceneRenderer(placed).render(camera, np.eye(4))
    class_of = np.array([0, *class_ids], dtype=np.int32)
    return result.depth, class_of[result.instance]


# ---------------------------------------------------------------------- poses, splits
def _camera_poses(
    frames: list[_SrcFrame], names: dict[int, str]
) -> tuple[dict[FrameRef, np.ndarray], list[dict], dict]:
    """Cam-to-world pose per frame (world = reference object of each scene), per-frame disagreement
    rows and a summary. Objects are identified by (class id, occurrence within the frame)."""
    poses: dict[FrameRef, np.ndarray] = {}
    rows: list[dict] = []
    per_object: dict[str, list[tuple[float, float]]] = {}
    references: dict[str, str] = {}
    extr: list[tuple[float, float]] = []
    by_scene: dict[str, list[_SrcFrame]] = {}
    for f in frames:
        by_scene.setdefault(f.scene, []).append(f)
    for scene, scene_frames in by_scene.items():
        world_of: dict[tuple[int, int], np.ndarray] = {}  # object key -> object-to-world
        first_c2w, first_w2c = None, None
        for f in scene_frames:
            keys, seen = [], {}
            for o in f.objects:
                seen[o.class_id] = seen.get(o.class_id, -1) + 1
                keys.append((o.class_id, seen[o.class_id]))
            if not f.objects:
                raise PoseError("frame has no object poses; the camera cannot be placed", f.meta_path)
            if not world_of:
                world_of[keys[0]] = np.eye(4)
                references[scene] = _object_name(keys[0], names)
            known = [i for i, k in enumerate(keys) if k in world_of]
            if not known:
                raise PoseError(
                    f"frame {f.frame} shares no object with earlier frames of scene {scene}; camera cannot be placed",
                    f.meta_path,
                )
            ordered = sorted(known, key=lambda i: list(world_of).index(keys[i]))
            estimates = {i: world_of[keys[i]] @ np.linalg.inv(f.objects[i].pose) for i in ordered}
            c2w = estimates[ordered[0]]
            poses[f.ref] = c2w
            worst = (0.0, 0.0)
            for i in ordered[1:]:
                gap = _pose_gap(c2w, estimates[i])
                per_object.setdefault(_object_name(keys[i], names), []).append(gap)
                worst = (max(worst[0], gap[0]), max(worst[1], gap[1]))
            for i, k in enumerate(keys):
                if k not in world_of:
                    world_of[k] = c2w @ f.objects[i].pose
            row = {"pose_gap_deg": worst[0], "pose_gap_mm": worst[1], "objects_compared": len(ordered) - 1}
            if f.world_to_cam is not None:  # source extrinsics: compare camera motion since the scene's first frame
                if first_w2c is None:
                    first_c2w, first_w2c = c2w, f.world_to_cam
                ours = np.linalg.inv(first_c2w) @ c2w
                theirs = first_w2c @ np.linalg.inv(f.world_to_cam)
                extr.append(_pose_gap(ours, theirs))
            rows.append(row)
    summary: dict = {
        "world": "per scene, the frame of its reference object (first object of the scene's first frame), metres",
        "reference_object": references,
        "method": "each other object k gives cam-to-world = T_world_k . inv(T_cam_k) with T_world_k fixed where k "
        "is first seen; disagreement = rotation angle and camera-centre distance to the reference estimate",
    }
    gaps = [g for v in per_object.values() for g in v]
    if gaps:
        summary.update(
            max_rotation_deg=max(g[0] for g in gaps),
            max_translation_mm=max(g[1] for g in gaps),
            median_rotation_deg=float(np.median([g[0] for g in gaps])),
            median_translation_mm=float(np.median([g[1] for g in gaps])),
            per_object={
                k: {
                    "max_rotation_deg": max(g[0] for g in v),
                    "max_translation_mm": max(g[1] for g in v),
                    "frames": len(v),
                }
                for k, v in per_object.items()
            },  # fmt: skip
        )
    else:
        summary["note"] = "no frame shows two objects: consistency not measurable"
    if extr:
        summary["source_extrinsics"] = {
            "what": "camera motion since each scene's first frame, ours vs the source's world-to-camera matrices",
            "max_rotation_deg": max(g[0] for g in extr),
            "max_translation_mm": max(g[1] for g in extr),
        }
    return poses, rows, summary


def _object_name(key: tuple[int, int], names: dict[int, str]) -> str:
    """Class name, with `#k` for the k-th extra occurrence of a class in a frame."""
    name = names.get(key[0], str(key[0]))
    return name if key[1] == 0 else f"{name}#{key[1]}"


def _split(frames: list[_SrcFrame], poses: dict[FrameRef, np.ndarray], val_fraction: float):
    """(train refs, val refs, description). Several scenes: the last scenes are held out whole;
    one scene: its last frames (the nearest-train-frame gap is reported: neighbouring frames of a
    video are near-duplicates)."""
    refs = [f.ref for f in frames]
    if len(refs) < 2:
        raise LayoutError("need at least 2 frames to make non-empty train and val splits", frames[0].meta_path)
    scenes = list(dict.fromkeys(r.scene for r in refs))
    if len(scenes) >= 2:
        n_val = min(len(scenes) - 1, max(1, round(len(scenes) * val_fraction)))
        val_scenes = set(scenes[-n_val:])
        val = [r for r in refs if r.scene in val_scenes]
        train = [r for r in refs if r.scene not in val_scenes]
        return (
            train,
            val,
            {"rule": f"last {n_val} of {len(scenes)} scenes held out whole", "val_scenes": sorted(val_scenes)},
        )
    n_val = min(len(refs) - 1, max(1, round(len(refs) * val_fraction)))
    train, val = refs[:-n_val], refs[-n_val:]
    gaps = [min((_pose_gap(poses[v], poses[t]) for t in train), key=lambda g: g[1]) for v in val]
    desc = {
        "rule": f"one scene: its last {n_val} of {len(refs)} frames are val",
        "val_nearest_train_frame": {"max_translation_mm": max(g[1] for g in gaps), "max_rotation_deg": max(g[0] for g in gaps)},
    }  # fmt: skip
    return train, val, desc


# ---------------------------------------------------------------------- building the layout
@contextlib.contextmanager
def _staging(out: Path, overwrite: bool):
    """Yield an empty hidden sibling folder of `out`; on success it replaces `out`, on error it is removed."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LayoutError("output path exists and is not a folder", out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise LayoutError("output folder is not empty; choose another --out, delete it, or pass overwrite", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # not mkdtemp: the folder becomes `out`, so it keeps the umask's permissions
    try:
        yield tmp
        if out.exists():
            trash = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _build_layout(
    frames: list[_SrcFrame],
    models: dict[int, _Model],
    out: str | Path,
    source: dict,
    class_note: str,
    progress: bool,
    val_fraction: float,
    overwrite: bool,
) -> DepthLayout:
    from tqdm.auto import tqdm

    out = Path(out)
    # 1. one camera for the layout (intrinsics and size of every frame must agree)
    width, height = _image_size(frames[0].depth_path)
    K0 = frames[0].K
    for f in frames:
        if not np.allclose(f.K, K0, rtol=0, atol=_K_ATOL):
            raise LayoutError(
                f"intrinsics {f.K[[0, 1, 0, 1], [0, 1, 2, 2]].tolist()} differ from the first frame's "
                f"{K0[[0, 1, 0, 1], [0, 1, 2, 2]].tolist()}; a layout holds one camera: import these frames "
                "separately (videos= / scenes=)",
                f.meta_path,
            )
    camera = camera_from_opencv_K(K0, width, height)
    unit = min(f.depth_unit_m for f in frames)  # finest unit of the source: nothing is lost
    # 2. meshes of every class in view (missing or empty ones fail before anything is written)
    used = sorted({o.class_id for f in frames for o in f.objects})
    for cid in used:
        if cid not in models:
            raise LayoutError(f"no model for class {cid}", frames[0].meta_path)
    meshes = {cid: _load_mesh(models[cid]) for cid in used}
    # 3. camera poses from the static objects, and the splits
    poses, pose_rows, pose_summary = _camera_poses(frames, {c: m.name for c, m in models.items()})
    train, val, split_desc = _split(frames, poses, val_fraction)
    notes = ["CAD depth holds the object meshes only: 0 (no CAD) on table, walls and unmodelled objects, as in LASA."]
    if "val_nearest_train_frame" in split_desc:
        g = split_desc["val_nearest_train_frame"]
        notes.append(
            f"val frames lie within {g['max_translation_mm']:.2f} mm / {g['max_rotation_deg']:.3f} deg of a train "
            "frame of the same video: a held-out frame holds out (almost) nothing; treat val as a smoke test, "
            "not a generalisation measure."
        )
    instance_source = (
        "label image"
        if all(f.label_path for f in frames)
        else "mask_visib"
        if all(f.mask_paths for f in frames)
        else "rendered CAD (per frame where the source has no segmentation)"
    )
    meta = {
        "source": {**source, "frames": len(frames)},
        "intrinsics_convention": "source K has OpenCV pixel centres (integer u, v); kit camera cx = cx_src + 0.5, "
        "cy = cy_src + 0.5",
        "source_K": K0.tolist(),
        "classes": {int(c): models[c].name for c in used},
        "instance_ids": f"_inst.png holds the class id ({class_note}) per pixel, 0 = background; from the "
        f"{instance_source}",
        "cad_depth": "open3d ray casting (sim2real_kit.data.render) of each object's mesh at its source pose",
        "pose_consistency": _plain(pose_summary, sig=6),
        "splits": _plain({**split_desc, "train": len(train), "val": len(val)}, sig=6),
        "notes": notes,
    }
    meta = _plain(meta)
    # 4. render and write every frame into a staging folder, renamed onto `out` at the end
    with _staging(out, overwrite) as tmp:
        lay = DepthLayout.create(tmp, camera, depth_unit_m=unit, meta=meta)
        split_of = {r: "train" for r in train} | {r: "val" for r in val}
        rows = []
        for f, prow in tqdm(list(zip(frames, pose_rows)), desc=f"import {source['kind']}", disable=not progress):
            real = read_depth_png(f.depth_path, f.depth_unit_m)
            if real.shape != (height, width):
                raise DepthFormatError(
                    f"depth is {real.shape[1]}x{real.shape[0]}, the dataset's frames are {width}x{height}", f.depth_path
                )
            cad, rendered_ids = render_objects(
                meshes, [o.class_id for o in f.objects], [o.pose for o in f.objects], camera
            )
            label = _frame_labels(f, (height, width))
            instance = rendered_ids if label is None else label
            rgb = _read_rgb(f.rgb_path) if f.rgb_path is not None else None
            if rgb is not None and rgb.shape[:2] != (height, width):
                raise LayoutError(
                    f"colour image is {rgb.shape[1]}x{rgb.shape[0]}, depth is {width}x{height}", f.rgb_path
                )
            lay.write_frame(f.ref, cad, real, poses[f.ref], rgb=rgb, instance=instance)
            rows.append({"scene": f.scene, "frame": f.frame, "split": split_of[f.ref],
                         **_agreement(cad, real, instance, rendered_ids), **prow})  # fmt: skip
        lay.write_split("train", train)
        lay.write_split("val", val)
        _write_report(tmp / REPORT_NAME, rows)
        meta_final = dict(lay.meta)
        meta_final["agreement"] = _plain(_summarise(rows), sig=6)
        atomic_write_text(tmp / "dataset.yaml", yaml.safe_dump(meta_final, sort_keys=False))
    return DepthLayout(out)


def _frame_labels(f: _SrcFrame, shape: tuple[int, int]) -> np.ndarray | None:
    """Class id per pixel from the source's segmentation, or None when it has none."""
    from PIL import Image

    if f.label_path is not None:
        label = _read_label(f.label_path)
        if label.shape != shape:
            raise LayoutError(f"label image is {label.shape[::-1]}, depth is {shape[::-1]} (W x H)", f.label_path)
        stray = sorted(set(np.unique(label).tolist()) - {0} - {o.class_id for o in f.objects})
        if stray:
            raise LayoutError(f"label ids {stray} have no pose in the frame's cls_indexes", f.label_path)
        return label.astype(np.int32)
    if f.mask_paths:
        label = np.zeros(shape, np.int32)
        for obj_id, path in f.mask_paths:
            try:
                with Image.open(path) as im:
                    mask = np.asarray(im)
            except OSError as e:
                raise LayoutError(f"cannot decode mask: {e}", path) from None
            if mask.shape != shape:
                raise LayoutError(f"mask is {mask.shape[::-1]}, depth is {shape[::-1]} (W x H)", path)
            label[mask > 0] = obj_id
        return label
    return None


def _agreement(cad: np.ndarray, real: np.ndarray, label: np.ndarray, rendered: np.ndarray) -> dict:
    """CAD vs real depth on labelled object pixels with both depths (mm), and the share of object
    pixels (union of label and rendering) whose rendered class equals the label."""
    m = (label > 0) & (cad > 0) & (real > 0)
    err = np.abs(cad[m].astype(np.float64) - real[m]) * 1000.0
    union = (label > 0) | (rendered > 0)
    return {
        "object_px": int(m.sum()),
        "median_abs_mm": float(np.median(err)) if err.size else float("nan"),
        "p90_abs_mm": float(np.percentile(err, 90)) if err.size else float("nan"),
        "label_match": float((label[union] == rendered[union]).mean()) if union.any() else float("nan"),
    }


def _summarise(rows: list[dict]) -> dict:
    def stats(key):
        v = np.array([r[key] for r in rows], dtype=np.float64)
        v = v[np.isfinite(v)]
        return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())} if v.size else None

    return {
        "what": f"per frame, CAD vs real |depth| on labelled object pixels (mm) and label_match; per-frame rows in "
        f"{REPORT_NAME}",
        "median_abs_mm": stats("median_abs_mm"),
        "p90_abs_mm": stats("p90_abs_mm"),
        "label_match": stats("label_match"),
    }


def _write_report(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def _plain(obj, sig: int | None = None):
    """numpy scalars / tuples -> plain Python for safe YAML; floats rounded to `sig` significant
    digits when given (measured figures: keeps 1e-13 mm as such, not as 0)."""
    if isinstance(obj, dict):
        return {(int(k) if isinstance(k, np.integer) else k): _plain(v, sig) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, sig) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and sig is not None:
        return float(f"{obj:.{sig}g}")
    return obj


def read_report(root: str | Path) -> list[dict]:
    """Rows of a dataset's `import_report.csv` (numbers as float)."""
    path = Path(root) / REPORT_NAME
    if not path.is_file():
        raise LayoutError("import report is missing (the dataset was not made by data.convert)", path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k, v in r.items():
            if k not in ("scene", "frame", "split"):
                r[k] = float(v)
    return rows


__all__ = ["import_ycbv", "import_bop", "export_bop", "camera_from_opencv_K", "render_objects", "read_report"]
