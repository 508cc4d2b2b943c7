"""The downstream task of the benchmark: 3D networks trained on a simulator's output, tested on real captures
(the paper's Tables 1-3 analogs on the procedural world; DESIGN §5 item 4).

Paper (Sec. 4.2-4.3): DisCo (instance reconstruction) and OcCo/DGCNN (object classification) are
pre-trained on simulated partial point clouds and evaluated on real scans, zero-shot or after a few-shot
fine-tuning. Here, tiny and CPU-fast:

1. **Objects** (`extract_objects`): for each scene of a split and each furniture instance, the instance's
   pixels of every frame are back-projected with the frame's camera and camera-to-world pose
   (`Camera.backproject`) and gathered over the scene's frames: a partial, noisy cloud of the object as the
   simulator "captures" it. The depth comes from any source — the real scan, the CAD render, or a
   simulator's output (`simulator_depth_source`, `folder_depth_source`, or any `callable(ref)`); the
   instance ids are those of the real capture (`<frame>_inst.png`), resampled to the source's camera when
   the simulator works on a crop. Clouds are voxel-downsampled (`voxel_m`), objects with fewer than
   `min_points` points are skipped, the rest resampled to `num_points`.
   Ground truth: the category (scene.json's instance table) and the complete shape: `gt_points` surface
   samples of the instance's part of `meshes/<scene>/real.ply` (vertex colour red = instance id / 255);
   when a scene has no mesh, the complete *real* cloud (all frames of the real depth) stands in
   (`gt_source="scan"`, or "auto" falls back to it). Every object lives in its **object frame**: the
   DisCo normalisation of its ground-truth shape (bounding-box centre, longest side -> [-1, 1]), the
   annotated box LASA provides for its objects; simulated points outside the box grown by `margin`
   (background seen through the instance mask where the simulated geometry is not where the annotation
   says) are dropped.
2. **Classification**: `PointNetClassifier` (shared per-point MLP, max-pool, MLP head) over the six
   categories; training augments with a random rotation about the up axis (z), scaling and jitter.
   Metrics: accuracy and balanced accuracy (mean per-category recall).
3. **Reconstruction**: `OccupancyNetwork` (PointNet encoder -> latent; MLP decoder of (latent, Fourier
   features of xyz) -> occupancy logit), trained on query points labelled from the ground-truth surface
   samples: **a query is occupied when it lies within `occ_threshold` (object-frame units, default 0.06)
   of the surface** — a thickened-surface label, since furniture is thin and a point-cloud ground truth has
   no defined inside (the "shell" occupancy of `metrics.disco_metrics`). Scores per test object:
   `iou` = volumetric IoU of predicted vs ground-truth occupancy on `eval_points` points uniform in
   [-1, 1]^3 (the DisCo / ONet definition, with the network's own shell thickness); `cd_l2_x1000`, `fscore`
   from `metrics.disco_metrics` between the predicted surface points and the ground-truth samples. Surface
   points (`extract_surface`): lattice points of a `grid`^3 lattice with occupancy > 0.5, densified inside
   their cells, then pulled onto the shell's mid-surface by one mean-shift step (`thin_shell`); without
   that last step every point would sit up to `occ_threshold` off the surface. The ceiling of the protocol
   is `evaluate_reconstruction(None, test, oracle=True)` (the ground-truth shell through the same
   extraction): on the tiny procedural world (24 scenes, 27 val objects, 16384 gt samples each) IoU 1,
   CD-L2 0.21, F@0.01 0.62 (grid 32) — F is capped by the lattice and the gt sample density, not by the network.
   `evaluate_reconstruction(None, test)` scores the partial input itself (shell around the input points):
   what a network must beat.
4. **Protocol** (`run_downstream`): for each simulator's training set and seed, train from scratch
   (zero-shot: test on real directly) and, for each k in `few_shot_k`, fine-tune a copy on k real objects
   per category (the paper's pre-train + few-shot fine-tune); "real" (trained on real captures) is the
   upper bound. `summarize` gives mean ± std over seeds; `summary_markdown` a table.

open3d is imported lazily (only to read the per-instance meshes).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn
from torch.nn import functional as F

from sim2real_kit.camera import Camera
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.data.shapes import CATEGORIES
from sim2real_kit.depth import check_depth, read_depth_png
from sim2real_kit.errors import ConfigError, DepthFormatError, LayoutError, Sim2RealError
from sim2real_kit.metrics import disco_metrics, normalization, sample_mesh_surface

ROOM_ID_MIN = 100  # instance ids >= 100 are floor / walls / ceiling (data.scenes)
TASKS = ("classification", "reconstruction")
OCC_THRESHOLD = 0.06  # shell half-thickness of the occupancy label, object-frame units ([-1, 1])
MIN_PRED_POINTS = 16  # predicted surface points kept when no grid point passes 0.5

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
        import json

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
        import json

        path = Path(path)
        if not path.is_file():
            raise Sim2RealError("object set file does not exist", path)
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                arrays = {k: torch.from_numpy(z[k]) for k in z.files if k != "header"}
        except (OSError, ValueError, KeyError) as e:
            raise Sim2RealError(f"cannot read object set ({e})", path) from None
        return cls(**arrays, scenes=header["scenes"], instances=header["instances"],
                   category_names=tuple(header["category_names"]), meta=header["meta"])  # fmt: skip


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
    import json

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
) -> ObjectSet:
    """Per-object partial clouds of a split as `depth_source` captures them (see the module docstring).

    source: a layout (procedural world or any layout with `<frame>_inst.png` and `meshes/<scene>/scene.json`);
    depth_source: "scan" (the real capture), "gt" / "cad" (the CAD render) or callable(ref) -> depth_m [H, W]
    of the layout camera, or (depth_m, camera) for a crop / resize of it (a model-size simulator output);
    min_points: objects with fewer points after voxel downsampling are skipped; num_points: points per
    object; gt_points: complete-shape samples per object; voxel_m: downsampling voxel (metres, 0 = off);
    gt_source: "mesh" (`meshes/<scene>/real.ply`), "scan" (all real frames) or "auto" (mesh when present);
    margin: simulated points farther than this (object-frame units) outside the ground-truth box are dropped.
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
    fetch, source_name = _resolve_source(depth_source)
    refs = layout.frames(split)
    by_scene: dict[str, list[FrameRef]] = {}
    for ref in refs:
        by_scene.setdefault(ref.scene, []).append(ref)
    wanted = sorted(by_scene) if scenes is None else [s for s in scenes if s in by_scene]

    rows: dict[str, list] = {k: [] for k in ("points", "gt", "cat", "scene", "inst", "center", "scale", "count")}
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
        partial: dict[int, list[np.ndarray]] = {i: [] for i in table}
        complete: dict[int, list[np.ndarray]] = {i: [] for i in table}
        for ref in scene_refs:
            frame = layout.read_frame(ref, instance=True)
            if "instance" not in frame:
                raise LayoutError(
                    "instance ids of the frame are missing (needed to cut objects out)", layout.depth_path(ref, "inst")
                )
            instance = frame["instance"]
            depth, cam = _call_source(fetch, ref, layout, frame)
            inst = resample_to_camera(instance, layout.camera, cam)
            world = cam.backproject(depth, frame["pose"])  # [H, W, 3] metres
            valid = depth > 0
            for iid in table:
                sel = valid & (inst == iid)
                if sel.any():
                    partial[iid].append(world[sel])
            if not use_mesh:  # the complete real cloud stands in for the shape
                real_world = layout.camera.backproject(frame["real"], frame["pose"])
                for iid in table:
                    sel = (frame["real"] > 0) & (instance == iid)
                    if sel.any():
                        complete[iid].append(real_world[sel])
            frames_used += 1
        meshes = instance_meshes(mesh_path) if use_mesh else {}
        for iid, category in sorted(table.items()):
            rng = np.random.default_rng([int(seed), zlib.crc32(scene.encode()), iid])
            # ground-truth shape, world metres
            if use_mesh:
                if iid not in meshes or len(meshes[iid][1]) == 0:
                    skipped["no_gt"] += 1
                    continue
                gt_world = sample_mesh_surface(*meshes[iid], gt_points, rng)
            else:
                if not complete[iid]:
                    skipped["no_gt"] += 1
                    continue
                cloud = voxel_downsample(np.concatenate(complete[iid]).astype(np.float64), voxel_m / 2)
                gt_world = _resample(cloud, gt_points, rng)
            try:
                center, scale = normalization(gt_world)
            except Sim2RealError:
                skipped["no_gt"] += 1
                continue
            # the simulator's partial cloud, in the object frame
            if not partial[iid]:
                skipped["few_points"] += 1
                continue
            cloud = voxel_downsample(np.concatenate(partial[iid]).astype(np.float64), voxel_m)
            local = (cloud - center) * scale
            local = local[np.all(np.abs(local) <= 1.0 + margin, axis=1)]
            if len(local) < min_points:
                skipped["few_points"] += 1
                continue
            rows["points"].append(_resample(local, num_points, rng).astype(np.float32))
            rows["gt"].append(((gt_world - center) * scale).astype(np.float32))
            rows["cat"].append(categories.index(category))
            rows["scene"].append(scene)
            rows["inst"].append(iid)
            rows["center"].append(center)
            rows["scale"].append(scale)
            rows["count"].append(len(local))
    meta = {"source": name or source_name, "split": split, "frames": frames_used, "skipped": skipped,
            "gt_source": gt_source, "voxel_m": voxel_m, "min_points": min_points}  # fmt: skip
    if not rows["points"]:
        warnings.warn(f"extract_objects({source_name}, {split}): no object has >= {min_points} points", stacklevel=2)
        return ObjectSet(torch.zeros(0, num_points, 3), torch.zeros(0, dtype=torch.int64), category_names=categories,
                         gt_points=torch.zeros(0, gt_points, 3), meta=meta)  # fmt: skip
    return ObjectSet(
        points=torch.from_numpy(np.stack(rows["points"])),
        categories=torch.tensor(rows["cat"]),
        scenes=rows["scene"],
        instances=rows["inst"],
        category_names=categories,
        gt_points=torch.from_numpy(np.stack(rows["gt"])),
        centers=torch.from_numpy(np.stack(rows["center"])),
        scales=torch.tensor(rows["scale"], dtype=torch.float64),
        counts=torch.tensor(rows["count"]),
        meta=meta,
    )


