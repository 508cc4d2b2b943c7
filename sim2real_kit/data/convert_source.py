"""What the real-data importers (`convert.py`) read, independent of the source format.

A source (YCB-Video, BOP) is read into `SrcFrame`s (one per image: intrinsics, depth file and unit,
posed objects, optional colour / label / masks, optional source extrinsics) and `SrcModel`s (one
mesh file per class, with its unit); the file readers here turn their files into arrays and name
the file in every error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim2real_kit.data.layout import FrameRef
from sim2real_kit.errors import DepthFormatError, LayoutError


@dataclass
class SrcObject:
    """One posed object of a source frame."""

    class_id: int  # YCB class index (1-based into classes.txt) or BOP obj_id
    pose: np.ndarray  # [4, 4] object-in-camera, metres


@dataclass
class SrcFrame:
    """One source frame, independent of the source format."""

    scene: str
    frame: str
    K: np.ndarray  # [3, 3] OpenCV convention (pixel centres at integer u, v)
    depth_path: Path
    depth_unit_m: float  # metres per count of the source depth PNG
    objects: list[SrcObject]
    meta_path: Path  # file holding intrinsics / poses (named in errors)
    rgb_path: Path | None = None
    label_path: Path | None = None  # YCB: class id per pixel
    mask_paths: list[tuple[int, Path]] = field(default_factory=list)  # BOP: (obj_id, mask_visib)
    world_to_cam: np.ndarray | None = None  # [4, 4] the source's own extrinsics (cross-check only)

    @property
    def ref(self) -> FrameRef:
        return FrameRef(self.scene, self.frame)


@dataclass
class SrcModel:
    """The mesh file of one class."""

    name: str
    path: Path
    scale: float  # file units -> metres


def frames_by_scene(frames: list[SrcFrame]) -> dict[str, list[SrcFrame]]:
    """{scene: its frames}, scenes and frames in their order in `frames`."""
    by_scene: dict[str, list[SrcFrame]] = {}
    for f in frames:
        by_scene.setdefault(f.scene, []).append(f)
    return by_scene


ROUNDED_ROTATION_TOL = 1e-2  # |RR^T - I| of a rotation stored with few digits (BOP's LM-O: up to 2e-3)


def pose34(Rt: np.ndarray, source: Path) -> np.ndarray:
    """3x4 [R|t] -> 4x4, refusing non-finite values and non-rotations (names `source`). A rotation that is
    one up to rounding (1e-3 < |RR^T - I| <= 1e-2, det > 0: datasets store R with a few digits) is replaced by
    the nearest rotation (SVD), which moves a point 0.1 m from the origin by < 1 mm; anything further is
    refused. Rotations within `check_pose`'s 1e-3 are kept as stored (imports stay bit-identical)."""
    from sim2real_kit.camera import check_pose

    Rt = np.asarray(Rt, dtype=np.float64)
    pose = np.eye(4)
    pose[:3] = Rt
    R = pose[:3, :3]
    err = np.abs(R @ R.T - np.eye(3)).max() if np.all(np.isfinite(R)) else np.inf
    if 1e-3 < err <= ROUNDED_ROTATION_TOL and np.linalg.det(R) > 0:  # within check_pose's 1e-3: kept as stored
        u, _, vt = np.linalg.svd(R)
        pose[:3, :3] = u @ vt
    return check_pose(pose, source)


def int_name(name: str, source: Path) -> int:
    if not name.isdigit():
        raise LayoutError(f"{name!r} is not numeric; BOP needs integer scene and image ids", source)
    return int(name)


def load_mesh(model: SrcModel) -> tuple[np.ndarray, np.ndarray]:
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


def read_label(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except OSError as e:
        raise LayoutError(f"cannot decode label image: {e}", path) from None
    if arr.ndim != 2:
        raise LayoutError(f"label image must be single-channel, got shape {arr.shape}", path)
    return arr.astype(np.int64)


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as e:
        raise LayoutError(f"cannot decode colour image: {e}", path) from None


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except OSError as e:
        raise DepthFormatError(f"cannot open depth PNG: {e}", path) from None


__all__ = [
    "SrcFrame",
    "SrcModel",
    "SrcObject",
    "frames_by_scene",
    "image_size",
    "int_name",
    "load_mesh",
    "pose34",
    "read_label",
    "read_rgb",
]
