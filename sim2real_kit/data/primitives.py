"""Mesh primitives of the procedural world: `MeshBuilder` (boxes, rounded boxes, cylinders, rods) and poses.

Meshes are assembled as numpy vertex / triangle arrays (fast, no open3d call per part) and turned
into `open3d.geometry.TriangleMesh` at the end (`to_open3d`); open3d is imported lazily. The unit
templates (box, rounded box, cylinder) are built once per segment count and cached.
"""

from __future__ import annotations

import functools
import math

import numpy as np


class MeshBuilder:
    """Collects parts as (vertices [N, 3], triangles [M, 3]) arrays; `to_open3d()` at the end."""

    def __init__(self):
        self._verts: list[np.ndarray] = []
        self._tris: list[np.ndarray] = []
        self._n = 0

    def add(self, verts: np.ndarray, tris: np.ndarray, pose: np.ndarray | None = None) -> MeshBuilder:
        verts = np.asarray(verts, dtype=np.float64)
        if pose is not None:
            verts = verts @ pose[:3, :3].T + pose[:3, 3]
        self._verts.append(verts)
        self._tris.append(np.asarray(tris, dtype=np.int32) + self._n)
        self._n += len(verts)
        return self

    def box(self, center, size, yaw: float = 0.0, tilt=(0.0, 0.0)) -> MeshBuilder:
        """Axis-aligned box of `size` (x, y, z) centred at `center`, rotated by `yaw` (rad, about z)."""
        v, t = _box_template()
        return self.add(v * (np.asarray(size, dtype=np.float64) / 2), t, pose_matrix(center, yaw, tilt))

    def rounded_box(self, center, size, radius: float, segments: int = 5, yaw: float = 0.0, tilt=(0.0, 0.0)):
        """Box with edges and corners rounded by `radius` (clipped to half the smallest side)."""
        size = np.asarray(size, dtype=np.float64)
        radius = float(min(radius, 0.499 * size.min()))
        if radius <= 1e-5:
            return self.box(center, size, yaw, tilt)
        grid, sphere, t = _rounded_template(segments)
        v = np.sign(grid) * (size / 2 - radius) + radius * sphere
        return self.add(v, t, pose_matrix(center, yaw, tilt))

    def cylinder(
        self, base, radius: float, height: float, radius_top: float | None = None, segments: int = 10, tilt=(0.0, 0.0)
    ) -> MeshBuilder:
        """Capped (possibly tapered) cylinder standing on `base`, axis +z tilted by (about x, about y) rad."""
        v, t = _cylinder_template(segments)
        r_top = radius if radius_top is None else radius_top
        v = v.copy()
        top = v[:, 2] > 0.5
        v[:, :2] *= np.where(top, r_top, radius)[:, None]
        v[:, 2] *= height
        return self.add(v, t, pose_matrix(base, 0.0, tilt))

    def rod(self, p0, p1, radius: float, segments: int = 8) -> MeshBuilder:
        """Cylinder of `radius` from point p0 to point p1."""
        p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
        axis = p1 - p0
        length = float(np.linalg.norm(axis))
        if length < 1e-6:
            return self
        v, t = _cylinder_template(segments)
        v = v * np.array([radius, radius, length])
        pose = np.eye(4)
        pose[:3, :3] = _rotation_z_to(axis / length)
        pose[:3, 3] = p0
        return self.add(v, t, pose)

    def extend(self, other: MeshBuilder, pose: np.ndarray | None = None) -> MeshBuilder:
        if other._n:
            v, t = other.arrays()
            self.add(v, t, pose)
        return self

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._verts:
            return np.zeros((0, 3)), np.zeros((0, 3), np.int32)
        return np.concatenate(self._verts), np.concatenate(self._tris)

    def to_open3d(self):
        return to_open3d(*self.arrays())


def to_open3d(verts: np.ndarray, tris: np.ndarray):
    """(vertices [N, 3] metres, triangles [M, 3]) -> open3d.geometry.TriangleMesh with normals."""
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.ascontiguousarray(verts, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.ascontiguousarray(tris, dtype=np.int32)),
    )
    mesh.compute_triangle_normals()
    return mesh


