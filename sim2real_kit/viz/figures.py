"""The matplotlib figures of the notebooks (DESIGN §3, §6): depth maps and their residuals against the
CAD, residual histograms with hole rates (the metrics of paper Sec. 4), sensor-effect masks, the
discriminator's flagged patches on a frame (paper Sec. 3.3, Fig. 3), benchmark bars, sample grids
(also written by the Trainer as PNGs) and ablation lines; `save_figure` writes any figure of the kit
(matplotlib or plotly) atomically. The training curves are in `viz.curves`.

Every function returns a `matplotlib.figure.Figure` that pyplot does not keep (see `sim2real_kit.viz`
for the conventions); matplotlib is imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim2real_kit.errors import ConfigError, DepthFormatError, Sim2RealError
from sim2real_kit.viz._common import (
    _PYPLOT,
    DEPTH_CMAP,
    EFFECT_COLOR,
    FLAG_COLOR,
    PALETTE,
    PANEL_IN,
    RESIDUAL_CMAP,
    RESIDUAL_PERCENTILE,
    SELECTED_COLOR,
    TRACE_COLORS,
    _boxes,
    _check_same_shape,
    _depth_limits,
    _depth_map,
    _depth_stack,
    _hole_share,
    _image_axes,
    _new_figure,
    _np,
    _patch_vector,
    _residual_limit,
    _residual_mm,
    _show_depth,
    _show_residual,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


# ====================================================================== depth panels
def depth_panels(
    maps: Mapping[str, Any],
    cad=None,
    title: str | None = None,
    residual_of: Sequence[str] = (),
    *,
    cmap: str = DEPTH_CMAP,
    residual_cmap: str = RESIDUAL_CMAP,
    percentile: float = RESIDUAL_PERCENTILE,
    limit_mm: float | None = None,
    panel_size: float = PANEL_IN,
) -> Figure:
    """One row: each named depth map [H, W] (metres) on a shared depth scale, then for each name in
    `residual_of` a panel "name − CAD" in mm (diverging, symmetric at the `percentile` of |residual|
    or at ±`limit_mm`, only where both are valid). `cad` [H, W] is needed when `residual_of` is not empty.

    Panel titles carry the share of invalid pixels; residual panels their median and MAD (mm)."""
    if not maps:
        raise Sim2RealError("depth_panels needs at least one depth map")
    depth = {name: _depth_map(m, f"maps[{name!r}]") for name, m in maps.items()}
    residual_of = tuple(residual_of)
    for name in residual_of:
        if name not in depth:
            raise Sim2RealError(f"residual_of names {name!r}, which is not a key of maps ({', '.join(depth)})")
    cad_map = None if cad is None else _depth_map(cad, "cad")
    if residual_of and cad_map is None:
        raise Sim2RealError(f"residual_of = {residual_of} needs the CAD depth (cad=...)")
    _check_same_shape({**depth, **({"cad": cad_map} if cad_map is not None else {})})
    residuals = {name: _residual_mm(depth[name], cad_map) for name in residual_of}

    n = len(depth) + len(residuals)
    H, W = next(iter(depth.values())).shape
    fig = _new_figure(panel_size * n * max(W / H, 0.5) + 1.2, panel_size + 0.8)
    axes = list(fig.subplots(1, n, squeeze=False)[0])
    vmin, vmax = _depth_limits(list(depth.values()))
    im = None
    for ax, (name, d) in zip(axes, depth.items()):
        im = _show_depth(ax, d, vmin, vmax, cmap)
        ax.set_title(f"{name}\n{100 * _hole_share(d):.1f} % invalid", fontsize=10)
        _image_axes(ax)
    fig.colorbar(im, ax=axes[: len(depth)], shrink=0.85, label="depth [m]")
    if residuals:
        limit = _residual_limit(list(residuals.values()), percentile) if limit_mm is None else float(limit_mm)
        for ax, (name, r) in zip(axes[len(depth) :], residuals.items()):
            im = _show_residual(ax, r, limit, residual_cmap)
            ax.set_title(f"{name} − CAD", fontsize=10)
            finite = r[np.isfinite(r)]
            if finite.size:
                med = float(np.median(finite))
                mad = float(np.median(np.abs(finite - med)))
                ax.set_xlabel(f"median {med:+.1f} mm, MAD {mad:.1f} mm", fontsize=9)
            else:
                ax.set_xlabel("no pixel valid in both", fontsize=9)
            _image_axes(ax)
        fig.colorbar(im, ax=axes[len(depth) :], shrink=0.85, label="depth − CAD [mm]", extend="both")
    fig.suptitle(title or "depth maps")
    return fig


# ====================================================================== residual histograms (Sec. 4 metrics)
def _residuals_and_holes(
    cad_frames: np.ndarray, depths: Mapping[str, Any], max_abs_m: float | None
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per named depth: CAD − depth in mm over the pixels valid in both, frames pooled
    (`metrics.residuals`), and the hole rate (share of CAD-valid pixels where the depth is invalid)."""
    from sim2real_kit.metrics import residuals as pooled_residuals

    res_mm: dict[str, np.ndarray] = {}
    holes: dict[str, float] = {}
    cad_valid = cad_frames > 0
    for name, d in depths.items():
        frames = _depth_stack(d, f"depths[{name!r}]")
        if frames.shape != cad_frames.shape:
            raise DepthFormatError(f"depths[{name!r}] has shape {frames.shape} but cad has {cad_frames.shape}")
        res_mm[name] = 1000.0 * pooled_residuals(cad_frames, frames, max_abs_m=max_abs_m, name=f"depths[{name!r}]")
        n_cad = int(cad_valid.sum())
        holes[name] = float((cad_valid & ~(frames > 0)).sum() / n_cad) if n_cad else math.nan
    return res_mm, holes


