"""The explorers of the notebooks (DESIGN §6), plotly-native so that they work both live in JupyterLab and
offline in the executed notebooks' static HTML (nbconvert, the run report): every frame's data is embedded
in one `plotly.graph_objects.Figure` and a slider (`layout.sliders`, "update" steps) / buttons
(`layout.updatemenus`, "restyle") switch between them in the browser, without a kernel.

- `frame_browser` walks a `lasa_depth` layout's frames: CAD depth, real depth and real − CAD (mm).
- `patch_explorer` walks the discriminator's verdicts (paper Sec. 3.3, Fig. 3): per frame the generated
  and real depth with the flagged patch boxes, buttons choosing the threshold that flags them, and the
  frame's most confidently flagged patch (lowest P(real)) in 3D.

Sizes are bounded (each cap is a keyword argument): at most `max_frames` frames (evenly spread over
the input, or the `frames` asked for), heatmaps strided down to at most `max_side` pixels per side,
depth / residual values rounded (0.1 mm, integers when the data is whole millimetres), 3D points
rounded to the millimetre and deduplicated. The numbers each figure shows are in `layout.meta`
(`kind`, `frames`, `labels`, ...), which is also how a test finds the figure in an HTML page.

plotly and torch are imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sim2real_kit.errors import ConfigError, Sim2RealError
from sim2real_kit.viz._common import (
    INVALID_DEPTH_COLOR,
    INVALID_RESIDUAL_COLOR,
    RESIDUAL_CMAP,
    RESIDUAL_PERCENTILE,
    _depth_limits,
    _residual_limit,
)

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from sim2real_kit.data.layout import DepthLayout, FrameRef

MAX_FRAMES = 16  # frames embedded in one explorer
MAX_SIDE = 128  # heatmap pixels per side (strided down above)
PLOTLY_DEPTH_SCALE = "Turbo"  # DEPTH_CMAP's plotly name


# ====================================================================== shared helpers
def pick_frames(n: int, max_frames: int = MAX_FRAMES, frames: Sequence[int] | None = None) -> list[int]:
    """Indices of the frames an explorer embeds: `frames` (checked, in the given order, at most
    `max_frames`) or `max_frames` indices spread evenly over 0..n-1 (all of them when n <= max_frames)."""
    max_frames = int(max_frames)
    if max_frames < 1:
        raise ConfigError(f"max_frames must be >= 1, got {max_frames!r}")
    if n < 1:
        raise Sim2RealError("no frames to explore")
    if frames is not None:
        picked = [int(f) for f in frames]
        bad = [f for f in picked if not 0 <= f < n]
        if bad or not picked:
            raise Sim2RealError(f"frames must be indices in [0, {n}), got {list(frames)!r}")
        return picked[:max_frames]
    if n <= max_frames:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, max_frames)})


def heatmap_stride(height: int, width: int, max_side: int = MAX_SIDE) -> int:
    """Integer stride that brings a height x width map to at most `max_side` pixels per side."""
    if int(max_side) < 1:
        raise ConfigError(f"max_side must be >= 1, got {max_side!r}")
    return max(1, math.ceil(max(height, width) / int(max_side)))


def _grid(values: np.ndarray, decimals: int = 1) -> list:
    """Nested lists of `values` rounded to `decimals` (ints when every finite value is whole), None where
    not finite: compact in the figure's JSON, and JSON-safe inside slider arguments."""
    arr = np.asarray(values, np.float64)
    finite = np.isfinite(arr)
    rounded = np.round(np.where(finite, arr, 0.0), decimals)
    if np.array_equal(rounded[finite], np.round(rounded[finite])):
        rounded = rounded.astype(np.int64)
    out = rounded.astype(object)
    out[~finite] = None
    return out.tolist()


def _mm(depth: np.ndarray) -> np.ndarray:
    """Depth metres -> millimetres, NaN where invalid (<= 0)."""
    return np.where(depth > 0, depth.astype(np.float64) * 1000.0, np.nan)


def _rgb(color) -> str:
    if isinstance(color, str):
        return color
    return "rgb({},{},{})".format(*(int(round(255 * c)) for c in color[:3]))


def _panel_background(fig: go.Figure, col: int, color) -> None:
    """A filled rectangle behind subplot `col` (1-based): the colour of its invalid (NaN) pixels."""
    suffix = "" if col == 1 else str(col)
    fig.add_shape(
        type="rect",
        xref=f"x{suffix} domain",
        yref=f"y{suffix} domain",
        x0=0,
        x1=1,
        y0=0,
        y1=1,
        fillcolor=_rgb(color),
        line={"width": 0},
        layer="below",
    )


