"""Pinhole cameras: intrinsics + frame size, crops and resizes that keep intrinsics right,
back-projection of depth maps to camera / world points and projection back.

Convention: pixel (row v, column u) covers [u, u+1) x [v, v+1) in continuous image
coordinates, so its centre is (u + 0.5, v + 0.5) and a centred camera has cx = width / 2.
A 3D point (x, y, z) in the camera frame (x right, y down, z forward, metres) lands at
u = fx * x / z + cx, v = fy * y / z + cy. With this convention a crop shifts the principal
point and a resize scales fx, fy, cx, cy by the same factor, so the LASA mapping
(fx 211.9489 for the 192 px centre crop -> 565.20 at 512 px, cx = cy = 256) follows from code.

Poses are 4x4 camera-to-world matrices (the `lasa_pose` convention).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sim2real_kit.errors import PoseError, Sim2RealError

# ARKit `lowres` depth of LASA: 256x192, fx = fy = 211.9489 px (release facts).
LASA_FX = 211.9489
LASA_WIDTH, LASA_HEIGHT = 256, 192


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics in pixels and the frame size (width x height) they belong to."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise Sim2RealError(f"camera size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0) or not all(math.isfinite(v) for v in (self.fx, self.fy, self.cx, self.cy)):
            raise Sim2RealError(f"camera focal lengths must be positive and finite, got {self}")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def lasa(cls) -> Camera:
        """The raw ARKit frame of LASA: 256x192, fx = fy = 211.9489, centred."""
        return cls(LASA_FX, LASA_FX, LASA_WIDTH / 2, LASA_HEIGHT / 2, LASA_WIDTH, LASA_HEIGHT)

    @classmethod
    def from_K(cls, K, width: int, height: int) -> Camera:
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise Sim2RealError(f"intrinsic matrix must be 3x3, got shape {K.shape}")
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> Camera:
        fx = width / 2 / math.tan(math.radians(hfov_deg) / 2)
        return cls(fx, fx, width / 2, height / 2, width, height)

    # ------------------------------------------------------------------ views
    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsic matrix (float64)."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    def as_vector(self) -> np.ndarray:
        """[fx, fy, cx, cy] as float32 (what a Dataset sample carries)."""
        return np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float32)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        try:
            return cls(
                float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]), int(d["height"])
            )
        except KeyError as e:
            raise Sim2RealError(
                f"camera description lacks key {e.args[0]!r}; needs fx, fy, cx, cy, width, height"
            ) from None

    def save_json(self, path: str | Path) -> None:
        from sim2real_kit.io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load_json(cls, path: str | Path) -> Camera:
        from sim2real_kit.io import read_json_object

        d = read_json_object(path)
        try:
            return cls.from_dict(d)
        except Sim2RealError as e:
            raise Sim2RealError(str(e), path) from None

    # ------------------------------------------------------------------ crops and resizes
    def crop(self, left: int, top: int, width: int, height: int) -> Camera:
        """Camera of the sub-window [left, left+width) x [top, top+height) (may extend past the frame)."""
        return Camera(self.fx, self.fy, self.cx - left, self.cy - top, int(width), int(height))

    def center_crop_box(self, width: int, height: int | None = None) -> tuple[int, int, int, int]:
        """(left, top, width, height) of the centred crop; errors if larger than the frame."""
        height = width if height is None else height
        if width > self.width or height > self.height or width <= 0 or height <= 0:
            raise Sim2RealError(f"centre crop {width}x{height} does not fit a {self.width}x{self.height} frame")
        return (self.width - width) // 2, (self.height - height) // 2, width, height

    def center_crop(self, width: int, height: int | None = None) -> Camera:
        return self.crop(*self.center_crop_box(width, height))

    def resize(self, width: int, height: int | None = None) -> Camera:
        """Camera of the same view resampled to width x height pixels."""
        height = width if height is None else height
        sx, sy = width / self.width, height / self.height
        return Camera(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(width), int(height))

    # ------------------------------------------------------------------ geometry
    def pixel_rays(self, dtype=np.float64) -> np.ndarray:
        """[H, W, 3] directions (x/z, y/z, 1) through the pixel centres."""
        u = (np.arange(self.width, dtype=dtype) + 0.5 - self.cx) / self.fx
        v = (np.arange(self.height, dtype=dtype) + 0.5 - self.cy) / self.fy
        uu, vv = np.meshgrid(u, v)
        return np.stack([uu, vv, np.ones_like(uu)], axis=-1)

    def backproject(self, depth, pose=None):
        """Depth [..., H, W] in metres (z, not ray length) -> points [..., H, W, 3] in metres.

        Camera frame when `pose` is None, else world frame with the 4x4 camera-to-world `pose`
        (shape [4, 4] or [..., 4, 4] matching the leading dims). Works on numpy arrays and torch
        tensors (device and dtype kept). Invalid pixels (depth 0) give the camera centre."""
        if _is_torch(depth):
            import torch

            rays = torch.as_tensor(self.pixel_rays(np.float32), dtype=depth.dtype, device=depth.device)
            pts = depth[..., None] * rays
            if pose is not None:
                pose = torch.as_tensor(pose, dtype=depth.dtype, device=depth.device)
                R, t = pose[..., :3, :3], pose[..., :3, 3]
                lead = pts.shape[:-3]
                flat = pts.reshape(*lead, -1, 3)
                flat = flat @ R.transpose(-1, -2) + t[..., None, :]
                pts = flat.reshape(pts.shape)
            return pts
        depth = np.asarray(depth)
        if depth.shape[-2:] != (self.height, self.width):
            raise Sim2RealError(f"depth of shape {depth.shape} does not match camera {self.width}x{self.height}")
        pts = depth[..., None] * self.pixel_rays(np.float64 if depth.dtype == np.float64 else np.float32)
        if pose is not None:
            pose = np.asarray(pose, dtype=pts.dtype)
            R, t = pose[..., :3, :3], pose[..., :3, 3]
            lead = pts.shape[:-3]
            flat = pts.reshape(*lead, -1, 3)
            flat = flat @ np.swapaxes(R, -1, -2) + t[..., None, :]
            pts = flat.reshape(pts.shape)
        return pts

    def project(self, points, pose=None):
        """Points [..., 3] (world frame if `pose` camera-to-world is given, else camera frame)
        -> (uv [..., 2] continuous pixel coordinates, z [...] depth in metres)."""
        xp = _xp(points)
        if pose is not None:
            pose = np.asarray(pose, dtype=np.float64) if xp is np else pose
            world_to_cam = invert_pose(pose)
            R, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
            if xp is not np:
                R = xp.as_tensor(R, dtype=points.dtype, device=points.device)
                t = xp.as_tensor(t, dtype=points.dtype, device=points.device)
            else:
                R, t = R.astype(points.dtype, copy=False), t.astype(points.dtype, copy=False)
            points = points @ R.T + t
        z = points[..., 2]
        u = self.fx * points[..., 0] / z + self.cx
        v = self.fy * points[..., 1] / z + self.cy
        return xp.stack([u, v], -1), z


# ---------------------------------------------------------------------- poses
def check_pose(pose, source: str | Path | None = None, tol: float = 1e-3) -> np.ndarray:
    """Return `pose` as a float64 4x4 rigid matrix, or raise PoseError naming `source`."""
    try:
        pose = np.asarray(pose, dtype=np.float64)
    except (TypeError, ValueError):
        raise PoseError("pose is not numeric", source) from None
    if pose.shape != (4, 4):
        raise PoseError(f"pose must be a 4x4 matrix, got shape {pose.shape}", source)
    if not np.all(np.isfinite(pose)):
        raise PoseError("pose contains NaN or inf", source)
    if not np.allclose(pose[3], [0, 0, 0, 1], atol=tol):
        raise PoseError(f"last row of a pose must be [0 0 0 1], got {pose[3].tolist()}", source)
    R = pose[:3, :3]
    err = np.abs(R @ R.T - np.eye(3)).max()
    if err > tol or np.linalg.det(R) < 0:
        raise PoseError(
            f"rotation part is not a rotation (|RR^T - I| = {err:.2e}, det = {np.linalg.det(R):.3f})", source
        )
    return pose


def invert_pose(pose):
    """Inverse of a rigid 4x4 transform (numpy or torch)."""
    xp = _xp(pose)
    R, t = pose[..., :3, :3], pose[..., :3, 3:]
    Rt = xp.swapaxes(R, -1, -2) if xp is np else R.transpose(-1, -2)
    out = xp.zeros_like(pose) if xp is np else pose.new_zeros(pose.shape)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1
    return out


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """4x4 camera-to-world pose of a camera at `eye` looking at `target` (z forward, y down)."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-8:
        x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _xp(x):
    if _is_torch(x):
        import torch

        return torch
    return np
