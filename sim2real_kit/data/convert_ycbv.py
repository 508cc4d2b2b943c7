"""The YCB-Video reader of the real-data importers (`convert.import_ycbv`, `convert.export_bop`).

YCB-Video keeps `data/<video>/<frame>-{depth,color,label}.png` and `<frame>-meta.mat` (intrinsics,
depth factor, class indices, object-in-camera poses, optionally the world-to-camera matrix),
`models/<class>/textured.obj` (metres) and `image_sets/classes.txt` (class index = 1-based line).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sim2real_kit.data.convert_source import SrcFrame, SrcModel, SrcObject, pose34
from sim2real_kit.errors import DepthFormatError, LayoutError, PoseError

_META_KEYS = ["intrinsic_matrix", "factor_depth", "cls_indexes", "poses", "rotation_translation_matrix"]
_REQUIRED_META_KEYS = ("intrinsic_matrix", "factor_depth", "cls_indexes", "poses")


def ycbv_models(src: Path) -> tuple[list[str], dict[int, SrcModel]]:
    """Class names of image_sets/classes.txt and {class index: model} (path may not exist)."""
    if not src.is_dir():
        raise LayoutError("YCB-Video source folder does not exist", src)
    cls_file = src / "image_sets" / "classes.txt"
    if not cls_file.is_file():
        raise LayoutError("class list is missing (YCB-Video has image_sets/classes.txt)", cls_file)
    classes = [ln.strip() for ln in cls_file.read_text().splitlines() if ln.strip()]
    if not classes:
        raise LayoutError("class list is empty", cls_file)
    models = {i + 1: SrcModel(name, src / "models" / name / "textured.obj", 1.0) for i, name in enumerate(classes)}
    return classes, models


def ycbv_frames(src: Path, videos: Sequence[str] | None, classes: list[str], progress: bool = False) -> list[SrcFrame]:
    """Every frame (`<frame>-meta.mat`) of the given videos (default: all under `data/`), in order."""
    from tqdm.auto import tqdm

    data = src / "data"
    if not data.is_dir():
        raise LayoutError("folder data/ is missing (YCB-Video frames live in data/<video>/)", data)
    if videos is None:
        videos = sorted(p.name for p in data.iterdir() if p.is_dir())
    frames: list[SrcFrame] = []
    for video in tqdm(videos, desc="read ycbv meta files", unit="video", disable=not progress):
        vdir = data / str(video)
        if not vdir.is_dir():
            raise LayoutError(f"video {video!r} does not exist", vdir)
        for meta_path in sorted(vdir.glob("*-meta.mat")):
            frames.append(_ycbv_frame(meta_path, str(video), classes))
    if not frames:
        raise LayoutError(f"no frames (<frame>-meta.mat) found in videos {list(videos)}", data)
    return frames


def _ycbv_frame(meta_path: Path, video: str, classes: list[str]) -> SrcFrame:
    """One frame of a video from its meta file; the depth image must exist, colour and label may."""
    vdir = meta_path.parent
    name = meta_path.name[: -len("-meta.mat")]
    meta = _read_meta(meta_path)
    factor = np.asarray(meta["factor_depth"], dtype=np.float64).ravel()
    if factor.size != 1 or not np.isfinite(factor[0]) or factor[0] <= 0:
        raise DepthFormatError(
            f"factor_depth must be one positive number (depth counts per metre), got {factor.tolist()}",
            meta_path,
        )
    objects = _ycbv_objects(meta, meta_path, len(classes))
    K = np.asarray(meta["intrinsic_matrix"], dtype=np.float64)
    if K.shape != (3, 3):
        raise LayoutError(f"intrinsic_matrix must be 3x3, got {K.shape}", meta_path)
    w2c = None
    if "rotation_translation_matrix" in meta and np.shape(meta["rotation_translation_matrix"]) == (3, 4):
        w2c = pose34(np.asarray(meta["rotation_translation_matrix"], dtype=np.float64), meta_path)
    depth_path = vdir / f"{name}-depth.png"
    if not depth_path.is_file():
        raise LayoutError("depth image of the frame is missing", depth_path)
    rgb, label = vdir / f"{name}-color.png", vdir / f"{name}-label.png"
    return SrcFrame(
        scene=video,
        frame=name,
        K=K,
        depth_path=depth_path,
        depth_unit_m=1.0 / float(factor[0]),
        objects=objects,
        meta_path=meta_path,
        rgb_path=rgb if rgb.is_file() else None,
        label_path=label if label.is_file() else None,
        world_to_cam=w2c,
    )


def _read_meta(meta_path: Path) -> dict:
    """The variables of a `-meta.mat` file that the importer uses; the required ones must be there."""
    import scipy.io as sio

    try:
        meta = sio.loadmat(meta_path, variable_names=list(_META_KEYS))
    except Exception as e:  # scipy raises several types on corrupt files
        raise LayoutError(f"cannot read MATLAB meta file: {e}", meta_path) from None
    for key in _REQUIRED_META_KEYS:
        if key not in meta:
            raise LayoutError(f"meta file lacks {key!r}", meta_path)
    return meta


def _ycbv_objects(meta: dict, meta_path: Path, n_classes: int) -> list[SrcObject]:
    """The posed objects of a meta file: one 3x4 pose per class index of `cls_indexes`."""
    cls = np.asarray(meta["cls_indexes"]).astype(np.int64).ravel()
    poses = np.asarray(meta["poses"], dtype=np.float64)
    if poses.ndim == 2:
        poses = poses[:, :, None]
    if poses.shape[:2] != (3, 4):
        raise PoseError(f"poses must be 3x4xN, got shape {poses.shape}", meta_path)
    if poses.shape[2] != len(cls):
        raise PoseError(f"{poses.shape[2]} poses for {len(cls)} classes in cls_indexes; they must match", meta_path)
    bad = [int(c) for c in cls if not 1 <= c <= n_classes]
    if bad:
        raise LayoutError(f"cls_indexes {bad} outside 1..{n_classes} of image_sets/classes.txt", meta_path)
    return [SrcObject(int(c), pose34(poses[:, :, i], meta_path)) for i, c in enumerate(cls)]


__all__ = ["ycbv_frames", "ycbv_models"]
