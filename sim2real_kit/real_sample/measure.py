"""The real sensor and the physical baselines measured on regions of the real sample's object pixels with the
benchmark's own metric functions (`benchmark.depth_realism`), and the procedural world beside it."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sim2real_kit.config import Config
from sim2real_kit.real_sample.frames import REPO_ROOT, SENSOR, RealFrames
from sim2real_kit.run import SampleSet

# ====================================================================== metrics on a region
PERCENTILES = (50, 90, 99)  # of |residual| (mm)


@dataclass
class _Region:
    """A region's reference: CAD limited to it, its edges and the real sensor's hole rates there (%)."""

    samples: SampleSet
    edges: np.ndarray
    real_holes: dict[str, float]

    @classmethod
    def of(cls, frames: RealFrames, region: np.ndarray, edge_threshold_m: float, edge_dilate: int) -> _Region:
        from sim2real_kit.metrics import depth_edges, hole_rates

        samples = frames.samples(region)
        edges = depth_edges(samples.cad, edge_threshold_m, edge_dilate)
        holes = hole_rates(samples.cad, samples.real, edge_mask=edges)
        return cls(samples, edges, {k: 100 * holes[k] for k in ("all", "edge", "flat")})


def region_metrics(depth: np.ndarray, region: _Region) -> tuple[dict[str, float], list[str]]:
    """The benchmark's depth metrics (`benchmark.depth_realism`: AbsRel, RMSE, δ1, residual W1, hole rates
    and gaps to real, edge / flat residuals) of simulated frames [F, H, W] on the region's pixels, plus the
    residual's mean and std and |residual| percentiles (mm). (metrics, notes)."""
    from sim2real_kit.benchmark import depth_realism
    from sim2real_kit.metrics import residuals

    sim = np.where(region.samples.cad > 0, depth, 0.0).astype(np.float32)  # nothing counts outside the region
    out, notes = depth_realism(sim, region.samples, region.edges, region.real_holes)
    res_mm = 1000 * residuals(region.samples.cad, sim)
    if res_mm.size:
        out.update(
            res_mean_mm=float(res_mm.mean()), res_std_mm=float(res_mm.std()), abs_mean_mm=float(np.abs(res_mm).mean())
        )
        for q, v in zip(PERCENTILES, np.percentile(np.abs(res_mm), PERCENTILES)):
            out[f"abs_p{q}_mm"] = float(v)
    else:
        out.update({k: math.nan for k in ("res_mean_mm", "res_std_mm", "abs_mean_mm")})
        out.update({f"abs_p{q}_mm": math.nan for q in PERCENTILES})
        notes.append("no valid pixel in the region")
    return out, notes


def sample_summary(frames: RealFrames, edge_threshold_m: float = 0.05, edge_dilate: int = 1) -> dict:
    """The real sensor on object pixels (notebook 01): frames, object pixels, median / 90th percentile of
    |CAD - real| (mm), hole rate (all, at CAD edges, flat), mean |residual| at edges and on flat areas (mm)
    and the residual W1 of clean CAD vs real (mm)."""
    region = _Region.of(frames, frames.object_mask(), edge_threshold_m, edge_dilate)
    m, _ = region_metrics(frames.real, region)
    cad_row, _ = region_metrics(frames.cad, region)
    return {
        "sensor": SENSOR,
        "frames": len(frames.refs),
        "frame_size": [frames.camera.width, frames.camera.height],
        "objects": {str(c): n for c, n in frames.classes.items()},
        "object_px": int(frames.object_mask().sum()),
        "median_abs_mm": m["abs_p50_mm"],
        "p90_abs_mm": m["abs_p90_mm"],
        "residual_mean_mm": m["res_mean_mm"],
        "residual_std_mm": m["res_std_mm"],
        "hole_rate": m["hole_all_pct"] / 100,
        "hole_rate_edge": m["hole_edge_pct"] / 100,
        "hole_rate_flat": m["hole_flat_pct"] / 100,
        "residual_mean_abs_edge_mm": m["edge_mae_mm"],
        "residual_mean_abs_flat_mm": m["flat_mae_mm"],
        "w1_cad_vs_real_mm": cad_row["w1_mm"],
    }


def compare_worlds(procedural: Mapping, real: Mapping) -> str:
    """Markdown table of `notebook.dataset_summary` (procedural world) beside `sample_summary` (real sample)."""
    rows = [
        ("pixels counted", "every CAD pixel (CAD everywhere)", "object pixels (CAD on the objects only)"),
        (
            "mean |residual| at CAD edges, mm",
            procedural.get("residual_mean_abs_edge_mm"),
            real.get("residual_mean_abs_edge_mm"),
        ),
        (
            "mean |residual| on flat areas, mm",
            procedural.get("residual_mean_abs_flat_mm"),
            real.get("residual_mean_abs_flat_mm"),
        ),
        ("hole rate at edges", procedural.get("hole_rate_edge"), real.get("hole_rate_edge")),
        ("hole rate on flat areas", procedural.get("hole_rate_flat"), real.get("hole_rate_flat")),
        ("residual W1, clean CAD vs real, mm", procedural.get("w1_cad_vs_real_mm"), real.get("w1_cad_vs_real_mm")),
    ]

    def cell(v):
        return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)

    lines = ["| | procedural world (ARKit-like model) | real sample (Asus Xtion) |", "|---|---|---|"]
    lines += [f"| {name} | {cell(a)} | {cell(b)} |" for name, a, b in rows]
    return "\n".join(lines) + "\n"


# ====================================================================== physical baselines
def baseline_simulators(cfg: Config) -> dict:
    """The benchmark's CAD-driven simulators: `cad`, `random`, `physical` (the config's
    `benchmark.physical_model`) and `physical_<other>` (the other published `GenericSensor` model)."""
    from sim2real_kit.benchmark import make_simulator
    from sim2real_kit.data.sensor import GENERIC_MODELS

    sims = {name: make_simulator(name, REPO_ROOT, cfg) for name in ("cad", "random", "physical")}
    main = cfg.benchmark.physical_model
    for model in GENERIC_MODELS:
        if model == main:
            continue
        other = copy.deepcopy(cfg)
        other.override([f"benchmark.physical_model={model}"])
        sim = make_simulator("physical", REPO_ROOT, other)
        sim.name = f"physical_{model}"
        sims[sim.name] = sim
    return sims


def baseline_outputs(frames: RealFrames, cfg: Config, seed: int = 0, cad: bool = False) -> dict[str, np.ndarray]:
    """{label: simulated depth [F, H, W] metres} of the physical baselines on the sample's CAD (one seed);
    clean CAD itself only with `cad=True`."""
    sims = baseline_simulators(cfg)
    return {s.label: s.from_cad(frames.cad, frames.camera, seed) for n, s in sims.items() if cad or n != "cad"}
