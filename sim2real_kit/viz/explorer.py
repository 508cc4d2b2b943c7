"""The patch explorer (notebook 03): the discriminator's verdicts per frame in one plotly Figure, a frame
slider, threshold buttons, the flagged patch boxes and the most confidently flagged patch in 3D; every frame's
data is in the figure, so it works offline in the exported HTML (issue 21). `widgets.frame_browser` is its
sibling for residuals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from sim2real_kit.errors import Sim2RealError
from sim2real_kit.viz._common import (
    FLAG_COLOR,
    INVALID_DEPTH_COLOR,
    SELECTED_COLOR,
    TRACE_COLORS,
    _boxes,
    _check_same_shape,
    _depth_limits,
    _depth_stack,
    _np,
)
from sim2real_kit.viz.plot3d import _scene_layout

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from sim2real_kit.camera import Camera

from sim2real_kit.viz.widgets import (
    MAX_FRAMES,
    MAX_SIDE,
    PLOTLY_DEPTH_SCALE,
    _grid,
    _image_axes,
    _mm,
    _panel_background,
    _slider,
    heatmap_stride,
    pick_frames,
)

THRESHOLDS = (0.3, 0.5, 0.7)  # thresholds the patch explorer's buttons offer (plus the one asked for)


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
    idx = _explorer_trace_index(len(ts))
    frame_labels, steps, patches = _explorer_steps(
        stacks, b, score, ok, camera, picked, labels, ts, flags_all, stride, idx, num_points, seed, names
    )
    fig = make_subplots(
        rows=1,
        cols=3,
        specs=[[{"type": "xy"}, {"type": "xy"}, {"type": "scene"}]],
        column_widths=[0.3, 0.3, 0.4],
        subplot_titles=(f"{names[2]} [mm]", f"{names[1]} [mm]", "patch in 3D"),
        horizontal_spacing=0.04,
    )
    _add_explorer_traces(fig, steps[0][0], idx, ts, active, names, stride, b)
    _explorer_layout(fig, steps, frame_labels, patches, idx, ts, active, picked, stride, H, W, max_frames, max_side)
    return fig


def _explorer_trace_index(T: int) -> dict:
    """Trace order of `patch_explorer`: 2 heatmaps, per threshold 2 box traces, 2 selected boxes, 2 hover
    markers, 3 point clouds."""
    return {
        "box": [[2 + 2 * j, 3 + 2 * j] for j in range(T)],
        "sel": [2 + 2 * T, 3 + 2 * T],
        "hov": [4 + 2 * T, 5 + 2 * T],
        "pts": [6 + 2 * T, 7 + 2 * T, 8 + 2 * T],
        "n": 9 + 2 * T,
    }


def _explorer_steps(stacks, b, score, ok, camera, picked, labels, ts, flags_all, stride, idx, num_points, seed, names):
    """One slider step per picked frame: (the traces' x / y / z / text, the layout's changes, trace ids),
    with the frame's label and its most confidently flagged patch."""
    box_idx, sel_idx, hov_idx, pts_idx, n_traces = idx["box"], idx["sel"], idx["hov"], idx["pts"], idx["n"]
    T = len(ts)
    centres_x = ((b[:, 2] + b[:, 3] - 1) / 2).tolist()
    centres_y = ((b[:, 0] + b[:, 1] - 1) / 2).tolist()
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

    return frame_labels, steps, patches


def _add_explorer_traces(fig, first, idx, ts, active, names, stride, b) -> None:
    """The explorer's traces with the first frame's data (the slider's steps replace it)."""
    box_idx, sel_idx, hov_idx, pts_idx = idx["box"], idx["sel"], idx["hov"], idx["pts"]
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


def _explorer_layout(fig, steps, frame_labels, patches, idx, ts, active, picked, stride, H, W, max_frames, max_side):
    """Axes, the threshold buttons, the frame slider and `layout.meta` of the explorer."""
    box_idx, T = idx["box"], len(ts)
    first_lay = steps[0][1]
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
