"""What the benchmark measures of one simulator's output on the frame set (DESIGN §5.1-5.3, 5.5): depth
realism (AbsRel, RMSE, δ1, residual W1, hole rates, edge residuals), 3D realism of the fused scenes (the
paper's Table-4 analog, DisCo metrics) and the disagreement of overlapping views."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from sim2real_kit.errors import Sim2RealError
from sim2real_kit.run import SampleSet


def _nan_metrics(keys: Sequence[str]) -> dict[str, float]:
    return {k: math.nan for k in keys}


DEPTH_KEYS = ("abs_rel", "rmse_mm", "delta1_pct")
HOLE_KEYS = ("hole_all_pct", "hole_edge_pct", "hole_flat_pct")
EDGE_KEYS = ("edge_mae_mm", "flat_mae_mm", "edge_std_mm", "flat_std_mm")
KEYS_3D = ("miou_pct", "cd_l2_x1000", "fscore_pct")


def depth_realism(sim, samples: SampleSet, edges: np.ndarray, real_holes: Mapping[str, float]) -> tuple[dict, list]:
    """Depth-level metrics of simulated frames [F, S, S] against the real ones: (metrics, notes)."""
    from sim2real_kit.metrics import depth_metrics, hole_rates, masked_edge_stats, residual_w1

    out, notes = {}, []
    try:
        m = depth_metrics(sim, samples.real)
        out.update(abs_rel=m["abs_rel"], rmse_mm=1000 * m["rmse"], delta1_pct=100 * m["delta1"])
    except Sim2RealError as e:
        out.update(_nan_metrics(DEPTH_KEYS))
        notes.append(f"depth metrics: {e}")
    try:
        out["w1_mm"] = 1000 * residual_w1(samples.cad, sim, samples.real)
    except Sim2RealError as e:
        out["w1_mm"] = math.nan
        notes.append(f"W1: {e}")
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


def realism_3d(meshes: Mapping, real_meshes: Mapping, bcfg, num_points: int) -> tuple[dict, dict, list]:
    """DisCo metrics of each scene's fused simulator mesh against the fused real one, normalised per
    scene: (means over scenes {miou_pct, cd_l2_x1000, fscore_pct}, per-scene values, notes). NaN (with
    a note) when any scene has no mesh on either side, so every simulator is scored on the same scenes."""
    from sim2real_kit.metrics import disco_metrics

    per_scene, notes = {}, []
    for scene, mesh in meshes.items():
        ref = real_meshes.get(scene)
        if mesh is None or ref is None:
            per_scene[scene] = _nan_metrics(KEYS_3D)
            notes.append(f"3D: scene {scene} has no fused {'surface' if mesh is None else 'real surface'}")
            continue
        try:
            m = disco_metrics(
                mesh,
                ref,
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
