"""Shared internals of `sim2real_kit.viz`: the colour conventions (depth "turbo", residuals "RdBu_r",
flag / selection colours, trace colours), input handling (numpy / torch depth maps and stacks, patch
boxes and per-patch vectors), the shared colour limits (robust depth scale, symmetric residual limit)
and the matplotlib drawing primitives every figure uses (a Figure pyplot does not keep, depth and
residual images). Private: the public names are re-exported by `sim2real_kit.viz`.

numpy only at import; matplotlib is imported inside the functions.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sim2real_kit.errors import DepthFormatError, Sim2RealError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

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


# ====================================================================== matplotlib drawing
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


# ====================================================================== patch boxes
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
