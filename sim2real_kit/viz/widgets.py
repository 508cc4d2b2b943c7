"""The ipywidgets explorers of the notebooks (DESIGN §6): `frame_browser` walks a `lasa_depth` layout's
frames (CAD / real depth and their residual), `patch_explorer` walks the discriminator's verdicts
(paper Sec. 3.3, Fig. 3): a frame's flagged patches in 2D with a threshold slider, the selected patch
in 3D.

Each returns an `ipywidgets.VBox` whose controls and last drawn figures are attributes (`.frame_slider`,
`.figure`, ...), so scripts and tests can drive them without a running kernel (nothing is displayed
then). ipywidgets, plotly and torch are imported inside the functions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sim2real_kit.errors import Sim2RealError
from sim2real_kit.viz._common import _boxes, _check_same_shape, _depth_stack, _np
from sim2real_kit.viz.figures import depth_panels, flag_overlay
from sim2real_kit.viz.plot3d import patch_figure

if TYPE_CHECKING:  # pragma: no cover
    import ipywidgets
    import plotly.graph_objects as go

    from sim2real_kit.camera import Camera
    from sim2real_kit.data.layout import DepthLayout, FrameRef


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


# ====================================================================== frame browser
def _frames_by_scene(layout: DepthLayout, split: str) -> dict[str, list[FrameRef]]:
    """The split's frames grouped by scene, in the layout's order."""
    by_scene: dict[str, list] = {}
    for ref in layout.frames(split):
        by_scene.setdefault(ref.scene, []).append(ref)
    return by_scene


def _browser_box(scenes: list[str], n_frames: int) -> ipywidgets.VBox:
    """The browser's controls (scene Dropdown, frame IntSlider over the first scene's `n_frames`), info
    line and Output in a VBox that carries them as attributes, with nothing drawn yet."""
    import ipywidgets as widgets

    dropdown = widgets.Dropdown(options=scenes, value=scenes[0], description="scene")
    slider = widgets.IntSlider(value=0, min=0, max=n_frames - 1, description="frame", continuous_update=False)
    info = widgets.HTML()
    output = widgets.Output()
    box = widgets.VBox([widgets.HBox([dropdown, slider]), info, output])
    box.scene_dropdown, box.frame_slider, box.info, box.output = dropdown, slider, info, output
    box.ref, box.figure, box.renders, box.error = None, None, 0, None
    return box


def _browser_frame(layout: DepthLayout, ref: FrameRef, box_crop, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """CAD and real depth [H, W] of one frame; with `box_crop` the evaluation crop resized to size x size."""
    frame = layout.read_frame(ref)
    cad, real = frame["cad"], frame["real"]
    if box_crop is not None:
        from sim2real_kit.data.dataset import crop_resize

        cad, real = crop_resize(cad, box_crop, size), crop_resize(real, box_crop, size)
    return cad, real


def _frame_info(ref: FrameRef, position: int, n_frames: int, cad: np.ndarray, real: np.ndarray) -> str:
    """The browser's HTML line for one frame: its place in the scene, size, real holes (share of CAD
    pixels) and median CAD − real (mm)."""
    both = (cad > 0) & (real > 0)
    n_cad = int((cad > 0).sum())
    holes = float(((cad > 0) & ~(real > 0)).sum() / n_cad) if n_cad else math.nan
    res = (cad[both] - real[both]) * 1000.0
    return (
        f"<b>{ref}</b> ({position}/{n_frames} in scene {ref.scene}) — "
        f"{cad.shape[1]}x{cad.shape[0]} px, real holes {100 * holes:.1f} % of CAD pixels, "
        + (f"median CAD − real {np.median(res):+.1f} mm" if res.size else "no pixel valid in both")
    )


def frame_browser(layout: DepthLayout | str | Path, split: str = "val", size: int | None = None) -> ipywidgets.VBox:
    """Explore a `lasa_depth` layout: a scene Dropdown and a frame IntSlider; each change reads that
    one frame (nothing is read up front) and redraws `depth_panels` of CAD / real + "real − CAD" in an
    Output. `size`: show the evaluation transform's centre crop resized to size x size (nearest).

    The returned VBox carries `.scene_dropdown`, `.frame_slider`, `.info` (HTML), `.output`, and
    after each draw `.ref` (FrameRef), `.figure` (the last Figure) and `.renders` (count)."""
    from sim2real_kit.data.layout import DepthLayout

    layout = layout if isinstance(layout, DepthLayout) else DepthLayout(layout)
    by_scene = _frames_by_scene(layout, split)
    scenes = list(by_scene)
    box_crop = None
    if size is not None:
        from sim2real_kit.data.dataset import eval_box

        box_crop = eval_box(layout.camera)

    box = _browser_box(scenes, len(by_scene[scenes[0]]))
    dropdown, slider, info, output = box.scene_dropdown, box.frame_slider, box.info, box.output
    state = {"busy": False}

    def render(*_):
        if state["busy"]:
            return
        refs = by_scene[dropdown.value]
        ref = refs[min(slider.value, len(refs) - 1)]
        try:
            cad, real = _browser_frame(layout, ref, box_crop, size)
            fig = depth_panels({"CAD": cad, "real": real}, cad=cad, residual_of=("real",), title=f"{split}: {ref}")
        except Sim2RealError as e:  # a broken frame: say so in the widget, keep browsing
            box.error = str(e)
            info.value = f"<b>{ref}</b>: <span style='color:#c00'>{e}</span>"
            _show_in(output, None)
            return
        info.value = _frame_info(ref, slider.value + 1, len(refs), cad, real)
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


def _explorer_box(n_frames: int, n_patches: int, threshold: float) -> ipywidgets.VBox:
    """The explorer's frame / patch / threshold sliders, info line, 2D overlay Output and 3D patch view
    (a plotly FigureWidget, or an Output without anywidget) in a VBox that carries them as attributes."""
    import ipywidgets as widgets
    import plotly.graph_objects as go

    frame_slider = widgets.IntSlider(value=0, min=0, max=n_frames - 1, description="frame", continuous_update=False)
    patch_slider = widgets.IntSlider(value=0, min=0, max=n_patches - 1, description="patch", continuous_update=False)
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
    return box


def _explorer_info(score: np.ndarray, ok: np.ndarray, f: int, p: int, t: float) -> tuple[float, str]:
    """Frame f's flag rate at threshold t (flagged / valid patches, NaN without valid ones) and the
    HTML line of patch p: its P(real), verdict (flagged, kept or skipped) and the frame's flag rate."""
    flags = ok[f] & (score[f] < t)
    n_valid, n_flag = int(ok[f].sum()), int(flags.sum())
    flag_rate = n_flag / n_valid if n_valid else math.nan
    if not ok[f, p]:
        verdict = "skipped (too few valid pixels)"
    elif flags[p]:
        verdict = f"<span style='color:#d00'><b>flagged</b></span> (P(real) < {t:.2f})"
    else:
        verdict = f"kept (P(real) ≥ {t:.2f})"
    rate = f"{100 * flag_rate:.1f} %" if n_valid else "n/a"
    return flag_rate, (
        f"frame {f}, patch {p}: P(real) = {score[f, p]:.3f} → {verdict} · "
        f"frame flag rate at {t:.2f}: {n_flag}/{n_valid} = {rate}"
    )


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