def transform_arrays(verts: np.ndarray, pose: np.ndarray) -> np.ndarray:
    return verts @ pose[:3, :3].T + pose[:3, 3]


def pose_matrix(center, yaw: float = 0.0, tilt=(0.0, 0.0)) -> np.ndarray:
    cz, sz = math.cos(yaw), math.sin(yaw)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1.0]])
    ax, ay = tilt
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    pose = np.eye(4)
    pose[:3, :3] = rz @ ry @ rx
    pose[:3, 3] = center
    return pose


def _rotation_z_to(d: np.ndarray) -> np.ndarray:
    """Rotation taking +z onto the unit vector d."""
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(z, d)
    c = float(np.dot(z, d))
    if np.linalg.norm(v) < 1e-9:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


@functools.cache
def _box_template() -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    # faces as quads (outward, counter-clockwise seen from outside)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    t = np.array([tri for a, b, c, d in quads for tri in ((a, b, c), (a, c, d))], dtype=np.int32)
    return v, _orient_outward(v, t)


@functools.cache
def _rounded_template(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cube-grid template of a rounded box: (grid coords, unit rounding directions, triangles).

    A face grid with an odd number `n` of segments per side has no vertex on a mid plane, so the
    middle strip of each face stays flat and the outer rings bend onto a sphere octant: vertex =
    sign(grid) * (half_size - r) + r * direction."""
    coords = -1 + 2 * np.arange(n + 1) / n
    verts, tris = [], []
    for axis in range(3):
        b, c = (axis + 1) % 3, (axis + 2) % 3
        for sign in (-1.0, 1.0):
            base = len(verts)
            for i in range(n + 1):
                for j in range(n + 1):
                    p = [0.0, 0.0, 0.0]
                    p[axis], p[b], p[c] = sign, coords[i], coords[j]
                    verts.append(p)
            for i in range(n):
                for j in range(n):
                    a0, a1 = base + i * (n + 1) + j, base + (i + 1) * (n + 1) + j
                    q = (a0, a1, a1 + 1, a0 + 1)
                    if sign < 0:
                        q = q[::-1]
                    tris += [(q[0], q[1], q[2]), (q[0], q[2], q[3])]
    grid = np.array(verts)
    # merge vertices shared by two or three faces
    _, first, inverse = np.unique(np.round(grid, 9), axis=0, return_index=True, return_inverse=True)
    grid = grid[first]
    tris = inverse.reshape(-1)[np.array(tris)]
    # rounding direction: per axis, 0 on the flat middle strip, 1 at the face
    t = np.clip((np.abs(grid) - 1 / n) / (1 - 1 / n), 0, 1) * np.sign(grid)
    sphere = t / np.linalg.norm(t, axis=1, keepdims=True)
    keep = tris[:, 0] != tris[:, 1]
    tris = tris[keep & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])].astype(np.int32)
    return grid, sphere, _orient_outward(np.sign(grid) * 0.5 + 0.5 * sphere, tris)


@functools.cache
def _cylinder_template(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit cylinder: radius 1, z in [0, 1], n sides, capped."""
    a = 2 * np.pi * np.arange(n) / n
    ring = np.stack([np.cos(a), np.sin(a)], 1)
    v = np.concatenate([np.c_[ring, np.zeros(n)], np.c_[ring, np.ones(n)], [[0, 0, 0], [0, 0, 1]]])
    tris = []
    for i in range(n):
        j = (i + 1) % n
        tris += [(i, j, n + j), (i, n + j, n + i), (2 * n, j, i), (2 * n + 1, n + i, n + j)]
    return v, _orient_outward(v, np.array(tris, dtype=np.int32))


def _orient_outward(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Flip triangles of a convex template whose normal points towards the centroid."""
    c = v.mean(0)
    p0, p1, p2 = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    n = np.cross(p1 - p0, p2 - p0)
    flip = np.einsum("ij,ij->i", n, (p0 + p1 + p2) / 3 - c) < 0
    t = t.copy()
    t[flip] = t[flip][:, ::-1]
    return t


__all__ = ["MeshBuilder", "pose_matrix", "to_open3d", "transform_arrays"]
