"""What the benchmark measures of one simulator's output on the frame set (DESIGN §5.1-5.3, 5.5): depth
realism (AbsRel, RMSE, δ1, residual W1 on matched pixels, by distance to CAD edges and by incidence, the tail
of gross mismatches, hole rates, edge residuals), 3D realism of the fused scenes (the paper's Table-4 analog,
DisCo metrics per scene) and of each object (DisCo per object, as DisCo scores its instances), and the
disagreement of overlapping views."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sim2real_kit.config import DataConfig
from sim2real_kit.errors import Sim2RealError
from sim2real_kit.run import SampleSet


def _nan_metrics(keys: Sequence[str]) -> dict[str, float]:
    return {k: math.nan for k in keys}


MAX_DIFF_M = DataConfig.max_diff_m  # the release's 0.5 m mismatch rule (`data.max_diff_m`'s default)
DEPTH_KEYS = ("abs_rel", "rmse_mm", "delta1_pct")
W1_BIN_KEYS = (  # `metrics.residual_bins` with the default bins, as `w1_<bin>_mm`
    "w1_edge0_2_mm",
    "w1_edge2_5_mm",
    "w1_edge5_mm",
    "w1_inc0_30_mm",
    "w1_inc30_60_mm",
    "w1_inc60_90_mm",
)
HOLE_KEYS = ("hole_all_pct", "hole_edge_pct", "hole_flat_pct")
EDGE_KEYS = ("edge_mae_mm", "flat_mae_mm", "edge_std_mm", "flat_std_mm")
KEYS_3D = ("miou_pct", "cd_l2_x1000", "fscore_pct")
OBJ_KEYS = ("obj_miou_pct", "obj_cd_l2_x1000", "obj_fscore_pct")
OBJ_MIN_POINTS = 50  # an object is scored when CAD and real give it at least this many points


def depth_realism(
    sim,
    samples: SampleSet,
    edges: np.ndarray,
    real_holes: Mapping[str, float],
    *,
    max_diff_m: float = MAX_DIFF_M,
    bins: Mapping[str, np.ndarray] | None = None,
    edge_threshold_m: float = 0.05,
) -> tuple[dict, list]:
    """Depth-level metrics of simulated frames [F, S, S] against the real ones: (metrics, notes).

    - abs_rel, rmse_mm, delta1_pct: `metrics.depth_metrics` on pixels valid in both;
    - w1_mm: `metrics.matched_residual_w1` (mm): W1 of CAD − sim vs CAD − real on the pixels valid in CAD,
      sim and real whose residuals are both below `max_diff_m`; w1_pooled_mm: `metrics.residual_w1`, each map
      over its own valid pixels, every magnitude (the release's number, which a wrong-place error can game);
    - w1_<bin>_mm: the matched W1 inside each of `bins` ({name: mask [F, S, S]}; default
      `metrics.residual_bins(samples.cad, samples.camera, edge_threshold_m)`: edge0_2 / edge2_5 / edge5 px
      from the CAD depth edges, inc0_30 / inc30_60 / inc60_90 degrees of CAD incidence); NaN for an empty bin;
    - tail_pct: % of the simulator's valid pixels with |CAD − sim| >= `max_diff_m` (`metrics.tail_share`),
      tail_real_pct the same of the real capture, tail_gap_pct their absolute difference (pp);
    - hole_{all,edge,flat}_pct and their gaps to `real_holes` (hole_gap_pct, hole_edge_gap_pct,
      hole_flat_gap_pct), CAD-valid pixels without simulated depth, at `edges` or not;
    - edge_mae_mm, flat_mae_mm, edge_std_mm, flat_std_mm: residuals at the edges vs flat areas."""
    from sim2real_kit.metrics import (
        binned_residual_w1,
        depth_metrics,
        hole_rates,
        masked_edge_stats,
        matched_residual_w1,
        residual_bins,
        residual_w1,
        tail_share,
    )

    out, notes = {}, []
    try:
        m = depth_metrics(sim, samples.real)
        out.update(abs_rel=m["abs_rel"], rmse_mm=1000 * m["rmse"], delta1_pct=100 * m["delta1"])
    except Sim2RealError as e:
        out.update(_nan_metrics(DEPTH_KEYS))
        notes.append(f"depth metrics: {e}")
    try:
        out["w1_mm"] = 1000 * matched_residual_w1(samples.cad, sim, samples.real, max_diff_m)
    except Sim2RealError as e:
        out["w1_mm"] = math.nan
        notes.append(f"W1: {e}")
    try:
        out["w1_pooled_mm"] = 1000 * residual_w1(samples.cad, sim, samples.real)
    except Sim2RealError as e:
        out["w1_pooled_mm"] = math.nan
        notes.append(f"pooled W1: {e}")
    if bins is None:
        bins = residual_bins(samples.cad, samples.camera, edge_threshold_m)
    for name, w1 in binned_residual_w1(samples.cad, sim, samples.real, bins, max_diff_m).items():
        out[f"w1_{name}_mm"] = 1000 * w1
    out["tail_pct"] = 100 * tail_share(samples.cad, sim, max_diff_m)
    out["tail_real_pct"] = 100 * tail_share(samples.cad, samples.real, max_diff_m)
    out["tail_gap_pct"] = abs(out["tail_pct"] - out["tail_real_pct"])
    holes = hole_rates(samples.cad, sim, edge_mask=edges)
    for region in ("all", "edge", "flat"):
        out[f"hole_{region}_pct"] = 100 * holes[region]
        out[f"hole_{region}_gap_pct"] = abs(100 * holes[region] - real_holes[region])
    out["hole_gap_pct"] = out.pop("hole_all_gap_pct")
    stats = masked_edge_stats(samples.cad, sim, edge_mask=edges)
    out.update(
        edge_mae_mm=1000 * stats["edge_mean_abs"],
        flat_mae_mm=1000 * stats["flat_mean_abs"],
        edge_std_mm=1000 * stats["edge_std"],
        flat_std_mm=1000 * stats["flat_std"],
    )
    return out, notes


def fuse_scenes(depth, samples: SampleSet, scenes: Mapping[str, list[int]], bcfg) -> tuple[dict, dict]:
    """TSDF-fuse each scene's frames of `depth` [F, S, S]: ({scene: mesh or None}, {scene: why None})."""
    from sim2real_kit.fusion import fuse_frames

    meshes, why = {}, {}
    for scene, idx in scenes.items():
        try:
            meshes[scene] = fuse_frames(
                [depth[i] for i in idx],
                samples.poses[idx],
                samples.camera,
                voxel_m=bcfg.voxel_m,
                trunc_m=bcfg.trunc_m,
                depth_trunc_m=bcfg.depth_trunc_m,
                progress=False,
            )
        except Sim2RealError as e:
            meshes[scene], why[scene] = None, str(e)
    return meshes, why


def realism_3d(
    meshes: Mapping, real_meshes: Mapping, bcfg, num_points: int, prepared: dict | None = None
) -> tuple[dict, dict, list]:
    """DisCo metrics of each scene's fused simulator mesh against the fused real one, normalised per
    scene: (means over scenes {miou_pct, cd_l2_x1000, fscore_pct}, per-scene values, notes). NaN (with
    a note) when any scene has no mesh on either side, so every simulator is scored on the same scenes.
    prepared: a dict kept across simulators (the benchmark's) that holds each real mesh's side of the metric
    (`disco.prepare_reference`), computed once; the numbers are the same without it."""
    from sim2real_kit.disco import disco_metrics, prepare_reference

    prepared = {} if prepared is None else prepared

    per_scene, notes = {}, []
    for scene, mesh in meshes.items():
        ref = real_meshes.get(scene)
        if mesh is None or ref is None:
            per_scene[scene] = _nan_metrics(KEYS_3D)
            notes.append(f"3D: scene {scene} has no fused {'surface' if mesh is None else 'real surface'}")
            continue
        try:
            key = (scene, num_points, bcfg.shell_width)
            if key not in prepared:
                prepared[key] = prepare_reference(ref, num_points, 0, shell_width=bcfg.shell_width)
            m = disco_metrics(
                mesh,
                prepared[key],
                num_points=num_points,
                fscore_threshold=bcfg.fscore_threshold,
                seed=0,
                occupancy=bcfg.iou_occupancy,
                shell_width=bcfg.shell_width,
            )
            per_scene[scene] = {
                "miou_pct": 100 * m["iou"],
                "cd_l2_x1000": m["cd_l2_x1000"],
                "fscore_pct": 100 * m["fscore"],
            }
        except Sim2RealError as e:
            per_scene[scene] = _nan_metrics(KEYS_3D)
            notes.append(f"3D: scene {scene}: {e}")
    if notes or not per_scene:
        return _nan_metrics(KEYS_3D), per_scene, notes
    means = {k: float(np.mean([v[k] for v in per_scene.values()])) for k in KEYS_3D}
    return means, per_scene, notes


# ---------------------------------------------------------------------- per-object 3D (DisCo per instance)
@dataclass
class ObjectRef:
    """One object of the frame set: its scene, CAD instance id, pixel mask per frame index and the world
    points of the CAD and the real capture on those pixels (the same for every simulator)."""

    scene: str
    instance: int
    masks: dict[int, np.ndarray] = field(repr=False)  # frame index -> bool [S, S]
    cad: np.ndarray = field(repr=False)  # [N, 3] world points of the CAD on the mask
    real: np.ndarray = field(repr=False)  # [M, 3] world points of the real capture on the mask
    prepared: dict = field(default_factory=dict, repr=False)  # the real side of DisCo, per (points, shell width)

    @property
    def key(self) -> str:
        return f"{self.scene}/{self.instance}"


def object_points(depth, samples: SampleSet, masks: Mapping[int, np.ndarray]) -> np.ndarray:
    """World points [N, 3] of `depth` [F, S, S] on `masks` ({frame index: bool [S, S]}), valid pixels only
    (depth > 0), back-projected with the frame set's camera and each frame's camera-to-world pose."""
    pts = []
    for i, m in masks.items():
        keep = m & (depth[i] > 0)
        if keep.any():
            pts.append(samples.camera.backproject(np.asarray(depth[i], np.float64), samples.poses[i])[keep])
    return np.concatenate(pts) if pts else np.zeros((0, 3))


def object_references(
    samples: SampleSet,
    instances: np.ndarray,
    scenes: Mapping[str, list[int]],
    room_id_min: int | None = None,
    min_points: int = OBJ_MIN_POINTS,
) -> tuple[list[ObjectRef], list[str]]:
    """The objects every simulator is scored on: each CAD instance id (0 < id < `room_id_min`, default
    `downstream.ROOM_ID_MIN`: room surfaces are not objects) visible in a scene, its pixels being those of
    `instances` [F, S, S] (the layout's instance ids on the frame set) where the CAD has depth. Masks come
    from the CAD side only, never from the real capture's depth; an object is kept when the CAD and the
    real capture each give it at least `min_points` points over the scene's frames (this depends on
    the reference alone, so every simulator is scored on the same objects). Returns (objects, notes)."""
    if room_id_min is None:
        from sim2real_kit.downstream import ROOM_ID_MIN

        room_id_min = ROOM_ID_MIN
    inst = np.asarray(instances)
    if inst.shape != samples.cad.shape:
        raise Sim2RealError(f"instance ids of shape {inst.shape} do not match the frames {samples.cad.shape}")
    objects, small = [], 0
    for scene, idx in scenes.items():
        on_cad = inst[idx] * (samples.cad[idx] > 0)
        ids = [int(i) for i in np.unique(on_cad) if 0 < i < room_id_min]
        for oid in ids:
            masks = {i: (inst[i] == oid) & (samples.cad[i] > 0) for i in idx}
            masks = {i: m for i, m in masks.items() if m.any()}
            cad_pts = object_points(samples.cad, samples, masks)
            real_pts = object_points(samples.real, samples, masks)
            if len(cad_pts) < min_points or len(real_pts) < min_points:
                small += 1
                continue
            objects.append(ObjectRef(scene, oid, masks, cad_pts, real_pts))
    notes = [f"per-object 3D: {small} objects with < {min_points} CAD or real points left out"] if small else []
    return objects, notes


def object_realism(depth, samples: SampleSet, objects: Sequence[ObjectRef], bcfg, num_points: int):
    """DisCo metrics per object (`metrics.disco_metrics`) of the simulator's points on each object's CAD
    pixels against the real capture's points there, both normalised by the object's CAD points (longest
    bounding-box side -> [-1, 1], the annotated box DisCo normalises by), shell occupancy (point clouds).
    Returns (means over objects {obj_miou_pct, obj_cd_l2_x1000, obj_fscore_pct, obj_count}, {object key:
    values}, notes). An object on which the simulator has no point scores IoU 0 and F 0 and has no CD:
    the mean CD is then NaN (with a note), so that every simulator is averaged over the same objects."""
    from sim2real_kit.disco import disco_metrics, prepare_reference

    if not objects:
        return {**_nan_metrics(OBJ_KEYS), "obj_count": 0}, {}, []
    per_object, notes, empty = {}, [], []
    for obj in objects:
        pts = object_points(depth, samples, obj.masks)
        if len(pts) == 0:
            per_object[obj.key] = {"obj_miou_pct": 0.0, "obj_cd_l2_x1000": math.nan, "obj_fscore_pct": 0.0}
            empty.append(obj.key)
            continue
        key = (num_points, bcfg.shell_width)
        if key not in obj.prepared:  # the real points' side, once for every simulator
            obj.prepared[key] = prepare_reference(
                obj.real, num_points, 0, reference=obj.cad, shell_width=bcfg.shell_width
            )
        m = disco_metrics(
            pts,
            obj.prepared[key],
            num_points=num_points,
            fscore_threshold=bcfg.fscore_threshold,
            seed=0,
            occupancy="shell",
            shell_width=bcfg.shell_width,
        )
        per_object[obj.key] = {
            "obj_miou_pct": 100 * m["iou"],
            "obj_cd_l2_x1000": m["cd_l2_x1000"],
            "obj_fscore_pct": 100 * m["fscore"],
        }
    if empty:
        notes.append(f"per-object 3D: no simulated point on {len(empty)} objects ({', '.join(empty[:3])}): no CD")
    means = {k: float(np.mean([v[k] for v in per_object.values()])) for k in OBJ_KEYS}
    return {**means, "obj_count": len(objects)}, per_object, notes


def view_consistency_mm(depth, samples: SampleSet, scenes: Mapping[str, list[int]], max_diff_m=None) -> float:
    """Mean over consecutive frame pairs of each scene of `metrics.view_consistency` (median |reprojected
    z − z|), in mm; NaN when no pair overlaps."""
    from sim2real_kit.metrics import view_consistency

    values = []
    for idx in scenes.values():
        for a, b in zip(idx[:-1], idx[1:]):
            try:
                values.append(
                    view_consistency(depth[a], depth[b], samples.camera, samples.poses[a], samples.poses[b], max_diff_m)
                )
            except Sim2RealError:
                continue
    return 1000 * float(np.mean(values)) if values else math.nan
