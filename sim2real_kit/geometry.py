"""Surface geometry of a CAD depth frame: camera-frame normals (`cad_normals`) and the incidence angle between
the viewing ray and the surface (`cad_incidence`). The physical sensor baseline scales its noise with the
incidence (`benchmark.simulators`), and the benchmark bins its residual W1 by it (`metrics.residual_bins`).
numpy only; one frame [H, W] in metres (0 = no CAD geometry) and its `Camera`."""

from __future__ import annotations

import numpy as np

from sim2real_kit.camera import Camera
from sim2real_kit.errors import DepthFormatError


def cad_normals(cad, camera: Camera) -> np.ndarray:
    """Camera-frame unit normals [H, W, 3] of a CAD depth frame [H, W] (metres) from finite differences
    of its back-projected points. Per axis the one-sided difference with the smaller depth step is
    used, so a depth discontinuity does not tilt the normals beside it; pixels without a valid
    neighbour on either axis (and cad = 0) get 0."""
    depth = np.asarray(cad, dtype=np.float64)
    if depth.ndim != 2:
        raise DepthFormatError(f"cad_normals takes one frame [H, W], got shape {depth.shape}")
    pts = camera.backproject(depth)  # [H, W, 3]
    valid = depth > 0
    du = _one_sided_diff(pts, valid, axis=1)
    dv = _one_sided_diff(pts, valid, axis=0)
    normals = np.cross(du, dv)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    ok = valid[..., None] & (norm > 0)
    return np.where(ok, normals / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


def _one_sided_diff(pts: np.ndarray, valid: np.ndarray, axis: int) -> np.ndarray:
    """[H, W, 3] neighbour difference along `axis`: forward or backward, whichever has the smaller |dz|."""

    def sl(a, b):
        return tuple(slice(a, b) if ax == axis else slice(None) for ax in range(2))

    fwd, bwd = np.zeros_like(pts), np.zeros_like(pts)
    fwd_ok, bwd_ok = np.zeros(valid.shape, bool), np.zeros(valid.shape, bool)
    fwd[sl(None, -1)] = pts[sl(1, None)] - pts[sl(None, -1)]
    fwd_ok[sl(None, -1)] = valid[sl(1, None)] & valid[sl(None, -1)]
    bwd[sl(1, None)] = fwd[sl(None, -1)]
    bwd_ok[sl(1, None)] = fwd_ok[sl(None, -1)]
    use_fwd = fwd_ok & (~bwd_ok | (np.abs(fwd[..., 2]) <= np.abs(bwd[..., 2])))
    return np.where(use_fwd[..., None], fwd, np.where(bwd_ok[..., None], bwd, 0.0))


def cad_incidence(cad, camera: Camera, undefined: float = 0.0) -> np.ndarray:
    """Incidence angle [H, W] radians between the viewing ray and the CAD surface normal, in [0, π/2];
    `undefined` (default 0, what the physical sensor model wants; NaN to leave such pixels out of a
    binning) where the normal is undefined (cad = 0, or no valid neighbour)."""
    normals = cad_normals(cad, camera)
    rays = camera.pixel_rays(np.float64)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    cos = np.abs(np.einsum("hwc,hwc->hw", normals.astype(np.float64), rays))
    defined = np.abs(normals).sum(-1) > 0
    return np.where(defined, np.arccos(np.clip(cos, 0.0, 1.0)), undefined).astype(np.float32)
