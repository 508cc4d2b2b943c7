"""Tests of the benchmark (DESIGN §5) on a fake run folder: a plane layout, a run config and
Stage-I "samples" written as `simulate.sample_split` writes them (sim1 = real + 2 mm noise), with
nothing trained."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from conftest import make_plane_layout

from sim2real_kit.benchmark import (
    SIMULATORS,
    Column,
    Simulator,
    available_simulators,
    cad_incidence,
    cad_normals,
    compare_table,
    evaluate_run,
    markdown_table,
)
from sim2real_kit.camera import Camera
from sim2real_kit.config import load_config
from sim2real_kit.data.dataset import PairedDepthDataset
from sim2real_kit.depth import write_depth_png
from sim2real_kit.errors import ConfigError, Sim2RealError
from sim2real_kit.io import atomic_write_json
from sim2real_kit.run import SAMPLES_CAMERA, RunFolder, SampleSet, resolve_config

SIZE = 16
FAST = ["benchmark.num_points=20000"]  # DisCo points per side (the default 100k only costs time here)


def write_fake_samples(run_dir, cfg, layout, stage=1, split="val", noise_m=0.002, skip=(), seed=0):
    """What `simulate.sample_split` writes: <scene>/<frame>_{gt,scan,sim1..simK}.png, camera.json,
    samples.json; every sim_k = real + N(0, noise_m) on the real's valid pixels."""
    rng = np.random.default_rng(seed)
    ds = PairedDepthDataset.from_config(cfg, layout, split, train=False)
    out = RunFolder(run_dir).samples_dir(stage, split)
    Camera(*[float(v) for v in ds[0]["camera"]], cfg.data.size, cfg.data.size).save_json(out / SAMPLES_CAMERA)
    done = 0
    for item in ds:
        if f"{item['scene']}/{item['frame']}" in skip:
            continue
        cad, real = item["cad"][0].numpy(), item["real"][0].numpy()
        base = out / item["scene"] / item["frame"]
        write_depth_png(f"{base}_gt.png", cad)
        write_depth_png(f"{base}_scan.png", real)
        for k in range(1, stage + 1):
            sim = np.where(real > 0, real + rng.normal(0, noise_m, real.shape), 0).astype(np.float32)
            write_depth_png(f"{base}_sim{k}.png", sim)
        done += 1
    atomic_write_json(out / "samples.json", {"split": split, "stage": stage, "frames": done, "size": cfg.data.size})
    return out


def _evaluate(run_dir, *, overrides=(), **kw):
    """`evaluate_run` with the run's config resolved as the CLI does (`a.b=c` overrides, not saved)."""
    return evaluate_run(run_dir, resolve_config(run_dir, overrides=overrides, save=False), **kw)


def _fake_run(tmp_path, layout):
    """A run folder over `layout` with fake Stage-I samples of the val split: (run_dir, cfg, layout)."""
    cfg = load_config("tiny", overrides=[f"data.size={SIZE}", f"data.root={layout.root}"])
    run_dir = tmp_path / "run"
    RunFolder(run_dir).save_config(cfg)
    write_fake_samples(run_dir, cfg, layout, stage=1)
    return run_dir, cfg, layout


@pytest.fixture
def fake_run(tmp_path, plane_layout):
    return _fake_run(tmp_path, plane_layout)


