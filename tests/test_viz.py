"""viz tests: every figure / explorer builds on tiny synthetic inputs with invalid pixels, and the numbers
they show are the right ones (panel counts, hole rates, effect shares, subsampling, flagged rectangles,
bar heights, the explorers' per-frame data and threshold boxes, an atomically written PNG)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from conftest import make_plane_layout
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle
from PIL import Image

from sim2real_kit import viz
from sim2real_kit.camera import Camera, look_at
from sim2real_kit.data.layout import FrameRef
from sim2real_kit.errors import ConfigError, DepthFormatError, MissingArtifactError, Sim2RealError
from sim2real_kit.metrics import hole_rates
from sim2real_kit.patches import patch_grid
from sim2real_kit.viz import explorer, widgets

H, W = 12, 16


def _pair(seed=0, F=None, h=H, w=W):
    """CAD (a plane with a box) and real (noisy, with holes) depth in metres."""
    rng = np.random.default_rng(seed)
    shape = (h, w) if F is None else (F, h, w)
    cad = np.full(shape, 2.0, np.float32)
    cad[..., h // 4 : h // 2, w // 4 : w // 2] = 1.3
    cad[..., -1, :] = 0.0  # CAD invalid row
    real = cad + rng.normal(0, 0.01, shape).astype(np.float32)
    real[..., 0, :] = 0.0  # a row of holes
    real[..., 3, 5] = 0.0
    real = np.where(cad > 0, real, 0.0).astype(np.float32)
    return cad, real


def _image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def _red_rects(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle) and to_rgba(p.get_edgecolor())[:3] == (1.0, 0.0, 0.0)]


# ---------------------------------------------------------------------------- import is light
def test_import_is_light():
    code = "import sys, sim2real_kit.viz; print(sorted(m for m in ('matplotlib', 'plotly', 'ipywidgets', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_notebook_setup_sets_plotlys_renderer_without_importing_plotly():
    """notebook_setup leaves plotly unloaded (~1 s a kernel; 02 and 06 draw no plotly figure) and plotly.io takes
    the kit's renderer when it loads; where plotly.io is loaded already, the renderer is set there."""
    code = (
        "import os, sys; from sim2real_kit import viz; viz.notebook_setup(); loaded = 'plotly' in sys.modules; "
        "import plotly.io as pio; first = pio.renderers.default; viz.notebook_setup(offline_html=False); "
        "print(loaded, first, pio.renderers.default)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PLOTLY_RENDERER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["False", "plotly_mimetype+notebook", "plotly_mimetype"]


def test_package_reexports_the_public_api():
    """`viz` is a package (figures, curves, plot3d, widgets): every name of `__all__` resolves from it, and
    the names notebooks, real_sample.py and benchmarks use are among them."""
    for name in viz.__all__:
        assert getattr(viz, name) is not None, name
    used = {"depth_panels", "effects_gallery", "frame_browser", "frame_point_clouds", "notebook_setup"}
    used |= {"residual_histograms", "loss_curve", "sample_grid", "val_curve", "flag_overlay", "patch_explorer"}
    used |= {"patch_figure", "metric_bars", "point_cloud_figure", "mesh_figure", "ablation_plot", "save_figure"}
    used |= {"save_sample_grid", "TRACE_COLORS"}
    assert used <= set(viz.__all__)


# ---------------------------------------------------------------------------- 1. depth panels
def test_depth_panels_axes_scales_and_residual_sign():
    cad, real = _pair()
    sim = torch.from_numpy(cad + 0.005)  # torch accepted; 5 mm farther than the CAD everywhere valid
    sim[0, :] = 0.0
    fig = viz.depth_panels({"CAD": cad, "real": real, "Stage-I": sim}, cad=cad, residual_of=("real", "Stage-I"))
    image_axes = _image_axes(fig)
    assert len(image_axes) == 3 + 2
    depth_images = [ax.images[0] for ax in image_axes[:3]]
    assert len({im.get_clim() for im in depth_images}) == 1  # shared depth scale
    res_im = image_axes[4].images[0]
    lo, hi = res_im.get_clim()
    assert hi == -lo > 0  # symmetric diverging scale
    data = res_im.get_array()
    assert np.ma.is_masked(data) and data.mask[0].all() and data.mask[-1].all()  # invalid rows masked
    np.testing.assert_allclose(data.compressed(), 5.0, atol=1e-3)  # Stage-I − CAD = +5 mm
    assert "Stage-I − CAD" in image_axes[4].get_title()
    labels = [ax.get_ylabel() for ax in fig.axes if not ax.images]
    assert "depth [m]" in labels and "depth − CAD [mm]" in labels
    assert fig.get_suptitle()


def test_depth_panels_fixed_residual_limit():
    cad, real = _pair()
    fig = viz.depth_panels({"real": real}, cad=cad, residual_of=("real",), limit_mm=25.0)
    assert _image_axes(fig)[1].images[0].get_clim() == (-25.0, 25.0)


def test_depth_panels_bad_inputs():
    cad, real = _pair()
    with pytest.raises(Sim2RealError, match="'sim'"):
        viz.depth_panels({"real": real}, cad=cad, residual_of=("sim",))
    with pytest.raises(Sim2RealError, match="cad"):
        viz.depth_panels({"real": real}, residual_of=("real",))
    with pytest.raises(DepthFormatError, match="differ in shape"):
        viz.depth_panels({"real": real, "small": real[:5]})
    with pytest.raises(DepthFormatError, match=r"maps\['x'\]"):
        viz.depth_panels({"x": np.zeros((2, 3, 4, 5))})


# ---------------------------------------------------------------------------- 2. residual histograms
def test_residual_histograms_hole_rates_in_legend():
    cad, real = _pair(F=3)
    sim = cad.copy()  # no holes
    fig = viz.residual_histograms(cad, {"real": real, "sim": torch.from_numpy(sim)}, bins=21)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    shown = {t.split(":")[0]: float(re.search(r"holes ([\d.]+) %", t).group(1)) for t in texts}
    assert shown["real"] == pytest.approx(100 * hole_rates(cad, real)["all"], abs=0.05)
    assert shown["sim"] == 0.0
    assert fig.holes["real"] == pytest.approx(hole_rates(cad, real)["all"])
    assert fig.axes[0].get_yscale() == "log" and "[mm]" in fig.axes[0].get_xlabel()


def test_residual_histograms_reports_off_range_share():
    cad, real = _pair(F=2)
    fig = viz.residual_histograms(cad, {"real": real}, range_mm=5.0, log=False)
    text = fig.axes[0].get_legend().get_texts()[0].get_text()
    res_mm = 1000 * (cad - real)[(cad > 0) & (real > 0)]
    off = 100 * np.mean(np.abs(res_mm) > 5.0)
    assert f"{off:.1f} % off range" in text and fig.axes[0].get_xlim() == (-5.0, 5.0)


def test_residual_histograms_shape_mismatch_names_key():
    cad, real = _pair(F=2)
    with pytest.raises(DepthFormatError, match=r"depths\['real'\]"):
        viz.residual_histograms(cad, {"real": real[:1]})


# ---------------------------------------------------------------------------- 3. effects gallery
def test_effects_gallery_titles_show_shares():
    cad, real = _pair()
    effects = {"noise": np.ones((H, W), bool), "holes": real == 0, "off": np.zeros((H, W), bool)}
    fig = viz.effects_gallery(real, effects, cad=cad, ncols=2)
    titles = [ax.get_title() for ax in _image_axes(fig)]
    assert titles[0] == "CAD"
    assert f"noise ({100.0:.1f} % px)" in titles
    assert f"holes ({100 * (real == 0).mean():.1f} % px)" in titles
    assert "off (0.0 % px)" in titles
    with pytest.raises(DepthFormatError, match=r"effects\['bad'\]"):
        viz.effects_gallery(real, {"bad": np.zeros((3, 3), bool)})


# ---------------------------------------------------------------------------- 4. point clouds
def test_point_cloud_figure_subsamples_per_trace():
    rng = np.random.default_rng(0)
    clouds = {"real": rng.normal(size=(500, 3)), "CAD": torch.randn(50, 3), "generated": rng.normal(size=(4, 5, 3))}
    fig = viz.point_cloud_figure(clouds, max_points=100)
    assert [t.name for t in fig.data] == ["real", "CAD", "generated"]
    assert [len(t.x) for t in fig.data] == [100, 50, 20]
    assert fig.layout.scene.aspectmode == "data"
    assert fig.data[0].marker.color == viz.TRACE_COLORS["real"]
    again = viz.point_cloud_figure(clouds, max_points=100)
    np.testing.assert_array_equal(fig.data[0].x, again.data[0].x)  # seeded


def test_frame_point_clouds_backprojects_valid_pixels():
    cad, real = _pair()
    cam = Camera(12.0, 12.0, W / 2, H / 2, W, H)
    fig = viz.frame_point_clouds(cad, real, cam, sim=cad)
    assert [t.name for t in fig.data] == ["CAD", "real", "generated"]
    assert len(fig.data[1].x) == int((real > 0).sum())
    np.testing.assert_allclose(np.sort(fig.data[0].z), np.sort(cad[cad > 0]), rtol=1e-6)  # camera frame: z = depth
    pose = look_at([0, -3, 1], [0, 0, 1])
    world = viz.frame_point_clouds(cad, real, cam, pose=pose)
    assert world.layout.scene.camera.up.z == 1 and len(world.data) == 2


# ---------------------------------------------------------------------------- 5. frame browser (plotly, offline)
def _z(values):
    """A heatmap's nested lists (None = invalid) as a float array with NaN."""
    return np.array([[np.nan if v is None else v for v in row] for row in values], float)


def test_frame_browser_steps_hold_each_frames_depth_and_residual(plane_layout):
    fig = viz.frame_browser(plane_layout, "val")
    steps = fig.layout.sliders[0].steps
    refs = plane_layout.frames("val")
    assert fig.layout.meta["kind"] == "frame_browser" and fig.layout.meta["frames"] == [0, 1, 2]
    assert [s.label for s in steps] == ["s01/000", "s01/001", "s01/002"] == [str(r) for r in refs]
    assert [t.name for t in fig.data] == ["CAD", "real", "real − CAD"] and fig.data[0].dx == 1
    frame = plane_layout.read_frame(refs[2])
    cad, real = frame["cad"].astype(np.float64), frame["real"].astype(np.float64)
    data, lay, traces = steps[2].args
    assert list(traces) == [0, 1, 2] and "s01/002" in lay["title.text"]
    cad_mm, real_mm, res_mm = (_z(z) for z in data["z"])
    np.testing.assert_array_equal(cad_mm, np.round(cad * 1000))  # the layout stores whole millimetres
    assert np.isnan(real_mm[0]).all() and np.isnan(res_mm[0]).all()  # the row of holes
    expected = np.round((real - cad) * 1000, 1)
    np.testing.assert_allclose(res_mm[1:], expected[1:], atol=1e-9)  # real − CAD, mm
    assert res_mm[5, 7] == pytest.approx(real[5, 7] * 1000 - cad[5, 7] * 1000, abs=0.05)
    limit = np.percentile(np.abs(expected[1:]), viz.RESIDUAL_PERCENTILE)
    assert (
        lay["coloraxis2.cmax"] == pytest.approx(limit, abs=0.006) and lay["coloraxis2.cmin"] == -lay["coloraxis2.cmax"]
    )
    lo, hi = np.percentile(cad[cad > 0].tolist() + real[real > 0].tolist(), viz.DEPTH_PERCENTILES)
    assert (lay["coloraxis.cmin"], lay["coloraxis.cmax"]) == (
        pytest.approx(1000 * lo, abs=0.06),
        pytest.approx(1000 * hi, abs=0.06),
    )
    assert f"real holes {100 * 32 / 768:.1f} % of CAD px" in lay["title.text"]  # row 0: 32 of 768 CAD pixels
    np.testing.assert_array_equal(_z(fig.data[2].z), _z(steps[0].args[0]["z"][2]))  # first frame drawn
    assert fig.layout.coloraxis2.colorscale[0][1] == "rgb(5,48,97)"  # RdBu_r: blue for negative


def test_frame_browser_caps_frames_and_pixels_and_reports_broken_frames(tmp_path):
    lay = make_plane_layout(tmp_path / "ds", scenes=2, frames=7)  # val: s01, 7 frames of 32x24
    fig = viz.frame_browser(lay, "val", max_frames=4, max_side=10)
    assert fig.layout.meta["frames"] == [0, 2, 4, 6]  # evenly spread
    assert [s.label for s in fig.layout.sliders[0].steps] == ["s01/000", "s01/002", "s01/004", "s01/006"]
    assert fig.layout.meta["stride"] == 4 and fig.data[0].dx == 4  # ceil(32 / 10)
    assert _z(fig.layout.sliders[0].steps[1].args[0]["z"][0]).shape == (6, 8)
    assert "shown 8x6" in fig.layout.sliders[0].steps[1].args[1]["title.text"]
    picked = viz.frame_browser(lay, "val", frames=[5, 1])
    assert [s.label for s in picked.layout.sliders[0].steps] == ["s01/005", "s01/001"]
    train = viz.frame_browser(lay.root, "train", size=16)  # a path; centre crop resized
    assert _z(train.data[0].z).shape == (16, 16) and len(train.layout.sliders[0].steps) == 7
    lay.depth_path(FrameRef("s01", "001"), "scan").unlink()
    broken = viz.frame_browser(lay, "val", frames=[0, 1])
    step = broken.layout.sliders[0].steps[1]
    assert step.label == "s01/001 (error)" and "001_scan.png" in step.args[1]["title.text"]
    assert np.isnan(_z(step.args[0]["z"][2])).all()
    fixed = viz.frame_browser(lay, "val", frames=[0], limit_mm=50)  # a fixed residual scale, as depth_panels'
    assert (fixed.layout.coloraxis2.cmin, fixed.layout.coloraxis2.cmax) == (-50, 50)
    with pytest.raises(Sim2RealError, match="frames"):
        viz.frame_browser(lay, "val", frames=[7])
    with pytest.raises(ConfigError, match="limit_mm"):
        viz.frame_browser(lay, "val", limit_mm=0)


# ---------------------------------------------------------------------------- 6. curves
def _write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


def test_loss_and_val_curves(tmp_path):
    header = ["step", "epoch", "loss", "lr", "img_per_s", "grad_norm"]
    a = _write_csv(tmp_path / "stage1_losses.csv", header, [[s, 0, 1.0 / s, 1e-4, 10, ""] for s in range(1, 21)])
    b = _write_csv(tmp_path / "stage2_losses.csv", header, [[s, 0, 2.0 / s, 1e-4, 10, 0.5] for s in range(1, 11)])
    fig = viz.loss_curve([a, b], labels=["Stage-I", "Stage-II"], smooth=0.6)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Stage-I", "Stage-II"]
    assert len(ax.lines) == 4  # raw (faint) + smoothed per run
    np.testing.assert_allclose(ax.lines[0].get_ydata(), 1.0 / np.arange(1, 21))
    fig2 = viz.loss_curve(a, columns=("loss", "grad_norm"))
    assert len(fig2.axes) == 2 and fig2.axes[1].get_ylabel() == "grad_norm"
    val = _write_csv(tmp_path / "val.csv", ["step", "w1_cad_mm", "w1_mm"], [[10, 9.0, 5.0], [20, 9.0, 3.0]])
    vfig = viz.val_curve(val, ["w1_mm", "w1_cad_mm"])
    np.testing.assert_allclose(vfig.axes[0].lines[0].get_ydata(), [5.0, 3.0])
    with pytest.raises(MissingArtifactError, match="nothere.csv"):
        viz.loss_curve(tmp_path / "nothere.csv")
    with pytest.raises(Sim2RealError, match="'w2_mm'"):
        viz.val_curve(val, "w2_mm")


# ---------------------------------------------------------------------------- 7. flag overlay
def test_flag_overlay_one_red_rectangle_per_flagged_valid_patch():
    cad, real = _pair(h=16, w=16)
    boxes = patch_grid(16, 16, 4)  # 16 patches
    scores = torch.linspace(0.0, 1.0, 16)
    valid = torch.ones(16, dtype=torch.bool)
    valid[1] = False  # would be flagged, but skipped
    fig = viz.flag_overlay({"CAD": cad, "real": real, "gen": real}, boxes, scores, threshold=0.3, valid=valid)
    expected = int(((scores < 0.3) & valid).sum())  # 0, 2, 3, 4 -> 4
    image_axes = _image_axes(fig)
    assert len(image_axes) == 3
    for ax in image_axes:
        reds = _red_rects(ax)
        assert len(reds) == expected
        assert len(ax.patches) == 16
        hatched = [p for p in ax.patches if p.get_hatch()]
        assert len(hatched) == 1
    widths = sorted(p.get_linewidth() for p in _red_rects(image_axes[0]))
    assert widths[-1] == pytest.approx(3.5) and widths[0] < widths[-1]  # P(real) = 0 is the most confident
    r = _red_rects(image_axes[0])[0]  # patch 0: rows 0-3, cols 0-3 -> pixel edges at -0.5
    assert (r.get_x(), r.get_y(), r.get_width(), r.get_height()) == (-0.5, -0.5, 4, 4)
    assert f"{expected}/15 valid patches flagged" in fig.get_suptitle()
    with pytest.raises(Sim2RealError, match="scores"):
        viz.flag_overlay({"CAD": cad}, boxes, scores[:3])


# ---------------------------------------------------------------------------- 8-9. patches in 3D and the explorer
def test_patch_figure_three_toggleable_traces():
    rng = np.random.default_rng(1)
    fig = viz.patch_figure(rng.normal(size=(64, 3)), rng.normal(size=(64, 3)), rng.normal(size=(64, 3)), title="p")
    assert [(t.name, t.marker.color) for t in fig.data] == [
        ("generated", "#ff7f0e"),
        ("real", "#1f77b4"),
        ("CAD", "#7f7f7f"),
    ]
    assert all(len(t.x) == 64 for t in fig.data) and fig.layout.title.text == "p"


def _explorer_case():
    F, S = 2, 16
    cad, real = _pair(F=F, h=S, w=S)
    sim = cad + 0.02
    cam = Camera(14.0, 14.0, S / 2, S / 2, S, S)
    boxes = patch_grid(S, S, 8)  # 4 patches: (0, 8, 0, 8), (0, 8, 8, 16), (8, 16, 0, 8), (8, 16, 8, 16)
    scores = np.array([[0.1, 0.4, 0.6, 0.9], [0.2, 0.2, 0.2, 0.8]])
    valid = np.array([[True, True, True, False], [True, True, True, True]])
    return cad, real, sim, cam, boxes, scores, valid


def test_explorer_flags_and_box_outlines():
    _, _, _, _, boxes, scores, valid = _explorer_case()
    np.testing.assert_array_equal(explorer.explorer_flags(scores, valid, 0.5), [[1, 1, 0, 0], [1, 1, 1, 0]])
    np.testing.assert_array_equal(explorer.explorer_flags(scores, valid, 0.95), [[1, 1, 1, 0], [1, 1, 1, 1]])
    assert explorer.most_confident_patch(scores[1], valid[1]) == 0  # ties: the first
    assert explorer.most_confident_patch(scores[0], np.zeros(4, bool)) is None
    xs, ys = explorer.box_outline(boxes[1:2])
    assert xs == [7.5, 15.5, 15.5, 7.5, 7.5, None] and ys == [-0.5, -0.5, 7.5, 7.5, -0.5, None]
    assert widgets.pick_frames(20, 16)[:4] == [0, 1, 3, 4] and len(widgets.pick_frames(20, 16)) == 16
    assert widgets.pick_frames(3, 16) == [0, 1, 2] and widgets.heatmap_stride(192, 256, 128) == 2


def test_patch_explorer_embeds_boxes_per_threshold_and_the_patch_in_3d():
    cad, real, sim, cam, boxes, scores, valid = _explorer_case()
    fig = viz.patch_explorer(cad, real, sim, cam, boxes, torch.from_numpy(scores), valid, num_points=32)
    meta = fig.layout.meta
    assert meta["kind"] == "patch_explorer" and meta["thresholds"] == [0.3, 0.5, 0.7] and meta["threshold"] == 0.5
    assert meta["patches"] == [0, 0] and meta["labels"] == ["frame 0", "frame 1"]
    steps = fig.layout.sliders[0].steps
    assert len(steps) == 2 and all(s.method == "update" for s in steps)
    x_of = {
        t: [list(steps[k].args[0]["x"][meta["box_traces"][f"{t:g}"][0]]) for k in range(2)] for t in meta["thresholds"]
    }
    # frame 0 at 0.5: patches 0 and 1 (P(real) 0.1, 0.4); patch 3 (0.9) is invalid anyway
    assert x_of[0.5][0] == [-0.5, 7.5, 7.5, -0.5, -0.5, None, 7.5, 15.5, 15.5, 7.5, 7.5, None]
    assert x_of[0.3][0] == [-0.5, 7.5, 7.5, -0.5, -0.5, None]  # patch 0 only
    assert x_of[0.7][1].count(None) == 3  # frame 1 at 0.7: patches 0, 1, 2 (patch 3: 0.8)
    t05 = meta["box_traces"]["0.5"]
    y05 = list(steps[0].args[0]["y"][t05[1]])  # the same boxes on the real panel
    assert y05 == [-0.5, -0.5, 7.5, 7.5, -0.5, None, -0.5, -0.5, 7.5, 7.5, -0.5, None]
    assert [fig.data[i].visible for pair in meta["box_traces"].values() for i in pair] == [0, 0, 1, 1, 0, 0]
    buttons = fig.layout.updatemenus[0].buttons
    assert fig.layout.updatemenus[0].active == 1 and [b.label for b in buttons] == [
        "P(real) < 0.3",
        "P(real) < 0.5",
        "P(real) < 0.7",
    ]
    assert buttons[2].args[0] == {"visible": [False, False, False, False, True, True]}
    assert list(buttons[2].args[1]) == [2, 3, 4, 5, 6, 7]
    title = steps[0].args[1]["title.text"]
    assert "flagged of 3 valid patches" in title and "1 at 0.3 · 2 at 0.5 · 3 at 0.7" in title
    hover = steps[0].args[0]["text"][10]  # traces: 2 heatmaps, 6 box, 2 selected, 2 hover, 3 clouds
    assert hover[0] == "patch 0: P(real) 0.100 · flagged at 0.3, 0.5, 0.7" and "skipped" in hover[3]
    z_sim = np.array(steps[0].args[0]["z"][0], float)
    np.testing.assert_array_equal(z_sim, np.round((cad[0] + 0.02).astype(np.float64) * 1000))
    gen, real_pts, cad_pts = ([np.asarray(steps[0].args[0][a][i], float) for a in "xyz"] for i in (12, 13, 14))
    assert [t.name for t in fig.data[12:]] == ["generated", "real", "CAD"]
    assert len(gen[2]) == 32 and len(cad_pts[2]) == 32 and len(real_pts[2]) == 32  # 32 of 64 / 55 valid pixels
    np.testing.assert_allclose(np.sort(gen[2]) - np.sort(cad_pts[2]), 0.02, atol=1e-9)  # mm-rounded, 2 cm behind
    assert gen[2].max() <= 2.02 and (np.round(gen[2] * 1000) == gen[2] * 1000).all()
    assert "patch 0 in 3D: P(real) 0.100" in steps[0].args[1]["annotations[2].text"]


def test_patch_explorer_caps_thresholds_and_labels():
    cad, real, sim, cam, boxes, scores, valid = _explorer_case()
    fig = viz.patch_explorer(
        cad,
        real,
        sim,
        cam,
        boxes,
        scores,
        valid,
        threshold=0.45,
        labels=["a/000", "a/001"],
        frames=[1],
        names=("CAD", "real", "Stage-I"),
    )
    assert fig.layout.meta["thresholds"] == [0.3, 0.45, 0.5, 0.7] and fig.layout.updatemenus[0].active == 1
    assert [s.label for s in fig.layout.sliders[0].steps] == ["a/001"]
    assert fig.data[0].name == "Stage-I" and fig.data[-3].marker.color == viz.TRACE_COLORS["generated"]
    assert "of 4 valid patches (P(real) < t): 3 at 0.3 · 3 at 0.45 · 3 at 0.5 · 3 at 0.7" in fig.layout.title.text
    small = viz.patch_explorer(cad, real, sim, cam, boxes, scores, valid, max_frames=1, max_side=5)
    assert len(small.layout.sliders[0].steps) == 1 and small.data[0].dx == 4  # ceil(16 / 5)
    assert np.array(small.data[0].z, float).shape == (4, 4)
    no_valid = viz.patch_explorer(cad, real, sim, cam, boxes, scores, np.zeros((2, 4), bool))
    assert no_valid.layout.meta["patches"] == [None, None] and no_valid.data[-1].x == ()
    with pytest.raises(Sim2RealError, match="labels"):
        viz.patch_explorer(cad, real, sim, cam, boxes, scores, valid, labels=["one"])


# ---------------------------------------------------------------------------- 10. bars
def test_metric_bars_heights_and_labels():
    rows = [
        {"simulator": "CAD", "acc": 0.9, "sd": 0.02},
        {"simulator": "Stage-I", "acc": 0.678, "sd": 0.05},
        {"simulator": "Stage-II", "acc": 0.325, "sd": None},
    ]
    fig = viz.metric_bars(rows, "acc", err_key="sd", title="judged fake", lower_is_better=True)
    ax = fig.axes[0]
    bars = ax.patches  # the bars only (highlighting is an edge, not an extra patch)
    assert [b.get_height() for b in bars] == pytest.approx([0.9, 0.678, 0.325])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["CAD", "Stage-I", "Stage-II"]
    assert bars[2].get_linewidth() == 2.0  # best (lowest) outlined
    assert "0.678 ± 0.05" in [t.get_text() for t in ax.texts]
    with pytest.raises(Sim2RealError, match="'acc'"):
        viz.metric_bars([{"simulator": "x"}], "acc")


# ---------------------------------------------------------------------------- 11. meshes
def test_mesh_figure_offsets_and_decimation():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    t = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    rng = np.random.default_rng(0)
    big_v = rng.normal(size=(300, 3))
    big_t = rng.integers(0, 300, size=(500, 3))
    fig = viz.mesh_figure({"cad": (v, t), "real": {"vertices": big_v, "faces": big_t}}, max_triangles=100)
    assert [tr.name for tr in fig.data] == ["cad", "real"]
    assert len(fig.data[0].i) == 4 and len(fig.data[1].i) == 100
    widest = max(1.0, np.ptp(fig.data[1].x))
    assert min(fig.data[0].x) == 0.0
    assert min(fig.data[1].x) == pytest.approx(1.0 + 0.1 * widest)  # first mesh's width + 10 % of the widest
    assert max(max(fig.data[1].i), max(fig.data[1].j), max(fig.data[1].k)) < len(fig.data[1].x)
    with pytest.raises(Sim2RealError, match="'bad'"):
        viz.mesh_figure({"bad": (v, np.array([[0, 1, 9]]))})


# ---------------------------------------------------------------------------- 12. sample grids
def test_sample_grid_and_atomic_png(tmp_path):
    cad, real = _pair(F=5)
    sims = {"Stage-I": cad + 0.01, "Stage-II": torch.from_numpy(real + 0.002)}
    fig = viz.sample_grid(cad, real, sims, n=3)
    image_axes = _image_axes(fig)
    assert len(image_axes) == 3 * (4 + 2)
    assert [ax.get_title() for ax in image_axes[:6]] == [
        "CAD",
        "real",
        "Stage-I",
        "Stage-II",
        "real − CAD",
        "Stage-II − CAD",
    ]
    depth_clims = {ax.images[0].get_clim() for r in range(3) for ax in image_axes[r * 6 : r * 6 + 4]}
    res_clims = {ax.images[0].get_clim() for r in range(3) for ax in image_axes[r * 6 + 4 : r * 6 + 6]}
    assert len(depth_clims) == 1 and len(res_clims) == 1
    out = viz.save_sample_grid(tmp_path / "samples" / "step_000010.png", cad, real, sims, n=2, dpi=50)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 50
    assert [p.name for p in out.parent.iterdir()] == ["step_000010.png"]  # no temporary left behind


def test_figures_are_not_kept_by_pyplot(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    cad, real = _pair(F=2)
    viz.depth_panels({"CAD": cad[0]}, title="t")
    viz.sample_grid(cad, real, {})
    assert plt.get_fignums() == []  # shown once in Jupyter, never flushed again at the end of a cell

    def no_pyplot(*args, **kwargs):
        raise AssertionError("save_sample_grid must not use pyplot")

    monkeypatch.setattr(plt, "figure", no_pyplot)
    assert viz.save_sample_grid(tmp_path / "g.png", cad, real, {"sim": cad}).is_file()


# ---------------------------------------------------------------------------- 13. ablations, saving
def test_ablation_plot_groups_sorted_lines(tmp_path):
    rows = [
        {"threshold": 0.7, "w1": 3.0, "variant": "bin", "sd": 0.1},
        {"threshold": 0.3, "w1": 4.0, "variant": "bin", "sd": 0.1},
        {"threshold": 0.5, "w1": 3.5, "variant": "w/o bin", "sd": 0.2},
        {"threshold": 0.3, "w1": 4.5, "variant": "w/o bin", "sd": 0.2},
    ]
    fig = viz.ablation_plot(rows, "threshold", "w1", group="variant", err="sd")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0.3, 0.7])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [4.0, 3.0])
    assert len(ax.get_legend().get_texts()) == 2
    stages = viz.ablation_plot(
        [{"stages": 1, "acc": 0.6}, {"stages": 2, "acc": 0.4}, {"stages": 3, "acc": 0.35}], "stages", "acc"
    )
    np.testing.assert_allclose(stages.axes[0].lines[0].get_ydata(), [0.6, 0.4, 0.35])
    cat = viz.ablation_plot([{"binary": True, "acc": 0.3}, {"binary": False, "acc": 0.4}], "binary", "acc")
    assert [t.get_text() for t in cat.axes[0].get_xticklabels()] == ["True", "False"]
    assert viz.save_figure(fig, tmp_path / "abl.png").stat().st_size > 0
    html = viz.save_figure(viz.point_cloud_figure({"a": np.ones((3, 3))}), tmp_path / "pc.html")
    assert "plotly" in html.read_text()[:5000].lower()