# ====================================================================== networks
class SharedMLP(nn.Module):
    """PointNet's shared per-point MLP: Linear + BatchNorm (over all points of the batch) + ReLU per width.
    [B, N, C] -> [B, N, widths[-1]]."""

    def __init__(self, in_dim: int, widths: Sequence[int]):
        super().__init__()
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        for w in widths:
            self.linears.append(nn.Linear(in_dim, w))
            self.norms.append(nn.BatchNorm1d(w))
            in_dim = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        for linear, norm in zip(self.linears, self.norms):
            x = F.relu(norm(linear(x).reshape(B * N, -1)).reshape(B, N, -1))
        return x


class PointNetClassifier(nn.Module):
    """PointNet (Qi et al. 2017, without the T-nets): shared MLP `widths`, max-pool, head Linear-BN-ReLU-Dropout
    -> `num_classes` logits. Input [B, N, 3] object-frame points."""

    def __init__(self, num_classes: int = len(CATEGORIES), widths: Sequence[int] = (64, 128, 256), head: int = 128,
                 dropout: float = 0.3):  # fmt: skip
        super().__init__()
        self.encoder = SharedMLP(3, widths)
        self.head = nn.Sequential(
            nn.Linear(widths[-1], head),
            nn.BatchNorm1d(head),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(head, num_classes),
        )

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(points).amax(dim=1))  # [B, num_classes]