def test_evaluate_run_on_fake_run(fake_run):
    from sim2real_kit.models.discriminator import PointNetDiscriminator

    run_dir, cfg, _ = fake_run
    torch.manual_seed(0)
    PointNetDiscriminator(hidden=(8, 16), head_hidden=(8,)).eval().save(run_dir / "disc" / "model.safetensors")
    names = ["cad", "random", "stage1", "real"]
    res = _evaluate(run_dir, fuse=True, downstream=False, seeds=1, simulators=names, progress=False, overrides=FAST)

    out = run_dir / "benchmark"
    for name in ("results.csv", "results.md", "summary.json", "figures/w1_mm.png", "figures/cd_l2_x1000.png"):
        assert (out / name).is_file(), name
    scene = res.summary["scenes"][0]
    assert {p.name for p in (out / "meshes").glob("*.ply")} == {
        f"{scene}_real.ply",
        f"{scene}_cad.ply",
        f"{scene}_stage1.ply",
    }

    real, cad, stage1 = res.row("real"), res.row("cad"), res.row("stage1")
    assert real["w1_mm"] == 0.0 and real["abs_rel"] == 0.0 and real["hole_gap_pct"] == 0.0
    assert real["cd_l2_x1000"] == pytest.approx(0.0, abs=1e-9)
    assert real["fscore_pct"] == pytest.approx(100.0) and real["miou_pct"] == pytest.approx(100.0)
    # sim1 = real + 2 mm noise: far closer to real than clean CAD is (the real frames carry 1 cm noise)
    assert cad["w1_mm"] > 5.0 > 1.0 > stage1["w1_mm"]
    assert cad["cd_l2_x1000"] > stage1["cd_l2_x1000"] and stage1["fscore_pct"] > cad["fscore_pct"]
    # CAD has no holes; the real frames lose their first row (1/16 of the CAD-valid pixels)
    assert cad["hole_all_pct"] == 0.0 and real["hole_all_pct"] == pytest.approx(100 / SIZE)
    assert cad["hole_gap_pct"] == pytest.approx(100 / SIZE)
    for name in names:
        assert 0.0 <= res.row(name)["disc_fake_pct"] <= 100.0
        assert math.isfinite(res.row(name)["view_mm"])
    assert cad["seed_spread_mm"] == 0.0 and math.isnan(res.row("random")["seed_spread_mm"])  # one seed: undefined

    md = (out / "results.md").read_text()
    table_lines = [line for line in md.splitlines() if line.startswith("| ") and "`" in line]
    assert len(table_lines) == len(names)
    assert "split val" in md and "3 frames" in md and "seeds [0]" in md
    assert "**" in md  # best per column in bold
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["simulator"] for r in rows] == names and all(r["seed"] == "0" for r in rows)
    summary = json.loads((out / "summary.json").read_text())  # strict JSON: NaN written as null
    assert summary["frames"] == 3 and summary["split"] == "val"
    assert summary["simulators"]["stage1"]["w1_mm"]["n"] == 1
    assert summary["simulators"]["real"]["w1_mm"]["mean"] == 0.0
    assert "stage1" in summary["best"]["w1_mm"]
    assert summary["best_bold"]["w1_mm"] == {"simulators": ["stage1"], "spread_tested": False}  # one seed
    assert "one seed: no spread" in md
    # the new depth keys; the plane layout has no instance ids: per-object columns empty, with the reason
    for key in ("w1_pooled_mm", "w1_edge0_2_mm", "w1_inc0_30_mm", "tail_pct", "tail_gap_pct", "hole_flat_gap_pct"):
        assert math.isfinite(stage1[key]), key
    assert real["tail_gap_pct"] == 0.0 and summary["reference"]["real"]["tail_pct"] == 0.0
    assert math.isnan(stage1["obj_miou_pct"]) and stage1["obj_count"] == 0
    assert "no instance ids (<frame>_inst.png) for 3 of 3 frames" in md


def test_stability_and_unavailable_simulators(fake_run):
    run_dir, _, _ = fake_run
    names = ["cad", "random", "stage1", "pix2pix", "direct"]
    res = _evaluate(
        run_dir, out=run_dir / "b2", fuse=False, downstream=False, seeds=2, simulators=names, progress=False
    )
    random = res.row("random")
    # RandomPerturbation: sigma 1 cm; the per-pixel std of 2 seeds averages sigma / sqrt(pi) = 5.64 mm
    assert random["seed_spread_mm"] == pytest.approx(10 / math.sqrt(math.pi), rel=0.15)
    assert random["w1_mm_n"] == 2 and random["w1_mm_std"] > 0
    assert res.row("cad")["w1_mm_n"] == 1  # deterministic: seed 0 only
    stage1 = res.row("stage1")  # no pipeline: only the saved sample
    assert stage1["w1_mm_n"] == 1 and "needs the pipeline" in stage1["note"] and math.isnan(stage1["seed_spread_mm"])
    assert "baselines/pix2pix" in res.row("pix2pix")["note"] and res.row("pix2pix")["w1_mm_n"] == 0
    assert "model.target=direct" in res.row("direct")["note"]
    assert math.isnan(res.row("cad")["miou_pct"])  # fuse=False
    md = res.markdown()
    assert md.count("skipped:") == 2


def test_available_and_default_simulators(fake_run):
    run_dir, cfg, _ = fake_run
    avail = available_simulators(run_dir)
    assert list(avail) == list(SIMULATORS)
    assert avail["cad"] is None and avail["stage1"] is None and avail["real"] is None
    assert "--stages 2" in avail["stage2"] and "cyclegan" in avail["cyclegan"]
    # default: cfg.benchmark.simulators (cad, random, physical, stage1, stage2) + real; stage2 is not there
    res = _evaluate(run_dir, fuse=False, downstream=False, seeds=1, progress=False)
    assert [e["simulator"] for e in res.table] == ["cad", "random", "physical", "stage1", "stage2", "real"]
    assert res.row("stage2")["note"].startswith("skipped: no Stage-2 samples")
    assert res.row("physical")["w1_mm"] < res.row("cad")["w1_mm"]  # Kinect-like noise is closer than clean CAD