def _histogram_range(
    range_mm: float | tuple[float, float] | None, res_mm: Mapping[str, np.ndarray]
) -> tuple[float, float]:
    """(lo, hi) in mm of `range_mm` (a symmetric half-width or (lo, hi)); None: ± the 98th percentile
    of the pooled |residual|."""
    if range_mm is None:
        half = _residual_limit(list(res_mm.values()), RESIDUAL_PERCENTILE)
        lo, hi = -half, half
    elif isinstance(range_mm, (int, float)):
        lo, hi = -float(range_mm), float(range_mm)
    else:
        lo, hi = (float(v) for v in range_mm)
    if not hi > lo:
        raise ConfigError(f"range_mm must give lo < hi, got {range_mm!r}")
    return lo, hi


def residual_histograms(
    cad,
    depths: Mapping[str, Any],
    bins: int = 101,
    range_mm: float | tuple[float, float] | None = None,
    log: bool = True,
    *,
    title: str | None = None,
    max_abs_m: float | None = None,
) -> Figure:
    """Overlaid histograms (density per mm) of CAD − depth in mm over each depth's own valid pixels
    (cad > 0 & depth > 0), frames [F, H, W] pooled. The legend gives each depth's hole rate (share of
    CAD-valid pixels where the depth is invalid, as `metrics.hole_rates(...)["all"]`) and median.

    range_mm: symmetric half-width or (lo, hi); default the 98th percentile of pooled |residual|. The
    legend gives the share of each depth's residuals outside the range when there are any.
    max_abs_m drops |residual| >= it (the release's 0.5 m mismatch rule) when given."""
    if not depths:
        raise Sim2RealError("residual_histograms needs at least one depth (depths={name: frames})")
    cad_frames = _depth_stack(cad, "cad")
    res_mm, holes = _residuals_and_holes(cad_frames, depths, max_abs_m)
    lo, hi = _histogram_range(range_mm, res_mm)

    fig = _new_figure(7.0, 4.2)
    ax = fig.subplots()
    for i, (name, r) in enumerate(res_mm.items()):
        color = TRACE_COLORS.get(name, PALETTE[i % len(PALETTE)])
        med = f", median {np.median(r):+.1f} mm" if r.size else ", no valid pixel"
        outside = float(np.mean((r < lo) | (r > hi))) if r.size else 0.0
        off = f", {100 * outside:.1f} % off range" if outside > 0 else ""
        label = f"{name}: holes {100 * holes[name]:.1f} %{med}{off}"
        if r.size:
            ax.hist(
                r, bins=bins, range=(lo, hi), density=True, histtype="step", linewidth=1.6, color=color, label=label
            )
        else:
            ax.plot([], [], color=color, label=label)
    if log:
        ax.set_yscale("log")
    ax.axvline(0.0, color="k", linewidth=0.6, alpha=0.5)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("CAD − depth [mm]")
    ax.set_ylabel("density [1/mm]")
    ax.legend(fontsize=9)
    n_frames = cad_frames.shape[0]
    ax.set_title(title or f"residual distributions ({n_frames} frame{'s' if n_frames != 1 else ''})")
    fig.holes = holes  # hole rates by name (for notebooks' metrics.json)
    return fig