# ============================================================================ figures (issue 21): bar scales
# (appended block, kept apart from the explorers' tests above to ease merging)
def test_metric_bars_clip_cuts_outliers_and_labels_them():
    rows = [
        {"simulator": "CAD", "w1": 64.3},
        {"simulator": "physical", "w1": 57.6},
        {"simulator": "Pix2Pix (unconverged)", "w1": 1448.6},
        {"simulator": "CycleGAN (unconverged)", "w1": 486.0},
        {"simulator": "Stage-I", "w1": 42.6},
        {"simulator": "real", "w1": 0.0},
    ]
    fig = viz.metric_bars(rows, "w1", clip="auto")
    ax = fig.axes[0]
    limit = 1.3 * 64.3
    assert ax.get_ylim()[1] == pytest.approx(limit)  # the good simulators fill the axis
    assert [b.get_height() for b in ax.patches] == pytest.approx([64.3, 57.6, limit, limit, 42.6, 0.0])
    assert [b.get_hatch() for b in ax.patches] == [None, None, "//", "//", None, None]
    texts = [t.get_text() for t in ax.texts]
    assert "1449 ↑" in texts and "486 ↑" in texts and "64.3" in texts  # cut bars carry their value
    assert "cut at the axis top" in ax.get_xlabel()
    # no outlier: nothing cut; a fixed limit cuts what is above it
    plain = viz.metric_bars(rows[:2] + rows[4:], "w1", clip="auto").axes[0]
    assert [b.get_hatch() for b in plain.patches] == [None] * 4 and plain.get_xlabel() == ""
    fixed = viz.metric_bars(rows, "w1", clip=100.0).axes[0]
    assert fixed.get_ylim()[1] == 100.0 and sum(b.get_hatch() == "//" for b in fixed.patches) == 2