def test_learned_baselines_are_trained_and_evaluated(fake_run):
    run_dir, _, _ = fake_run
    res = _evaluate(
        run_dir, fuse=False, downstream=False, seeds=2, simulators=["pix2pix", "cyclegan"], progress=False,
        overrides=["train.batch_size=2"], train_baselines=True, baseline_steps=1,
    )  # fmt: skip
    for kind in ("pix2pix", "cyclegan"):
        assert (run_dir / "baselines" / kind / "baseline.json").is_file()
        row = res.row(kind)
        assert math.isfinite(row["abs_rel"]) and row["w1_mm_n"] == 1  # deterministic generator: one seed
        assert row["seed_spread_mm"] == 0.0
    again = _evaluate(run_dir, fuse=False, downstream=False, seeds=1, progress=False)  # found without training
    assert {"pix2pix", "cyclegan"} <= {e["simulator"] for e in again.table}


def test_mismatched_frame_sets_raise(fake_run):
    run_dir, cfg, layout = fake_run
    write_fake_samples(run_dir, cfg, layout, stage=2, skip={"s01/002"})
    with pytest.raises(Sim2RealError, match=r"stage2 val samples lack 1 frames of stage1: s01/002"):
        _evaluate(run_dir, fuse=False, downstream=False, seeds=1, simulators=["stage1", "stage2"], progress=False)


def test_samples_of_another_split_raise(fake_run):
    run_dir, _, _ = fake_run
    meta = RunFolder(run_dir).samples_dir(1, "val") / "samples.json"
    meta.write_text(json.dumps({"split": "train", "stage": 1, "frames": 3, "size": SIZE}))
    with pytest.raises(Sim2RealError, match="samples of split 'train'") as err:
        _evaluate(run_dir, fuse=False, downstream=False, seeds=1, simulators=["stage1"], progress=False)
    assert "samples.json" in str(err.value)


def test_simulator_missing_frames_raises(fake_run):
    run_dir, _, _ = fake_run
    short = Simulator("short", run=lambda s, seed: s.cad[:2], stochastic=False)
    with pytest.raises(Sim2RealError, match=r"'short' returned 2 frames for 3: it misses s01/002"):
        _evaluate(run_dir, fuse=False, downstream=False, seeds=1, simulators=["cad", short], progress=False)


def test_all_holes_simulator_gives_nan_with_notes(fake_run):
    run_dir, _, _ = fake_run
    holes = Simulator("holes", run=lambda s, seed: np.zeros_like(s.cad), stochastic=False)
    res = _evaluate(
        run_dir, fuse=True, downstream=False, seeds=1, simulators=[holes, "real"], progress=False, overrides=FAST
    )
    row = res.row("holes")
    assert row["hole_all_pct"] == 100.0
    for key in ("w1_mm", "abs_rel", "miou_pct", "cd_l2_x1000", "fscore_pct"):
        assert math.isnan(row[key]), key
    assert "W1" in row["note"] and "produced no surface" in row["note"]
    assert res.row("real")["fscore_pct"] == pytest.approx(100.0)


def test_unknown_simulator_and_missing_config(fake_run, tmp_path):
    run_dir, _, _ = fake_run
    with pytest.raises(ConfigError, match="unknown simulator 'gigagan'"):
        _evaluate(run_dir, simulators=["gigagan"], progress=False)
    with pytest.raises(Sim2RealError, match="config.yaml"):
        _evaluate(tmp_path / "nowhere", progress=False)


def test_compare_table_and_markdown():
    rows = [
        {"simulator": "a", "seed": 0, "w1": 1.0, "f": 50.0, "note": ""},
        {"simulator": "a", "seed": 1, "w1": 3.0, "f": float("nan"), "note": "x"},
        {"simulator": "b", "seed": 0, "w1": 0.5, "f": 70.0, "note": ""},
        {"simulator": "real", "seed": 0, "w1": 0.0, "f": 100.0, "note": ""},
    ]
    table = compare_table(rows, ["w1", "f"])
    a = table[0]
    assert [t["simulator"] for t in table] == ["a", "b", "real"]
    assert a["w1"] == 2.0 and a["w1_std"] == pytest.approx(math.sqrt(2)) and a["w1_n"] == 2
    assert a["f"] == 50.0 and a["f_n"] == 1 and a["note"] == "x"
    md = markdown_table(table, [Column("w1", "W1 ↓", "lower"), ("f", "F ↑", "higher", 1)], header="run x")
    lines = md.splitlines()
    assert lines[0] == "run x"
    body = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ") and "---" not in line}
    assert "2.00 ± 1.41" in body["a"]
    assert "**0.50**" in body["b"] and "**70.0**" in body["b"]  # the reference row does not compete
    assert "**" not in body["real"] and "**" not in body["a"]