def _image_axes(fig: go.Figure, cols: Sequence[int], height: int, width: int) -> None:
    """Image orientation (row 0 on top), equal aspect, no grid, on the listed subplot columns."""
    for col in cols:
        suffix = "" if col == 1 else str(col)
        fig.update_xaxes(range=[-0.5, width - 0.5], showgrid=False, zeroline=False, constrain="domain", row=1, col=col)
        fig.update_yaxes(
            range=[height - 0.5, -0.5],
            showgrid=False,
            zeroline=False,
            scaleanchor=f"x{suffix}",
            constrain="domain",
            row=1,
            col=col,
        )


def _slider(labels: Sequence[str], steps_args: Sequence[list], prefix: str = "frame: ") -> dict:
    """A layout slider with one "update" step per frame (args = [data, layout, trace indices])."""
    return {
        "active": 0,
        "currentvalue": {"prefix": prefix},
        "pad": {"t": 40, "b": 10},
        "len": 0.96,
        "x": 0.02,
        "font": {"size": 11 if len(labels) <= 10 else 9},
        "steps": [{"label": lab, "method": "update", "args": args} for lab, args in zip(labels, steps_args)],
    }


# ====================================================================== frame browser
def _browser_frame(layout: DepthLayout, ref: FrameRef, box_crop, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """CAD and real depth [H, W] of one frame; with `box_crop` the evaluation crop resized to size x size."""
    frame = layout.read_frame(ref)
    cad, real = frame["cad"], frame["real"]
    if box_crop is not None:
        from sim2real_kit.data.dataset import crop_resize

        cad, real = crop_resize(cad, box_crop, size), crop_resize(real, box_crop, size)
    return cad, real


def frame_numbers(cad: np.ndarray, real: np.ndarray, percentile: float = RESIDUAL_PERCENTILE) -> dict:
    """The numbers the frame browser shows for one frame (full resolution): real − CAD in mm (NaN where
    either is invalid), the shared depth colour range (mm), the symmetric residual limit (mm, the
    `percentile` of |residual|), real holes (share of CAD pixels without real depth) and the median
    real − CAD (mm, NaN without pixels valid in both)."""
    both = (cad > 0) & (real > 0)
    residual = np.where(both, (real.astype(np.float64) - cad) * 1000.0, np.nan)
    lo, hi = _depth_limits([cad, real])
    n_cad = int((cad > 0).sum())
    return {
        "residual_mm": residual,
        "depth_range_mm": (1000.0 * lo, 1000.0 * hi),
        "residual_limit_mm": _residual_limit([residual], percentile),
        "holes": float(((cad > 0) & ~(real > 0)).sum() / n_cad) if n_cad else math.nan,
        "median_mm": float(np.median(residual[both])) if both.any() else math.nan,
    }


def _browser_title(split: str, label: str, position: int, n: int, shape, stride: int, nums: dict) -> str:
    h, w = shape
    shown = f", shown {math.ceil(w / stride)}x{math.ceil(h / stride)}" if stride > 1 else ""
    med = nums["median_mm"]
    return (
        f"{split} {label} ({position}/{n}) · {w}x{h} px{shown} · real holes {100 * nums['holes']:.1f} % of CAD px · "
        + (f"median real − CAD {med:+.1f} mm" if math.isfinite(med) else "no pixel valid in both")
    )


def frame_browser(
    layout: DepthLayout | str | Path,
    split: str = "val",
    size: int | None = None,
    *,
    max_frames: int = MAX_FRAMES,
    max_side: int = MAX_SIDE,
    frames: Sequence[int] | None = None,
    percentile: float = RESIDUAL_PERCENTILE,
    limit_mm: float | None = None,
    decimals: int = 1,
) -> go.Figure:
    """Explore a `lasa_depth` layout's `split`: one plotly Figure with a frame slider over at most
    `max_frames` frames (evenly spread over the split, or the split's `frames` indices) and three
    heatmaps per frame, CAD depth, real depth (mm, "Turbo" on the frame's robust 1st-99th percentile
    range, invalid black) and real − CAD (mm, "RdBu_r" symmetric at the frame's `percentile` of
    |residual|, or at ±`limit_mm` when given; grey where either is invalid); hover shows the pixel and
    its value. The title holds the frame's real holes (share of CAD pixels) and median real − CAD.
    `size`: show the evaluation transform's centre crop resized to size x size (nearest). Maps are
    strided to at most `max_side` px per side and rounded to `decimals` mm. A frame that cannot be
    read stays a step, its error in the title.

    Every frame's data is in the figure (slider steps' "update" arguments): it works offline in an
    exported HTML page. `layout.meta` = {"kind": "frame_browser", "split", "labels", "frames" (indices
    into the split), "stride", "max_frames", "max_side", "limit_mm"}."""
    from plotly.subplots import make_subplots

    from sim2real_kit.data.layout import DepthLayout

    if limit_mm is not None and not float(limit_mm) > 0:
        raise ConfigError(f"limit_mm must be > 0 (or None: the {percentile:g}th percentile), got {limit_mm!r}")
    layout = layout if isinstance(layout, DepthLayout) else DepthLayout(layout)
    refs = layout.frames(split)
    if not refs:
        raise Sim2RealError(f"split {split!r} of {layout.root} has no frames")
    picked = pick_frames(len(refs), max_frames, frames)
    box_crop = None
    if size is not None:
        from sim2real_kit.data.dataset import eval_box

        box_crop = eval_box(layout.camera)
    shape = (int(size), int(size)) if size is not None else (layout.camera.height, layout.camera.width)
    stride = heatmap_stride(*shape, max_side)
    nan_map = np.full(shape, np.nan)[::stride, ::stride]

    labels, steps = [], []
    for k, i in enumerate(picked):
        ref = refs[i]
        label = str(ref)
        try:
            cad, real = _browser_frame(layout, ref, box_crop, size)
            if cad.shape != shape:
                raise Sim2RealError(f"frame {ref} is {cad.shape[1]}x{cad.shape[0]}, not {shape[1]}x{shape[0]}")
        except Sim2RealError as e:  # a broken frame: say so in its step, keep browsing
            z = [_grid(nan_map, decimals)] * 3
            lay = {"title.text": f"{split} {label} ({k + 1}/{len(picked)}): cannot be read: {e}"}
            labels.append(f"{label} (error)")
            steps.append([{"z": z}, lay, [0, 1, 2]])
            continue
        nums = frame_numbers(cad, real, percentile)
        cad_mm, real_mm = _mm(cad)[::stride, ::stride], _mm(real)[::stride, ::stride]
        z = [
            _grid(cad_mm, decimals),
            _grid(real_mm, decimals),
            _grid(nums["residual_mm"][::stride, ::stride], decimals),
        ]
        (lo, hi), lim = nums["depth_range_mm"], nums["residual_limit_mm"] if limit_mm is None else float(limit_mm)
        lay = {
            "title.text": _browser_title(split, label, k + 1, len(picked), shape, stride, nums),
            "coloraxis.cmin": round(lo, 1),
            "coloraxis.cmax": round(hi, 1),
            "coloraxis2.cmin": -round(lim, 2),
            "coloraxis2.cmax": round(lim, 2),
        }
        labels.append(label)
        steps.append([{"z": z}, lay, [0, 1, 2]])

    fig = make_subplots(
        rows=1, cols=3, subplot_titles=("CAD [mm]", "real [mm]", "real − CAD [mm]"), horizontal_spacing=0.09
    )
    for col, name in enumerate(("CAD", "real", "real − CAD"), start=1):
        fig.add_heatmap(
            z=steps[0][0]["z"][col - 1],
            x0=0,
            dx=stride,
            y0=0,
            dy=stride,
            coloraxis="coloraxis2" if col == 3 else "coloraxis",
            name=name,
            hovertemplate=f"x %{{x}} · y %{{y}}<br>{name} %{{z}} mm<extra></extra>",
            row=1,
            col=col,
        )
        _panel_background(fig, col, INVALID_RESIDUAL_COLOR if col == 3 else INVALID_DEPTH_COLOR)
    _image_axes(fig, (1, 2, 3), *shape)
    first = steps[0][1]
    fig.update_layout(
        title={"text": first["title.text"], "font": {"size": 13}},
        coloraxis={
            "colorscale": PLOTLY_DEPTH_SCALE,
            "cmin": first.get("coloraxis.cmin"),
            "cmax": first.get("coloraxis.cmax"),
            "colorbar": {
                "title": {"text": "mm"},
                "x": fig.layout.xaxis2.domain[1] + 0.005,
                "len": 0.8,
                "thickness": 12,
            },
        },
        coloraxis2={
            "colorscale": RESIDUAL_CMAP,
            "cmin": first.get("coloraxis2.cmin"),
            "cmax": first.get("coloraxis2.cmax"),
            "colorbar": {"title": {"text": "mm"}, "x": 1.0, "len": 0.8, "thickness": 12},
        },
        sliders=[_slider(labels, steps)],
        height=470,
        margin={"l": 10, "r": 10, "t": 70, "b": 10},
        plot_bgcolor="white",
        meta={
            "kind": "frame_browser",
            "split": split,
            "labels": labels,
            "frames": picked,
            "stride": stride,
            "max_frames": int(max_frames),
            "max_side": int(max_side),
            "limit_mm": limit_mm,
        },
    )
    return fig
