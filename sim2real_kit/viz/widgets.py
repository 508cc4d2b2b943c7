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
    FLAG_COLOR,
    INVALID_DEPTH_COLOR,
    INVALID_RESIDUAL_COLOR,
    RESIDUAL_CMAP,
    RESIDUAL_PERCENTILE,
    SELECTED_COLOR,
    TRACE_COLORS,
    _boxes,
    _check_same_shape,
    _depth_limits,
    _depth_stack,
    _np,
    _residual_limit,
)
from sim2real_kit.viz.plot3d import _scene_layout

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from sim2real_kit.camera import Camera
    from sim2real_kit.data.layout import DepthLayout, FrameRef

MAX_FRAMES = 16  # frames embedded in one explorer
MAX_SIDE = 128  # heatmap pixels per side (strided down above)
THRESHOLDS = (0.3, 0.5, 0.7)  # thresholds the patch explorer's buttons offer (plus the one asked for)
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


# ====================================================================== patch explorer
def _explorer_inputs(
    cad, real, sim, camera: Camera, boxes, scores, valid
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Checked inputs of `patch_explorer`: depth stacks {"cad", "real", "sim"} [F, H, W] (the camera's
    size), boxes [P, 4] int64, scores [F, P] float64 and valid [F, P] bool."""
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
    return stacks, b, score, ok


def explorer_flags(scores, valid, threshold: float) -> np.ndarray:
    """Flagged patches [..., P] bool at `threshold`: valid and P(real) < threshold (the kit's rule,
    `flags.flags_from_scores` with binary flags)."""
    from sim2real_kit.flags import flags_from_scores

    return flags_from_scores(_np(scores, np.float32), _np(valid).astype(bool), threshold, True).numpy()


def most_confident_patch(scores: np.ndarray, valid: np.ndarray) -> int | None:
    """The valid patch with the lowest P(real) of one frame (the first on ties), None without valid ones."""
    s = np.where(valid, scores, np.inf)
    return int(np.argmin(s)) if valid.any() else None


def box_outline(boxes: np.ndarray) -> tuple[list, list]:
    """x and y of closed rectangles around pixel boxes (r0, r1, c0, c1), pixel edges at ±0.5, one
    None between rectangles (a plotly line trace of them all)."""
    xs, ys = [], []
    for r0, r1, c0, c1 in np.asarray(boxes, np.int64).reshape(-1, 4).tolist():
        xs += [c0 - 0.5, c1 - 0.5, c1 - 0.5, c0 - 0.5, c0 - 0.5, None]
        ys += [r0 - 0.5, r0 - 0.5, r1 - 0.5, r1 - 0.5, r0 - 0.5, None]
    return xs, ys


def _patch_clouds(
    stacks: dict[str, np.ndarray],
    b: np.ndarray,
    camera: Camera,
    f: int,
    p: int,
    num_points: int,
    seed: int,
    names: tuple[str, str, str],
) -> dict[str, np.ndarray]:
    """The points [N, 3] (camera-frame metres) of patch p of frame f by `names` (CAD, real, generated),
    drawn with `extract_patch_points` (seeded; the CAD points are the generated depth's pairs)."""
    import torch

    from sim2real_kit.patches import extract_patch_points

    box_t = torch.as_tensor(b[p : p + 1])
    cad_t = torch.from_numpy(stacks["cad"][f : f + 1])
    out = {}
    for key, name in (("sim", names[2]), ("real", names[1])):
        pp = extract_patch_points(
            torch.from_numpy(stacks[key][f : f + 1]),
            cad_t,
            camera,
            box_t,
            num_points,
            min_valid=1,
            generator=torch.Generator().manual_seed(seed),
            normalize="none",
        )
        n = int(pp.n_valid[0, 0])
        out[name] = pp.points[0, 0].numpy() if n else np.zeros((0, 3))
        if key == "sim":
            out[names[0]] = pp.cad_points[0, 0].numpy() if n else np.zeros((0, 3))
    return out


def _points_mm(points: np.ndarray) -> np.ndarray:
    """Points [N, 3] metres rounded to the millimetre, zero / non-finite points dropped, duplicates
    (resampled pixels) dropped, in first-seen order."""
    pts = np.round(np.asarray(points, np.float64).reshape(-1, 3), 3)
    pts = pts[np.isfinite(pts).all(1) & (np.abs(pts).sum(1) > 0)]
    _, first = np.unique(pts, axis=0, return_index=True)
    return pts[np.sort(first)]


def _thresholds(threshold: float, thresholds: Sequence[float]) -> tuple[list[float], int]:
    """Sorted distinct thresholds offered (`thresholds` plus `threshold`) and the index of `threshold`."""
    from sim2real_kit.flags import check_threshold

    t0 = round(check_threshold(threshold, "threshold"), 4)
    ts = sorted({round(check_threshold(t, "thresholds"), 4) for t in thresholds} | {t0})
    return ts, ts.index(t0)


def _explorer_title(label: str, k: int, n: int, flags: list[np.ndarray], ts: list[float], n_valid: int) -> str:
    counts = " · ".join(f"{int(f.sum())} at {t:g}" for f, t in zip(flags, ts))
    return f"{label} ({k}/{n}) · flagged of {n_valid} valid patches (P(real) < t): {counts}"


def _patch_hover(score: np.ndarray, ok: np.ndarray, ts: list[float]) -> list[str]:
    out = []
    for p, (s, v) in enumerate(zip(score.tolist(), ok.tolist())):
        if not v:
            out.append(f"patch {p}: skipped (too few valid pixels)")
            continue
        flagged = [f"{t:g}" for t in ts if s < t]
        out.append(f"patch {p}: P(real) {s:.3f}" + (f" · flagged at {', '.join(flagged)}" if flagged else ""))
    return out


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
    thresholds: Sequence[float] = THRESHOLDS,
    labels: Sequence[str] | None = None,
    frames: Sequence[int] | None = None,
    max_frames: int = MAX_FRAMES,
    max_side: int = MAX_SIDE,
) -> go.Figure:
    """Explore the discriminator's verdicts in one plotly Figure: a frame slider over at most
    `max_frames` frames of CAD / real / generated [F, S, S] (evenly spread, or the `frames` indices;
    `labels` name them, e.g. the refs), each showing the generated and real depth (mm heatmaps, the
    frame's robust range) with the flagged patch boxes (red: valid and P(real) < t) and the frame's most
    confidently flagged patch (lowest P(real) of its valid patches, yellow box), plus that patch's
    generated / real / CAD points in 3D (`extract_patch_points`, `num_points` drawn, seeded; camera-frame
    metres rounded to the millimetre). Buttons choose t among `thresholds` and `threshold` (the one shown
    first: the flag file's). Hovering a patch shows its P(real); the title counts the flagged patches
    at every t. scores [F, P] P(real), valid [F, P] bool, boxes [P, 4] (r0, r1, c0, c1).

    Every frame's data is in the figure (slider steps' "update" arguments, the threshold buttons
    "restyle" the box traces' visibility), so it works offline in an exported HTML page. `layout.meta` =
    {"kind": "patch_explorer", "labels", "frames", "thresholds", "threshold", "patches" (the 3D patch per
    frame, None without valid ones), "box_traces" ({threshold: [trace index per heatmap]}), "stride"}."""
    from plotly.subplots import make_subplots

    stacks, b, score, ok = _explorer_inputs(cad, real, sim, camera, boxes, scores, valid)
    ts, active = _thresholds(threshold, thresholds)
    F, H, W = stacks["cad"].shape
    picked = pick_frames(F, max_frames, frames)
    if labels is not None and len(labels) != F:
        raise Sim2RealError(f"labels must name every frame ({F}), got {len(labels)}")
    names = tuple(str(n) for n in names)
    stride = heatmap_stride(H, W, max_side)
    flags_all = [explorer_flags(score, ok, t) for t in ts]  # per threshold [F, P]
    centres_x = ((b[:, 2] + b[:, 3] - 1) / 2).tolist()
    centres_y = ((b[:, 0] + b[:, 1] - 1) / 2).tolist()

    # trace order: 2 heatmaps, per threshold 2 box traces, 2 selected boxes, 2 hover markers, 3 point clouds
    T = len(ts)
    box_idx = [[2 + 2 * j, 3 + 2 * j] for j in range(T)]
    sel_idx, hov_idx = [2 + 2 * T, 3 + 2 * T], [4 + 2 * T, 5 + 2 * T]
    pts_idx = [6 + 2 * T, 7 + 2 * T, 8 + 2 * T]
    n_traces = 9 + 2 * T

    frame_labels, steps, patches = [], [], []
    for k, f in enumerate(picked):
        label = str(labels[f]) if labels is not None else f"frame {f}"
        flags_f = [fl[f] for fl in flags_all]
        p = most_confident_patch(score[f], ok[f])
        patches.append(p)
        lo, hi = _depth_limits([stacks["sim"][f], stacks["real"][f]])
        x: list = [None] * n_traces
        y: list = [None] * n_traces
        z: list = [None] * n_traces
        text: list = [None] * n_traces
        z[0] = _grid(_mm(stacks["sim"][f])[::stride, ::stride], 0)
        z[1] = _grid(_mm(stacks["real"][f])[::stride, ::stride], 0)
        for j in range(T):
            bx, by = box_outline(b[flags_f[j]])
            for i in box_idx[j]:
                x[i], y[i] = bx, by
        sx, sy = box_outline(b[[p]] if p is not None else np.zeros((0, 4)))
        for i in sel_idx:
            x[i], y[i] = sx, sy
        hover = _patch_hover(score[f], ok[f], ts)
        for i in hov_idx:
            x[i], y[i], text[i] = centres_x, centres_y, hover
        if p is None:
            clouds = {n: np.zeros((0, 3)) for n in names}
            scene_title = "no valid patch in this frame"
        else:
            clouds = _patch_clouds(stacks, b, camera, f, p, num_points, seed, names)
            verdict = ", ".join(f"{t:g}" for t in ts if score[f, p] < t) or "none"
            scene_title = f"patch {p} in 3D: P(real) {score[f, p]:.3f} (flagged at t = {verdict})"
        for i, name in zip(pts_idx, (names[2], names[1], names[0])):
            pts = _points_mm(clouds[name])
            x[i], y[i], z[i] = pts[:, 0].tolist(), pts[:, 1].tolist(), pts[:, 2].tolist()
        lay = {
            "title.text": _explorer_title(label, k + 1, len(picked), flags_f, ts, int(ok[f].sum())),
            "coloraxis.cmin": round(1000 * lo),
            "coloraxis.cmax": round(1000 * hi),
            "annotations[2].text": scene_title,
        }
        frame_labels.append(label)
        steps.append([{"x": x, "y": y, "z": z, "text": text}, lay, list(range(n_traces))])

    fig = make_subplots(
        rows=1,
        cols=3,
        specs=[[{"type": "xy"}, {"type": "xy"}, {"type": "scene"}]],
        column_widths=[0.3, 0.3, 0.4],
        subplot_titles=(f"{names[2]} [mm]", f"{names[1]} [mm]", "patch in 3D"),
        horizontal_spacing=0.04,
    )
    first, first_lay = steps[0][0], steps[0][1]
    for col, name in ((1, names[2]), (2, names[1])):
        fig.add_heatmap(
            z=first["z"][col - 1],
            x0=0,
            dx=stride,
            y0=0,
            dy=stride,
            coloraxis="coloraxis",
            name=name,
            hovertemplate=f"x %{{x}} · y %{{y}}<br>{name} %{{z}} mm<extra></extra>",
            row=1,
            col=col,
        )
        _panel_background(fig, col, INVALID_DEPTH_COLOR)
    for j, t in enumerate(ts):
        for col, i in zip((1, 2), box_idx[j]):
            fig.add_scatter(
                x=first["x"][i],
                y=first["y"][i],
                mode="lines",
                line={"color": FLAG_COLOR, "width": 2},
                name=f"flagged (P(real) < {t:g})",
                meta={"threshold": t},
                visible=j == active,
                hoverinfo="skip",
                showlegend=False,
                row=1,
                col=col,
            )
    for col, i in zip((1, 2), sel_idx):
        fig.add_scatter(
            x=first["x"][i],
            y=first["y"][i],
            mode="lines",
            line={"color": SELECTED_COLOR, "width": 3},
            name="patch in 3D",
            hoverinfo="skip",
            showlegend=False,
            row=1,
            col=col,
        )
    for col, i in zip((1, 2), hov_idx):
        fig.add_scatter(
            x=first["x"][i],
            y=first["y"][i],
            text=first["text"][i],
            mode="markers",
            marker={"size": min(40, max(6, int(min(b[0, 1] - b[0, 0], b[0, 3] - b[0, 2]) * 3))), "opacity": 0},
            name="patches",
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
            row=1,
            col=col,
        )
    role_colors = (TRACE_COLORS["generated"], TRACE_COLORS["real"], TRACE_COLORS["CAD"])  # whatever the names
    for i, name, color in zip(pts_idx, (names[2], names[1], names[0]), role_colors):
        fig.add_scatter3d(
            x=first["x"][i],
            y=first["y"][i],
            z=first["z"][i],
            mode="markers",
            name=name,
            marker={"size": 3, "color": color},
            hovertemplate=f"{name}<br>x %{{x:.3f}} m<br>y %{{y:.3f}} m<br>z %{{z:.3f}} m<extra></extra>",
            row=1,
            col=3,
        )
    _image_axes(fig, (1, 2), H, W)
    fig.layout.annotations[2].text = first_lay["annotations[2].text"]
    box_traces = [i for pair in box_idx for i in pair]
    buttons = [
        {
            "label": f"P(real) < {t:g}",
            "method": "restyle",
            "args": [{"visible": [j == jj for jj in range(T) for _ in (0, 1)]}, box_traces],
        }
        for j, t in enumerate(ts)
    ]
    fig.add_annotation(
        text="flag threshold t:",
        x=0.0,
        y=1.09,
        xref="paper",
        yref="paper",
        xanchor="left",
        yanchor="bottom",
        yshift=6,
        showarrow=False,
    )
    fig.update_layout(
        title={"text": first_lay["title.text"], "font": {"size": 13}, "y": 0.985, "yanchor": "top"},
        coloraxis={
            "colorscale": PLOTLY_DEPTH_SCALE,
            "cmin": first_lay["coloraxis.cmin"],
            "cmax": first_lay["coloraxis.cmax"],
            "colorbar": {"title": {"text": "mm"}, "x": -0.06, "len": 0.8, "thickness": 12},
        },
        scene=_scene_layout("camera"),
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "active": active,
                "buttons": buttons,
                "x": 0.09,
                "xanchor": "left",
                "y": 1.09,
                "yanchor": "bottom",
                "pad": {"r": 4, "t": 0},
                "showactive": True,
            }
        ],
        sliders=[_slider(frame_labels, steps)],
        legend={"itemsizing": "constant", "x": 1.0, "xanchor": "right", "y": 1.0},
        height=580,
        margin={"l": 50, "r": 10, "t": 120, "b": 10},
        plot_bgcolor="white",
        meta={
            "kind": "patch_explorer",
            "labels": frame_labels,
            "frames": picked,
            "thresholds": ts,
            "threshold": ts[active],
            "patches": patches,
            "box_traces": {f"{t:g}": box_idx[j] for j, t in enumerate(ts)},
            "stride": stride,
            "max_frames": int(max_frames),
            "max_side": int(max_side),
        },
    )
    return fig