def test_cad_normals_of_a_tilted_plane():
    cam = Camera(20.0, 20.0, 16.0, 12.0, 32, 24)
    # plane through (0, 0, 2) with normal n: depth z = 2 / (n . ray)
    normal = np.array([0.0, -np.sin(0.5), -np.cos(0.5)])
    rays = cam.pixel_rays()
    depth = (-2 * normal[2] / -(rays @ normal)).astype(np.float32)
    normals = cad_normals(depth, cam)
    inner = normals[2:-2, 2:-2].reshape(-1, 3)
    assert np.allclose(np.abs(inner @ normal), 1.0, atol=1e-4)
    theta = cad_incidence(depth, cam)
    expected = np.arccos(np.abs(rays @ normal) / np.linalg.norm(rays, axis=-1))
    assert np.allclose(theta, expected, atol=1e-3)
    # a depth step does not tilt the normals beside it (one-sided differences)
    step = np.full((24, 32), 2.0, np.float32)
    step[:, 16:] = 3.0
    n = cad_normals(step, cam)
    assert np.allclose(np.abs(n[:, 15, 2]), np.abs(n[:, 10, 2]), atol=1e-3)


def test_downstream_is_wired_per_simulator(tmp_path, monkeypatch):
    """Each simulator's train-split output becomes an object set for `downstream.run_downstream` (faked
    here: the networks are its own tests' business); its rows are merged into the results."""
    from sim2real_kit import downstream
    from sim2real_kit.data.synth import synthesize

    layout = synthesize(tmp_path / "ds", scenes=3, frames=3, width=96, height=72, progress=False, val_fraction=0.34)
    cfg = load_config("tiny", overrides=["data.size=32", f"data.root={layout.root}"])
    run_dir = tmp_path / "run"
    RunFolder(run_dir).save_config(cfg)
    for split in ("val", "train", "benchmark"):  # the downstream task uses the benchmark split's samples
        write_fake_samples(run_dir, cfg, layout, stage=1, split=split)
    seen = {}

    def fake_run_downstream(train_sets, test, seeds, few_shot_k=0, *, real_train_objects=None, **kw):
        seen.update(train=dict(train_sets), test=test, real=real_train_objects, seeds=list(seeds), kw=kw)
        names = [*train_sets, "real"]
        return [
            {"simulator": n, "task": "classification", "setting": "zero-shot", "seed": s, "accuracy": 0.5 + 0.1 * s}
            for n in names
            for s in seeds
        ]

    monkeypatch.setattr(downstream, "run_downstream", fake_run_downstream)
    opaque = Simulator("opaque", run=lambda s, seed: s.real.copy(), stochastic=False)  # no train-split output
    res = _evaluate(
        run_dir, fuse=False, downstream=True, seeds=2, simulators=["cad", "random", "stage1", opaque, "real"],
        progress=False, overrides=["benchmark.downstream_steps=20"],
    )  # fmt: skip
    assert sorted(seen["train"]) == ["cad", "random", "stage1"]
    assert all(len(objs) > 0 for objs in seen["train"].values()) and len(seen["test"]) > 0 and len(seen["real"]) > 0
    assert seen["seeds"] == [0, 1] and seen["kw"]["steps"] == 20  # benchmark.downstream_steps
    assert "opaque: downstream: no output" in res.summary["downstream"]["note"]
    cad = res.row("cad")
    assert cad["ds_cls_acc_pct"] == pytest.approx(55.0) and cad["ds_cls_acc_pct_n"] == 2
    assert cad["w1_mm_n"] == 1  # depth metrics of a deterministic simulator: seed 0 only
    assert "down. cls acc" in res.markdown() and res.summary["downstream"]["summary"]
    assert (res.out_dir / "downstream.csv").is_file()


def test_downstream_without_instance_ids_leaves_a_note(fake_run):
    run_dir, _, _ = fake_run
    res = _evaluate(run_dir, fuse=False, downstream=True, seeds=1, simulators=["cad", "real"], progress=False)
    assert res.summary["downstream"]["note"].startswith("not run:")
    assert "ds_cls_acc_pct" not in res.row("cad")


def test_stage_seeds_beyond_the_saved_sample_are_resampled(fake_run):
    from sim2real_kit.models.denoiser import ControlledDenoiser
    from sim2real_kit.pipeline import Sim2RealPipeline

    run_dir, cfg, _ = fake_run
    small = [
        "model.block_out_channels=[8,16]", "model.attention_levels=[false,true]", "model.cross_attention_dim=8",
        "model.norm_num_groups=4",
    ]  # fmt: skip
    pipe_cfg = load_config("tiny", overrides=[f"data.size={SIZE}", *small])
    torch.manual_seed(0)
    Sim2RealPipeline.build(pipe_cfg, [ControlledDenoiser.from_config(pipe_cfg)]).save_pretrained(
        run_dir / "stage1" / "pipeline"
    )
    res = _evaluate(
        run_dir, fuse=False, downstream=False, seeds=2, simulators=["stage1"], progress=False,
        overrides=["sampling.steps=2"],
    )  # fmt: skip
    seed0, seed1 = [r for r in res.rows if r["simulator"] == "stage1"]
    assert seed0["w1_mm"] < 1.0  # the saved sample (real + 2 mm)
    assert seed1["w1_mm"] != seed0["w1_mm"] and math.isfinite(seed1["hole_all_pct"])  # an (untrained) re-sample
    assert res.row("stage1")["w1_mm_n"] == 2 and math.isfinite(res.row("stage1")["seed_spread_mm"])


