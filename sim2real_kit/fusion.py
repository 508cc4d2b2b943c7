"""TSDF fusion of a depth sequence into a mesh (paper Sec. 4; release facts "Sampling and fusion").

The release fuses generated depth with Open3D's ScalableTSDFVolume: 1 cm voxels, 4 cm
truncation, depth beyond 4.8 m dropped, extrinsic = inverse of the camera-to-world pose, and
outputs a triangle mesh. `fuse_frames` does the same for any iterable of depth frames in
metres (CAD, real, or a simulator's output), so every simulator of the benchmark is fused the
same way, with open3d's sparse voxel-block TSDF (`VoxelBlockGrid`, the tensor-API successor of
ScalableTSDFVolume, which is broken for float depth in open3d 0.20: see `fuse_frames`); `mesh_to_points`, `save_mesh` and `save_point_cloud` feed the DisCo metrics and the
run folder (`benchmark/meshes/*.ply`, written atomically).

open3d is imported inside the functions: modules that training or sampling import never pull it in.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sim2real_kit.camera import Camera, check_pose, invert_pose
from sim2real_kit.config import BenchmarkConfig
from sim2real_kit.depth import check_depth
from sim2real_kit.disco import _as_geometry, _surface_points
from sim2real_kit.errors import ConfigError, DepthFormatError, MissingArtifactError, Sim2RealError
from sim2real_kit.io import atomic_path
from sim2real_kit.metrics import _to_numpy

_DEFAULTS = BenchmarkConfig()  # voxel_m 1 cm, trunc_m 4 cm, depth_trunc_m 4.8 m (release): defaults live in config
BLOCK_COUNT = 4096  # initial hash-map capacity in 16^3-voxel blocks (32 KB each without colour)
WEIGHT_THRESHOLD = 0.5  # extract voxels observed at least once (each frame adds weight 1)


def _o3d():
    try:
        import open3d as o3d
    except ImportError:  # pragma: no cover - depends on the machine
        raise Sim2RealError("TSDF fusion and mesh IO need open3d, which is not installed on this machine") from None
    return o3d


def fuse_frames(
    depths: Iterable,
    poses: Iterable,
    camera: Camera,
    voxel_m: float = _DEFAULTS.voxel_m,
    trunc_m: float = _DEFAULTS.trunc_m,
    depth_trunc_m: float = _DEFAULTS.depth_trunc_m,
    colors: Iterable | None = None,
    progress: bool = True,
    block_count: int = BLOCK_COUNT,
):
    """Fuse depth frames into an open3d (legacy) TriangleMesh by TSDF integration.

    depths: iterable of [H, W] (or [1, H, W]) depth in metres (z, 0 = invalid), numpy or torch,
    matching `camera`; poses: iterable of 4x4 camera-to-world matrices, one per frame; colors:
    optional iterable of [H, W, 3] uint8 RGB (vertex colours of the mesh). Depth > `depth_trunc_m`
    is dropped; the extrinsic of each frame is the inverse of its pose.

    Volume: open3d's sparse voxel-block TSDF (`o3d.t.geometry.VoxelBlockGrid`, 16^3-voxel blocks
    allocated where depth lands, `voxel_m` voxels, truncation `trunc_m`), the tensor-API successor
    of the release's ScalableTSDFVolume. The legacy ScalableTSDFVolume of open3d 0.20 allocates
    its blocks from depth divided by 1000 a second time (float depth images are rescaled by its
    internal depth_scale of 1000), so it integrates nothing beyond a few voxels from the camera.
    `block_count` is the initial capacity of the block hash map (it grows when needed).
    Raises Sim2RealError when frames and poses differ in number or nothing fuses.
    """
    from tqdm.auto import tqdm

    o3d = _o3d()
    o3c = o3d.core
    for key, value in (("voxel_m", voxel_m), ("trunc_m", trunc_m), ("depth_trunc_m", depth_trunc_m)):
        if not value > 0:
            raise ConfigError(f"fusion {key} must be > 0 metres, got {value}")
    names, dtypes, channels = ["tsdf", "weight"], [o3c.float32, o3c.float32], [1, 1]
    if colors is not None:
        names, dtypes, channels = [*names, "color"], [*dtypes, o3c.float32], [*channels, 3]
    volume = o3d.t.geometry.VoxelBlockGrid(
        attr_names=names,
        attr_dtypes=dtypes,
        attr_channels=channels,
        voxel_size=float(voxel_m),
        block_resolution=16,  # as ScalableTSDFVolume's volume units
        block_count=int(block_count),
        device=o3c.Device("CPU:0"),
    )
    intrinsic = o3c.Tensor(camera.K, o3c.float64)
    trunc_voxels = float(trunc_m) / float(voxel_m)  # open3d takes the truncation in voxels
    poses = list(poses)
    color_iter = iter(colors) if colors is not None else None
    n_frames = n_integrated = 0
    for i, depth in enumerate(tqdm(depths, total=len(poses), desc="TSDF fusion", disable=not progress)):
        if i >= len(poses):
            raise Sim2RealError(f"more depth frames than poses ({len(poses)}): frame {i} has no pose")
        depth_m = _depth_frame(depth, camera, i)
        depth_m[depth_m > depth_trunc_m] = 0.0  # the release drops far depth
        pose = check_pose(_to_numpy(poses[i]), f"pose of frame {i}")
        extrinsic = o3c.Tensor(invert_pose(pose), o3c.float64)  # world-to-camera
        depth_image = o3d.t.geometry.Image(o3c.Tensor(depth_m))
        n_frames += 1
        if not (depth_m > 0).any():
            continue  # nothing to integrate (open3d refuses a frame that touches no block)
        blocks = volume.compute_unique_block_coordinates(
            depth_image, intrinsic, extrinsic, 1.0, float(depth_trunc_m), trunc_voxels
        )
        if color_iter is None:
            volume.integrate(blocks, depth_image, intrinsic, extrinsic, 1.0, float(depth_trunc_m), trunc_voxels)
        else:
            color = _color_frame(next(color_iter, None), camera, i).astype(np.float32) / 255.0
            color_image = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(color)))
            volume.integrate(
                blocks,
                depth_image,
                color_image,
                intrinsic,
                intrinsic,
                extrinsic,
                1.0,
                float(depth_trunc_m),
                trunc_voxels,
            )
        n_integrated += 1
    if n_frames != len(poses):
        raise Sim2RealError(f"{n_frames} depth frames but {len(poses)} poses: they must pair one to one")
    mesh = volume.extract_triangle_mesh(weight_threshold=WEIGHT_THRESHOLD).to_legacy() if n_integrated else None
    if mesh is None or len(mesh.triangles) == 0:
        raise Sim2RealError(
            f"TSDF fusion of {n_frames} frames produced no surface (all depth invalid, beyond "
            f"{depth_trunc_m} m, or poses pointing away from it)"
        )
    mesh.compute_vertex_normals()
    return mesh


def _depth_frame(depth, camera: Camera, index: int) -> np.ndarray:
    """Frame `index` as a contiguous float32 [H, W] metres array, checked against the camera."""
    arr = _to_numpy(depth)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != (camera.height, camera.width):
        raise DepthFormatError(
            f"depth frame {index} has shape {arr.shape}, camera expects [{camera.height}, {camera.width}]"
        )
    check_depth(arr, f"depth frame {index}")
    return np.ascontiguousarray(arr, dtype=np.float32).copy()


def _color_frame(color, camera: Camera, index: int) -> np.ndarray:
    if color is None:
        raise Sim2RealError(f"colors ran out at frame {index}: give one [H, W, 3] image per depth frame")
    arr = _to_numpy(color)
    if arr.shape != (camera.height, camera.width, 3) or arr.dtype != np.uint8:
        raise DepthFormatError(
            f"color frame {index} must be uint8 [{camera.height}, {camera.width}, 3], got {arr.dtype} {arr.shape}"
        )
    return arr


def mesh_to_points(mesh, n: int, seed: int = 0) -> np.ndarray:
    """`n` points [n, 3] sampled uniformly (area-weighted, seeded) on a mesh's surface; a point
    cloud (array, open3d PointCloud) with more than n points is subsampled, else returned whole."""
    vertices, triangles = _as_geometry(mesh, "mesh")
    return _surface_points(vertices, triangles, int(n), np.random.default_rng(seed))


def save_mesh(mesh, path: str | Path) -> Path:
    """Write an open3d TriangleMesh (or a (vertices, triangles) pair) atomically; the format follows
    the suffix (binary for .ply). Returns the path."""
    o3d = _o3d()
    path = Path(path)
    if not hasattr(mesh, "triangles"):
        vertices, triangles = _as_geometry(mesh, "mesh")
        if triangles is None:
            raise Sim2RealError("save_mesh needs a mesh (vertices, triangles); use save_point_cloud for points", path)
        mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(triangles))
    if len(mesh.triangles) == 0:
        raise Sim2RealError("refusing to write an empty mesh (no triangles)", path)
    with atomic_path(path) as tmp:
        if not o3d.io.write_triangle_mesh(str(tmp), mesh, write_ascii=False):
            raise Sim2RealError(f"open3d could not write a mesh with suffix {path.suffix!r}", path)
    return path


def load_mesh(path: str | Path):
    """Read a mesh written by `save_mesh`; a missing or empty file is a MissingArtifactError."""
    o3d = _o3d()
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError("mesh file does not exist (run `sim2real fuse` to make it)", path)
    mesh = o3d.io.read_triangle_mesh(str(path))
    if len(mesh.triangles) == 0:
        raise MissingArtifactError("mesh file holds no triangles (unreadable or empty)", path)
    return mesh


def save_point_cloud(points, path: str | Path, colors=None, normals=None) -> Path:
    """Write points [N, 3] (array, tensor or open3d PointCloud), optional colours [N, 3] in [0, 1]
    and normals [N, 3], atomically (.ply binary). Returns the path."""
    o3d = _o3d()
    path = Path(path)
    if isinstance(points, o3d.geometry.PointCloud):
        cloud = points
        if len(cloud.points) == 0:
            raise Sim2RealError("refusing to write an empty point cloud", path)
    else:
        xyz = _to_numpy(points, np.float64)
        if xyz.size == 0:
            raise Sim2RealError("refusing to write an empty point cloud", path)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise Sim2RealError(f"points must have shape [N, 3], got {xyz.shape}", path)
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
        for key, extra in (("colors", colors), ("normals", normals)):
            if extra is None:
                continue
            extra = _to_numpy(extra, np.float64)
            if extra.shape != xyz.shape:
                raise Sim2RealError(f"{key} must have shape {xyz.shape} like the points, got {extra.shape}", path)
            setattr(cloud, key, o3d.utility.Vector3dVector(extra))
    with atomic_path(path) as tmp:
        if not o3d.io.write_point_cloud(str(tmp), cloud, write_ascii=False):
            raise Sim2RealError(f"open3d could not write a point cloud with suffix {path.suffix!r}", path)
    return path
