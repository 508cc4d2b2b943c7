"""Every figure and interactive view of the notebooks (DESIGN §3, §6): matplotlib figures of depth,
residuals, sensor effects, flagged patches, training curves and benchmark bars; plotly 3D views of
point clouds, discriminator patches (paper Sec. 3.3, Fig. 3) and fused meshes (Sec. 4); ipywidgets
explorers of a dataset's frames and of the discriminator's flags with a threshold slider.

Conventions (shared by every function):
- depth maps are float metres [H, W] (0 = invalid), numpy arrays or torch tensors; stacks are [F, H, W]
  (or [F, 1, H, W]). Depth is drawn with a sequential colormap ("turbo", invalid pixels black) on one
  shared, robust (1st-99th percentile) scale per figure.
- residuals are drawn in millimetres with a diverging colormap ("RdBu_r"), limits symmetric at the
  98th percentile of |residual|, computed only where both maps are valid (elsewhere grey).
  `depth_panels` and `sample_grid` show depth − CAD (red: farther than the CAD); `residual_histograms`
  shows CAD − depth, the residual of the metrics (`metrics.residuals`) and of the release.
- matplotlib functions return a `matplotlib.figure.Figure` that pyplot does not keep (made, then
  closed at once): it is shown exactly once in Jupyter (as a cell's last expression or with
  `display(fig)`), never a second time at the end of the cell, and is freed with its last reference
  (no `plt.close` needed). `save_sample_grid` uses no pyplot at all (safe in training loops). Save
  with `fig.savefig(path)` or `save_figure` (atomic). plotly functions return `plotly.graph_objects.Figure`;
  the explorers return an `ipywidgets.VBox` whose controls are attributes (`.frame_slider`, ...).

matplotlib, plotly and ipywidgets are imported inside the functions: `import sim2real_kit.viz` is light.
"""

from __future__ import annotations

import contextvars
import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim2real_kit.errors import ConfigError, DepthFormatError, MissingArtifactError, Sim2RealError

if TYPE_CHECKING:  # pragma: no cover
    import ipywidgets
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

    from sim2real_kit.camera import Camera
    from sim2real_kit.data.layout import DepthLayout

DEPTH_CMAP = "turbo"
RESIDUAL_CMAP = "RdBu_r"
INVALID_DEPTH_COLOR = "black"
INVALID_RESIDUAL_COLOR = (0.62, 0.62, 0.62)
RESIDUAL_PERCENTILE = 98.0  # symmetric residual colour limits at this percentile of |residual|
DEPTH_PERCENTILES = (1.0, 99.0)  # robust depth colour scale
EFFECT_COLOR = (1.0, 0.0, 1.0)  # magenta: bright on turbo
FLAG_COLOR = "red"
SELECTED_COLOR = "#ffd400"
PANEL_IN = 3.0  # inches per image panel
# fixed colours of the names the kit uses, plotly's D3 palette for the rest
TRACE_COLORS = {"CAD": "#7f7f7f", "cad": "#7f7f7f", "real": "#1f77b4", "generated": "#ff7f0e"}
_PYPLOT = contextvars.ContextVar("sim2real_viz_pyplot", default=True)  # False: figures without pyplot
PALETTE = ("#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e", "#1f77b4")


# ====================================================================== input handling
def _np(x, dtype=None) -> np.ndarray:
    """numpy array of a numpy array / torch tensor / list (torch: detached, on the CPU, bf16 -> float32)."""
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu()
        if x.is_floating_point() and x.element_size() < 4:
            x = x.float()
        x = x.numpy()
    arr = np.asarray(x)
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _depth_map(x, name: str) -> np.ndarray:
    """One depth map [H, W] float32 metres; leading singleton dims ([1, H, W], [1, 1, H, W]) dropped;
    non-finite values shown as invalid (0)."""
    arr = _np(x, np.float32)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise DepthFormatError(f"{name} must be a depth map [H, W] in metres, got shape {arr.shape}")
    return np.where(np.isfinite(arr), arr, 0.0).astype(np.float32, copy=False)


def _depth_stack(x, name: str) -> np.ndarray:
    """Depth frames [F, H, W] float32 from [H, W], [F, H, W] or [F, 1, H, W]."""
    arr = _np(x, np.float32)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise DepthFormatError(f"{name} must be depth frames [F, H, W] (or one [H, W]), got shape {arr.shape}")
    return np.where(np.isfinite(arr), arr, 0.0).astype(np.float32, copy=False)


def _check_same_shape(maps: Mapping[str, np.ndarray], what: str = "depth maps") -> None:
    shapes = {name: m.shape for name, m in maps.items()}
    if len(set(shapes.values())) > 1:
        raise DepthFormatError(f"{what} differ in shape: " + ", ".join(f"{k} {v}" for k, v in shapes.items()))