# ---------------------------------------------------------------------- extension points (README, "Layout")
def test_a_new_simulator_is_a_simulator_object(fake_run):
    """Where to add a simulator: a `benchmark.Simulator` (`run` on the benchmark's frame set; `from_cad` also lets
    the downstream task run it on the train split), passed to `evaluate_run` or named in `make_simulator` +
    `SIMULATORS`. Its row gets every column of the table."""
    from scipy.ndimage import uniform_filter

    def blur(cad, camera, seed):  # a 3x3 box blur of the CAD: a deterministic toy simulator
        return (uniform_filter(np.asarray(cad), size=(1, 3, 3)) * (np.asarray(cad) > 0)).astype(np.float32)

    run_dir, _, _ = fake_run
    sim = Simulator("blur", run=lambda s, seed: blur(s.cad, s.camera, seed), stochastic=False, from_cad=blur)
    sim.label = "3x3 box blur"
    res = _evaluate(run_dir, fuse=False, downstream=False, seeds=1, simulators=["cad", sim, "real"], progress=False)
    row = res.row("blur")
    assert all(math.isfinite(row[k]) for k in ("w1_mm", "abs_rel", "hole_all_pct", "view_mm", "edge_mae_mm"))
    assert row["w1_mm"] != res.row("cad")["w1_mm"] and "3x3 box blur" in res.markdown()


@pytest.fixture
def fake_run_with_benchmark_split(tmp_path):
    return _fake_run(tmp_path, make_plane_layout(tmp_path / "ds", benchmark_scenes=1))


def test_every_column_is_measured(fake_run_with_benchmark_split):
    """Where to add a metric: compute it per simulator x seed in `benchmark/realism.py` (e.g. `depth_realism`) and
    give it a `Column` in `benchmark/tables.py`; this test fails for a column no step measures."""
    from sim2real_kit.benchmark import COLUMNS

    run_dir, _, _ = fake_run_with_benchmark_split
    res = _evaluate(
        run_dir, fuse=True, downstream=False, seeds=1, simulators=["cad", "stage1", "real"], progress=False,
        overrides=[*FAST, "benchmark.c2st_seeds=1", "benchmark.c2st_steps=5"],
    )  # fmt: skip
    measured = set(res.table[0])
    assert [c.key for c in COLUMNS if c.key not in measured] == []
    assert math.isfinite(res.row("stage1")["w1_mm"]) and math.isfinite(res.row("cad")["cd_l2_x1000"])
    assert 0.0 <= res.row("cad")["c2st_auc"] <= 1.0 and "real" not in [
        r["simulator"] for r in res.rows if "c2st_auc" in r
    ]


def test_two_sample_test_needs_a_benchmark_split(fake_run):
    """Without scenes that no simulator trained on, the realism test is not run (no silent AUC on train frames)."""
    run_dir, _, _ = fake_run
    res = _evaluate(
        run_dir, fuse=False, downstream=False, seeds=1, simulators=["cad", "real"], progress=False,
        overrides=[*FAST, "benchmark.c2st_seeds=1", "benchmark.c2st_steps=5"],
    )  # fmt: skip
    assert "c2st_auc" not in res.row("cad") or not math.isfinite(res.row("cad")["c2st_auc"])
    assert "no benchmark split" in json.dumps(res.summary)


# ---------------------------------------------------------------------- metrics that cannot be gamed
BLOB_KEYS = (  # every depth metric the blob must not win: matched W1, each bin, the tail gap, the hole gaps
    "w1_mm",
    "w1_edge0_2_mm",
    "w1_edge2_5_mm",
    "w1_edge5_mm",
    "w1_inc0_30_mm",
    "w1_inc30_60_mm",
    "w1_inc60_90_mm",
    "tail_gap_pct",
    "hole_gap_pct",
    "hole_edge_gap_pct",
    "hole_flat_gap_pct",
)


