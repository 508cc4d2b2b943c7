"""The BOP reader of the real-data importers (`convert.import_bop`), and `export_bop`, its writer.

BOP keeps `<split>/<scene>/scene_camera.json` (cam_K, depth_scale in mm per count, optionally
cam_R_w2c / cam_t_w2c), `scene_gt.json` (cam_R_m2c, cam_t_m2c in mm, obj_id per object),
`depth/<image>.png`, optional `rgb/<image>.{png,jpg}` and `mask_visib/<image>_<object>.png`, and
`<models_dir>/obj_<obj_id>.ply` in mm. Scene and image ids are integers (6-digit folder / file names).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sim2real_kit.data.convert_build import staging
from sim2real_kit.data.convert_source import (
    SrcFrame,
    SrcModel,
    SrcObject,
    frames_by_scene,
    int_name,
    load_mesh,
    pose34,
    read_label,
)
from sim2real_kit.data.convert_ycbv import ycbv_frames, ycbv_models
from sim2real_kit.errors import DepthFormatError, LayoutError, PoseError
from sim2real_kit.io import read_json_object


# ---------------------------------------------------------------------- reading
def bop_frames(src: Path, split: str, scenes: Sequence[str | int] | None) -> list[SrcFrame]:
    """Every image of the given scenes (folder names or ids; default: all of the split), in order."""
    sroot = src / split
    if not sroot.is_dir():
        raise LayoutError(f"split folder {split!r} does not exist", sroot)
    if scenes is None:
        names = sorted(p.name for p in sroot.iterdir() if p.is_dir())
    else:
        names = [f"{int(s):06d}" if str(s).isdigit() else str(s) for s in scenes]
    frames: list[SrcFrame] = []
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
            frames.append(_bop_image(sdir, scene, key, cams[key], gts, cam_path, gt_path))
    if not frames:
        raise LayoutError(f"no images found in scenes {names}", sroot)
    return frames


def bop_models(src: Path, models_dir: str, obj_ids: Sequence[int]) -> dict[int, SrcModel]:
    """{obj_id: model} of `<src>/<models_dir>/obj_<obj_id>.ply` (mm); every file must exist."""
    models = {}
    for obj_id in obj_ids:
        path = src / models_dir / f"obj_{obj_id:06d}.ply"
        if not path.is_file():
            raise LayoutError(f"model of obj_id {obj_id} is missing (BOP models are obj_XXXXXX.ply in mm)", path)
        models[obj_id] = SrcModel(f"obj_{obj_id:06d}", path, 0.001)
    return models


def _bop_image(sdir: Path, scene: str, key: str, cam: dict, gts: dict, cam_path: Path, gt_path: Path) -> SrcFrame:
    """Image `key` of a scene folder: its camera entry, its objects of scene_gt.json and its files."""
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
    objects = _bop_objects(gts[key], key, gt_path)
    w2c = None
    if "cam_R_w2c" in cam and "cam_t_w2c" in cam:
        Rw = np.asarray(cam["cam_R_w2c"], dtype=np.float64).reshape(3, 3)
        tw = np.asarray(cam["cam_t_w2c"], dtype=np.float64).reshape(3, 1) * 0.001
        w2c = pose34(np.concatenate([Rw, tw], 1), cam_path)
    depth_path = sdir / "depth" / f"{im:06d}.png"
    if not depth_path.is_file():
        raise LayoutError(f"depth image of image {key} is missing", depth_path)
    rgb = next((p for p in (sdir / "rgb" / f"{im:06d}{ext}" for ext in (".png", ".jpg")) if p.is_file()), None)
    masks = [(o.class_id, sdir / "mask_visib" / f"{im:06d}_{i:06d}.png") for i, o in enumerate(objects)]
    have = [p.is_file() for _, p in masks]
    if any(have) and not all(have):
        missing = next(p for (_, p), h in zip(masks, have) if not h)
        raise LayoutError("mask_visib of some objects of the image exist, this one is missing", missing)
    return SrcFrame(
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
    )


def _bop_objects(entries: list, key: str, gt_path: Path) -> list[SrcObject]:
    """The posed objects of one image's scene_gt.json entries (translations mm -> metres)."""
    objects = []
    for i, g in enumerate(entries):
        try:
            R = np.asarray(g["cam_R_m2c"], dtype=np.float64).reshape(3, 3)
            t = np.asarray(g["cam_t_m2c"], dtype=np.float64).reshape(3) * 0.001
            obj_id = int(g["obj_id"])
        except (KeyError, TypeError, ValueError) as e:
            raise PoseError(
                f"image {key}, object {i}: needs cam_R_m2c (9), cam_t_m2c (3, mm), obj_id ({e})", gt_path
            ) from None
        objects.append(SrcObject(obj_id, pose34(np.concatenate([R, t[:, None]], 1), gt_path)))
    return objects


# ---------------------------------------------------------------------- writing
def export_bop(ycbv_src: str | Path, out: str | Path, videos: Sequence[str] | None = None, split: str = "test") -> Path:
    """Write a BOP-format copy of a YCB-Video folder (depth copied byte for byte, poses in mm,
    meshes as `models/obj_<class id>.ply` in mm, label image as `mask_visib`, extrinsics as
    cam_R_w2c / cam_t_w2c). Scene = int(video), image id = int(frame). Built atomically; returns `out`."""
    ycbv_src, out = Path(ycbv_src), Path(out)
    classes, models = ycbv_models(ycbv_src)
    frames = ycbv_frames(ycbv_src, videos, classes)
    with staging(out, overwrite=False) as tmp:
        for cid in sorted({o.class_id for f in frames for o in f.objects}):
            _write_bop_model(models[cid], tmp / "models" / f"obj_{cid:06d}.ply")
        for scene, scene_frames in frames_by_scene(frames).items():
            _write_bop_scene(tmp / split / f"{int_name(scene, scene_frames[0].meta_path):06d}", scene_frames)
    return out


def _write_bop_model(model: SrcModel, path: Path) -> None:
    """The model's mesh in mm as a .ply file."""
    import open3d as o3d

    verts, tris = load_mesh(model)
    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(verts * 1000.0), o3d.utility.Vector3iVector(tris.astype(np.int32))
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not o3d.io.write_triangle_mesh(str(path), mesh):
        raise LayoutError("open3d could not write the mesh", path)


def _write_bop_scene(sdir: Path, frames: list[SrcFrame]) -> None:
    """One scene folder: scene_camera.json, scene_gt.json, and depth / rgb / mask_visib per image."""
    from PIL import Image

    cams, gts = {}, {}
    for f in frames:
        im = int_name(f.frame, f.meta_path)
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
            }
            for o in f.objects
        ]
        (sdir / "depth").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.depth_path, sdir / "depth" / f"{im:06d}.png")
        if f.rgb_path is not None:
            (sdir / "rgb").mkdir(exist_ok=True)
            shutil.copyfile(f.rgb_path, sdir / "rgb" / f"{im:06d}{f.rgb_path.suffix}")
        if f.label_path is not None:
            label = read_label(f.label_path)
            (sdir / "mask_visib").mkdir(exist_ok=True)
            for i, o in enumerate(f.objects):
                mask = ((label == o.class_id) * 255).astype(np.uint8)
                Image.fromarray(mask).save(sdir / "mask_visib" / f"{im:06d}_{i:06d}.png")
    (sdir / "scene_camera.json").write_text(json.dumps(cams, indent=1))
    (sdir / "scene_gt.json").write_text(json.dumps(gts, indent=1))


__all__ = ["bop_frames", "bop_models", "export_bop"]
