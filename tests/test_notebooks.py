"""The notebooks under papermill with `quick=True` (the CI run of the walkthrough), asserting on
the numbers each writes to `run_dir/notebooks/NN_name.metrics.json`, plus notebook hygiene."""

import json
import math
from pathlib import Path

import pytest

from sim2real_kit.data.layout import validate
from sim2real_kit.runner import check_notebook, default_notebooks, run_notebooks, write_index

# per-cell limit, a backstop for a wedged kernel connection (see sim2real_kit/_kernel.py): a failure
# naming the cell instead of a CI job that waits until it is killed; the slowest quick cell takes ~20 s
CELL_LIMIT_S = 600
NOTEBOOKS = sorted(Path(__file__).resolve().parent.parent.joinpath("notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_hygiene(path):
    assert check_notebook(path) == []


def test_sequence_is_complete():
    names = [p.stem for p in default_notebooks()]
    assert names == ["01_data", "02_stage1", "03_discriminator", "04_stage2", "05_benchmark", "06_ablations"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("quick_run")
    names = [p.stem for p in NOTEBOOKS if p.stem != "06_ablations"]
    report = run_notebooks(
        run_dir,
        notebooks=names,
        parameters={"quick": True, "seed": 0},
        progress=True,
        index=True,
        cell_timeout_s=CELL_LIMIT_S,
    )
    assert report.ok
    return run_dir


def _metrics(run_dir, name):
    return json.loads((run_dir / "notebooks" / f"{name}.metrics.json").read_text())


@pytest.mark.notebook
def test_01_data(quick_run):
    m = _metrics(quick_run, "01_data")
    assert m["validate_problems"] == 0
    assert m["train_frames"] > 0 and m["val_frames"] > 0
    # the residual is spatially variant: larger and holier at CAD depth edges than on flat areas
    assert m["residual_mean_abs_edge_mm"] > 2 * m["residual_mean_abs_flat_mm"]
    assert m["hole_rate_edge"] > 2 * m["hole_rate_flat"]
    # the real-sensor track: the shipped YCB-Video sample (Asus Xtion), object pixels only
    r = m["real_sample"]
    assert r["frames"] == 5 and r["object_px"] > 250_000
    assert 0.5 < r["median_abs_mm"] < 2.0  # CAD fits the Xtion to ~0.9 mm on the objects
    assert r["hole_rate_edge"] > 3 * r["hole_rate_flat"]  # it loses data beside silhouettes
    assert r["residual_mean_abs_flat_mm"] < m["residual_mean_abs_flat_mm"]  # mm on objects vs cm in rooms
    assert (quick_run / "real_sample" / "data" / "import_report.csv").is_file()


@pytest.mark.notebook
def test_02_stage1(quick_run):
    m = _metrics(quick_run, "02_stage1")
    assert m["train"]["steps"] > 0 and math.isfinite(m["train"]["loss"])
    assert m["frames"] > 0 and math.isfinite(m["w1_mm"]) and m["w1_cad_mm"] > 0
    assert (quick_run / "stage1" / "pipeline" / "model_index.json").is_file()
    assert m["holes"] == "mask" and m["hole_rate"] == 0 and m["hole_rate_real_edge"] > 0  # the paper's: no holes


@pytest.mark.notebook
def test_03_discriminator(quick_run):
    m = _metrics(quick_run, "03_discriminator")
    assert m["val_accuracy"] > 0.6  # the discriminator tells Stage-I patches from real ones
    assert 0 <= m["acc_stage1"] <= 1
    assert (quick_run / "disc" / "flags" / "train" / "flags.npz").is_file()


@pytest.mark.notebook
def test_04_stage2_and_its_control(quick_run):
    """Notebook 04 shows Stage-I, its control (Stage-I trained on for Stage-II's steps) and Stage-II, each scored by
    residual W1 and the frozen Stage-I discriminator, and the flagged share. Which row is lowest is a measurement
    (docs/results.md, benchmarks/bench_stage2_controls.py over seeds), not something a 32 px CI run can assert."""
    import yaml

    m = _metrics(quick_run, "04_stage2")
    for key in ("w1_stage1_mm", "w1_stage1_long_mm", "w1_stage2_mm", "acc_stage1", "acc_stage1_long", "acc_stage2"):
        assert math.isfinite(m[key]), key
    assert m["w1_stage1_mm"] < m["w1_cad_mm"]  # Stage-I beats clean CAD even at CI size
    assert 0 < m["flagged_train"] <= 1 and 0 <= m["acc_real"] < m["acc_stage1"]
    control = yaml.safe_load((quick_run / "controls" / "stage1_long" / "stage1" / "config.yaml").read_text())
    stage2 = yaml.safe_load((quick_run / "stage2" / "config.yaml").read_text())
    stage1 = yaml.safe_load((quick_run / "stage1" / "config.yaml").read_text())
    assert control["train"]["steps"] == stage1["train"]["steps"] + stage2["train"]["steps"]


@pytest.mark.notebook
def test_05_benchmark(quick_run):
    m = _metrics(quick_run, "05_benchmark")
    sims = set(m["simulators"])
    assert {"cad", "random", "physical", "stage1", "stage2", "real"} <= sims
    assert (quick_run / "benchmark" / "results.md").is_file()
    assert (quick_run / "benchmark" / "results.csv").is_file()
    # real sample: physical baselines and the few-shot Stage-I against the Xtion
    r = m["real_sample"]
    w1 = r["w1_mm"]
    assert all(w1[region]["real"] == 0 for region in ("objects", "heldout", "seen"))
    assert 0 < w1["objects"]["physical"] < w1["objects"]["random"]  # Kinect v1 noise is near the Xtion's
    assert w1["objects"]["cad"] > 0 and math.isfinite(w1["heldout"]["stage1"])
    assert r["holdout"]["pixels"] > 0 and r["stage1"]["steps"] > 0
    assert (quick_run / "benchmark" / "real_sample" / "results.md").is_file()


@pytest.mark.notebook
def test_index(quick_run):
    index = write_index(quick_run)
    html = index.read_text()
    assert "02_stage1" in html and "04_stage2" in html


@pytest.mark.notebook
def test_06_ablations_ci_grid(quick_run):
    report = run_notebooks(
        quick_run,
        notebooks=["06_ablations"],
        parameters={"quick": True},
        per_notebook={"06_ablations": {"grid": "ci"}},
        cell_timeout_s=CELL_LIMIT_S,
    )
    assert report.ok
    m = _metrics(quick_run, "06_ablations")
    assert set(m["variants"]) == {"residual", "wo_res"}
    assert not m["failed"]
    for row in m["variants"].values():
        assert math.isfinite(row["stage1.w1_mm.mean"])
    assert (quick_run / "ablations" / "ci" / "summary.md").is_file()


@pytest.mark.notebook
def test_cad_only_simulation_from_the_run(quick_run, tmp_path):
    """`sim2real simulate`: a folder of CAD depth maps (no real frames) -> simulated depth + point clouds."""
    from sim2real_kit.camera import Camera
    from sim2real_kit.cli import main
    from sim2real_kit.depth import read_depth_png

    scene = sorted((quick_run / "data" / "lasa_depth").glob("s*"))[0]
    cad_dir = tmp_path / "cad"
    cad_dir.mkdir()
    for p in sorted(scene.glob("*_gt.png"))[:2]:
        (cad_dir / p.name).write_bytes(p.read_bytes())
    (cad_dir / "intrinsics.json").write_bytes((quick_run / "data" / "intrinsics.json").read_bytes())
    assert main(["simulate", "--pipeline", str(quick_run), "--cad", str(cad_dir), "--out", str(tmp_path / "sim")]) == 0
    sims = sorted((tmp_path / "sim" / "lasa_depth" / "cad").glob("*_scan.png"))
    assert len(sims) == 2 and len(list((tmp_path / "sim" / "points" / "cad").glob("*.ply"))) == 2
    depth = read_depth_png(sims[0])
    camera = Camera.load_json(cad_dir / "intrinsics.json")
    assert depth.shape == (camera.height, camera.width) and (depth > 0).mean() > 0.5  # the camera's resolution
    # a whole layout: its poses are used and every scene is fused into a mesh
    layout_out = tmp_path / "sim_layout"
    assert (
        main(["simulate", "--pipeline", str(quick_run), "--cad", str(quick_run / "data"), "--out", str(layout_out)])
        == 0
    )
    assert validate(layout_out) == []
    assert list((layout_out / "meshes").glob("*/simulated.ply"))


def _plotly_figures(html):
    """Every figure plotly's `to_html` put in a page (`Plotly.newPlot(id, data, layout, ...)`): {"data", "layout"}."""
    import re

    decoder = json.JSONDecoder()
    figures = []
    for m in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', html):
        data, end = decoder.raw_decode(html, m.end())
        end += len(html[end:]) - len(html[end:].lstrip(", \n\t"))
        layout, _ = decoder.raw_decode(html, end)
        figures.append({"data": data, "layout": layout})
    return figures


def _rectangles(xs, ys):
    """The closed rectangles of a box trace (None between them) as (x0, x1, y0, y1)."""
    rects, pts = [], []
    for x, y in zip(list(xs) + [None], list(ys) + [None]):
        if x is None:
            if pts:
                px, py = zip(*pts)
                rects.append((min(px), max(px), min(py), max(py)))
            pts = []
        else:
            pts.append((x, y))
    return rects


@pytest.mark.notebook
def test_explorers_survive_html_export(quick_run):
    """The report's HTML pages (nbconvert) hold the explorers' data as plotly figures, with plotly.js inline (no
    CDN): 03's patch explorer has one slider step per explored val frame and, for a flagged patch, its box at the
    flag file's threshold; 01's frame browser has every explored frame's real − CAD residual."""
    import numpy as np

    from sim2real_kit.data.layout import DepthLayout
    from sim2real_kit.patches import load_flag_file

    write_index(quick_run)
    nb_dir = quick_run / "notebooks"

    html = (nb_dir / "03_discriminator.html").read_text()
    assert "* plotly.js v" in html and 'src="https://cdn.plot.ly' not in html  # the library itself is in the page
    found = [f for f in _plotly_figures(html) if (f["layout"].get("meta") or {}).get("kind") == "patch_explorer"]
    assert len(found) == 1
    layout = found[0]["layout"]
    meta, steps = layout["meta"], layout["sliders"][0]["steps"]
    flags = load_flag_file(quick_run / "disc" / "flags" / "val" / "flags.npz")
    scores, valid, boxes = flags.scores.numpy(), flags.valid.numpy(), flags.boxes.numpy()
    assert len(steps) == len(meta["frames"]) == min(len(flags.frame_ids), 16)
    assert meta["labels"] == [flags.frame_ids[i] for i in meta["frames"]] == [s["label"] for s in steps]
    assert meta["threshold"] == pytest.approx(flags.threshold)
    flagged = valid & (scores < flags.threshold)
    k = next(k for k, f in enumerate(meta["frames"]) if flagged[f].any())
    f = meta["frames"][k]
    trace = meta["box_traces"][f"{meta['threshold']:g}"][0]
    rects = _rectangles(steps[k]["args"][0]["x"][trace], steps[k]["args"][0]["y"][trace])
    assert len(rects) == int(flagged[f].sum())
    p = int(np.flatnonzero(flagged[f])[0])
    r0, r1, c0, c1 = (int(v) for v in boxes[p])
    assert (c0 - 0.5, c1 - 0.5, r0 - 0.5, r1 - 0.5) in rects
    assert meta["patches"][k] == int(np.argmin(np.where(valid[f], scores[f], np.inf)))
    active = layout["updatemenus"][0]["active"]
    assert layout["updatemenus"][0]["buttons"][active]["label"] == f"P(real) < {meta['threshold']:g}"

    html = (nb_dir / "01_data.html").read_text()
    found = [f for f in _plotly_figures(html) if (f["layout"].get("meta") or {}).get("kind") == "frame_browser"]
    assert len(found) == 1
    meta, steps = found[0]["layout"]["meta"], found[0]["layout"]["sliders"][0]["steps"]
    data = DepthLayout(quick_run / "data")
    refs = data.frames("val")
    assert len(steps) == min(len(refs), 16) and meta["labels"] == [str(refs[i]) for i in meta["frames"]]
    s = meta["stride"]
    for k in (0, len(steps) - 1):
        frame = data.read_frame(refs[meta["frames"][k]])
        cad, real = frame["cad"].astype(np.float64), frame["real"].astype(np.float64)
        expected = np.where((cad > 0) & (real > 0), np.round((real - cad) * 1000, 1), np.nan)[::s, ::s]
        shown = np.array([[np.nan if v is None else v for v in row] for row in steps[k]["args"][0]["z"][2]])
        np.testing.assert_allclose(shown, expected, atol=1e-6)
        assert np.isfinite(shown).sum() > 0.5 * shown.size