def _blob_world(seed=0, frames=2, size=96):
    """A CAD frame (a wall at 3.5 m, a floor seen at grazing incidence, a panel tilted 50°, a box at 1.3 m),
    a sensor whose noise grows at CAD edges and at grazing incidence, with holes and flying pixels at edges
    and holes at grazing incidence; `real` and `good` are two independent captures of that law, `blob` the
    CAD plus a smooth bump reaching +400 mm plus 2 mm noise (no hole), `noise_wrong` good's deviations
    shuffled over the frame (the same values, placed uniformly)."""
    from scipy.ndimage import maximum_filter

    from sim2real_kit.data.layout import FrameRef
    from sim2real_kit.geometry import cad_incidence
    from sim2real_kit.metrics import edge_distance
    from sim2real_kit.run import SampleSet

    cam = Camera(70.0, 70.0, size / 2, size / 2, size, size)
    rays = cam.pixel_rays()

    def plane(normal, point):
        n = np.asarray(normal, float) / np.linalg.norm(normal)
        with np.errstate(divide="ignore"):
            z = (n @ np.asarray(point, float)) / (rays @ n)
        return np.where(z > 0, z, np.inf)

    v, u = np.mgrid[0:size, 0:size]
    cad = np.minimum(plane([0, 0, -1], [0, 0, 3.5]), plane([0, -1, 0], [0, 1.2, 0]))  # wall, floor (y down)
    panel = (u >= 8) & (u < 40) & (v >= 16) & (v < 64)
    tilt = np.radians(50)
    cad = np.where(panel, np.minimum(cad, plane([np.sin(tilt), 0, -np.cos(tilt)], [-0.5, 0, 1.9])), cad)
    cad = np.where((u >= 58) & (u < 86) & (v >= 28) & (v < 56), 1.3, cad).astype(np.float32)
    dist, inc = edge_distance(cad), np.degrees(cad_incidence(cad, cam))
    sigma = 0.002 + 0.012 * np.exp(-dist / 1.5) + 0.003 * np.tan(np.radians(np.minimum(inc, 80)))
    behind = maximum_filter(cad, size=5)  # a flying pixel takes the far side's depth
    rng = np.random.default_rng(seed)

    def capture():
        depth = cad + rng.normal(0, 1, cad.shape) * sigma
        near = dist <= 1
        hole = (near & (rng.random(cad.shape) < 0.4)) | ((inc > 58) & (rng.random(cad.shape) < 0.3))
        depth = np.where(near & ~hole & (rng.random(cad.shape) < 0.15), behind, depth)
        return np.where(hole, 0.0, depth).astype(np.float32)

    real = np.stack([capture() for _ in range(frames)])
    good = np.stack([capture() for _ in range(frames)])
    wrong = []
    for g in good:
        dev = np.where(g > 0, g - cad, np.nan).ravel()[rng.permutation(g.size)].reshape(g.shape)
        wrong.append(np.where(np.isnan(dev), 0.0, cad + np.nan_to_num(dev)).astype(np.float32))
    bump = 0.4 * np.exp(-(((u - 66) / 14.0) ** 2 + ((v - 40) / 14.0) ** 2))
    blob = np.stack([cad + bump + rng.normal(0, 0.002, cad.shape) for _ in range(frames)]).astype(np.float32)
    cads = np.stack([cad] * frames)
    refs = [FrameRef("s", f"{i:03d}") for i in range(frames)]
    samples = SampleSet(refs, cads, real, {}, cam, np.stack([np.eye(4)] * frames))
    return samples, {"cad": cads, "good": good, "blob": blob, "noise_wrong": np.stack(wrong), "real": real}


def test_a_smooth_blob_cannot_win_the_depth_metrics():
    """GPU run 1: a smooth +400 mm blob scored well on the pooled W1. On matched pixels, per region, in the tail
    and in the hole gaps, it is never the best of {clean CAD, a capture of the real law, the blob}."""
    from sim2real_kit.benchmark import depth_realism
    from sim2real_kit.metrics import depth_edges, hole_rates

    samples, sims = _blob_world()
    edges = depth_edges(samples.cad, 0.05, 1)
    holes = hole_rates(samples.cad, samples.real, edge_mask=edges)
    real_holes = {k: 100 * holes[k] for k in ("all", "edge", "flat")}
    rows = {name: depth_realism(d, samples, edges, real_holes)[0] for name, d in sims.items()}
    assert rows["real"]["tail_real_pct"] > 0 and real_holes["flat"] > 0  # the real law has a tail and flat holes
    for key in BLOB_KEYS:
        cad, good, blob = rows["cad"][key], rows["good"][key], rows["blob"][key]
        assert all(math.isfinite(v) for v in (cad, good, blob)), key
        assert blob > min(cad, good), f"{key}: the blob is the best ({cad=}, {good=}, {blob=})"
        assert good < blob, f"{key}: the blob beats a capture of the real law ({good=}, {blob=})"
        assert rows["real"][key] == 0.0, key
    assert rows["blob"]["w1_mm"] > 3 * rows["cad"]["w1_mm"]  # the bump's pixels stay in: |400 mm| < 0.5 m
    # the same deviations at the wrong places: the pooled W1 cannot tell, the region bins and hole gaps can
    good, wrong = rows["good"], rows["noise_wrong"]
    assert wrong["w1_pooled_mm"] == pytest.approx(good["w1_pooled_mm"], rel=1e-3)
    for key in ("w1_edge0_2_mm", "w1_edge5_mm", "w1_inc60_90_mm", "hole_edge_gap_pct", "hole_flat_gap_pct"):
        assert wrong[key] > 5 * good[key], key


