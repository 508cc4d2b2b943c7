"""Helpers the notebooks share (DESIGN §6): the run folder and config of a notebook, resolved once, and the
summaries they print and write to `notebooks/NN_name.metrics.json`. No method lives here: the notebooks call
`stage1`, `flagging`, `stage2`, `simulate`, `benchmark`, `real_sample` and `viz` for that."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim2real_kit.config import Config
from sim2real_kit.data.layout import DepthLayout
from sim2real_kit.run import RunFolder, SampleSet, resolve_config


def setup(
    run_dir: str | Path,
    preset: str = "tiny",
    quick: bool = False,
    seed: int = 0,
    overrides=(),
    knobs: dict | None = None,
) -> tuple[RunFolder, Config]:
    """The notebook's run folder and its config, resolved once for the whole notebook: the run's config.yaml
    (written by notebook 01) or a new one from the preset; the `quick` overlay (CI sizes), the notebook's seed
    and the user's overrides on top. `knobs` {config key: value}: notebook parameters that mirror config keys
    (e.g. {"disc.threshold": threshold}); a None value leaves the config's own. Saved to config.yaml.
    Torch's threads are set to the cores other programs leave free (`jobs.adapt_threads`)."""
    from sim2real_kit.jobs import adapt_threads

    adapt_threads()
    knob_overrides = [f"{key}={value}" for key, value in (knobs or {}).items() if value is not None]
    run = RunFolder(run_dir)
    return run, resolve_config(run, preset, None, [*(overrides or ()), *knob_overrides], quick=quick, seed=seed)


def dataset_summary(layout: DepthLayout, max_frames: int = 64) -> dict:
    """Counts and residual statistics of a layout (first `max_frames` val frames), for notebook 01."""
    from sim2real_kit.metrics import depth_edges, hole_rates, residual_w1, residuals

    train, val = layout.frames("train"), layout.frames("val")
    refs = val[:max_frames]
    cad = np.stack([layout.read_depth(r, "gt") for r in refs])
    real = np.stack([layout.read_depth(r, "scan") for r in refs])
    edges = depth_edges(cad, 0.05, 1)
    res = residuals(cad, real, max_abs_m=0.5)
    on_edges = residuals(cad, real, mask=edges, max_abs_m=0.5)
    flat = residuals(cad, real, mask=~edges, max_abs_m=0.5)
    holes = hole_rates(cad, real, edge_mask=edges)
    return {
        "train_frames": len(train),
        "val_frames": len(val),
        "train_scenes": len({r.scene for r in train}),
        "val_scenes": len({r.scene for r in val}),
        "frame_size": [layout.camera.width, layout.camera.height],
        "cad_valid_share": float((cad > 0).mean()),
        "real_valid_share": float((real > 0).mean()),
        "residual_mean_abs_mm": float(1000 * np.abs(res).mean()),
        "residual_mean_abs_edge_mm": float(1000 * np.abs(on_edges).mean()) if on_edges.size else float("nan"),
        "residual_mean_abs_flat_mm": float(1000 * np.abs(flat).mean()) if flat.size else float("nan"),
        "hole_rate": holes["all"],
        "hole_rate_edge": holes["edge"],
        "hole_rate_flat": holes["flat"],
        "w1_cad_vs_real_mm": 1000 * residual_w1(cad, cad, real),
    }


def realism_metrics(samples: SampleSet, stage: int, edge_threshold_m: float = 0.05, max_diff_m: float = 0.5) -> dict:
    """Depth realism of stage `stage` on a sample set, as the benchmark measures it: residual W1 (mm) of
    generated vs real and of clean CAD vs real on the pixels valid in all three maps with both |residual| <
    `max_diff_m` (`metrics.matched_residual_w1`; the release's pooled W1 as `w1_pooled_mm`), the residual's
    mean (a global offset shows here), std and 99th percentile of |residual| (mm), the tail (share of pixels
    with |residual| >= max_diff_m), hole rates (overall, at CAD depth edges, on flat areas) of generated and
    real."""
    from sim2real_kit.metrics import (
        depth_edges,
        hole_rates,
        matched_residual_w1,
        matched_residuals,
        residual_w1,
        residuals,
    )

    sim = samples.sims[stage]
    res_sim, res_real = matched_residuals(samples.cad, sim, samples.real, max_diff_m)  # the same pixels
    edges = depth_edges(samples.cad, edge_threshold_m, 1)
    h_sim, h_real = (
        hole_rates(samples.cad, sim, edge_mask=edges),
        hole_rates(samples.cad, samples.real, edge_mask=edges),
    )
    return {
        "frames": len(samples.refs),
        "w1_mm": 1000 * matched_residual_w1(samples.cad, sim, samples.real, max_diff_m),
        "w1_cad_mm": 1000 * matched_residual_w1(samples.cad, samples.cad, samples.real, max_diff_m),
        "w1_pooled_mm": 1000 * residual_w1(samples.cad, sim, samples.real),
        "w1_pooled_cad_mm": 1000 * residual_w1(samples.cad, samples.cad, samples.real),
        "residual_mean_mm": 1000 * float(res_sim.mean()),
        "residual_mean_real_mm": 1000 * float(res_real.mean()),
        "tail_pct": 100 * float(np.mean(np.abs(residuals(samples.cad, sim)) >= max_diff_m)),
        "tail_real_pct": 100 * float(np.mean(np.abs(residuals(samples.cad, samples.real)) >= max_diff_m)),
        **{
            f"residual_{stat}{suffix}_mm": 1000 * float(fn(residuals(samples.cad, depth)))
            for suffix, depth in (("", sim), ("_real", samples.real))
            for stat, fn in (("std", np.std), ("p99", lambda r: np.percentile(np.abs(r), 99)))
        },
        "hole_rate": h_sim["all"],
        "hole_rate_edge": h_sim["edge"],
        "hole_rate_flat": h_sim["flat"],
        "hole_rate_real": h_real["all"],
        "hole_rate_real_edge": h_real["edge"],
        "hole_rate_real_flat": h_real["flat"],
    }