class OccupancyNetwork(nn.Module):
    """A small occupancy network (Mescheder et al. 2019 in spirit): PointNet encoder of the partial cloud ->
    latent [B, latent]; decoder MLP of (latent, xyz, Fourier features sin/cos(2^k pi xyz), k < `fourier`)
    -> occupancy logit per query. forward(points [B, N, 3], queries [B, Q, 3]) -> logits [B, Q]."""

    def __init__(self, latent: int = 128, hidden: int = 128, layers: int = 3, widths: Sequence[int] = (64, 128, 256),
                 fourier: int = 4):  # fmt: skip
        super().__init__()
        self.encoder = SharedMLP(3, widths)
        self.to_latent = nn.Linear(widths[-1], latent)
        self.fourier = int(fourier)
        in_dim = latent + 3 + 6 * self.fourier
        mlp: list[nn.Module] = []
        for _ in range(layers):
            mlp += [nn.Linear(in_dim, hidden), nn.ReLU()]
            in_dim = hidden
        mlp.append(nn.Linear(hidden, 1))
        self.decoder = nn.Sequential(*mlp)

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.encoder(points).amax(dim=1))  # [B, latent]

    def embed(self, queries: torch.Tensor) -> torch.Tensor:
        if not self.fourier:
            return queries
        freqs = (2.0 ** torch.arange(self.fourier, device=queries.device, dtype=queries.dtype)) * math.pi
        angles = queries[..., None] * freqs  # [B, Q, 3, K]
        return torch.cat([queries, angles.sin().flatten(-2), angles.cos().flatten(-2)], dim=-1)

    def decode(self, latent: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        z = latent[:, None, :].expand(-1, queries.shape[1], -1)  # [B, Q, latent]
        return self.decoder(torch.cat([z, self.embed(queries)], dim=-1)).squeeze(-1)  # [B, Q]

    def forward(self, points: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(points), queries)


# ====================================================================== training helpers
@contextlib.contextmanager
def _seeded(seed: int):
    """torch's global RNG seeded for model init / dropout inside the block, restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def _check_set(objects: ObjectSet, what: str, need_gt: bool = False) -> None:
    if len(objects) == 0:
        raise ConfigError(f"{what}: the object set is empty (no object had enough points; lower min_points?)")
    if need_gt and objects.gt_points is None:
        raise ConfigError(f"{what}: the object set has no gt_points (complete shapes) for reconstruction")


def _augment(points: torch.Tensor, gen: torch.Generator, jitter: float = 0.01) -> torch.Tensor:
    """Random rotation about z (world up), anisotropic scale 0.9-1.1 and Gaussian jitter; [B, N, 3]."""
    B = points.shape[0]
    theta = torch.rand(B, generator=gen) * 2 * math.pi
    c, s = theta.cos(), theta.sin()
    rot = torch.zeros(B, 3, 3)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    scale = 0.9 + 0.2 * torch.rand(B, 1, 3, generator=gen)
    return (points @ rot.transpose(1, 2)) * scale + jitter * torch.randn(points.shape, generator=gen)


def train_classifier(
    train: ObjectSet,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    augment: bool = True,
    model: PointNetClassifier | None = None,
) -> PointNetClassifier:
    """Train (or fine-tune, when `model` is given) a PointNet classifier on `train`; AdamW, cross-entropy,
    batches drawn uniformly with replacement from a seeded generator. Returns the model in eval mode."""
    _check_set(train, "train_classifier")
    with _seeded(seed):
        model = model if model is not None else PointNetClassifier(len(train.category_names))
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(int(seed))
        b = max(2, min(batch_size, len(train)))  # BatchNorm needs >= 2 samples
        model.train()
        for _ in range(int(steps)):
            idx = torch.randint(len(train), (b,), generator=gen)
            pts = train.points[idx]
            if augment:
                pts = _augment(pts, gen)
            loss = F.cross_entropy(model(pts), train.categories[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def evaluate_classifier(model: PointNetClassifier, test: ObjectSet, batch_size: int = 256) -> dict[str, float]:
    """{"accuracy", "balanced_accuracy" (mean recall over the categories present in `test`), "n_test"}."""
    _check_set(test, "evaluate_classifier")
    model.eval()
    pred = torch.cat([model(test.points[i : i + batch_size]).argmax(1) for i in range(0, len(test), batch_size)])
    correct = (pred == test.categories).float()
    recalls = [float(correct[test.categories == c].mean()) for c in test.categories.unique().tolist()]
    return {"accuracy": float(correct.mean()), "balanced_accuracy": float(np.mean(recalls)), "n_test": len(test)}


def occupancy_labels(gt_points, queries, threshold: float = OCC_THRESHOLD) -> np.ndarray:
    """Occupancy label of queries [Q, 3]: within `threshold` of the ground-truth surface samples [G, 3]."""
    dist, _ = cKDTree(np.asarray(gt_points, dtype=np.float64)).query(np.asarray(queries, dtype=np.float64), k=1)
    return dist <= threshold


def occupancy_pool(
    objects: ObjectSet, queries: int = 4096, threshold: float = OCC_THRESHOLD, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training queries per object: half near the surface (a gt sample + N(0, threshold)), half uniform in
    [-1.1, 1.1]^3, with their labels. Returns (queries [M, Q, 3] float32, labels [M, Q] float32)."""
    _check_set(objects, "occupancy_pool", need_gt=True)
    rng = np.random.default_rng(seed)
    qs, ls = [], []
    for gt in objects.gt_points.numpy():
        near = gt[rng.integers(len(gt), size=queries // 2)] + rng.normal(0, threshold, (queries // 2, 3))
        far = rng.uniform(-1.1, 1.1, (queries - queries // 2, 3))
        q = np.concatenate([near, far])
        qs.append(q)
        ls.append(occupancy_labels(gt, q, threshold))
    return torch.from_numpy(np.stack(qs)).float(), torch.from_numpy(np.stack(ls)).float()


def train_occupancy(
    train: ObjectSet,
    steps: int = 300,
    batch_size: int = 16,
    queries_per_object: int = 512,
    lr: float = 1e-3,
    threshold: float = OCC_THRESHOLD,
    seed: int = 0,
    model: OccupancyNetwork | None = None,
    pool: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> OccupancyNetwork:
    """Train (or fine-tune) an occupancy network: partial cloud -> thickened-surface occupancy of the complete
    shape (labels within `threshold` of the gt samples). BCE on `queries_per_object` pool queries per object."""
    _check_set(train, "train_occupancy", need_gt=True)
    queries, labels = pool if pool is not None else occupancy_pool(train, threshold=threshold, seed=seed)
    with _seeded(seed):
        model = model if model is not None else OccupancyNetwork()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(int(seed) + 1)
        b = max(2, min(batch_size, len(train)))
        Q = queries.shape[1]
        model.train()
        for _ in range(int(steps)):
            idx = torch.randint(len(train), (b,), generator=gen)
            qidx = torch.randint(Q, (b, queries_per_object), generator=gen)
            q = torch.gather(queries[idx], 1, qidx[..., None].expand(-1, -1, 3))  # [b, P, 3]
            y = torch.gather(labels[idx], 1, qidx)  # [b, P]
            loss = F.binary_cross_entropy_with_logits(model(train.points[idx], q), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def grid_points(resolution: int = 32) -> np.ndarray:
    """[R^3, 3] lattice points spanning [-1, 1]^3 (both ends included)."""
    axis = np.linspace(-1.0, 1.0, resolution)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


@torch.no_grad()
def predict_occupancy(
    model: OccupancyNetwork, points: torch.Tensor, queries: np.ndarray, chunk: int = 32768
) -> np.ndarray:
    """P(occupied) [Q] of queries [Q, 3] given one partial cloud [N, 3]."""
    model.eval()
    latent = model.encode(points[None].float())
    q = torch.from_numpy(np.asarray(queries, dtype=np.float32))
    probs = [torch.sigmoid(model.decode(latent, q[None, i : i + chunk]))[0] for i in range(0, len(q), chunk)]
    return torch.cat(probs).numpy()


def thin_shell(points: np.ndarray, radius: float, steps: int = 1) -> np.ndarray:
    """Mean-shift steps collapsing a shell onto its mid-surface: each point [K, 3] moves to the mean of the
    points within `radius` (neighbourhoods of the input points). For a flat shell of half-thickness t and
    radius = 2 t, one step maps an offset t to t / 4 (the ball's cross-section weights its own side more), a
    second to ~0; but along the shell, edges and thin parts shrink inwards by a fraction of the radius each
    step. On the procedural furniture, the oracle's F@0.01 is 0.62 after one step and 0.44 after two: one is
    the default."""
    if len(points) < 2:
        return points
    tree = cKDTree(points)
    pairs = tree.query_pairs(radius, output_type="ndarray")  # [P, 2], i < j: the neighbourhoods, fixed
    n = len(points)
    src = np.concatenate([pairs[:, 0], pairs[:, 1]])  # each pair counts for both of its points
    dst = np.concatenate([pairs[:, 1], pairs[:, 0]])
    counts = 1.0 + np.bincount(src, minlength=n)
    moved = points.astype(np.float64)
    for _ in range(steps):
        sums = moved + np.stack([np.bincount(src, weights=moved[dst, k], minlength=n) for k in range(3)], axis=1)
        moved = sums / counts[:, None]
    return moved


def extract_surface(
    prob_fn: Callable[[np.ndarray], np.ndarray],
    grid: int = 32,
    threshold: float = OCC_THRESHOLD,
    refine: int = 8,
    seed: int = 0,
) -> tuple[np.ndarray, bool]:
    """Surface points [K, 3] of a shell occupancy `prob_fn(queries [Q, 3]) -> P(occupied) [Q]`:
    1. the `grid`^3 lattice points with P > 0.5 (the `MIN_PRED_POINTS` most likely when fewer pass);
    2. `refine` random points in the cell of each of them, kept when P > 0.5 (denser points at the cost of
       `refine` x the occupied lattice points, not `refine` x the whole volume);
    3. `thin_shell` with radius 2 x threshold: the shell collapses onto its mid-surface.
    Returns (points, empty) with empty = True when step 1 had to fall back on the most likely points."""
    lattice = grid_points(grid)
    probs = prob_fn(lattice)
    keep = probs > 0.5
    empty = int(keep.sum()) < MIN_PRED_POINTS
    if empty:
        keep = np.zeros_like(keep)
        keep[np.argsort(probs)[-MIN_PRED_POINTS:]] = True
    points = lattice[keep]
    if refine > 0 and not empty:
        spacing = 2.0 / (grid - 1)
        rng = np.random.default_rng(seed)
        cand = (points[:, None, :] + rng.uniform(-spacing / 2, spacing / 2, (len(points), refine, 3))).reshape(-1, 3)
        points = np.concatenate([points, cand[prob_fn(cand) > 0.5]])
    return thin_shell(points, 2 * threshold), empty


def evaluate_reconstruction(
    model: OccupancyNetwork | None,
    test: ObjectSet,
    grid: int = 32,
    eval_points: int = 16384,
    threshold: float = OCC_THRESHOLD,
    seed: int = 0,
    oracle: bool = False,
    per_category: bool = False,
) -> dict[str, float]:
    """Scores of reconstructions of the test objects (see the module docstring), means over objects:
    {"iou", "miou" (mean over categories of the per-category mean IoU), "cd_l2_x1000", "fscore", "empty_rate",
    "n_test"} (+ "iou[<category>]" with `per_category`). Surface points from `extract_surface`.

    model None: the partial input itself is the prediction (occupied within `threshold` of an input point;
    surface points = the input) — the floor a network must beat; `oracle=True` (model None): the
    ground-truth shell occupancy through the same surface extraction — the ceiling of this protocol."""
    _check_set(test, "evaluate_reconstruction", need_gt=True)
    rng = np.random.default_rng(seed)
    uniform = rng.uniform(-1.0, 1.0, (eval_points, 3))
    ious, cds, fs, empty = [], [], [], 0
    for i in range(len(test)):
        gt = test.gt_points[i].numpy().astype(np.float64)
        partial = test.points[i]
        gt_occ = occupancy_labels(gt, uniform, threshold)
        if model is None and not oracle:
            pred_occ = occupancy_labels(partial.numpy(), uniform, threshold)
            surface = partial.numpy()
        else:
            if model is None:

                def prob_fn(q, gt=gt):
                    return occupancy_labels(gt, q, threshold).astype(np.float32)
            else:

                def prob_fn(q, partial=partial):
                    return predict_occupancy(model, partial, q)

            pred_occ = prob_fn(uniform) > 0.5
            surface, was_empty = extract_surface(prob_fn, grid, threshold, seed=seed + i)
            empty += was_empty
        union = np.count_nonzero(pred_occ | gt_occ)
        ious.append(np.count_nonzero(pred_occ & gt_occ) / union if union else 0.0)
        scores = disco_metrics(surface, gt, num_points=eval_points, seed=seed + i)
        cds.append(scores["cd_l2_x1000"])
        fs.append(scores["fscore"])
    ious = np.asarray(ious)
    cats = test.categories.numpy()
    per_cat = {test.category_names[c]: float(ious[cats == c].mean()) for c in np.unique(cats)}
    out = {
        "iou": float(ious.mean()),
        "miou": float(np.mean(list(per_cat.values()))),
        "cd_l2_x1000": float(np.mean(cds)),
        "fscore": float(np.mean(fs)),
        "empty_rate": empty / len(test),
        "n_test": len(test),
    }
    if per_category:
        out.update({f"iou[{name}]": value for name, value in per_cat.items()})
    return out


# ====================================================================== protocol
def few_shot_subset(objects: ObjectSet, k: int, seed: int = 0) -> ObjectSet:
    """k objects per category (all of a category when it has fewer), drawn with a seeded generator."""
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    picks = []
    for c in objects.categories.unique().tolist():
        idx = (objects.categories == c).nonzero().reshape(-1)
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    return objects.subset(torch.cat(picks).sort().values)


def run_downstream(
    train_objects_by_simulator: Mapping[str, ObjectSet],
    test_objects: ObjectSet,
    seeds: Sequence[int] = (0, 1, 2),
    few_shot_k: int | Sequence[int] = 0,
    *,
    real_train_objects: ObjectSet | None = None,
    tasks: Sequence[str] = TASKS,
    steps: int = 300,
    finetune_steps: int | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    occ_threshold: float = OCC_THRESHOLD,
    grid: int = 32,
    eval_points: int = 16384,
    per_category: bool = False,
    num_threads: int | None = None,
    progress: bool = False,
) -> list[dict]:
    """The downstream benchmark: one row per (simulator, task, setting, seed).

    train_objects_by_simulator: {name: ObjectSet of the train split as that simulator captures it} (e.g.
    "cad", "random", "physical", "pix2pix", "cyclegan", "stage1", "stage2"); test_objects: the val split's
    real captures (`extract_objects(layout, "val", "scan")`). real_train_objects: the train split's real
    captures — added as simulator "real" (the upper bound) unless the dict has one, and the pool of the
    few-shot fine-tuning sets. few_shot_k: 0 (zero-shot: trained on simulated data only), k > 0 (pre-trained
    on the simulator's data, then fine-tuned `finetune_steps` (default steps // 2) on k real objects per
    category, seeded) or a sequence of them (one pre-training shared by all). Row keys: simulator, task,
    setting ("zero-shot" | "few-shot-k"), seed, n_train (objects seen, fine-tuning set included), seconds
    (wall time of pre-training + fine-tuning + evaluation), and the metrics of `evaluate_classifier` /
    `evaluate_reconstruction`. num_threads: torch intra-op threads during the run, restored afterwards (None:
    leave them; 1 is the fastest for these tiny networks on a busy CPU: measured 5-15x faster than 2 threads at
    load 3 on 2 cores)."""
    ks = [few_shot_k] if isinstance(few_shot_k, int) else list(few_shot_k)
    if any(k < 0 for k in ks) or not ks:
        raise ConfigError(f"few_shot_k must be >= 0 (0 = zero-shot), got {few_shot_k!r}")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ConfigError(f"unknown downstream task {unknown[0] if unknown else tasks!r}; valid: {', '.join(TASKS)}")
    if any(k > 0 for k in ks) and real_train_objects is None:
        raise ConfigError("few_shot_k > 0 needs real_train_objects (the train split's real captures)")
    sims = dict(train_objects_by_simulator)
    if real_train_objects is not None and "real" not in sims:
        sims["real"] = real_train_objects
    if not sims:
        raise ConfigError("train_objects_by_simulator is empty")
    for name, objects in sims.items():
        _check_set(objects, f"simulator {name!r}", need_gt="reconstruction" in tasks)
    _check_set(test_objects, "test_objects", need_gt="reconstruction" in tasks)
    finetune_steps = max(1, steps // 2) if finetune_steps is None else int(finetune_steps)

    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        return _run_jobs(sims, test_objects, seeds, ks, real_train_objects, tasks, steps, finetune_steps, batch_size,
                         lr, occ_threshold, grid, eval_points, per_category, progress)  # fmt: skip
    finally:
        torch.set_num_threads(before)


def _run_jobs(sims, test_objects, seeds, ks, real_train_objects, tasks, steps, finetune_steps, batch_size, lr,
              occ_threshold, grid, eval_points, per_category, progress) -> list[dict]:  # fmt: skip
    from tqdm.auto import tqdm

    rows: list[dict] = []
    jobs = [(name, task, seed) for name in sims for task in tasks for seed in seeds]
    for name, task, seed in tqdm(jobs, desc="downstream", disable=not progress):
        train = sims[name]
        t0 = time.perf_counter()
        if task == "classification":
            base = train_classifier(train, steps, batch_size, lr, seed)
        else:
            base = train_occupancy(train, steps, max(2, batch_size // 2), lr=lr, threshold=occ_threshold, seed=seed)
        pretrain_s = time.perf_counter() - t0
        for k in ks:
            t1 = time.perf_counter()
            model, n_train = base, len(train)
            if k > 0:
                shots = few_shot_subset(real_train_objects, k, seed)
                n_train += len(shots)
                if task == "classification":
                    model = train_classifier(shots, finetune_steps, batch_size, lr, seed + 1, model=copy.deepcopy(base))
                else:
                    model = train_occupancy(shots, finetune_steps, max(2, batch_size // 2), lr=lr,
                                            threshold=occ_threshold, seed=seed + 1, model=copy.deepcopy(base))  # fmt: skip
            if task == "classification":
                metrics = evaluate_classifier(model, test_objects)
            else:
                metrics = evaluate_reconstruction(model, test_objects, grid, eval_points, occ_threshold, seed,
                                                  per_category=per_category)  # fmt: skip
            rows.append({
                "simulator": name, "task": task, "setting": "zero-shot" if k == 0 else f"few-shot-{k}",
                "seed": int(seed), "n_train": n_train, "seconds": pretrain_s + time.perf_counter() - t1, **metrics,
            })  # fmt: skip
    return rows


def mean_spread(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, sample std (0 for one value), count) of the finite values (NaN, 0 when there are none)."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, 0.0, 0
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0, int(arr.size)


def summarize(rows: Sequence[Mapping], by: Sequence[str] = ("simulator", "task", "setting")) -> list[dict]:
    """Mean and spread over seeds of every numeric metric: one dict per group with the `by` keys, `seeds`,
    and `<metric>_mean`, `<metric>_std` (order of first appearance kept)."""
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    skip = set(by) | {"seed"}
    out = []
    for key, members in groups.items():
        entry = dict(zip(by, key))
        entry["seeds"] = len(members)
        metrics = [k for k in members[0] if k not in skip and isinstance(members[0][k], int | float)]
        for m in metrics:
            mean, std, _ = mean_spread(r.get(m) for r in members)
            entry[f"{m}_mean"], entry[f"{m}_std"] = mean, std
        out.append(entry)
    return out


def summary_markdown(
    summary: Sequence[Mapping], metrics: Sequence[str] = ("accuracy", "iou", "cd_l2_x1000", "fscore"), digits: int = 3
) -> str:
    """A markdown table "simulator | task | setting | seeds | metric (mean ± std) ..." of `summarize` output;
    a metric a row does not have is left blank."""
    head = ["simulator", "task", "setting", "seeds", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        cells = [
            str(s.get("simulator", "")),
            str(s.get("task", "")),
            str(s.get("setting", "")),
            str(s.get("seeds", "")),
        ]
        for m in metrics:
            mean = s.get(f"{m}_mean")
            cells.append("" if mean is None else f"{mean:.{digits}f} ± {s.get(f'{m}_std', 0.0):.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "ObjectSet",
    "extract_objects",
    "scene_categories",
    "instance_meshes",
    "folder_depth_source",
    "simulator_depth_source",
    "resample_to_camera",
    "voxel_downsample",
    "PointNetClassifier",
    "OccupancyNetwork",
    "SharedMLP",
    "train_classifier",
    "evaluate_classifier",
    "occupancy_labels",
    "occupancy_pool",
    "train_occupancy",
    "grid_points",
    "predict_occupancy",
    "evaluate_reconstruction",
    "extract_surface",
    "thin_shell",
    "few_shot_subset",
    "run_downstream",
    "mean_spread",
    "summarize",
    "summary_markdown",
    "TASKS",
    "OCC_THRESHOLD",
]