# ---------------------------------------------------------------------- per-object 3D
def test_object_masks_come_from_cad_instance_ids():
    from sim2real_kit.benchmark import object_realism, object_references
    from sim2real_kit.config import BenchmarkConfig
    from sim2real_kit.data.layout import FrameRef
    from sim2real_kit.run import SampleSet

    cam = Camera(16.0, 16.0, 8.0, 8.0, 16, 16)
    cad = np.full((1, 16, 16), 2.0, np.float32)
    cad[0, 8:, :8] = 1.5  # object 2 stands in front
    inst = np.full((1, 16, 16), 100)  # room surface: never an object
    inst[0, :8] = 1
    inst[0, 8:, :8] = 2
    inst[0, 15, 14:] = 3  # 2 pixels: too few points
    real = cad + np.random.default_rng(0).normal(0, 0.005, cad.shape).astype(np.float32)
    real[0, :4] = 0.0  # the real capture loses half of object 1: its mask stays the CAD's
    samples = SampleSet([FrameRef("s", "000")], cad, real, {}, cam, np.eye(4)[None])
    objects, notes = object_references(samples, inst, {"s": [0]})
    assert [o.key for o in objects] == ["s/1", "s/2"] and "1 objects with < 50" in notes[0]
    one = objects[0]
    assert one.masks[0].sum() == 128 and len(one.cad) == 128 and len(one.real) == 64
    bcfg = BenchmarkConfig()
    means, per_object, notes = object_realism(real, samples, objects, bcfg, 5000)
    assert means["obj_count"] == 2 and notes == []
    assert means["obj_miou_pct"] == pytest.approx(100.0) and means["obj_cd_l2_x1000"] == pytest.approx(0.0)
    sim = cad.copy()
    sim[0, 8:, :8] = 0.0  # no point on object 2
    means, per_object, notes = object_realism(sim, samples, objects, bcfg, 5000)
    assert per_object["s/2"] == {"obj_miou_pct": 0.0, "obj_cd_l2_x1000": pytest.approx(math.nan, nan_ok=True),
                                 "obj_fscore_pct": 0.0}  # fmt: skip
    assert math.isnan(means["obj_cd_l2_x1000"]) and "no simulated point on 1 objects (s/2)" in notes[0]
    assert means["obj_fscore_pct"] == pytest.approx(per_object["s/1"]["obj_fscore_pct"] / 2)


def test_per_object_3d_on_a_layout_with_instance_ids(tmp_path):
    from sim2real_kit.data.synth import synthesize

    layout = synthesize(tmp_path / "ds", scenes=3, frames=3, width=96, height=72, progress=False, val_fraction=0.34)
    cfg = load_config("tiny", overrides=["data.size=32", f"data.root={layout.root}"])
    run_dir = tmp_path / "run"
    RunFolder(run_dir).save_config(cfg)
    write_fake_samples(run_dir, cfg, layout, stage=1, split="val")
    res = _evaluate(
        run_dir, fuse=True, downstream=False, seeds=1, simulators=["cad", "stage1", "real"], progress=False,
        overrides=FAST,
    )  # fmt: skip
    objects = res.summary["reference"]["objects"]
    assert objects["count"] > 0 and all(int(k.split("/")[1]) < 100 for k in objects["keys"])
    real, cad, stage1 = res.row("real"), res.row("cad"), res.row("stage1")
    assert real["obj_count"] == stage1["obj_count"] == objects["count"]
    assert real["obj_miou_pct"] == pytest.approx(100.0) and real["obj_fscore_pct"] == pytest.approx(100.0)
    assert real["obj_cd_l2_x1000"] == pytest.approx(0.0, abs=1e-9)
    # sim1 = real + 2 mm: far nearer the real objects than clean CAD
    assert stage1["obj_cd_l2_x1000"] < cad["obj_cd_l2_x1000"] and stage1["obj_fscore_pct"] > cad["obj_fscore_pct"]
    scene = res.summary["scenes"][0]
    per_object = res.summary["per_scene_3d"]["stage1"]["0"][scene]["objects"]
    assert len(per_object) == objects["count"] and "miou_pct" in res.summary["per_scene_3d"]["stage1"]["0"][scene]
    assert f"DisCo metrics of {objects['count']} objects" in res.markdown()
    # the procedural sensor's ground-truth effects: a row per effect in results.md and the heatmap
    effects = res.summary["effect_reproduction"]
    assert set(effects) == {"cad", "stage1", "real"} and effects["real"]["effects"]
    md = (res.out_dir / "results.md").read_text()
    empty = [name for name, m in effects["real"]["effects"].items() if not m["n_pixels"]]
    for name, m in effects["real"]["effects"].items():
        assert (f"| {name} ({m['kind']}) |" in md) == bool(m["n_pixels"]), name  # no pixel: named, not a row
        if m["kind"] == "noise" and m["n_pixels"]:
            assert effects["cad"]["effects"][name]["std_ratio"] == 0.0  # clean CAD: none of the noise
    assert not empty or f"(no pixel of these effects in the data: {', '.join(empty)})" in md
    assert (res.out_dir / "figures" / "effects.png").stat().st_size > 1000


