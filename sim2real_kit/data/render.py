"""Depth, normal and instance rendering by ray casting (open3d `RaycastingScene`), DESIGN §2.

The CAD depth of the paper's LASA pairs is a rendering of aligned CAD models with the capture's
camera; the procedural world renders both its CAD and its real geometry the same way. One ray per
pixel centre (u + 0.5, v + 0.5) with direction (x/z, y/z, 1) in the camera frame, so open3d's hit
distance (in units of the direction's length) *is* the z-depth in metres.

Conventions of `RenderResult`:
- `depth` [H, W] float32 metres along the optical axis, 0 where no surface is hit;
- `normals` [H, W, 3] float32 unit normals in the **camera frame** (x right, y down, z forward),
  turned to face the camera (n . ray < 0); 0 where no hit;
- `instance` [H, W] int32 instance id of the hit geometry, 0 where no hit (the ids are whatever the
  caller gave each mesh; `scenes.py` uses 1..99 for furniture and 100+ for floor / walls / ceiling);
- `incidence` [H, W] float32 radians, angle between the viewing ray and the surface normal
  (0 = facing the camera, pi/2 = grazing), 0 where no hit;
- `material` [H, W] int8 index into `shapes.MATERIALS`, -1 where no hit or unknown.

open3d is imported lazily (only rendering, synthesis and fusion need it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sim2real_kit.camera import Camera, check_pose
from sim2real_kit.errors import Sim2RealError


@dataclass
class RenderResult:
    """What one ray-cast frame gives (see the module docstring for conventions)."""

    depth: np.ndarray  # [H, W] float32 metres, 0 = no hit
    normals: np.ndarray | None  # [H, W, 3] float32 camera frame, facing the camera (None: full=False)
    instance: np.ndarray  # [H, W] int32, 0 = no hit
    incidence: np.ndarray | None  # [H, W] float32 radians (None: full=False)
    material: np.ndarray | None  # [H, W] int8 index into shapes.MATERIALS, -1 = none (None: full=False)

    @property
    def valid(self) -> np.ndarray:
        return self.depth > 0


class SceneRenderer:
    """A `RaycastingScene` built once from meshes keyed by instance id, reused for every frame.

    `meshes`: {instance id (1..65535): open3d.geometry.TriangleMesh (legacy) or (vertices, triangles)}.
    `materials`: optional {instance id: material name of `shapes.MATERIALS`}."""

    def __init__(self, meshes: Mapping[int, object], materials: Mapping[int, str] | None = None, nthreads: int = 0):
        import open3d as o3d

        from sim2real_kit.data.shapes import MATERIALS

        if not meshes:
            raise Sim2RealError("SceneRenderer needs at least one mesh")
        self.nthreads = int(nthreads)
        self._scene = o3d.t.geometry.RaycastingScene()
        ids = []
        for inst, mesh in meshes.items():
            inst = int(inst)
            if not 0 < inst <= 65535:
                raise Sim2RealError(f"instance id must be in 1..65535, got {inst}")
            if isinstance(mesh, tuple):
                verts, tris = mesh
            else:
                verts, tris = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
            if len(tris) == 0:
                continue
            gid = self._scene.add_triangles(
                o3d.core.Tensor(np.ascontiguousarray(verts, dtype=np.float32)),
                o3d.core.Tensor(np.ascontiguousarray(tris, dtype=np.uint32)),
            )
            ids.append((gid, inst))
        self._instance_of = np.zeros(max(g for g, _ in ids) + 2, dtype=np.int32)
        for gid, inst in ids:
            self._instance_of[gid] = inst
        self._material_of = np.full(65536, -1, dtype=np.int8)
        for inst, name in (materials or {}).items():
            if name not in MATERIALS:
                raise Sim2RealError(f"unknown material {name!r} of instance {inst}; valid: {', '.join(MATERIALS)}")
            self._material_of[int(inst)] = MATERIALS.index(name)
        self._rays_cache: dict = {}

    def _camera_rays(self, camera: Camera) -> np.ndarray:
        if camera not in self._rays_cache:
            self._rays_cache[camera] = camera.pixel_rays(np.float64).reshape(-1, 3).astype(np.float32)
        return self._rays_cache[camera]

    def render(self, camera: Camera, pose, full: bool = True) -> RenderResult:
        """Ray-cast the frame of `camera` at the 4x4 camera-to-world `pose`.

        `full=False` skips normals, incidence and material (they are None): depth and instance only."""
        import open3d as o3d

        pose = check_pose(pose)
        R, t = pose[:3, :3].astype(np.float32), pose[:3, 3]
        dirs_cam = self._camera_rays(camera)  # [N, 3] float32, z = 1
        rays = np.empty((len(dirs_cam), 6), dtype=np.float32)
        rays[:, :3] = t
        np.matmul(dirs_cam, R.T, out=rays[:, 3:])
        hit = self._scene.cast_rays(o3d.core.Tensor.from_numpy(rays), nthreads=self.nthreads)
        t_hit = hit["t_hit"].numpy()
        ok = np.isfinite(t_hit)
        H, W = camera.height, camera.width
        depth = np.where(ok, t_hit, np.float32(0)).reshape(H, W)
        gid = hit["geometry_ids"].numpy().astype(np.int64)
        gid[~ok] = len(self._instance_of) - 1
        instance = self._instance_of[gid].reshape(H, W)
        if not full:
            return RenderResult(depth=depth, normals=None, instance=instance, incidence=None, material=None)
        normals = hit["primitive_normals"].numpy() @ R  # world -> camera frame: R^T n
        dot = np.einsum("ij,ij->i", normals, dirs_cam)
        normals *= np.where(dot > 0, np.float32(-1), np.float32(1))[:, None]
        cos_inc = np.minimum(np.abs(dot) * self._inv_ray_norm(camera), np.float32(1))
        incidence = np.where(ok, np.arccos(cos_inc), np.float32(0))
        normals[~ok] = 0.0
        return RenderResult(
            depth=depth,
            normals=normals.reshape(H, W, 3),
            instance=instance,
            incidence=incidence.reshape(H, W),
            material=self._material_of[instance],
        )

    def _inv_ray_norm(self, camera: Camera) -> np.ndarray:
        key = ("inv_norm", camera)
        if key not in self._rays_cache:
            self._rays_cache[key] = (1.0 / np.linalg.norm(self._camera_rays(camera), axis=1)).astype(np.float32)
        return self._rays_cache[key]


def render(scene, camera: Camera, pose, full: bool = True) -> RenderResult:
    """Render `scene` (a `SceneRenderer`, or a {instance id: mesh} mapping built into one) at `pose`."""
    if not isinstance(scene, SceneRenderer):
        scene = SceneRenderer(scene)
    return scene.render(camera, pose, full)


def incidence_from_normals(normals: np.ndarray, camera: Camera) -> np.ndarray:
    """Incidence angle [H, W] radians from camera-frame normals [H, W, 3] (0 where normals are 0)."""
    rays = camera.pixel_rays(np.float32)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    cos = np.abs(np.einsum("hwc,hwc->hw", normals.astype(np.float32), rays))
    out = np.arccos(np.clip(cos, 0, 1))
    return np.where(np.abs(normals).sum(-1) > 0, out, 0).astype(np.float32)


__all__ = ["RenderResult", "SceneRenderer", "render", "incidence_from_normals"]