def _patch_3d(clouds: dict[str, np.ndarray], names: tuple[str, str, str], f: int, p: int) -> go.Figure:
    """`patch_figure` of one patch's clouds, its traces named by `names`."""
    fig3d = patch_figure(clouds[names[2]], clouds[names[1]], clouds[names[0]], title=f"frame {f}, patch {p}")
    for trace, name in zip(fig3d.data, (names[2], names[1], names[0])):
        trace.name = name
    return fig3d


def _show_patch_3d(box: ipywidgets.VBox, fig3d: go.Figure) -> None:
    """Keep `fig3d` as the explorer's `.patch_fig` and show it in its patch view."""
    import ipywidgets as widgets

    patch_view = box.patch_view
    box.patch_fig = fig3d
    if isinstance(patch_view, widgets.Output):
        _show_in(patch_view, fig3d)
    else:
        with patch_view.batch_update():
            patch_view.data = []
            patch_view.add_traces([trace.to_plotly_json() for trace in fig3d.data])
            patch_view.update_layout(fig3d.layout.to_plotly_json())


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
    from sim2real_kit.patches import check_threshold

    stacks, b, score, ok = _explorer_inputs(cad, real, sim, camera, boxes, scores, valid)
    threshold = check_threshold(threshold, "threshold")
    box = _explorer_box(len(score), len(b), threshold)
    drawn = {"patch3d": None}

    def update(*_):
        f, p, t = box.frame_slider.value, box.patch_slider.value, box.threshold_slider.value
        box.flag_rate, box.info.value = _explorer_info(score, ok, f, p, t)
        maps = {names[0]: stacks["cad"][f], names[1]: stacks["real"][f], names[2]: stacks["sim"][f]}
        overlay = flag_overlay(maps, b, score[f], threshold=t, valid=ok[f], title=f"frame {f}", selected=p)
        box.overlay = overlay
        _show_in(box.overlay_output, overlay)
        if drawn["patch3d"] != (f, p):  # the threshold does not change the 3D view
            clouds = _patch_clouds(stacks, b, camera, f, p, num_points, seed, names)
            _show_patch_3d(box, _patch_3d(clouds, names, f, p))
            drawn["patch3d"] = (f, p)

    for w in (box.frame_slider, box.patch_slider, box.threshold_slider):
        w.observe(update, names="value")
    update()
    return box