# ---------------------------------------------------------------------- the physical baseline at native resolution
def object_only_layout(root, frames=3):
    """LASA-sized frames (256x192, fx 211.9) of two boxes on no CAD (0), as LASA's object-only CAD."""
    from sim2real_kit.camera import look_at
    from sim2real_kit.data.layout import DepthLayout, FrameRef

    cam = Camera.lasa()
    lay = DepthLayout.create(root, cam, meta={"source": "test"})
    refs = []
    for f in range(frames):
        cad = np.zeros((cam.height, cam.width), np.float32)
        cad[40:150, 60 + 5 * f : 160 + 5 * f] = 1.5 + 0.1 * f
        cad[90:180, 140:230] = 2.5  # a second box behind: a depth step between objects
        cad[40:150, 60 + 5 * f : 160 + 5 * f] = 1.5 + 0.1 * f
        ref = FrameRef("s00" if f < 2 else "s01", f"{f:03d}")
        lay.write_frame(ref, cad, cad, look_at([0, -3, 1.5], [0, 0, 1.0]))
        refs.append(ref)
    lay.write_split("train", refs[:2])
    lay.write_split("val", refs[2:])
    return lay


def test_physical_baseline_runs_at_the_sensors_native_resolution(tmp_path):
    """Nguyen's lateral sigma (0.8 Kinect px = 0.29 px at 256 px) rounds away on a 64 px crop: no holes there. At
    the native resolution it shifts edge pixels onto the background: holes at the edges; the benchmark's output
    is exactly the evaluation crop / resize of that native capture."""
    from sim2real_kit.benchmark import make_simulator, physical_native
    from sim2real_kit.benchmark.simulators import _layout_cad, _physical_from_cad
    from sim2real_kit.data.dataset import crop_resize, eval_box
    from sim2real_kit.metrics import depth_edges

    lay = object_only_layout(tmp_path / "ds")
    cfg = load_config("tiny", overrides=[f"data.root={lay.root}"])  # 64 px from the 192 px centre crop
    RunFolder(tmp_path / "run").save_config(cfg)
    sim = make_simulator("physical", tmp_path / "run", cfg)
    refs = lay.frames("train") + lay.frames("val")
    cad, cam = _layout_cad(lay, refs, 64, 0)
    native = sim.from_layout(lay, refs, 64, 0, 0)
    small = _physical_from_cad(cad, cam, 0, "nguyen2012")  # the old way: on the model-size crops
    box = eval_box(lay.camera, 0)
    for i, ref in enumerate(refs):  # exactly the crop / resize of the native capture
        np.testing.assert_array_equal(native[i], crop_resize(physical_native(lay, ref, 0, "nguyen2012"), box, 64))
    edges = depth_edges(cad, 0.05, 1)
    valid = cad > 0

    def holes(depth, where):
        return 100 * float(((depth == 0) & valid & where).sum() / (valid & where).sum())

    assert holes(small, valid) == 0.0 and holes(native, edges) > 0.2  # holes at edges at native resolution only
    assert holes(native, valid & ~edges) < 0.5 * holes(native, edges)
    # the benchmark's run: the same frames, the same output
    samples = SampleSet(refs, cad, cad, {}, cam, np.stack([lay.read_pose(r) for r in refs]))
    np.testing.assert_array_equal(sim.run(samples, 0), native)
    with pytest.raises(Sim2RealError, match="not the evaluation crops"):
        sim.run(SampleSet(refs, cad + 0.01, cad, {}, cam, samples.poses), 0)
    print(f"physical holes: model size {holes(small, valid):.2f} % -> native {holes(native, valid):.2f} % "
          f"(edges {holes(native, edges):.2f} %)")  # fmt: skip
