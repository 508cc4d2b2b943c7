"""Object sets of the downstream task: per-object partial clouds cut out of a split's frames as a depth source
captures them, with their categories and complete shapes, in their object frames.

`ObjectSet` (the clouds, labels and ground-truth shapes; save / load as `.npz`); depth sources (`"scan"`,
`"gt"` / `"cad"`, `simulator_depth_source`, `folder_depth_source` or any `callable(ref)`); `extract_objects` (the
cutting, see the package docstring, step 1) and its parts: `scene_categories`, `instance_meshes`,
`resample_to_camera`, `voxel_downsample`. open3d is imported lazily (only to read the per-instance meshes).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sim2real_kit.camera import Camera
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.data.shapes import CATEGORIES
from sim2real_kit.depth import check_depth, read_depth_png
from sim2real_kit.disco import normalization, sample_mesh_surface
from sim2real_kit.errors import ConfigError, DepthFormatError, LayoutError, Sim2RealError

ROOM_ID_MIN = 100  # instance ids >= 100 are floor / walls / ceiling (data.scenes)

DepthSource = str | Callable[[FrameRef], "np.ndarray | tuple[np.ndarray, Camera]"]


# ====================================================================== object sets
@dataclass
class ObjectSet:
    """Partial object clouds in their object frames, with their labels and complete shapes.

    points: [M, N, 3] float32, object frame (ground-truth box centre at 0, longest side on [-1, 1]);
    categories: [M] int64 indices into `category_names`; scenes / instances: where each object comes from;
    gt_points: [M, G, 3] float32 complete-shape surface samples in the same frame (None: classification only);
    centers [M, 3] metres and scales [M]: object frame = (world - center) * scale;
    counts: [M] points of the cloud after voxel downsampling (before resampling to N);
    meta: source name, frames used, objects skipped and why."""

    points: torch.Tensor
    categories: torch.Tensor
    scenes: list[str] = field(default_factory=list)
    instances: list[int] = field(default_factory=list)
    category_names: tuple[str, ...] = CATEGORIES
    gt_points: torch.Tensor | None = None
    centers: torch.Tensor | None = None
    scales: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.points = torch.as_tensor(self.points, dtype=torch.float32)
        self.categories = torch.as_tensor(self.categories, dtype=torch.int64).reshape(-1)
        m = len(self.categories)
        if self.points.ndim != 3 or self.points.shape[0] != m or self.points.shape[-1] != 3:
            raise Sim2RealError(
                f"ObjectSet points must be [M, N, 3] with M = {m} categories, got {tuple(self.points.shape)}"
            )
        if m and (self.categories.min() < 0 or self.categories.max() >= len(self.category_names)):
            raise Sim2RealError(f"ObjectSet categories must index {len(self.category_names)} category_names")
        if self.gt_points is not None:
            self.gt_points = torch.as_tensor(self.gt_points, dtype=torch.float32)
            if self.gt_points.ndim != 3 or self.gt_points.shape[0] != m:
                raise Sim2RealError(f"ObjectSet gt_points must be [M, G, 3], got {tuple(self.gt_points.shape)}")
        for name in ("centers", "scales", "counts"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, torch.as_tensor(value))
        self.scenes = list(self.scenes) or [""] * m
        self.instances = [int(i) for i in self.instances] or [0] * m

    def __len__(self) -> int:
        return len(self.categories)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[1])

    def subset(self, index) -> ObjectSet:
        """The objects at `index` (a sequence of ints, a bool mask or a tensor)."""
        idx = torch.as_tensor(index)
        idx = idx.nonzero().reshape(-1) if idx.dtype == torch.bool else idx.reshape(-1).long()
        pick = idx.tolist()

        def take(t):
            return None if t is None else t[idx]

        return dataclasses.replace(
            self,
            points=self.points[idx],
            categories=self.categories[idx],
            scenes=[self.scenes[i] for i in pick],
            instances=[self.instances[i] for i in pick],
            gt_points=take(self.gt_points),
            centers=take(self.centers),
            scales=take(self.scales),
            counts=take(self.counts),
            meta=dict(self.meta),
        )

    @classmethod
    def cat(cls, sets: Sequence[ObjectSet]) -> ObjectSet:
        """Concatenate sets of the same point count and category names (gt kept when all have it)."""
        sets = [s for s in sets if len(s)]
        if not sets:
            raise Sim2RealError("ObjectSet.cat: nothing to concatenate")
        first = sets[0]
        for s in sets[1:]:
            if s.category_names != first.category_names or s.num_points != first.num_points:
                raise Sim2RealError("ObjectSet.cat: sets differ in category names or points per object")

        def cat_or_none(name):
            values = [getattr(s, name) for s in sets]
            if any(v is None for v in values):
                return None
            if name == "gt_points" and len({v.shape[1] for v in values}) > 1:
                return None
            return torch.cat(values)

        return cls(
            points=torch.cat([s.points for s in sets]),
            categories=torch.cat([s.categories for s in sets]),
            scenes=[x for s in sets for x in s.scenes],
            instances=[x for s in sets for x in s.instances],
            category_names=first.category_names,
            gt_points=cat_or_none("gt_points"),
            centers=cat_or_none("centers"),
            scales=cat_or_none("scales"),
            counts=cat_or_none("counts"),
            meta={"sources": [s.meta.get("source") for s in sets]},
        )

    def category_counts(self) -> dict[str, int]:
        counts = torch.bincount(self.categories, minlength=len(self.category_names)).tolist()
        return dict(zip(self.category_names, counts))

    def to_world(self, i: int) -> np.ndarray:
        """Object i's partial cloud back in world metres [N, 3]."""
        if self.centers is None or self.scales is None:
            raise Sim2RealError("this ObjectSet has no object-frame transform (centers / scales)")
        return self.points[i].numpy() / float(self.scales[i]) + self.centers[i].numpy()

    def save(self, path: str | Path) -> Path:
        """Write the set to one `.npz` file (atomic)."""
        from sim2real_kit.io import atomic_path

        arrays = {"points": self.points.numpy(), "categories": self.categories.numpy()}
        for name in ("gt_points", "centers", "scales", "counts"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name).numpy()
        header = {
            "scenes": self.scenes,
            "instances": self.instances,
            "category_names": list(self.category_names),
            "meta": self.meta,
        }
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, header=np.array(json.dumps(header, default=str)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ObjectSet:
        path = Path(path)
        if not path.is_file():
            raise Sim2RealError("object set file does not exist", path)
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                arrays = {k: torch.from_numpy(z[k]) for k in z.files if k != "header"}
        except (OSError, ValueError, KeyError) as e:
            raise Sim2RealError(f"cannot read object set ({e})", path) from None
        return cls(
            **arrays,
            scenes=header["scenes"],
            instances=header["instances"],
            category_names=tuple(header["category_names"]),
            meta=header["meta"],
        )


def _check_set(objects: ObjectSet, what: str, need_gt: bool = False) -> None:
    """ConfigError naming `what` when the set is empty or (need_gt) has no complete shapes."""
    if len(objects) == 0:
        raise ConfigError(f"{what}: the object set is empty (no object had enough points; lower min_points?)")
    if need_gt and objects.gt_points is None:
        raise ConfigError(f"{what}: the object set has no gt_points (complete shapes) for reconstruction")


# ====================================================================== depth sources
def folder_depth_source(root: str | Path, kind: str, camera: Camera, unit_m: float = 0.001):
    """Depth source reading `<root>/<scene>/<frame>_<kind>.png` (e.g. a run's `samples/<split>/` folder with
    kind "sim1"), frames of `camera` (the model-size crop camera the samples were made with)."""
    root = Path(root)

    def source(ref: FrameRef):
        return read_depth_png(root / ref.scene / f"{ref.frame}_{kind}.png", unit_m), camera

    source.__name__ = f"{root.name}:{kind}"
    return source


def simulator_depth_source(
    layout: DepthLayout, simulator, size: int = 0, eval_crop: int = 0, seed: int = 0, name: str | None = None
):
    """Depth source running a simulator on the layout's CAD depth, frame by frame.

    simulator: an object with `simulate(cad_m [H, W], camera=, generator=)` (`RandomPerturbation`,
    `BaselineSimulator`, ...) or a callable `(cad_m [H, W], camera, rng) -> depth_m [H, W]`. size > 0: the
    frame is first cut to the evaluation crop (`data.eval_crop`, 0 = min(H, W)) and resized (nearest) to
    size x size, as the dataset's evaluation transform — the frame the learned simulators were trained on.
    The rng of a frame is seeded from (seed, frame), so a source is reproducible whatever the frame order."""
    from sim2real_kit.data.dataset import crop_resize, eval_box

    base = layout.camera

    def source(ref: FrameRef):
        cad = layout.read_depth(ref, "gt")
        cam = base
        if size > 0:
            box = eval_box(base, eval_crop)
            cad = crop_resize(cad, box, size)
            cam = base.crop(*box).resize(size, size)
        rng = np.random.default_rng([int(seed), zlib.crc32(str(ref).encode())])
        if hasattr(simulator, "simulate"):
            out = simulator.simulate(cad, camera=cam, generator=rng)
        else:
            out = simulator(cad, cam, rng)
        return np.asarray(out, dtype=np.float32).reshape(cad.shape), cam

    source.__name__ = name or getattr(simulator, "name", type(simulator).__name__)
    return source


def _resolve_source(depth_source: DepthSource) -> tuple[Callable | str, str]:
    """(callable or the frame key "real" / "cad" of `read_frame`, name)."""
    if callable(depth_source):
        return depth_source, getattr(depth_source, "__name__", "custom")
    if depth_source == "scan":
        return "real", "scan"
    if depth_source in ("gt", "cad"):
        return "cad", "cad"
    raise ConfigError(f"depth_source must be 'scan', 'gt' / 'cad' or a callable(ref), got {depth_source!r}")


def _call_source(source: Callable | str, ref: FrameRef, layout: DepthLayout, frame: dict) -> tuple[np.ndarray, Camera]:
    if isinstance(source, str):
        return frame[source], layout.camera
    out = source(ref)
    depth, cam = out if isinstance(out, tuple) else (out, layout.camera)
    if isinstance(depth, torch.Tensor):
        depth = depth.detach().cpu().numpy()
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim == 3 and depth.shape[0] == 1:
        depth = depth[0]
    check_depth(depth, f"simulated depth of {ref}")
    if depth.shape != (cam.height, cam.width):
        raise DepthFormatError(
            f"depth source gave {ref} a frame of shape {depth.shape}, its camera is {cam.width}x{cam.height}"
        )
    return depth, cam


# ====================================================================== resampling
def resample_to_camera(image: np.ndarray, src: Camera, dst: Camera, fill: int = 0) -> np.ndarray:
    """Nearest resampling of a per-pixel map (e.g. instance ids) [H, W] of camera `src` to the pixels of
    `dst`, a crop / resize of `src` (same optical axis orientation). Matches the dataset's nearest
    crop-resize; pixels of `dst` outside `src` take `fill`."""
    if src == dst:
        return image
    u = (np.arange(dst.width) + 0.5 - dst.cx) * (src.fx / dst.fx) + src.cx
    v = (np.arange(dst.height) + 0.5 - dst.cy) * (src.fy / dst.fy) + src.cy
    cols, rows = np.floor(u + 1e-9).astype(np.int64), np.floor(v + 1e-9).astype(np.int64)
    out = image[np.clip(rows, 0, src.height - 1)][:, np.clip(cols, 0, src.width - 1)]
    outside = ((rows < 0) | (rows >= src.height))[:, None] | ((cols < 0) | (cols >= src.width))[None, :]
    return np.where(outside, fill, out)


def voxel_downsample(points: np.ndarray, voxel: float) -> np.ndarray:
    """Mean point of each occupied voxel of side `voxel` (same units) [K, 3]; voxel <= 0: unchanged."""
    if voxel <= 0 or len(points) == 0:
        return points
    keys = np.floor(points / voxel).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((len(counts), 3), np.float64)
    np.add.at(sums, inverse, points)
    return (sums / counts[:, None]).astype(points.dtype)


def _resample(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly n points: a random subset when there are more, all of them plus repeats when fewer."""
    if len(points) >= n:
        return points[rng.choice(len(points), n, replace=False)]
    extra = rng.choice(len(points), n - len(points), replace=True)
    return np.concatenate([points, points[extra]])


# ====================================================================== extraction
def scene_categories(layout: DepthLayout, scene: str, categories: Sequence[str] = CATEGORIES) -> dict[int, str]:
    """{instance id: category} of the furniture of a scene, from `meshes/<scene>/scene.json`."""
    path = layout.scene_info_path(scene)
    if not path.is_file():
        raise LayoutError(
            "scene.json is missing: the instance -> category table of the scene (written by `sim2real synth`)", path
        )
    try:
        info = json.loads(path.read_text())
        table = info["instances"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LayoutError(f"cannot read the instance table ({type(e).__name__}: {e})", path) from None
    out = {}
    for key, entry in table.items():
        iid = int(key)
        kind = entry.get("kind", "object" if iid < ROOM_ID_MIN else "room")
        if kind == "object" and entry.get("category") in categories:
            out[iid] = entry["category"]
    return out


def instance_meshes(path: str | Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{instance id: (vertices [V, 3], triangles [T, 3])} of a scene mesh whose vertex colour red channel is
    instance id / 255 (`meshes/<scene>/{cad,real}.ply` of the procedural world)."""
    import open3d as o3d

    path = Path(path)
    mesh = o3d.io.read_triangle_mesh(str(path))
    if len(mesh.triangles) == 0:
        raise LayoutError("mesh has no triangles (missing or unreadable)", path)
    if not mesh.has_vertex_colors():
        raise LayoutError("mesh has no vertex colours: instance ids (red = id / 255) are unknown", path)
    vertices = np.asarray(mesh.vertices)
    triangles = np.asarray(mesh.triangles)
    ids = np.rint(np.asarray(mesh.vertex_colors)[:, 0] * 255).astype(np.int64)
    tri_ids = ids[triangles[:, 0]]
    return {int(i): (vertices, triangles[tri_ids == i]) for i in np.unique(tri_ids)}


def extract_objects(
    source: DepthLayout | str | Path,
    split: str = "val",
    depth_source: DepthSource = "scan",
    *,
    min_points: int = 64,
    num_points: int = 256,
    gt_points: int = 16384,
    voxel_m: float = 0.02,
    gt_source: str = "auto",
    categories: Sequence[str] = CATEGORIES,
    margin: float = 0.25,
    scenes: Iterable[str] | None = None,
    max_frames_per_scene: int | None = None,
    seed: int = 0,
    name: str | None = None,
    progress: bool = False,
    instances: str = "auto",
) -> ObjectSet:
    """Per-object partial clouds of a split as `depth_source` captures them (see the package docstring, step 1).

    source: a layout (procedural world or any layout with `<frame>_inst.png` and `meshes/<scene>/scene.json`);
    depth_source: "scan" (the real capture), "gt" / "cad" (the CAD render) or callable(ref) -> depth_m [H, W]
    of the layout camera, or (depth_m, camera) for a crop / resize of it (a model-size simulator output);
    min_points: objects with fewer points after voxel downsampling are skipped; num_points: points per
    object; gt_points: complete-shape samples per object; voxel_m: downsampling voxel (metres, 0 = off);
    gt_source: "mesh" (`meshes/<scene>/real.ply`), "scan" (all real frames) or "auto" (mesh when present);
    margin: simulated points farther than this (object-frame units) outside the ground-truth box are dropped;
    instances: the object masks — "cad" (`DepthLayout.cad_instance`: the CAD rendering's ids, for depth made
    from the CAD, which must not be cut with the real side's labels), "real" (`<frame>_inst.png`: the real
    capture's labels) or "auto" ("real" for "scan", else "cad" when the layout has CAD ids, else "real").
    Deterministic for a seed; each object's resampling depends only on (seed, scene, instance)."""
    from tqdm.auto import tqdm

    layout = source if isinstance(source, DepthLayout) else DepthLayout(source)
    if gt_source not in ("auto", "mesh", "scan"):
        raise ConfigError(f"gt_source must be 'auto', 'mesh' or 'scan', got {gt_source!r}")
    if min_points < 1 or num_points < 1 or gt_points < 1:
        raise ConfigError(
            f"min_points, num_points and gt_points must be >= 1, got {min_points}, {num_points}, {gt_points}"
        )
    categories = tuple(categories)
    if instances not in ("auto", "cad", "real"):
        raise ConfigError(f"instances must be 'auto', 'cad' or 'real', got {instances!r}")
    fetch, source_name = _resolve_source(depth_source)
    by_scene: dict[str, list[FrameRef]] = {}
    for ref in layout.frames(split):
        by_scene.setdefault(ref.scene, []).append(ref)
    wanted = sorted(by_scene) if scenes is None else [s for s in scenes if s in by_scene]

    cut = _Cut(min_points, num_points, gt_points, voxel_m, margin)
    rows: list[dict] = []
    skipped = {"few_points": 0, "no_gt": 0}
    frames_used = 0
    for scene in tqdm(wanted, desc=f"objects ({source_name})", disable=not progress):
        table = scene_categories(layout, scene, categories)
        if not table:
            continue
        scene_refs = by_scene[scene][:max_frames_per_scene] if max_frames_per_scene else by_scene[scene]
        mesh_path = layout.mesh_path(scene, "real")
        use_mesh = gt_source == "mesh" or (gt_source == "auto" and mesh_path.is_file())
        if gt_source == "mesh" and not mesh_path.is_file():
            raise LayoutError("gt_source='mesh' but the scene has no real mesh", mesh_path)
        partial, real = _scene_clouds(layout, scene_refs, table, fetch, not use_mesh, instances)
        frames_used += len(scene_refs)
        meshes = instance_meshes(mesh_path) if use_mesh else {}
        for iid, category in sorted(table.items()):
            rng = np.random.default_rng([int(seed), zlib.crc32(scene.encode()), iid])
            row = cut(partial[iid], meshes.get(iid), None if use_mesh else real[iid], rng)
            if isinstance(row, str):
                skipped[row] += 1
                continue
            rows.append({**row, "category": categories.index(category), "scene": scene, "instance": iid})
    meta = {
        "source": name or source_name,
        "split": split,
        "frames": frames_used,
        "skipped": skipped,
        "gt_source": gt_source,
        "instances": instances,
        "voxel_m": voxel_m,
        "min_points": min_points,
    }
    if not rows:
        warnings.warn(f"extract_objects({source_name}, {split}): no object has >= {min_points} points", stacklevel=2)
    return _object_set(rows, categories, meta, num_points, gt_points)


def _scene_clouds(
    layout: DepthLayout, refs: Sequence[FrameRef], instances: Iterable[int], fetch, with_real: bool, masks: str = "real"
) -> tuple[dict[int, list[np.ndarray]], dict[int, list[np.ndarray]] | None]:
    """(partial, real): per instance id, its world points [K, 3] of each frame of `refs` as the depth source
    `fetch` captures them, and (with_real, else None) as the real capture does. The partial clouds are cut with
    the instance ids `masks` says (see `extract_objects`), resampled to the source's camera; the real clouds
    with the real capture's own."""
    partial: dict[int, list[np.ndarray]] = {i: [] for i in instances}
    real: dict[int, list[np.ndarray]] = {i: [] for i in partial}
    for ref in refs:
        frame = layout.read_frame(ref, instance=True)
        use_cad = masks == "cad" or (masks == "auto" and fetch != "real" and layout.has_cad_instance(ref))
        cad_ids = layout.cad_instance(ref) if use_cad else None
        if use_cad and cad_ids is None:
            raise LayoutError(
                "CAD instance ids of the frame are missing (no _cadinst.png and no meshes/<scene>/cad.ply)",
                layout.depth_path(ref, "cadinst"),
            )
        if "instance" not in frame and (cad_ids is None or with_real):
            raise LayoutError(
                "instance ids of the frame are missing (needed to cut objects out)", layout.depth_path(ref, "inst")
            )
        depth, cam = _call_source(fetch, ref, layout, frame)
        ids = resample_to_camera(frame["instance"] if cad_ids is None else cad_ids, layout.camera, cam)
        _gather(partial, cam.backproject(depth, frame["pose"]), depth > 0, ids)
        if with_real:  # the complete real cloud stands in for the shape
            real_world = layout.camera.backproject(frame["real"], frame["pose"])
            _gather(real, real_world, frame["real"] > 0, frame["instance"])
    return partial, real if with_real else None


def _gather(clouds: dict[int, list[np.ndarray]], world: np.ndarray, valid: np.ndarray, ids: np.ndarray) -> None:
    """Append to clouds[i] the points of world [H, W, 3] where valid [H, W] and ids [H, W] == i (when any)."""
    for iid, pieces in clouds.items():
        sel = valid & (ids == iid)
        if sel.any():
            pieces.append(world[sel])


@dataclass(frozen=True)
class _Cut:
    """How `extract_objects` cuts one object out (its arguments of the same names)."""

    min_points: int
    num_points: int
    gt_points: int
    voxel_m: float
    margin: float

    def __call__(self, partial, mesh, real, rng: np.random.Generator) -> dict | str:
        """One object from the pieces of its partial cloud `partial` ([K, 3] world metres per frame) and its
        complete shape: `mesh` (vertices, triangles) when `real` is None, else the pieces of its real cloud.
        Returns {"points", "gt", "center", "scale", "count"} or why it is skipped: "no_gt" | "few_points"."""
        gt_world = self.complete_shape(mesh, real, rng)
        if gt_world is None:
            return "no_gt"
        try:
            center, scale = normalization(gt_world)
        except Sim2RealError:
            return "no_gt"
        if not partial:
            return "few_points"
        cloud = voxel_downsample(np.concatenate(partial).astype(np.float64), self.voxel_m)
        local = (cloud - center) * scale
        local = local[np.all(np.abs(local) <= 1.0 + self.margin, axis=1)]  # background seen through the mask
        if len(local) < self.min_points:
            return "few_points"
        return {
            "points": _resample(local, self.num_points, rng).astype(np.float32),
            "gt": ((gt_world - center) * scale).astype(np.float32),
            "center": center,
            "scale": scale,
            "count": len(local),
        }

    def complete_shape(self, mesh, real, rng: np.random.Generator) -> np.ndarray | None:
        """`gt_points` samples [G, 3] (world metres) of the mesh surface (real None), else of the real cloud
        (downsampled with voxel_m / 2); None when the object has no triangle / no real point."""
        if real is None:
            if mesh is None or len(mesh[1]) == 0:
                return None
            return sample_mesh_surface(*mesh, self.gt_points, rng)
        if not real:
            return None
        cloud = voxel_downsample(np.concatenate(real).astype(np.float64), self.voxel_m / 2)
        return _resample(cloud, self.gt_points, rng)


def _object_set(
    rows: Sequence[dict], categories: tuple[str, ...], meta: dict, num_points: int, gt_points: int
) -> ObjectSet:
    """The ObjectSet of the rows of `_Cut` (with "category", "scene", "instance"); empty when there are none."""
    if not rows:
        return ObjectSet(
            torch.zeros(0, num_points, 3),
            torch.zeros(0, dtype=torch.int64),
            category_names=categories,
            gt_points=torch.zeros(0, gt_points, 3),
            meta=meta,
        )
    return ObjectSet(
        points=torch.from_numpy(np.stack([r["points"] for r in rows])),
        categories=torch.tensor([r["category"] for r in rows]),
        scenes=[r["scene"] for r in rows],
        instances=[r["instance"] for r in rows],
        category_names=categories,
        gt_points=torch.from_numpy(np.stack([r["gt"] for r in rows])),
        centers=torch.from_numpy(np.stack([r["center"] for r in rows])),
        scales=torch.tensor([r["scale"] for r in rows], dtype=torch.float64),
        counts=torch.tensor([r["count"] for r in rows]),
        meta=meta,
    )


__all__ = [
    "DepthSource",
    "ObjectSet",
    "extract_objects",
    "folder_depth_source",
    "instance_meshes",
    "resample_to_camera",
    "scene_categories",
    "simulator_depth_source",
    "voxel_downsample",
]