def test_metric_bars_log_axis():
    rows = [{"simulator": "a", "w1": 50.0}, {"simulator": "b", "w1": 1500.0}, {"simulator": "real", "w1": 0.0}]
    ax = viz.metric_bars(rows, "w1", log=True).axes[0]
    assert ax.get_yscale() == "log"
    texts = [t.get_text() for t in ax.texts]
    assert "1500" in texts and any("not on a log axis" in t for t in texts)


def test_clip_limit_rule():
    from sim2real_kit.viz.figures import clip_limit

    assert clip_limit([64.3, 57.6, 1448.6, 486.0, 42.6, 0.0]) == pytest.approx(1.3 * 64.3)
    assert clip_limit([64.3, 57.6, 1448.6], [1.0, 0.0, 0.0]) == pytest.approx(1.3 * 65.3)  # error bar counted
    assert clip_limit([10.0, 9.0, 30.0]) is None  # 30 < 4 × 10: no gap
    assert clip_limit([100.0, 1.0]) is None  # fewer than 3 bars
    assert clip_limit([500.0, 400.0, 1.0, 2.0]) is None  # at most half the bars are outliers
    assert clip_limit([500.0, -1.0, 2.0, 3.0]) is None  # negative values: no clipping


def test_metric_bars_no_plus_minus_zero():
    rows = [{"simulator": "a", "w1": 5.0, "sd": 0.0}, {"simulator": "b", "w1": 6.0, "sd": 0.5}]
    texts = [t.get_text() for t in viz.metric_bars(rows, "w1", err_key="sd").axes[0].texts]
    assert "5" in texts and "6 ± 0.5" in texts
