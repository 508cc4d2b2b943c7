"""Evaluation primitives of the benchmark (DESIGN §5; paper Sec. 4.4, Table 4).

Depth level (a simulated frame against the real capture of the same view):
- `depth_metrics`: AbsRel, SqRel, RMSE, RMSE-log, δ < 1.25^k on pixels valid in both frames.
- `residual_w1`: Wasserstein-1 distance between the distributions of (CAD − simulated) and
  (CAD − real), each over its own valid pixels (the release's evaluation), in metres. Pooled: every
  magnitude of every pixel counts, so matching the real spread with errors at the wrong pixels scores well.
- `matched_residual_w1`: the same distance on one pixel set, pixels valid in CAD, simulated and real whose
  two residuals are both below the mismatch limit (0.5 m); `tail_share` measures what it leaves out (the
  share of a map's valid pixels at or above the limit), `hole_rates` the holes.
- `residual_bins`, `binned_residual_w1`: the matched W1 by distance to the CAD depth edges (`edge_distance`,
  0-2 / 2-5 / > 5 px) and by incidence of the CAD surface (`geometry.cad_incidence`, 0-30 / 30-60 / 60-90°).
- `residuals`, `residual_stats`: the pooled residual values and their summary (histograms).
- `depth_edges`, `hole_rates`, `masked_edge_stats`: where the sensor loses data (all / at CAD
  depth discontinuities / on flat areas) and how residuals differ at edges.
- `stability_across_seeds`, `view_consistency`: spread over sampling seeds and disagreement of
  overlapping views (fusion needs consistent frames).

3D level (DisCo's occupancy IoU, Chamfer-L2, F-score): `sim2real_kit.disco`.

Inputs may be numpy arrays or torch tensors (converted to numpy on the CPU). Nearest neighbours
use scipy's cKDTree. open3d is imported only inside the functions that need it (solid occupancy
of watertight meshes): the metrics run on machines without open3d.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sim2real_kit.camera import Camera, check_pose
from sim2real_kit.depth import check_depth
from sim2real_kit.errors import ConfigError, DepthFormatError, Sim2RealError
from sim2real_kit.geometry import cad_incidence

DELTA_BASE = 1.25  # δ thresholds are 1.25, 1.25², 1.25³ (Eigen et al.)
DEFAULT_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


# ====================================================================== input handling
def _to_numpy(x, dtype=None) -> np.ndarray:
    """numpy array from a numpy array, torch tensor or nested list (torch: detached, on CPU)."""
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu()
        if x.is_floating_point() and x.element_size() < 4:
            x = x.float()  # bf16 / fp16 have no numpy dtype
        x = x.numpy()
    arr = np.asarray(x)
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _frames(x, name: str) -> list[np.ndarray]:
    """A frame [H, W], a batch [B, H, W] / [B, 1, H, W] or a list of frames -> list of float64 [H, W]."""
    if isinstance(x, (list, tuple)):
        out: list[np.ndarray] = []
        for i, frame in enumerate(x):
            out.extend(_frames(frame, f"{name}[{i}]"))
        if not out:
            raise DepthFormatError(f"{name} is an empty list of frames")
        return out
    arr = _to_numpy(x)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]  # [B, 1, H, W] -> [B, H, W]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise DepthFormatError(
            f"{name} must be a depth frame [H, W], a batch [B, H, W] or a list, got shape {arr.shape}"
        )
    check_depth(arr, name)
    return list(arr.astype(np.float64, copy=False))


def _matched_frames(named: dict[str, object]) -> dict[str, list[np.ndarray]]:
    """`_frames` of each input, checking they hold the same number of frames of the same sizes."""
    frames = {name: _frames(x, name) for name, x in named.items() if x is not None}
    (ref_name, ref), *others = frames.items()
    for name, fr in others:
        if len(fr) != len(ref):
            raise DepthFormatError(f"{name} holds {len(fr)} frames but {ref_name} holds {len(ref)}")
        for i, (a, b) in enumerate(zip(fr, ref)):
            if a.shape != b.shape:
                raise DepthFormatError(f"frame {i}: {name} has shape {a.shape} but {ref_name} has {b.shape}")
    return frames


def _masks(mask, like: list[np.ndarray], name: str = "mask") -> list[np.ndarray]:
    """Optional boolean mask(s) matching `like` frames (None -> all True)."""
    if mask is None:
        return [np.ones(f.shape, bool) for f in like]
    if isinstance(mask, (list, tuple)):
        masks = [_to_numpy(m).astype(bool) for m in mask]
    else:
        m = _to_numpy(mask).astype(bool)
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        masks = [m] * len(like) if m.ndim == 2 else list(m)
    if len(masks) != len(like) or any(m.shape != f.shape for m, f in zip(masks, like)):
        raise DepthFormatError(f"{name} does not match the depth frames (shapes {[m.shape for m in masks][:3]} ...)")
    return masks


# ====================================================================== depth metrics
def depth_metrics(pred, gt, mask=None, reduction: str = "pixels") -> dict[str, float]:
    """Standard depth errors of `pred` against `gt` (metres) on pixels where both are > 0 (and `mask`).

    pred, gt: [H, W], [B, H, W] or lists of frames. reduction "pixels" pools the valid pixels of all
    frames; "frames" averages per-frame metrics (frames without valid pixels are skipped).
    Returns abs_rel, sq_rel, rmse (m), rmse_log, delta1, delta2, delta3 (shares in [0, 1]), n_valid.
    """
    frames = _matched_frames({"pred": pred, "gt": gt})
    masks = _masks(mask, frames["gt"])
    pairs = []
    for p, g, m in zip(frames["pred"], frames["gt"], masks):
        valid = (p > 0) & (g > 0) & m
        pairs.append((p[valid], g[valid]))
    n_valid = sum(len(g) for _, g in pairs)
    if n_valid == 0:
        raise DepthFormatError("no pixel where both pred and gt are > 0 (inside mask): depth metrics undefined")
    if reduction == "pixels":
        p = np.concatenate([p for p, _ in pairs])
        g = np.concatenate([g for _, g in pairs])
        out = _depth_errors(p, g)
    elif reduction == "frames":
        per_frame = [_depth_errors(p, g) for p, g in pairs if len(g)]
        out = {k: float(np.mean([f[k] for f in per_frame])) for k in per_frame[0]}
    else:
        raise ConfigError(f"depth_metrics reduction must be 'pixels' or 'frames', got {reduction!r}")
    out["n_valid"] = int(n_valid)
    return out


def _depth_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    diff = pred - gt
    ratio = np.maximum(pred / gt, gt / pred)
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff**2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(pred) - np.log(gt)) ** 2))),
        "delta1": float(np.mean(ratio < DELTA_BASE)),
        "delta2": float(np.mean(ratio < DELTA_BASE**2)),
        "delta3": float(np.mean(ratio < DELTA_BASE**3)),
    }


# ====================================================================== residual distributions
def residuals(cad, depth, mask=None, max_abs_m: float | None = None, name: str = "depth") -> np.ndarray:
    """Pooled residuals cad − depth (metres) over the depth's own valid pixels (cad > 0 & depth > 0).

    cad, depth: [H, W], [B, H, W] or lists of frames. `max_abs_m` drops |residual| >= it (the
    release's 0.5 m mismatch rule) when given. Returns a 1-D float64 array (may be empty)."""
    frames = _matched_frames({"cad": cad, name: depth})
    masks = _masks(mask, frames["cad"])
    out = []
    for c, d, m in zip(frames["cad"], frames[name], masks):
        valid = (c > 0) & (d > 0) & m
        out.append(c[valid] - d[valid])
    res = np.concatenate(out)
    if max_abs_m is not None:
        res = res[np.abs(res) < max_abs_m]
    return res


def wasserstein_1d(u_values, v_values) -> float:
    """Exact Wasserstein-1 distance between two 1-D empirical distributions (equal weights):
    the integral of |F_u − F_v| over the merged sorted values. Same value as
    `scipy.stats.wasserstein_distance` (to rounding), several times faster on millions of values
    because it sorts values instead of arg-sorting them."""
    u = np.sort(_to_numpy(u_values, np.float64).ravel())
    v = np.sort(_to_numpy(v_values, np.float64).ravel())
    if u.size == 0 or v.size == 0:
        raise Sim2RealError("Wasserstein distance of an empty distribution is undefined")
    merged = np.concatenate([u, v])
    merged.sort()
    cdf_u = np.searchsorted(u, merged[:-1], side="right") / u.size
    cdf_v = np.searchsorted(v, merged[:-1], side="right") / v.size
    return float(np.sum(np.abs(cdf_u - cdf_v) * np.diff(merged)))


def residual_w1(cad, sim, real, mask=None, max_abs_m: float | None = None) -> float:
    """Wasserstein-1 distance (metres; ×1000 for mm) between the residual distributions
    (cad − sim) over cad > 0 & sim > 0 and (cad − real) over cad > 0 & real > 0, pixels pooled
    over all frames. cad, sim, real: [H, W], [B, H, W] or lists of frames of matching sizes."""
    res_sim = residuals(cad, sim, mask, max_abs_m, name="sim")
    res_real = residuals(cad, real, mask, max_abs_m, name="real")
    for name, res in (("sim", res_sim), ("real", res_real)):
        if res.size == 0:
            raise DepthFormatError(f"{name} has no valid pixel (cad > 0 and {name} > 0): residual W1 undefined")
    return wasserstein_1d(res_sim, res_real)


def matched_residuals(cad, sim, real, max_abs_m: float | None = None, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """(cad − sim, cad − real) in metres on the same pixels, pooled over frames: pixels valid in all three
    maps (cad, sim, real > 0, and `mask`) where both |residual| < `max_abs_m` (when given). The two arrays
    hold the same pixels in the same order."""
    frames = _matched_frames({"cad": cad, "sim": sim, "real": real})
    masks = _masks(mask, frames["cad"])
    out_sim, out_real = [], []
    for c, s, r, m in zip(frames["cad"], frames["sim"], frames["real"], masks):
        keep = (c > 0) & (s > 0) & (r > 0) & m
        rs, rr = c - s, c - r
        if max_abs_m is not None:
            keep &= (np.abs(rs) < max_abs_m) & (np.abs(rr) < max_abs_m)
        out_sim.append(rs[keep])
        out_real.append(rr[keep])
    return np.concatenate(out_sim), np.concatenate(out_real)


def matched_residual_w1(cad, sim, real, max_abs_m: float | None = 0.5, mask=None) -> float:
    """Wasserstein-1 distance (metres) between the residuals cad − sim and cad − real on the same pixels
    (`matched_residuals`: valid in CAD, sim and real, both |residual| < `max_abs_m`, the release's 0.5 m
    mismatch rule by default). Unlike `residual_w1`, holes and gross mismatches cannot move it (they are
    measured apart, by `hole_rates` and `tail_share`), and a simulator cannot win by reproducing the real
    spread with values at the wrong pixels pooled from elsewhere: both distributions come from one pixel set.
    Raises DepthFormatError when no pixel qualifies."""
    res_sim, res_real = matched_residuals(cad, sim, real, max_abs_m, mask)
    if res_sim.size == 0:
        raise DepthFormatError("no pixel valid in CAD, sim and real within the residual limit: residual W1 undefined")
    return wasserstein_1d(res_sim, res_real)


def tail_share(cad, depth, max_abs_m: float = 0.5, mask=None) -> float:
    """Share in [0, 1] of the depth's valid pixels (cad > 0 and depth > 0, and `mask`), pooled over frames,
    whose |cad − depth| >= `max_abs_m`: gross mismatches (flying pixels, wrong surfaces) that the matched
    W1 leaves out. NaN when no pixel is valid."""
    frames = _matched_frames({"cad": cad, "depth": depth})
    masks = _masks(mask, frames["cad"])
    tail = valid = 0
    for c, d, m in zip(frames["cad"], frames["depth"], masks):
        v = (c > 0) & (d > 0) & m
        valid += int(np.count_nonzero(v))
        tail += int(np.count_nonzero(v & (np.abs(c - d) >= max_abs_m)))
    return tail / valid if valid else math.nan


def residual_stats(cad, depth, mask=None, quantiles: Sequence[float] = DEFAULT_QUANTILES, max_abs_m=None) -> dict:
    """Summary of the residual cad − depth (metres) on the depth's valid pixels: n, mean, std,
    mean_abs, and one key per quantile (`q01`, `q50`, ... for 0.01, 0.5, ...)."""
    res = residuals(cad, depth, mask, max_abs_m)
    if res.size == 0:
        raise DepthFormatError("depth has no valid pixel (cad > 0 and depth > 0): residual statistics undefined")
    out = {
        "n": int(res.size),
        "mean": float(res.mean()),
        "std": float(res.std()),
        "mean_abs": float(np.abs(res).mean()),
    }
    for q, v in zip(quantiles, np.quantile(res, quantiles)):
        out[f"q{round(q * 100):02d}"] = float(v)
    return out


# ====================================================================== holes and edges
def depth_edges(cad, threshold_m: float = 0.05, dilate: int = 1) -> np.ndarray:
    """CAD depth discontinuities: pixels whose depth differs from a 4-neighbour by more than
    `threshold_m` metres (both pixels of the pair are marked; silhouettes against background
    cad = 0 count), dilated by `dilate` pixels with a 3x3 square. cad: [H, W] or [B, H, W]
    -> bool of the same shape (each frame dilated on its own)."""
    from scipy.ndimage import binary_dilation

    cad_arr = _to_numpy(cad, np.float64)
    if cad_arr.ndim not in (2, 3):
        raise DepthFormatError(f"cad must be [H, W] or [B, H, W], got shape {cad_arr.shape}")
    if dilate < 0:
        raise ConfigError(f"depth_edges dilate must be >= 0 pixels, got {dilate}")
    check_depth(cad_arr, "cad")
    frames = cad_arr[None] if cad_arr.ndim == 2 else cad_arr
    edges = np.zeros(frames.shape, bool)
    jump_x = np.abs(np.diff(frames, axis=-1)) > threshold_m  # [B, H, W-1] between columns u and u+1
    jump_y = np.abs(np.diff(frames, axis=-2)) > threshold_m  # [B, H-1, W]
    edges[..., :, :-1] |= jump_x
    edges[..., :, 1:] |= jump_x
    edges[..., :-1, :] |= jump_y
    edges[..., 1:, :] |= jump_y
    if dilate > 0:
        square = np.zeros((1, 3, 3), bool)
        square[0] = True  # no growth across frames of a batch
        edges = binary_dilation(edges, structure=square, iterations=dilate)
    return edges[0] if cad_arr.ndim == 2 else edges


def hole_rates(cad, depth, edge_mask=None, threshold_m: float = 0.05, dilate: int = 1) -> dict:
    """Share of CAD-valid pixels (cad > 0) where `depth` has no valid value (<= 0), pooled over frames:
    `all`, `edge` (inside `edge_mask`, default `depth_edges(cad, threshold_m, dilate)`) and `flat`
    (the rest), with the pixel counts n_all, n_edge, n_flat. A rate over zero pixels is NaN."""
    frames = _matched_frames({"cad": cad, "depth": depth})
    if edge_mask is None:
        edge_masks = [depth_edges(c, threshold_m, dilate) for c in frames["cad"]]
    else:
        edge_masks = _masks(edge_mask, frames["cad"], "edge_mask")
    counts = np.zeros((3, 2), np.int64)  # rows all / edge / flat; columns holes / pixels
    for c, d, e in zip(frames["cad"], frames["depth"], edge_masks):
        cad_valid, hole = c > 0, d <= 0
        for row, region in enumerate((cad_valid, cad_valid & e, cad_valid & ~e)):
            counts[row] += (np.count_nonzero(hole & region), np.count_nonzero(region))
    rates = [h / n if n else math.nan for h, n in counts]
    return {
        "all": float(rates[0]),
        "edge": float(rates[1]),
        "flat": float(rates[2]),
        "n_all": int(counts[0, 1]),
        "n_edge": int(counts[1, 1]),
        "n_flat": int(counts[2, 1]),
    }


def masked_edge_stats(cad, depth, edge_mask=None, threshold_m: float = 0.05, dilate: int = 1) -> dict:
    """Residual (cad − depth, metres) at CAD edges versus flat areas, on the depth's valid pixels:
    edge_/flat_ mean_abs, std and hole_rate (NaN where a region holds no pixel)."""
    frames = _matched_frames({"cad": cad, "depth": depth})
    if edge_mask is None:
        edge_masks = [depth_edges(c, threshold_m, dilate) for c in frames["cad"]]
    else:
        edge_masks = _masks(edge_mask, frames["cad"], "edge_mask")
    holes = hole_rates(frames["cad"], frames["depth"], edge_masks)
    out = {}
    for region, masks in (("edge", edge_masks), ("flat", [~e for e in edge_masks])):
        res = residuals(frames["cad"], frames["depth"], masks)
        out[f"{region}_mean_abs"] = float(np.abs(res).mean()) if res.size else math.nan
        out[f"{region}_std"] = float(res.std()) if res.size else math.nan
        out[f"{region}_hole_rate"] = holes[region]
    return out


# ====================================================================== residuals by region
EDGE_BINS_PX = (2.0, 5.0)  # distance to CAD depth edges: [0, 2], (2, 5], (5, inf) px
INCIDENCE_BINS_DEG = (30.0, 60.0)  # CAD incidence: [0, 30], (30, 60], (60, 90] degrees


def edge_distance(cad, threshold_m: float = 0.05) -> np.ndarray:
    """Distance in pixels (Euclidean, `scipy.ndimage.distance_transform_edt`) of every pixel to the nearest
    CAD depth edge (`depth_edges(cad, threshold_m, dilate=0)`: both pixels of a jump are at distance 0).
    cad: [H, W] or [B, H, W], each frame on its own; a frame without any edge gets inf."""
    from scipy.ndimage import distance_transform_edt

    cad_arr = _to_numpy(cad, np.float64)
    edges = depth_edges(cad_arr, threshold_m, dilate=0)
    frames = edges[None] if edges.ndim == 2 else edges
    out = np.full(frames.shape, np.inf)
    for i, e in enumerate(frames):
        if e.any():
            out[i] = distance_transform_edt(~e)
    return out[0] if edges.ndim == 2 else out


def _bin_names(prefix: str, edges: Sequence[float], top: float | None) -> list[str]:
    bounds = [0.0, *edges]
    names = [f"{prefix}{bounds[k]:g}_{bounds[k + 1]:g}" for k in range(len(edges))]
    last = f"{prefix}{bounds[-1]:g}" if top is None else f"{prefix}{bounds[-1]:g}_{top:g}"
    return [*names, last]


def value_bins(values, edges: Sequence[float], prefix: str, top: float | None = None) -> dict[str, np.ndarray]:
    """Boolean masks of `values` (any shape) per bin: the first bin is [0, e0], then (e0, e1], ..., and
    (e_last, inf) — upper bounds included. Names `f"{prefix}{lo}_{hi}"`, the last `f"{prefix}{lo}"` (or
    `..._{top}` when `top` is given, e.g. 90 for angles). NaN values fall in no bin."""
    vals = _to_numpy(values, np.float64)
    if list(edges) != sorted(edges) or any(e <= 0 for e in edges):
        raise ConfigError(f"bin edges must be positive and increasing, got {list(edges)}")
    finite = ~np.isnan(vals)
    idx = np.digitize(np.where(finite, vals, 0.0), edges, right=True)  # edges[k-1] < v <= edges[k] -> k
    return {name: finite & (idx == k) for k, name in enumerate(_bin_names(prefix, edges, top))}


def residual_bins(
    cad,
    camera: Camera | None = None,
    edge_threshold_m: float = 0.05,
    edge_bins_px: Sequence[float] = EDGE_BINS_PX,
    incidence_bins_deg: Sequence[float] | None = INCIDENCE_BINS_DEG,
) -> dict[str, np.ndarray]:
    """Pixel masks [B, H, W] (or [H, W]) of the CAD frames by where the sensor errs: distance to the CAD
    depth edges (`edge_distance`; "edge0_2", "edge2_5", "edge5" px with the default bins) and, when a
    `camera` is given, incidence of the CAD surface (`geometry.cad_incidence`; "inc0_30", "inc30_60",
    "inc60_90" degrees; pixels whose normal is undefined are in no incidence bin). Only CAD-valid
    pixels (cad > 0) are in a bin."""
    cad_arr = _to_numpy(cad, np.float64)
    check_depth(cad_arr, "cad")
    frames = cad_arr[None] if cad_arr.ndim == 2 else cad_arr
    if frames.ndim != 3:
        raise DepthFormatError(f"cad must be [H, W] or [B, H, W], got shape {cad_arr.shape}")
    valid = frames > 0
    bins = {k: m & valid for k, m in value_bins(edge_distance(frames, edge_threshold_m), edge_bins_px, "edge").items()}
    if camera is not None and incidence_bins_deg is not None:
        inc = np.stack([np.degrees(cad_incidence(f, camera, undefined=np.nan)) for f in frames])
        bins.update({k: m & valid for k, m in value_bins(inc, incidence_bins_deg, "inc", top=90).items()})
    return {k: v[0] for k, v in bins.items()} if cad_arr.ndim == 2 else bins


def binned_residual_w1(cad, sim, real, bins: dict, max_abs_m: float | None = 0.5) -> dict[str, float]:
    """`matched_residual_w1` inside each mask of `bins` ({name: mask [B, H, W] or [H, W]}, e.g.
    `residual_bins`): {name: W1 in metres, NaN when the bin holds no qualifying pixel}."""
    out = {}
    for name, mask in bins.items():
        res_sim, res_real = matched_residuals(cad, sim, real, max_abs_m, mask)
        out[name] = wasserstein_1d(res_sim, res_real) if res_sim.size else math.nan
    return out


# ====================================================================== stability
def stability_across_seeds(samples, mask=None) -> float:
    """Mean over pixels of the per-pixel standard deviation across seeds (metres).

    samples: [S, B, H, W], [S, B, 1, H, W] or [S, H, W] depth from S seeds; pixels count when valid (> 0) in every
    seed (and inside `mask`, [B, H, W] or [H, W])."""
    arr = _to_numpy(samples, np.float64)
    if arr.ndim == 5 and arr.shape[2] == 1:
        arr = arr[:, :, 0]  # [S, B, 1, H, W] -> [S, B, H, W]
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[0] < 2:
        raise DepthFormatError(f"samples must be [S, B, H, W] or [S, H, W] with S >= 2 seeds, got shape {arr.shape}")
    check_depth(arr, "samples")
    valid = (arr > 0).all(axis=0)  # [B, H, W]
    if mask is not None:
        valid &= np.broadcast_to(_to_numpy(mask).astype(bool), valid.shape)
    if not valid.any():
        raise DepthFormatError("samples have no pixel valid in every seed: stability undefined")
    return float(arr.std(axis=0)[valid].mean())


def view_consistency(depth_a, depth_b, camera: Camera, pose_a, pose_b, max_diff_m: float | None = None) -> float:
    """Median |z of frame a reprojected into view b − depth_b| (metres) over the pixels of a that
    are valid, land inside frame b in front of it, on a valid pixel of b.

    depth_a, depth_b: [H, W] metres of the same `camera`; pose_a, pose_b: 4x4 camera-to-world.
    Occlusions give large differences; the median is robust to a minority of them, and
    `max_diff_m` drops differences at or above it when given."""
    frames = _matched_frames({"depth_a": depth_a, "depth_b": depth_b})
    if len(frames["depth_a"]) != 1:
        raise DepthFormatError("view_consistency takes one frame per view ([H, W])")
    da, db = frames["depth_a"][0], frames["depth_b"][0]
    if da.shape != (camera.height, camera.width):
        raise DepthFormatError(f"depth of shape {da.shape} does not match camera {camera.width}x{camera.height}")
    pose_a, pose_b = check_pose(_to_numpy(pose_a), "pose_a"), check_pose(_to_numpy(pose_b), "pose_b")
    world = camera.backproject(da, pose_a)[da > 0]  # [N, 3]
    uv, z = camera.project(world, pose_b)
    with np.errstate(invalid="ignore"):
        u, v = np.floor(uv[:, 0]), np.floor(uv[:, 1])  # pixel (u, v) covers [u, u+1) x [v, v+1)
        inside = (z > 0) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    z_b = db[v[inside].astype(np.int64), u[inside].astype(np.int64)]
    diff = np.abs(z[inside] - z_b)[z_b > 0]
    if max_diff_m is not None:
        diff = diff[diff < max_diff_m]
    if diff.size == 0:
        raise DepthFormatError("depth_a and depth_b share no valid overlapping pixel: view consistency undefined")
    return float(np.median(diff))