def _depth_limits(maps: Sequence[np.ndarray]) -> tuple[float, float]:
    """Robust shared depth scale (metres) over the valid pixels of all maps."""
    values = np.concatenate([m[m > 0].ravel() for m in maps] + [np.zeros(0, np.float32)])
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, DEPTH_PERCENTILES))
    if hi - lo < 1e-3:
        lo, hi = lo - 0.05, hi + 0.05
    return lo, hi


def _residual_limit(residuals_mm: Sequence[np.ndarray], percentile: float = RESIDUAL_PERCENTILE) -> float:
    """Symmetric residual colour limit (mm): the `percentile` of |residual| over finite values, >= 0.1 mm."""
    values = np.concatenate([np.abs(r[np.isfinite(r)]).ravel() for r in residuals_mm] + [np.zeros(0)])
    if values.size == 0:
        return 1.0
    return max(float(np.percentile(values, percentile)), 0.1)


def _residual_mm(depth: np.ndarray, cad: np.ndarray) -> np.ndarray:
    """(depth − cad) in millimetres where both are valid, NaN elsewhere."""
    both = (depth > 0) & (cad > 0)
    return np.where(both, (depth.astype(np.float64) - cad) * 1000.0, np.nan)


def _cmap(name: str, bad) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=bad)


def _new_figure(width_in: float, height_in: float) -> Figure:
    """A constrained-layout Figure that pyplot does not keep: shown once in Jupyter (as a cell's last
    expression or with `display`), never again at the end of the cell, and freed with its last reference.

    It is made by pyplot and closed at once so that a kernel's backend (the inline backend's PNG
    display of Figures) is set up. Inside `save_sample_grid` (`_PYPLOT` False) it is made without pyplot
    (no global state, any thread)."""
    if not _PYPLOT.get():
        from matplotlib.figure import Figure

        return Figure(figsize=(width_in, height_in), layout="constrained")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width_in, height_in), layout="constrained")
    plt.close(fig)
    return fig