# ====================================================================== holes
HOLE_EDGE_COLOR, HOLE_FLAT_COLOR = "#d62728", "#1f77b4"  # red: a hole at a CAD edge; blue: on a flat area


def hole_maps(
    cad,
    real,
    sims: Mapping[str, Any],
    n: int = 4,
    *,
    edge_threshold_m: float = 0.05,
    edge_dilate: int = 1,
    frames: Sequence[int] | None = None,
    title: str | None = None,
    panel_size: float = 2.2,
) -> Figure:
    """Where the real sensor and each simulator return no depth (kit extension `data.holes: model`, issue 20).

    Rows = frames (the first `n`, or `frames`), columns = real, then each of `sims` ({name: [F, S, S] metres}):
    the CAD in grey, holes on CAD-valid pixels in red at CAD edges (`metrics.depth_edges(cad, edge_threshold_m,
    edge_dilate)`, the benchmark's) and blue elsewhere; a last column of bars: hole rates (%) all / edges /
    flat over every frame (`metrics.hole_rates`). `fig.holes` = {name: hole_rates dict} for metrics.json."""
    from sim2real_kit.metrics import depth_edges, hole_rates

    cad_s = _depth_stack(cad, "cad")
    stacks = {"real": _depth_stack(real, "real")}
    for name, sim in sims.items():
        stacks[name] = _depth_stack(sim, f"sims[{name!r}]")
    _check_same_shape({"CAD": cad_s, **stacks}, "hole frames")
    F = cad_s.shape[0]
    rows = list(range(min(int(n), F))) if frames is None else [int(i) for i in frames]
    if not rows or any(not 0 <= i < F for i in rows):
        raise Sim2RealError(f"frames {rows} must be indices in [0, {F}) and at least one")
    edges = np.stack([depth_edges(c, edge_threshold_m, edge_dilate) for c in cad_s])  # [F, S, S] bool
    rates = {name: hole_rates(cad_s, d, edge_mask=edges) for name, d in stacks.items()}
    names = list(stacks)
    H, W = cad_s.shape[1:]
    fig = _new_figure(panel_size * (len(names) + 1.6) * max(W / H, 0.5), panel_size * len(rows) + 0.8)
    grid = fig.add_gridspec(len(rows), len(names) + 1, width_ratios=[1] * len(names) + [1.6])
    vmin, vmax = _depth_limits([cad_s[i] for i in rows])
    for r, i in enumerate(rows):
        cad_ok = cad_s[i] > 0
        for c, name in enumerate(names):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(np.ma.masked_where(~cad_ok, cad_s[i]), cmap="Greys", vmin=vmin, vmax=vmax, alpha=0.55)
            hole = cad_ok & ~(stacks[name][i] > 0)
            overlay = np.zeros((H, W, 4))
            for region, color in ((hole & edges[i], HOLE_EDGE_COLOR), (hole & ~edges[i], HOLE_FLAT_COLOR)):
                overlay[region] = (*_rgb(color), 1.0)
            ax.imshow(overlay, interpolation="nearest")
            _image_axes(ax)
            if r == 0:
                ax.set_title(name, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"frame {i}", fontsize=9)
    ax = fig.add_subplot(grid[:, -1])
    regions = ("all", "edge", "flat")
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        color = TRACE_COLORS.get(name, PALETTE[k % len(PALETTE)])
        values = [100 * rates[name][reg] for reg in regions]
        bars = ax.bar(np.arange(3) + (k - (len(names) - 1) / 2) * width, values, width, color=color, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(np.arange(3), ["all", "CAD edges", "flat"])
    ax.set_ylabel("hole rate [%]")
    ax.legend(fontsize=8)
    fig.suptitle(title or "holes: red at CAD edges, blue on flat areas")
    fig.holes = rates
    return fig


def _rgb(color: str) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return to_rgb(color)


# ====================================================================== sensor effects
def effects_gallery(
    depth, effects: Mapping[str, Any], cad=None, ncols: int = 4, *, title: str | None = None, alpha: float = 0.75
) -> Figure:
    """One panel per sensor component: the captured `depth` [H, W] with the component's effect mask
    (bool [H, W], `Capture.effects`) overlaid in magenta; title "name (x.x % px)" = share of the
    frame's pixels it touched. With `cad` a first panel shows the CAD depth for reference."""
    depth_m = _depth_map(depth, "depth")
    masks = {}
    for name, m in effects.items():
        mask = _np(m).astype(bool)
        while mask.ndim > 2 and mask.shape[0] == 1:
            mask = mask[0]
        if mask.shape != depth_m.shape:
            raise DepthFormatError(f"effects[{name!r}] has shape {mask.shape} but depth has {depth_m.shape}")
        masks[name] = mask
    cad_map = None if cad is None else _depth_map(cad, "cad")
    if cad_map is not None:
        _check_same_shape({"depth": depth_m, "cad": cad_map})
    panels: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    if cad_map is not None:
        panels.append(("CAD", cad_map, None))
    panels += [(name, depth_m, mask) for name, mask in masks.items()]
    if not panels:
        raise Sim2RealError("effects_gallery got no effect masks (effects={component: mask})")
    ncols = max(1, min(int(ncols), len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    H, W = depth_m.shape
    fig = _new_figure(PANEL_IN * ncols * max(W / H, 0.5) + 1.0, PANEL_IN * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    vmin, vmax = _depth_limits([depth_m] + ([cad_map] if cad_map is not None else []))
    im = None
    for ax, (name, background, mask) in zip(axes, panels):
        im = _show_depth(ax, background, vmin, vmax)
        if mask is None:
            ax.set_title(name, fontsize=10)
        else:
            overlay = np.zeros((H, W, 4), np.float32)
            overlay[mask] = (*EFFECT_COLOR, alpha)
            ax.imshow(overlay, interpolation="nearest")
            ax.set_title(f"{name} ({100 * mask.mean():.1f} % px)", fontsize=10)
        _image_axes(ax)
    for ax in axes[len(panels) :]:
        ax.remove()
    fig.colorbar(im, ax=list(axes[: len(panels)]), shrink=0.8, label="depth [m]")
    fig.suptitle(title or "sensor effects (magenta: pixels each component changed)")
    return fig


# ====================================================================== flagged patches (Sec. 3.3, Fig. 3)
def _box_rect(box) -> tuple[tuple[float, float], int, int]:
    """(xy, width, height) of a box (r0, r1, c0, c1) on an imshow axis: pixel c spans [c − 0.5, c + 0.5]."""
    r0, r1, c0, c1 = box
    return (c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0


def _draw_patch_boxes(
    ax, b: np.ndarray, ok: np.ndarray, flagged: np.ndarray, confidence: np.ndarray, selected: int | None
) -> None:
    """The patches on one panel: skipped hatched grey, flagged red (linewidth 1 + 2.5 `confidence`),
    kept faint white; `selected` (a patch index) outlined in dashed yellow."""
    from matplotlib.patches import Rectangle

    for k, box in enumerate(b):
        xy, w, h = _box_rect(box)
        if not ok[k]:
            rect = Rectangle(xy, w, h, fill=False, edgecolor="0.55", hatch="///", linewidth=0.5)
        elif flagged[k]:
            rect = Rectangle(xy, w, h, fill=False, edgecolor=FLAG_COLOR, linewidth=1.0 + 2.5 * confidence[k])
        else:
            rect = Rectangle(xy, w, h, fill=False, edgecolor=(1, 1, 1, 0.35), linewidth=0.5)
        ax.add_patch(rect)
    if selected is not None and 0 <= int(selected) < len(b):
        xy, w, h = _box_rect(b[int(selected)])
        ax.add_patch(Rectangle(xy, w, h, fill=False, edgecolor=SELECTED_COLOR, linewidth=2.0, linestyle="--"))


def _flag_legend(fig, threshold: float, selected: int | None) -> None:
    """The figure legend under the panels: flagged, kept, skipped (and selected)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], color=FLAG_COLOR, linewidth=2, label=f"flagged: P(real) < {threshold:.2f}"),
        Line2D([], [], color="0.7", linewidth=1, label="kept"),
        Patch(facecolor="none", edgecolor="0.55", hatch="///", label="skipped (too few valid px)"),
    ]
    if selected is not None:
        handles.append(Line2D([], [], color=SELECTED_COLOR, linestyle="--", linewidth=2, label="selected"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)


def flag_overlay(
    maps: Mapping[str, Any],
    boxes,
    scores,
    threshold: float = 0.5,
    valid=None,
    title: str | None = None,
    *,
    selected: int | None = None,
    cmap: str = DEPTH_CMAP,
) -> Figure:
    """The depth maps [H, W] side by side with the discriminator's patches of one frame drawn on each:
    flagged patches (P(real) `scores` < `threshold` and valid) in red, thicker the more confident
    (linewidth 1 + 2.5 (t − P) / t); kept patches faint white; skipped (`valid` False) patches
    hatched grey; `selected` (a patch index) outlined in yellow. boxes [P, 4] (r0, r1, c0, c1)."""
    from sim2real_kit.patches import check_threshold

    threshold = check_threshold(threshold, "threshold")
    if not maps:
        raise Sim2RealError("flag_overlay needs at least one depth map")
    depth = {name: _depth_map(m, f"maps[{name!r}]") for name, m in maps.items()}
    _check_same_shape(depth)
    H, W = next(iter(depth.values())).shape
    b = _boxes(boxes, H, W)
    P = len(b)
    p_real = _patch_vector(scores, P, "scores", np.float64)
    ok = np.ones(P, bool) if valid is None else _patch_vector(valid, P, "valid", bool)
    flagged = ok & (p_real < threshold)
    confidence = np.clip((threshold - p_real) / max(threshold, 1e-6), 0.0, 1.0)

    fig = _new_figure(PANEL_IN * len(depth) * max(W / H, 0.5) + 1.2, PANEL_IN + 1.1)
    axes = list(fig.subplots(1, len(depth), squeeze=False)[0])
    vmin, vmax = _depth_limits(list(depth.values()))
    im = None
    for ax, (name, d) in zip(axes, depth.items()):
        im = _show_depth(ax, d, vmin, vmax, cmap)
        _draw_patch_boxes(ax, b, ok, flagged, confidence, selected)
        ax.set_title(name, fontsize=10)
        _image_axes(ax)
    fig.colorbar(im, ax=axes, shrink=0.85, label="depth [m]")
    _flag_legend(fig, threshold, selected)
    n_valid, n_flag = int(ok.sum()), int(flagged.sum())
    share = f"{100 * n_flag / n_valid:.1f} %" if n_valid else "n/a"
    head = f"{title}: " if title else ""
    fig.suptitle(f"{head}{n_flag}/{n_valid} valid patches flagged ({share}), {P - n_valid} skipped")
    fig.flags = flagged  # bool [P] as drawn
    return fig


# ====================================================================== metric bars (Sec. 4 benchmark)
def metric_bars(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    label_key: str = "simulator",
    err_key: str | None = None,
    title: str | None = None,
    lower_is_better: bool | None = None,
    *,
    colors: Mapping[str, str] | Sequence[str] | None = None,
    fmt: str = "{:.3g}",
    clip: str | float | None = None,
    log: bool = False,
) -> Figure:
    """Bar chart of `metric` per row in the given order, labelled by `label_key`, with error bars from
    `err_key` when given and the value written on each bar. With `lower_is_better` True/False the
    best bar is outlined and the axis says which way is better.

    Scales for values far apart (e.g. two unconverged GANs at ~500 mm next to simulators at ~50 mm):
    `clip="auto"` cuts the bars far above the others (`clip_limit`) at the axis top, hatched, with their
    value written on them (a number: cut above that value); `log=True` a logarithmic axis (bars <= 0
    are not drawn, their label says so)."""
    if not rows:
        raise Sim2RealError("metric_bars got no rows")
    labels, values, errors = [], [], []
    for i, row in enumerate(rows):
        if metric not in row:
            raise Sim2RealError(f"rows[{i}] ({row.get(label_key, '?')}) has no key {metric!r}; keys: {', '.join(row)}")
        labels.append(str(row.get(label_key, i)))
        v = row[metric]
        values.append(math.nan if v is None else float(v))
        if err_key is not None:
            e = row.get(err_key)
            errors.append(0.0 if e is None or not math.isfinite(float(e)) else float(e))
    n = len(rows)
    if isinstance(colors, Mapping):
        bar_colors = [colors.get(lbl, "#4c72b0") for lbl in labels]
    elif colors is not None:
        bar_colors = [list(colors)[i % len(colors)] for i in range(n)]
    else:
        bar_colors = ["#4c72b0"] * n
    fig = _new_figure(max(4.0, 0.9 * n + 1.5), 4.2)
    ax = fig.subplots()
    x = np.arange(n)
    if clip == "auto":
        limit = clip_limit(values, errors or None)
    elif clip is None:
        limit = None
    else:
        limit = float(clip)
    cut = [limit is not None and math.isfinite(v) and v > limit for v in values]
    heights = [limit if c else v for v, c in zip(values, cut)]
    errs = [0.0 if c else e for e, c in zip(errors, cut)] if err_key is not None else None
    bars = ax.bar(x, heights, color=bar_colors, yerr=errs, capsize=4 if err_key else 0)
    texts = []
    for i, v in enumerate(values):
        if not math.isfinite(v):
            texts.append("n/a")
        elif log and v <= 0:
            texts.append("")  # written at the axis' bottom below
        elif cut[i]:
            texts.append("")
        elif err_key is not None and errors[i] > 0:  # no "± 0" for a single seed
            texts.append(f"{_bar_value(v, fmt)} ± {errors[i]:.2g}")
        else:
            texts.append(_bar_value(v, fmt))
    ax.bar_label(bars, labels=texts, padding=2, fontsize=8)
    for i, v in enumerate(values):
        if log and math.isfinite(v) and v <= 0:
            ax.text(
                i,
                0.02,
                f"{_bar_value(v, fmt)}\n(not on a log axis)",
                transform=ax.get_xaxis_transform(),
                ha="center",
                fontsize=7,
            )
    for i, bar in enumerate(bars):
        if cut[i]:  # cut bar: hatched, a zigzag at its top, its value inside
            bar.set_hatch("//")
            bar.set_edgecolor("white")
            cx, w = bar.get_x() + bar.get_width() / 2, bar.get_width()
            ax.plot(
                [cx - w / 2, cx - w / 4, cx, cx + w / 4, cx + w / 2],
                [limit * f for f in (0.955, 0.975, 0.955, 0.975, 0.955)],
                color="white",
                lw=2.5,
                clip_on=False,
            )
            ax.annotate(
                f"{_bar_value(values[i], fmt)} ↑",
                (cx, limit * 0.93),
                ha="center",
                va="top",
                fontsize=8,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9},
            )
    long = max(len(lbl) for lbl in labels) > 8
    ax.set_xticks(x, labels, rotation=30 if long else 0, ha="right" if long else "center")
    ylabel = metric
    finite = [v for v in values if math.isfinite(v)]
    if lower_is_better is not None and finite:
        best = int(np.nanargmin(values) if lower_is_better else np.nanargmax(values))
        bars[best].set_edgecolor("black")
        bars[best].set_linewidth(2.0)
        ylabel += "  (↓ lower is better)" if lower_is_better else "  (↑ higher is better)"
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.margins(y=0.15)
    if limit is not None and any(cut):
        ax.set_ylim(0, limit)
        ax.set_xlabel("hatched bars are cut at the axis top; their value is written on them", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or metric)
    return fig


def _bar_value(value: float, fmt: str) -> str:
    """`fmt` of a bar's value; whole numbers from 1000 on (1449, not 1.45e+03)."""
    return f"{value:.0f}" if abs(value) >= 1000 else fmt.format(value)


def clip_limit(values: Sequence[float], errors: Sequence[float] | None = None, ratio: float = 4.0) -> float | None:
    """Top of a bar chart's axis that keeps the ordinary bars readable when a few are far larger (e.g.
    unconverged GANs at ~500 mm W1 next to simulators at ~50 mm): sorted from the top, the first value more
    than `ratio` × the next one and everything above it are outliers (at most half of the bars); the limit
    is 1.3 × the largest remaining bar (its error bar included). None when there is no such gap, fewer than
    3 finite values, or a negative value. (`benchmark.tables.clip_limit` is the same rule for the PNGs the
    benchmark writes: the two packages do not import each other.)"""
    vals = [float(v) for v in values]
    errs = [float(e) if e is not None and math.isfinite(float(e)) else 0.0 for e in (errors or [0.0] * len(vals))]
    pairs = sorted(((v, e) for v, e in zip(vals, errs) if math.isfinite(v)), reverse=True)
    if len(pairs) < 3 or pairs[-1][0] < 0:
        return None
    for k in range((len(pairs) - 1) // 2):
        if pairs[k + 1][0] > 0 and pairs[k][0] > ratio * pairs[k + 1][0]:
            return 1.3 * max(v + e for v, e in pairs[k + 1 :])
    return None


# ====================================================================== sample grids
def sample_grid(
    cad,
    real,
    sims: Mapping[str, Any],
    n: int = 4,
    *,
    frames: Sequence[int] | None = None,
    frame_ids: Sequence[str] | None = None,
    title: str | None = None,
    limit_mm: float | None = None,
    panel_size: float = 2.2,
) -> Figure:
    """Rows = frames (the first `n`, or `frames`), columns = CAD, real, each simulator of `sims`, then
    the residuals real − CAD and <last sim> − CAD (mm). Depth columns share one scale, residual
    columns one symmetric scale (98th percentile of |residual|, or ±`limit_mm`). cad, real, sims[...]:
    [F, S, S] (or [F, 1, S, S]); real may be None."""
    cad_s = _depth_stack(cad, "cad")
    stacks = {"CAD": cad_s}
    if real is not None:
        stacks["real"] = _depth_stack(real, "real")
    for name, s in sims.items():
        stacks[name] = _depth_stack(s, f"sims[{name!r}]")
    _check_same_shape(stacks, "sample frames")
    F = cad_s.shape[0]
    rows = list(range(min(int(n), F))) if frames is None else [int(i) for i in frames]
    if not rows or any(not 0 <= i < F for i in rows):
        raise Sim2RealError(f"frames {rows} must be indices in [0, {F}) and at least one")
    res_of = (["real"] if real is not None else []) + ([list(sims)[-1]] if sims else [])
    res_names = [f"{k} − CAD" for k in res_of]
    depth_cols = list(stacks)
    ncols = len(depth_cols) + len(res_of)
    H, W = cad_s.shape[1:]
    fig = _new_figure(panel_size * ncols * max(W / H, 0.5) + 1.6, panel_size * len(rows) + 0.7)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    vmin, vmax = _depth_limits([stacks[c][i] for c in depth_cols for i in rows])
    residuals = {(k, i): _residual_mm(stacks[k][i], cad_s[i]) for k in res_of for i in rows}
    limit = _residual_limit(list(residuals.values())) if limit_mm is None else float(limit_mm)
    im_d = im_r = None
    for r, i in enumerate(rows):
        for c, name in enumerate(depth_cols):
            im_d = _show_depth(axes[r, c], stacks[name][i], vmin, vmax)
        for c, k in enumerate(res_of):
            im_r = _show_residual(axes[r, len(depth_cols) + c], residuals[(k, i)], limit)
        for ax in axes[r]:
            _image_axes(ax)
        axes[r, 0].set_ylabel(str(frame_ids[i]) if frame_ids is not None else f"frame {i}", fontsize=9)
    for c, name in enumerate(depth_cols + res_names):
        axes[0, c].set_title(name, fontsize=10)
    fig.colorbar(im_d, ax=axes[:, : len(depth_cols)], shrink=0.8, label="depth [m]")
    if im_r is not None:
        fig.colorbar(im_r, ax=axes[:, len(depth_cols) :], shrink=0.8, label="depth − CAD [mm]", extend="both")
    fig.suptitle(title or "samples")
    return fig


def save_sample_grid(
    path: str | Path, cad, real, sims: Mapping[str, Any], n: int = 4, dpi: int = 100, **kwargs
) -> Path:
    """`sample_grid(cad, real, sims, n, **kwargs)` written as a PNG atomically (tmp + rename); returns the path.
    Uses no pyplot state: safe to call from a training loop."""
    from sim2real_kit.io import atomic_path

    path = Path(path)
    token = _PYPLOT.set(False)
    try:
        fig = sample_grid(cad, real, sims, n=n, **kwargs)
    finally:
        _PYPLOT.reset(token)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


# ====================================================================== ablations
def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def ablation_plot(
    rows: Sequence[Mapping[str, Any]],
    x: str,
    y: str,
    group: str | None = None,
    err: str | None = None,
    title: str | None = None,
    *,
    logx: bool = False,
    lower_is_better: bool | None = None,
) -> Figure:
    """A metric `y` against a parameter `x` (a threshold, the number of stages...), one line per value
    of `group` (first-seen order), error bars from `err`. Numeric x is sorted; other x values (e.g.
    True/False, variant names) are categories in first-seen order."""
    if not rows:
        raise Sim2RealError("ablation_plot got no rows")
    for i, row in enumerate(rows):
        for key in (x, y) + ((group,) if group else ()):
            if key not in row:
                raise Sim2RealError(f"rows[{i}] has no key {key!r}; keys: {', '.join(row)}")
    numeric = all(_is_number(row[x]) for row in rows)
    categories: list = []
    if not numeric:
        for row in rows:
            if str(row[x]) not in categories:
                categories.append(str(row[x]))
    groups: dict[Any, list] = {}
    for row in rows:
        groups.setdefault(row[group] if group else None, []).append(row)
    fig = _new_figure(6.0, 4.0)
    ax = fig.subplots()
    for k, (name, members) in enumerate(groups.items()):
        xs = [float(r[x]) if numeric else categories.index(str(r[x])) for r in members]
        order = np.argsort(xs, kind="stable")
        xs = np.asarray(xs, np.float64)[order]
        ys = np.asarray([math.nan if r[y] is None else float(r[y]) for r in members], np.float64)[order]
        es = None
        if err is not None:
            es = np.asarray([float(r.get(err) or 0.0) for r in members], np.float64)[order]
        capsize = 3 if es is not None else 0
        label = None if group is None else f"{group} = {name}"
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=capsize, color=PALETTE[k % len(PALETTE)], label=label)
    if numeric:
        from matplotlib.ticker import MaxNLocator

        if all(float(r[x]).is_integer() for r in rows):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if logx:
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(x)
    arrow = {True: "  (↓ lower is better)", False: "  (↑ higher is better)"}.get(lower_is_better, "")
    ax.set_ylabel(y + arrow)
    ax.grid(alpha=0.3)
    if group is not None:
        ax.legend(fontsize=9)
    fig.suptitle(title or f"{y} vs {x}")
    return fig


# ====================================================================== saving
def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write a matplotlib Figure (format from the suffix: png, pdf, svg) or a plotly Figure (.html,
    self-contained: opens offline) atomically; returns the path."""
    from sim2real_kit.io import atomic_path

    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    with atomic_path(path) as tmp:
        if hasattr(fig, "savefig"):
            fig.savefig(tmp, format=suffix or "png", dpi=dpi)
        elif hasattr(fig, "write_html"):
            if suffix not in ("html", "htm"):
                raise ConfigError(f"plotly figures are saved as .html, got {path.name!r}")
            fig.write_html(tmp, include_plotlyjs=True, full_html=True)
        else:
            raise Sim2RealError(f"cannot save a {type(fig).__name__} (matplotlib or plotly figures only)", path)
    return path