def _image_axes(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _show_depth(ax, depth: np.ndarray, vmin: float, vmax: float, cmap: str = DEPTH_CMAP):
    masked = np.ma.masked_where(~(depth > 0), depth)
    return ax.imshow(masked, cmap=_cmap(cmap, INVALID_DEPTH_COLOR), vmin=vmin, vmax=vmax, interpolation="nearest")


def _show_residual(ax, residual_mm: np.ndarray, limit_mm: float, cmap: str = RESIDUAL_CMAP):
    masked = np.ma.masked_invalid(residual_mm)
    return ax.imshow(
        masked, cmap=_cmap(cmap, INVALID_RESIDUAL_COLOR), vmin=-limit_mm, vmax=limit_mm, interpolation="nearest"
    )


def _hole_share(depth: np.ndarray) -> float:
    return float(np.mean(~(depth > 0))) if depth.size else math.nan


# ====================================================================== 1. depth panels
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


# ====================================================================== 2. residual histograms
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
    from sim2real_kit.metrics import residuals as pooled_residuals

    if not depths:
        raise Sim2RealError("residual_histograms needs at least one depth (depths={name: frames})")
    cad_frames = _depth_stack(cad, "cad")
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
    if range_mm is None:
        half = _residual_limit(list(res_mm.values()), RESIDUAL_PERCENTILE)
        lo, hi = -half, half
    elif isinstance(range_mm, (int, float)):
        lo, hi = -float(range_mm), float(range_mm)
    else:
        lo, hi = (float(v) for v in range_mm)
    if not hi > lo:
        raise ConfigError(f"range_mm must give lo < hi, got {range_mm!r}")

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


# ====================================================================== 3. sensor effects
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


# ====================================================================== 4. point clouds
def _points(x, name: str) -> np.ndarray:
    pts = _np(x, np.float64)
    if pts.ndim >= 2 and pts.shape[-1] == 3:
        pts = pts.reshape(-1, 3)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise Sim2RealError(f"{name} must be points [N, 3], got shape {pts.shape}")
    keep = np.isfinite(pts).all(1) & (np.abs(pts).sum(1) > 0)  # zeros: padding of skipped patches
    return pts[keep]


def _trace_color(name: str, i: int, colors: Mapping[str, str] | None) -> str:
    if colors and name in colors:
        return colors[name]
    return TRACE_COLORS.get(name, PALETTE[i % len(PALETTE)])


def _scene_layout(view: str, axis_unit: str = "m") -> dict:
    if view == "camera":  # camera frame: x right, y down, z forward; look forward from behind the camera
        camera = {"up": {"x": 0, "y": -1, "z": 0}, "eye": {"x": 0.0, "y": -0.6, "z": -1.9}}
    elif view == "world":  # world frame: z up
        camera = {"up": {"x": 0, "y": 0, "z": 1}, "eye": {"x": 1.3, "y": -1.3, "z": 0.9}}
    else:
        raise ConfigError(f"view must be 'camera' or 'world', got {view!r}")
    return {
        "aspectmode": "data",
        "camera": camera,
        "xaxis": {"title": f"x [{axis_unit}]"},
        "yaxis": {"title": f"y [{axis_unit}]"},
        "zaxis": {"title": f"z [{axis_unit}]"},
    }


def point_cloud_figure(
    clouds: Mapping[str, Any],
    max_points: int = 20000,
    colors: Mapping[str, str] | None = None,
    size: float = 1.5,
    title: str | None = None,
    seed: int = 0,
    *,
    view: str = "camera",
    opacity: float = 0.8,
) -> go.Figure:
    """Plotly 3D view: one Scatter3d trace per named cloud [N, 3] (or [H, W, 3]), toggleable in the
    legend, each randomly subsampled (seeded) to at most `max_points`; non-finite and all-zero
    points are dropped. `view` "camera" (x right, y down, z forward: looks like the image) or
    "world" (z up). Equal aspect (`scene.aspectmode = "data"`)."""
    import plotly.graph_objects as go

    if int(max_points) < 1:
        raise ConfigError(f"max_points must be >= 1, got {max_points!r}")
    rng = np.random.default_rng(seed)
    fig = go.Figure()
    for i, (name, cloud) in enumerate(clouds.items()):
        if cloud is None:
            continue
        pts = _points(cloud, f"clouds[{name!r}]")
        n_all = len(pts)
        if n_all > max_points:
            pts = pts[np.sort(rng.choice(n_all, int(max_points), replace=False))]
        fig.add_trace(
            go.Scatter3d(
                x=pts[:, 0],
                y=pts[:, 1],
                z=pts[:, 2],
                mode="markers",
                name=str(name),
                marker={"size": size, "color": _trace_color(name, i, colors), "opacity": opacity},
                hovertemplate=f"{name}<br>x %{{x:.3f}}<br>y %{{y:.3f}}<br>z %{{z:.3f}}<extra>{n_all} pts</extra>",
            )
        )
    fig.update_layout(
        title=title,
        scene=_scene_layout(view),
        legend={"itemsizing": "constant"},
        margin={"l": 0, "r": 0, "t": 40 if title else 10, "b": 0},
        height=520,
    )
    return fig


def frame_point_clouds(cad, real, camera: Camera, sim=None, pose=None, **kwargs) -> go.Figure:
    """Back-project the valid pixels of the CAD, real and (optional) generated depth [H, W] of one
    frame with `camera` (camera frame, or world frame with the 4x4 camera-to-world `pose`) and show
    them with `point_cloud_figure` as "CAD", "real", "generated"."""
    clouds = {}
    for name, depth in (("CAD", cad), ("real", real), ("generated", sim)):
        if depth is None:
            continue
        d = _depth_map(depth, name)
        pts = camera.backproject(d, None if pose is None else _np(pose, np.float64))
        clouds[name] = pts[d > 0]
    kwargs.setdefault("view", "camera" if pose is None else "world")
    return point_cloud_figure(clouds, **kwargs)


# ====================================================================== 5. frame browser
def _show_in(output, obj) -> None:
    """Replace what an ipywidgets Output shows by `obj` (None: clear). Without a running IPython
    (scripts, tests) nothing is displayed: the widgets still update their state."""
    from IPython import get_ipython
    from IPython.display import display

    if get_ipython() is None:
        return
    with output:
        output.clear_output(wait=True)
        if obj is not None:
            display(obj)


def frame_browser(layout: DepthLayout | str | Path, split: str = "val", size: int | None = None) -> ipywidgets.VBox:
    """Explore a `lasa_depth` layout: a scene Dropdown and a frame IntSlider; each change reads that
    one frame (nothing is read up front) and redraws `depth_panels` of CAD / real + "real − CAD" in an
    Output. `size`: show the evaluation transform's centre crop resized to size x size (nearest).

    The returned VBox carries `.scene_dropdown`, `.frame_slider`, `.info` (HTML), `.output`, and
    after each draw `.ref` (FrameRef), `.figure` (the last Figure) and `.renders` (count)."""
    import ipywidgets as widgets

    from sim2real_kit.data.layout import DepthLayout

    layout = layout if isinstance(layout, DepthLayout) else DepthLayout(layout)
    by_scene: dict[str, list] = {}
    for ref in layout.frames(split):
        by_scene.setdefault(ref.scene, []).append(ref)
    scenes = list(by_scene)
    box_crop = None
    if size is not None:
        from sim2real_kit.data.dataset import eval_box

        box_crop = eval_box(layout.camera)

    dropdown = widgets.Dropdown(options=scenes, value=scenes[0], description="scene")
    slider = widgets.IntSlider(
        value=0, min=0, max=len(by_scene[scenes[0]]) - 1, description="frame", continuous_update=False
    )
    info = widgets.HTML()
    output = widgets.Output()
    box = widgets.VBox([widgets.HBox([dropdown, slider]), info, output])
    box.scene_dropdown, box.frame_slider, box.info, box.output = dropdown, slider, info, output
    box.ref, box.figure, box.renders, box.error = None, None, 0, None
    state = {"busy": False}

    def render(*_):
        if state["busy"]:
            return
        refs = by_scene[dropdown.value]
        ref = refs[min(slider.value, len(refs) - 1)]
        try:
            frame = layout.read_frame(ref)
            cad, real = frame["cad"], frame["real"]
            if box_crop is not None:
                from sim2real_kit.data.dataset import crop_resize

                cad, real = crop_resize(cad, box_crop, size), crop_resize(real, box_crop, size)
            fig = depth_panels({"CAD": cad, "real": real}, cad=cad, residual_of=("real",), title=f"{split}: {ref}")
        except Sim2RealError as e:  # a broken frame: say so in the widget, keep browsing
            box.error = str(e)
            info.value = f"<b>{ref}</b>: <span style='color:#c00'>{e}</span>"
            _show_in(output, None)
            return
        both = (cad > 0) & (real > 0)
        n_cad = int((cad > 0).sum())
        holes = float(((cad > 0) & ~(real > 0)).sum() / n_cad) if n_cad else math.nan
        res = (cad[both] - real[both]) * 1000.0
        info.value = (
            f"<b>{ref}</b> ({slider.value + 1}/{len(refs)} in scene {ref.scene}) — "
            f"{cad.shape[1]}x{cad.shape[0]} px, real holes {100 * holes:.1f} % of CAD pixels, "
            + (f"median CAD − real {np.median(res):+.1f} mm" if res.size else "no pixel valid in both")
        )
        box.ref, box.figure, box.error = ref, fig, None
        box.renders += 1
        _show_in(output, fig)

    def on_scene(change):
        state["busy"] = True
        try:
            slider.value = 0
            slider.max = len(by_scene[change["new"]]) - 1
        finally:
            state["busy"] = False
        render()

    dropdown.observe(on_scene, names="value")
    slider.observe(render, names="value")
    render()
    return box


# ====================================================================== 6. training curves
def _read_csv(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """Columns of a CSV as float arrays ('' and non-numbers -> NaN)."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(f"{what} not found (the Trainer writes it into the stage's run folder)", path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise Sim2RealError(f"{what} holds no rows yet", path)
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    cols: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        values = []
        for r in body:
            try:
                values.append(float(r[j]))
            except ValueError:
                values.append(math.nan)
        cols[name] = np.asarray(values, np.float64)
    return cols


def _ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing); NaNs are skipped."""
    out = np.full_like(values, np.nan)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isfinite(v):
            acc = weight * acc + (1 - weight) * v
            norm = weight * norm + (1 - weight)
        if norm > 0:
            out[i] = acc / norm
    return out


def _as_paths(paths) -> list[Path]:
    return [Path(p) for p in paths] if isinstance(paths, (list, tuple)) else [Path(paths)]


def _labels(paths: list[Path], labels) -> list[str]:
    if labels is None:
        return [p.parent.name or p.stem for p in paths]
    labels = [labels] if isinstance(labels, str) else list(labels)
    if len(labels) != len(paths):
        raise ConfigError(f"{len(labels)} labels for {len(paths)} CSV files")
    return labels


def loss_curve(
    losses_csv: str | Path | Sequence[str | Path],
    labels: Sequence[str] | None = None,
    smooth: float = 0,
    logy: bool = True,
    *,
    columns: Sequence[str] = ("loss",),
    title: str | None = None,
) -> Figure:
    """Training curves from the Trainer's `losses.csv` (columns step, epoch, loss, lr, img_per_s,
    grad_norm, ...): one panel per name in `columns` (default the loss), one line per file.

    smooth: EMA weight in [0, 1) (TensorBoard-style); when > 0 the raw curve is drawn faint beneath.
    logy: log y axis when every value is positive."""
    if not 0 <= smooth < 1:
        raise ConfigError(f"smooth is an EMA weight in [0, 1), got {smooth!r}")
    paths = _as_paths(losses_csv)
    names = _labels(paths, labels)
    tables = [_read_csv(p, "losses.csv") for p in paths]
    columns = [columns] if isinstance(columns, str) else list(columns)
    fig = _new_figure(6.5 * len(columns), 4.0)
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, column in zip(axes, columns):
        positive = True
        for i, (path, name, table) in enumerate(zip(paths, names, tables)):
            if column not in table or "step" not in table:
                raise Sim2RealError(f"no column {column!r} (or 'step'); columns are {', '.join(table)}", path)
            step, values = table["step"], table[column]
            positive &= bool(np.all(values[np.isfinite(values)] > 0))
            color = PALETTE[i % len(PALETTE)] if len(paths) > 1 else "#1f77b4"
            label = name if len(paths) > 1 else None
            if smooth > 0:
                ax.plot(step, values, color=color, alpha=0.25, linewidth=0.8)
                ax.plot(step, _ema(values, smooth), color=color, linewidth=1.6, label=label)
            else:
                ax.plot(step, values, color=color, linewidth=1.4, label=label)
        if logy and positive:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(column)
        ax.grid(alpha=0.3)
        if len(paths) > 1:
            ax.legend(fontsize=9)
    suffix = f" (EMA {smooth:g})" if smooth > 0 else ""
    fig.suptitle(title or ("training loss" if columns == ["loss"] else "training curves") + suffix)
    return fig


def val_curve(
    val_csv: str | Path | Sequence[str | Path],
    metric: str | Sequence[str],
    labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    logy: bool = False,
) -> Figure:
    """Validation metrics against the training step from the Trainer's `val.csv` (columns `step` + the
    metrics, e.g. `w1_mm`, `w1_cad_mm`): one line per (file, metric). `metric`: a name or a list."""
    paths = _as_paths(val_csv)
    names = _labels(paths, labels)
    metrics = [metric] if isinstance(metric, str) else list(metric)
    fig = _new_figure(6.5, 4.0)
    ax = fig.subplots()
    k = 0
    for path, name, table in zip(paths, names, (_read_csv(p, "val.csv") for p in paths)):
        for m in metrics:
            if m not in table or "step" not in table:
                raise Sim2RealError(f"no column {m!r} (or 'step'); columns are {', '.join(table)}", path)
            label = " ".join(s for s in ((name if len(paths) > 1 else ""), m) if s)
            ax.plot(table["step"], table[m], marker="o", markersize=4, color=PALETTE[k % len(PALETTE)], label=label)
            k += 1
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(metrics[0] if len(metrics) == 1 else "value")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.suptitle(title or f"validation: {', '.join(metrics)}")
    return fig


# ====================================================================== 7. flagged patches
def _boxes(boxes, height: int, width: int) -> np.ndarray:
    b = _np(boxes)
    if b.ndim != 2 or b.shape[1] != 4:
        raise Sim2RealError(f"boxes must have shape [P, 4] as (r0, r1, c0, c1), got {b.shape}")
    b = b.astype(np.int64)
    bad = (b[:, 0] < 0) | (b[:, 2] < 0) | (b[:, 1] > height) | (b[:, 3] > width) | (b[:, 1] <= b[:, 0])
    bad |= b[:, 3] <= b[:, 2]
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise Sim2RealError(f"boxes[{k}] = {b[k].tolist()} is empty or outside the {height}x{width} frame")
    return b


def _patch_vector(x, n: int, name: str, dtype) -> np.ndarray:
    v = _np(x).astype(dtype).reshape(-1) if x is not None else None
    if v is None or v.shape != (n,):
        raise Sim2RealError(f"{name} must have one value per patch ({n}), got shape {None if v is None else v.shape}")
    return v


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
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

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
        for k, (r0, r1, c0, c1) in enumerate(b):
            xy, w, h = (c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0  # imshow: pixel c spans [c - 0.5, c + 0.5]
            if not ok[k]:
                rect = Rectangle(xy, w, h, fill=False, edgecolor="0.55", hatch="///", linewidth=0.5)
            elif flagged[k]:
                rect = Rectangle(xy, w, h, fill=False, edgecolor=FLAG_COLOR, linewidth=1.0 + 2.5 * confidence[k])
            else:
                rect = Rectangle(xy, w, h, fill=False, edgecolor=(1, 1, 1, 0.35), linewidth=0.5)
            ax.add_patch(rect)
        if selected is not None and 0 <= int(selected) < P:
            r0, r1, c0, c1 = b[int(selected)]
            ax.add_patch(
                Rectangle(
                    (c0 - 0.5, r0 - 0.5),
                    c1 - c0,
                    r1 - r0,
                    fill=False,
                    edgecolor=SELECTED_COLOR,
                    linewidth=2.0,
                    linestyle="--",
                )  # fmt: skip
            )
        ax.set_title(name, fontsize=10)
        _image_axes(ax)
    fig.colorbar(im, ax=axes, shrink=0.85, label="depth [m]")
    handles = [
        Line2D([], [], color=FLAG_COLOR, linewidth=2, label=f"flagged: P(real) < {threshold:.2f}"),
        Line2D([], [], color="0.7", linewidth=1, label="kept"),
        Patch(facecolor="none", edgecolor="0.55", hatch="///", label="skipped (too few valid px)"),
    ]
    if selected is not None:
        handles.append(Line2D([], [], color=SELECTED_COLOR, linestyle="--", linewidth=2, label="selected"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    n_valid, n_flag = int(ok.sum()), int(flagged.sum())
    share = f"{100 * n_flag / n_valid:.1f} %" if n_valid else "n/a"
    head = f"{title}: " if title else ""
    fig.suptitle(f"{head}{n_flag}/{n_valid} valid patches flagged ({share}), {P - n_valid} skipped")
    fig.flags = flagged  # bool [P] as drawn
    return fig


# ====================================================================== 8. one patch in 3D
def patch_figure(points, real_points, cad_points, title: str | None = None, *, size: float = 3.0) -> go.Figure:
    """One discriminator patch in 3D: generated (orange), real (blue) and CAD (grey) points [N, 3]
    (camera-frame metres from `PatchPoints.camera_points()`, or normalised points), legend-toggleable.
    Any of the three may be None."""
    clouds = {"generated": points, "real": real_points, "CAD": cad_points}
    return point_cloud_figure(clouds, max_points=100_000, size=size, title=title, view="camera", opacity=0.9)


# ====================================================================== 9. patch explorer
def patch_explorer(
    cad,
    real,
    sim,
    camera: Camera,
    boxes,
    scores,
    valid,
    num_points: int = 256,
    seed: int = 0,
    *,
    threshold: float = 0.5,
    names: tuple[str, str, str] = ("CAD", "real", "generated"),
) -> ipywidgets.VBox:
    """Explore the discriminator's verdicts: frame / patch / threshold sliders drive the 2D
    `flag_overlay` of CAD / real / generated [F, S, S] (selected patch outlined) and the 3D
    `patch_figure` of the selected patch (points drawn with `extract_patch_points`, for that one
    frame and patch only, camera-frame metres). scores [F, P] P(real), valid [F, P] bool, boxes [P, 4].

    The VBox carries `.frame_slider`, `.patch_slider`, `.threshold_slider`, `.info` (HTML: P(real),
    flagged or not, the frame's flag rate at the threshold), `.overlay_output`, `.patch_view`
    (a plotly FigureWidget when anywidget is installed, else an Output), `.overlay` (last Figure),
    `.patch_fig` (last plotly Figure) and `.flag_rate` (flagged / valid patches of the frame)."""
    import ipywidgets as widgets
    import plotly.graph_objects as go
    import torch

    from sim2real_kit.patches import check_threshold, extract_patch_points

    stacks = {n: _depth_stack(x, n) for n, x in zip(("cad", "real", "sim"), (cad, real, sim))}
    _check_same_shape(stacks, "cad / real / sim frames")
    F, H, W = stacks["cad"].shape
    if (camera.height, camera.width) != (H, W):
        raise Sim2RealError(f"camera is {camera.width}x{camera.height} but the frames are {W}x{H}")
    b = _boxes(boxes, H, W)
    P = len(b)
    score = _np(scores, np.float64)
    ok = _np(valid).astype(bool)
    for name, arr in (("scores", score), ("valid", ok)):
        if arr.shape != (F, P):
            raise Sim2RealError(f"{name} must have shape [frames, patches] = [{F}, {P}], got {arr.shape}")
    threshold = check_threshold(threshold, "threshold")

    frame_slider = widgets.IntSlider(value=0, min=0, max=F - 1, description="frame", continuous_update=False)
    patch_slider = widgets.IntSlider(value=0, min=0, max=P - 1, description="patch", continuous_update=False)
    threshold_slider = widgets.FloatSlider(
        value=threshold, min=0.0, max=1.0, step=0.01, description="threshold", continuous_update=False
    )
    info = widgets.HTML()
    overlay_output = widgets.Output()
    try:
        patch_view = go.FigureWidget()
    except ImportError:  # plotly >= 6 needs anywidget for FigureWidget
        patch_view = widgets.Output()
    box = widgets.VBox([widgets.HBox([frame_slider, patch_slider, threshold_slider]), info, overlay_output, patch_view])
    box.frame_slider, box.patch_slider, box.threshold_slider = frame_slider, patch_slider, threshold_slider
    box.info, box.overlay_output, box.patch_view = info, overlay_output, patch_view
    box.overlay, box.patch_fig, box.flag_rate = None, None, math.nan
    drawn = {"patch3d": None}

    def patch_cloud(f: int, p: int) -> dict[str, np.ndarray]:
        box_t = torch.as_tensor(b[p : p + 1])
        cad_t = torch.from_numpy(stacks["cad"][f : f + 1])
        out = {}
        for key, name in (("sim", names[2]), ("real", names[1])):
            pp = extract_patch_points(
                torch.from_numpy(stacks[key][f : f + 1]), cad_t, camera, box_t, num_points, min_valid=1,
                generator=torch.Generator().manual_seed(seed), normalize="none",
            )  # fmt: skip
            n = int(pp.n_valid[0, 0])
            out[name] = pp.points[0, 0].numpy() if n else np.zeros((0, 3))
            if key == "sim":
                out[names[0]] = pp.cad_points[0, 0].numpy() if n else np.zeros((0, 3))
        return out

    def draw_3d(f: int, p: int) -> None:
        pts = patch_cloud(f, p)
        fig3d = patch_figure(pts[names[2]], pts[names[1]], pts[names[0]], title=f"frame {f}, patch {p}")
        for trace, name in zip(fig3d.data, (names[2], names[1], names[0])):
            trace.name = name
        box.patch_fig = fig3d
        if isinstance(patch_view, widgets.Output):
            _show_in(patch_view, fig3d)
        else:
            with patch_view.batch_update():
                patch_view.data = []
                patch_view.add_traces([trace.to_plotly_json() for trace in fig3d.data])
                patch_view.update_layout(fig3d.layout.to_plotly_json())

    def update(*_):
        f, p, t = frame_slider.value, patch_slider.value, threshold_slider.value
        flags = ok[f] & (score[f] < t)
        n_valid, n_flag = int(ok[f].sum()), int(flags.sum())
        box.flag_rate = n_flag / n_valid if n_valid else math.nan
        if not ok[f, p]:
            verdict = "skipped (too few valid pixels)"
        elif flags[p]:
            verdict = f"<span style='color:#d00'><b>flagged</b></span> (P(real) < {t:.2f})"
        else:
            verdict = f"kept (P(real) ≥ {t:.2f})"
        rate = f"{100 * box.flag_rate:.1f} %" if n_valid else "n/a"
        info.value = (
            f"frame {f}, patch {p}: P(real) = {score[f, p]:.3f} → {verdict} · "
            f"frame flag rate at {t:.2f}: {n_flag}/{n_valid} = {rate}"
        )
        overlay = flag_overlay(
            {names[0]: stacks["cad"][f], names[1]: stacks["real"][f], names[2]: stacks["sim"][f]},
            b, score[f], threshold=t, valid=ok[f], title=f"frame {f}", selected=p,
        )  # fmt: skip
        box.overlay = overlay
        _show_in(overlay_output, overlay)
        if drawn["patch3d"] != (f, p):  # the threshold does not change the 3D view
            draw_3d(f, p)
            drawn["patch3d"] = (f, p)

    for w in (frame_slider, patch_slider, threshold_slider):
        w.observe(update, names="value")
    update()
    return box


# ====================================================================== 10. metric bars
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
) -> Figure:
    """Bar chart of `metric` per row in the given order, labelled by `label_key`, with error bars from
    `err_key` when given and the value written on each bar. With `lower_is_better` True/False the
    best bar is outlined and the axis says which way is better."""
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
    bars = ax.bar(
        x, values, color=bar_colors, yerr=errors if err_key is not None else None, capsize=4 if err_key else 0
    )
    texts = []
    for i, v in enumerate(values):
        if not math.isfinite(v):
            texts.append("n/a")
        elif err_key is not None:
            texts.append(f"{fmt.format(v)} ± {errors[i]:.2g}")
        else:
            texts.append(fmt.format(v))
    ax.bar_label(bars, labels=texts, padding=2, fontsize=8)
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
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or metric)
    return fig


# ====================================================================== 11. meshes
def _mesh_arrays(mesh, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices [V, 3], triangles [T, 3], vertex colours [V, 3] or None) of a (V, T) pair, an open3d
    TriangleMesh, a trimesh-like object (.vertices/.faces) or a dict."""
    colors = None
    if isinstance(mesh, Mapping):
        vertices, triangles = mesh.get("vertices"), mesh.get("triangles", mesh.get("faces"))
    elif isinstance(mesh, (tuple, list)) and len(mesh) == 2:
        vertices, triangles = mesh
    elif hasattr(mesh, "vertices") and hasattr(mesh, "triangles"):  # open3d
        vertices, triangles = mesh.vertices, mesh.triangles
        if hasattr(mesh, "has_vertex_colors") and mesh.has_vertex_colors():
            colors = np.asarray(mesh.vertex_colors, np.float64)
    elif hasattr(mesh, "vertices") and hasattr(mesh, "faces"):
        vertices, triangles = mesh.vertices, mesh.faces
    else:
        raise Sim2RealError(f"meshes[{name!r}] must be (vertices, triangles), an open3d mesh or a dict")
    v = _np(vertices, np.float64)
    t = _np(triangles)
    if v.ndim != 2 or v.shape[1] != 3 or t.ndim != 2 or t.shape[1] != 3:
        raise Sim2RealError(f"meshes[{name!r}]: vertices must be [V, 3] and triangles [T, 3], got {v.shape}, {t.shape}")
    t = t.astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= len(v)):
        raise Sim2RealError(f"meshes[{name!r}]: triangle indices outside [0, {len(v)})")
    return v, t, colors


def mesh_figure(
    meshes: Mapping[str, Any],
    max_triangles: int = 50000,
    offsets: bool = True,
    *,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
    seed: int = 0,
) -> go.Figure:
    """Plotly Mesh3d traces, one per named mesh (toggleable), placed side by side along x (each shifted
    by the previous bounding-box widths + a 10 % gap) when `offsets`. Meshes with more than
    `max_triangles` triangles are decimated by a seeded random subset of triangles (for display only).
    World frame, z up, equal aspect."""
    import plotly.graph_objects as go

    rng = np.random.default_rng(seed)
    prepared = []
    for name, mesh in meshes.items():
        v, t, vc = _mesh_arrays(mesh, name)
        if len(t) > max_triangles:
            t = t[np.sort(rng.choice(len(t), int(max_triangles), replace=False))]
        used, inverse = np.unique(t.ravel(), return_inverse=True)  # drop vertices no kept triangle uses
        v, t = v[used], inverse.reshape(-1, 3)
        vc = None if vc is None else vc[used]
        prepared.append((name, v, t, vc))
    widths = [float(np.ptp(v[:, 0])) if len(v) else 0.0 for _, v, _, _ in prepared]
    gap = 0.1 * max(widths + [1e-9])
    fig = go.Figure()
    x_at = 0.0
    for i, (name, v, t, vc) in enumerate(prepared):
        if offsets and len(v):
            v = v + np.array([x_at - v[:, 0].min(), 0.0, 0.0])
            x_at += widths[i] + gap
        kwargs: dict[str, Any] = {"color": _trace_color(name, i, colors)}
        if vc is not None:
            kwargs = {"vertexcolor": [f"rgb({r:.0f},{g:.0f},{b_:.0f})" for r, g, b_ in 255 * np.clip(vc, 0, 1)]}
        fig.add_trace(
            go.Mesh3d(
                x=v[:, 0],
                y=v[:, 1],
                z=v[:, 2],
                i=t[:, 0],
                j=t[:, 1],
                k=t[:, 2],
                name=str(name),
                showlegend=True,
                flatshading=True,
                lighting={"ambient": 0.45, "diffuse": 0.8, "specular": 0.1},
                **kwargs,
            )  # fmt: skip
        )
    fig.update_layout(
        title=title, scene=_scene_layout("world"), margin={"l": 0, "r": 0, "t": 40 if title else 10, "b": 0}, height=520
    )
    return fig


# ====================================================================== 12. sample grids
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


# ====================================================================== 13. ablations
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
        ax.errorbar(
            xs, ys, yerr=es, marker="o", capsize=3 if es is not None else 0, color=PALETTE[k % len(PALETTE)],
            label=None if group is None else f"{group} = {name}",
        )  # fmt: skip
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


__all__ = [
    "ablation_plot",
    "depth_panels",
    "effects_gallery",
    "flag_overlay",
    "frame_browser",
    "frame_point_clouds",
    "loss_curve",
    "mesh_figure",
    "metric_bars",
    "patch_explorer",
    "patch_figure",
    "point_cloud_figure",
    "residual_histograms",
    "sample_grid",
    "save_figure",
    "save_sample_grid",
    "val_curve",
]


def notebook_setup(offline_html: bool = True) -> None:
    """Call once at the top of a notebook: plotly figures render both in JupyterLab (mimetype) and in
    the executed notebook's static HTML (the runner's index.html) with plotly.js embedded, so the 3D
    views work offline."""
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype+notebook" if offline_html else "plotly_mimetype"
