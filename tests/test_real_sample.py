"""The real-sensor track (`sim2real_kit.real_sample`) on the shipped YCB-Video sample: import once per
module into a tmp run folder, physical baselines against the real sensor on object pixels, the held-out
object really out of Stage-I's loss, a few training steps, the whole evaluation at toy sizes, bad input."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL
from scipy.ndimage import binary_dilation

from sim2real_kit import real_sample as rs
from sim2real_kit.camera import Camera
from sim2real_kit.config import load_config
from sim2real_kit.data.convert import REPORT_NAME
from sim2real_kit.data.layout import FrameRef
from sim2real_kit.errors import ConfigError, MissingArtifactError, Sim2RealError
from sim2real_kit.run import RunFolder, resolve_config

pytest.importorskip("open3d")
pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 16  # crop / tile side of the toy model (px)
TOY = [*TINY_MODEL, f"data.size={SIZE}", "train.batch_size=4", "train.log_every=5", "train.ckpt_every=1000",
       "sampling.steps=2", "sampling.batch_size=64"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder holding the imported sample (imported once for the module)."""
    run_dir = tmp_path_factory.mktemp("real_run")
    rs.import_real_sample(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def frames(run):
    return rs.load_frames(rs.import_real_sample(run))


@pytest.fixture(scope="module")
def toy_cfg():
    return load_config("tiny", None, TOY)


# ---------------------------------------------------------------------- import
def test_import_is_reused_and_repaired(run, tmp_path):
    data = RunFolder(run).real_sample_dir / "data"
    stamp = (data / "dataset.yaml").stat().st_mtime_ns
    lay = rs.import_real_sample(run)
    assert (data / "dataset.yaml").stat().st_mtime_ns == stamp  # complete import: reused as is
    assert lay.depth_unit_m == pytest.approx(1e-4) and len(lay.frames("train")) + len(lay.frames("val")) == 5
    # an incomplete import (no report) of another run is imported again
    broken = tmp_path / "run2"
    rs.import_real_sample(broken)
    (RunFolder(broken).real_sample_dir / "data" / REPORT_NAME).unlink()
    rs.import_real_sample(broken)
    assert (RunFolder(broken).real_sample_dir / "data" / REPORT_NAME).is_file()


def test_sample_path_resolves_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # papermill runs notebooks in notebooks/: the default still finds the sample
    assert (rs.resolve_sample() / "image_sets" / "classes.txt").is_file()
    with pytest.raises(MissingArtifactError, match="no_such_sample"):
        rs.resolve_sample("no_such_sample")


# ---------------------------------------------------------------------- the real sensor and the baselines
def test_sample_summary_numbers(frames):
    s = rs.sample_summary(frames)
    assert s["frames"] == 5 and s["object_px"] > 250_000
    assert 0.5 < s["median_abs_mm"] < 2.0  # the importer's CAD fits the Xtion to ~0.9 mm
    assert s["hole_rate_edge"] > 3 * s["hole_rate_flat"] > 0  # the sensor loses data at silhouettes
    assert s["residual_mean_abs_edge_mm"] > 2 * s["residual_mean_abs_flat_mm"]
    assert 1.0 < s["w1_cad_vs_real_mm"] < 3.0


def test_physical_baseline_statistics(frames, toy_cfg):
    from sim2real_kit.real_sample.measure import _Region

    region = _Region.of(frames, frames.object_mask(), 0.05, 1)
    sims = rs.baseline_simulators(toy_cfg)
    assert set(sims) == {"cad", "random", "physical", "physical_redwood"}
    rows = {
        name: rs.region_metrics(sim.from_cad(frames.cad, frames.camera, 0), region)[0] for name, sim in sims.items()
    }
    real, _ = rs.region_metrics(frames.real, region)
    assert real["w1_mm"] == 0.0 and real["hole_gap_pct"] == 0.0  # the real sensor against itself
    assert all(r["w1_mm"] > 0 for r in rows.values())
    # W1 of a point mass at 0 to a distribution = its mean |value|: clean CAD's W1 = the real mean |residual|
    assert rows["cad"]["w1_mm"] == pytest.approx(real["abs_mean_mm"], rel=1e-6)
    assert rows["cad"]["hole_all_pct"] == 0.0 and rows["cad"]["abs_p90_mm"] == 0.0
    # Kinect v1 noise (a PrimeSense sensor like the Xtion) is nearer the Xtion than 1 cm Gaussian noise
    assert rows["physical"]["w1_mm"] < rows["random"]["w1_mm"]
    assert 5.0 < rows["random"]["res_std_mm"] < 15.0  # 1 cm sigma, minus the clipped tails
    assert rows["physical"]["hole_edge_pct"] > rows["physical"]["hole_flat_pct"]  # lateral noise at silhouettes


# ---------------------------------------------------------------------- held-out object
def test_heldout_pixels_never_reach_the_loss(frames, toy_cfg):
    from sim2real_kit.models.codec import build_codec
    from sim2real_kit.models.denoiser import make_scheduler
    from sim2real_kit.stage1 import StageModel, denoising_loss

    held = rs.resolve_holdout(frames, "mug")
    ds = rs.heldout_dataset(frames, toy_cfg, held)
    f = 0
    near_loss = binary_dilation(ds.maps[f, 5] > 0, iterations=SIZE // 4)
    ys, xs = np.nonzero(frames.object_mask(held)[f] & near_loss)  # mug pixels beside another object's
    top, left = int(ys[len(ys) // 2]) - SIZE // 2, int(xs[len(xs) // 2]) - SIZE // 2  # a window across the border
    item = ds.crop(f, left, top)
    assert 0 < item["heldout"].mean() < 1 and (item["mask"] > 0).any()
    assert not (item["mask"][item["heldout"] > 0] > 0).any()  # weight 0 on every held-out pixel
    assert (item["target"][item["heldout"] > 0] == 0).all()  # CAD-only maps there: zero residual
    # no training item comes from the real depth of the held-out object
    changed = rs.RealFrames(**{**frames.__dict__, "real": np.where(frames.instance == held, 0.3, frames.real)})
    other = rs.HeldOutCrops(changed, _encoder(frames, toy_cfg), held, SIZE, seed=toy_cfg.seed)
    assert np.array_equal(other.maps, rs.HeldOutCrops(frames, _encoder(frames, toy_cfg), held, SIZE).maps)
    # the Stage-I loss of a batch ignores the held-out pixels. A pixel-local denoiser, because a UNet
    # spreads the noisy input x_t (which holds the target at every pixel) to the loss pixels around: that
    # is why the held-out target is the CAD-only zero residual above, not the real one under weight 0
    batch = {k: torch.stack([ds.crop(f, left, top)[k], ds[1][k]]) for k in ("cad_n", "target", "mask", "heldout")}
    codec, scheduler = build_codec(toy_cfg), make_scheduler(toy_cfg)
    model, loss_fn = StageModel(codec, _PixelLocal()), denoising_loss(scheduler, use_prev=False, reweight=False)
    with torch.no_grad():
        base = loss_fn(model, batch, torch.Generator().manual_seed(3))
        same = loss_fn(model, {**batch, "target": batch["target"] + batch["heldout"]}, torch.Generator().manual_seed(3))
        seen = loss_fn(model, {**batch, "target": batch["target"] + (1 - batch["heldout"])},
                       torch.Generator().manual_seed(3))  # fmt: skip
    assert float(same) == pytest.approx(float(base), rel=1e-6)
    assert float(seen) > float(base) + 0.1  # the same change on loss pixels does count


class _PixelLocal(torch.nn.Module):
    """A denoiser whose output at a pixel depends on that pixel only."""

    def forward(self, noisy, timesteps, condition):
        return 0.5 * noisy + 0.1 * condition


def _encoder(frames, cfg):
    from sim2real_kit.data.dataset import PairedDepthDataset
    from sim2real_kit.data.layout import DepthLayout

    return PairedDepthDataset.from_config(cfg, DepthLayout(frames.root), "train", train=False)


def test_holes_model_crops_carry_the_validity_channel_and_learn_holes(frames, tmp_path):
    """`data.holes: model` on the real sample (issue 20): target and mask have the validity channel beside the
    residual (+1 where the Xtion returned depth, -1 where not; weight where the CAD is valid), the held-out
    object's weights are 0 in both channels, and the few-shot Stage-I trains and samples with it."""
    cfg = load_config("tiny", None, [*TOY, "data.holes=model", "model.validity=channel", "train.lr=0.002"])
    held = rs.resolve_holdout(frames, "mug")
    ds = rs.heldout_dataset(frames, cfg, held)
    item = ds[0]
    assert item["target"].shape == (2, SIZE, SIZE) and item["mask"].shape == (2, SIZE, SIZE)
    assert item["cad_n"].shape == (1, SIZE, SIZE) and item["heldout"].shape == (1, SIZE, SIZE)
    f = 0
    ys, xs = np.nonzero(frames.object_mask(held)[f])
    top, left = int(ys[len(ys) // 2]) - SIZE // 2, int(xs[len(xs) // 2]) - SIZE // 2
    crop = ds.crop(f, left, top)
    on_held = crop["heldout"][0] > 0
    assert on_held.any() and not (crop["mask"][:, on_held] > 0).any()  # both weights 0 on the held-out object
    # the validity target is the real capture's: -1 on the seen objects' holes, +1 where it returned depth
    seen = (frames.instance > 0) & (frames.instance != held) & (frames.cad > 0)
    hole = seen & (frames.real <= 0)
    validity = ds.maps[:, ds.channels["target"][1]]
    assert hole.any() and (validity[hole] == -1).all() and (validity[seen & (frames.real > 0)] == 1).all()
    pipe, _ = rs.train_heldout_stage1(frames, cfg, held, tmp_path / "s1", steps=10)
    depth = rs.simulate_tiles(pipe, frames, frames.object_mask(held) & (np.arange(5) == 0)[:, None, None], seed=0)
    assert depth.shape == frames.cad.shape and np.isfinite(depth).all() and (depth >= 0).all()


def test_crops_are_centred_on_loss_pixels(frames, toy_cfg):
    ds = rs.heldout_dataset(frames, toy_cfg, 21)
    for i in range(20):
        f, left, top, size = ds.box(i)
        assert 0 <= left <= 640 - size and 0 <= top <= 480 - size
        assert ds[i]["mask"].sum() > 0
    boxes = [ds.box(i) for i in range(8)]
    ds.set_epoch(1)
    assert [ds.box(i) for i in range(8)] != boxes  # a new epoch draws new crops
    ds.set_epoch(0)
    assert [ds.box(i) for i in range(8)] == boxes  # (seed, epoch, index) decide: resumable


def test_target_std_sets_the_residual_scale(frames):
    if not hasattr(load_config("tiny").model, "target_std"):
        pytest.skip("config has no model.target_std")
    cfg = load_config("tiny", None, [*TOY, "model.target_std=0.5"])
    ds = rs.heldout_dataset(frames, cfg, 21)
    assert cfg.model.residual_scale == pytest.approx(ds.residual_scale) and ds.residual_scale > 10
    t = ds.maps[:, 4][ds.maps[:, 5] > 0]
    assert float(t.std()) == pytest.approx(0.5, rel=1e-3)


def test_few_steps_lower_the_loss_and_are_reused(frames, toy_cfg, tmp_path):
    cfg = load_config("tiny", None, [*TOY, "train.lr=0.002"])
    pipe, summary = rs.train_heldout_stage1(frames, cfg, 14, tmp_path / "s1", steps=30)
    losses = np.genfromtxt(tmp_path / "s1" / "losses.csv", delimiter=",", names=True)["loss"]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    assert not summary["reused"]
    _, again = rs.train_heldout_stage1(frames, cfg, 14, tmp_path / "s1", steps=30)
    assert again["reused"]  # same settings: loaded, not retrained
    held = frames.object_mask(14)
    depth = rs.simulate_tiles(pipe, frames, held & (np.arange(5) == 0)[:, None, None], seed=0)
    assert depth.shape == frames.cad.shape and (depth[0][held[0]] > 0).mean() > 0.9
    assert not depth[1:].any()  # only frame 0 was asked for


def test_tile_boxes_cover_the_region():
    region = np.zeros((48, 40), bool)
    region[5, 3] = region[47, 39] = True
    boxes = rs.tile_boxes(region, 16)
    assert boxes == [(0, 0), (24, 32)]  # the last column / row of tiles ends at the frame's border


# ---------------------------------------------------------------------- the whole section
def test_evaluate_real_sample_writes_the_table(run):
    cfg = resolve_config(run, "tiny", overrides=TOY, quick=True, save=False)
    result = rs.evaluate_real_sample(run, cfg, holdout="mug", steps=4, seeds=1, physics_prior=True, progress=False)
    assert math.isfinite(result.row("heldout", "stage1_physics")["w1_mm"])  # physics + learned beside the others
    for name in ("results.csv", "results.md", "summary.json", "figures/w1_heldout.png", "figures/heldout_panels.png"):
        assert result.paths[name].is_file(), name
    assert {(e["region"], e["simulator"]) for e in result.table} >= {
        ("objects", "physical"), ("heldout", "stage1"), ("heldout", "real"), ("heldout", "cad")
    }  # fmt: skip
    for region in ("objects", "heldout", "seen"):
        assert result.row(region, "real")["w1_mm"] == 0.0
    assert math.isfinite(result.row("heldout", "stage1")["w1_mm"])
    summary = json.loads(result.paths["summary.json"].read_text())
    assert summary["holdout"]["name"] == "025_mug" and summary["stage1"]["steps"] == 4
    assert summary["stage1"]["native_mode"] == "tiles" and "px tiles covering" in result.markdown()
    assert summary["w1_mm"]["objects"]["cad"] > summary["w1_mm"]["objects"]["real"] == 0
    assert "025_mug" in result.markdown() and "Few-shot" in result.markdown()


def test_native_mode_full_reaches_the_real_sample_section(run, tmp_path, monkeypatch):
    """`sampling.native_mode=full` runs the held-out Stage-I on one window per frame (`tiling.simulate_full`, one
    call per seed on the 640 x 480 frames) instead of tiles; the summary and results.md say which mode ran (the
    tiles default: `test_evaluate_real_sample_writes_the_table`)."""
    import sim2real_kit.real_sample.fewshot as fewshot

    calls = []
    whole = fewshot.simulate_full
    monkeypatch.setattr(fewshot, "simulate_full", lambda *a, **k: calls.append(a[1].shape) or whole(*a, **k))
    cfg = resolve_config(run, "tiny", overrides=[*TOY, "sampling.native_mode=full"], quick=True, save=False)
    out = rs.evaluate_real_sample(run, cfg, holdout="mug", steps=4, seeds=1, out=tmp_path / "full", progress=False)
    assert calls == [(5, 480, 640)]
    assert json.loads(out.paths["summary.json"].read_text())["stage1"]["native_mode"] == "full"
    assert (
        "one window per frame around the held-out object, in one pass" in out.markdown()
        and "px tiles" not in out.markdown()
    )
    assert math.isfinite(out.row("heldout", "stage1")["w1_mm"])
    with pytest.raises(ConfigError, match="native_mode"):
        load_config("tiny", None, ["sampling.native_mode=whole"])


def test_bad_holdout_is_named(frames, run):
    with pytest.raises(ConfigError, match=r"held-out object 99 .*8 \(009_gelatin_box\)"):
        rs.resolve_holdout(frames, 99)
    with pytest.raises(Sim2RealError, match="'banana'"):
        cfg = resolve_config(run, "tiny", overrides=TOY, quick=True, save=False)
        rs.evaluate_real_sample(run, cfg, holdout="banana", steps=1, seeds=1, progress=False)
    assert rs.resolve_holdout(frames, "025_mug") == rs.resolve_holdout(frames, "mug") == 14
    assert rs.resolve_holdout(frames) == 21  # default: the object with the most pixels (foam brick)


def test_bad_sample_folder_is_named(tmp_path):
    empty = tmp_path / "not_ycbv"
    empty.mkdir()
    with pytest.raises(MissingArtifactError, match="not_ycbv"):
        rs.import_real_sample(tmp_path / "run", src=os.fspath(empty))


def test_cli_names_a_bad_holdout(run, capsys):
    from sim2real_kit.cli import main

    assert main(["evaluate-real", "--run", str(run), "--holdout", "banana", "--no-stage1"]) == 2
    assert "'banana'" in capsys.readouterr().err


# ---------------------------------------------------------------------- tiles without seams (issue 23)
class _TileOffsetPipe:
    """A stand-in pipeline whose every tile is the CAD + 2 mm noise + a constant offset of its own (±10 mm):
    what independent tiles of a diffusion model look like at their borders, in the worst case."""

    def __init__(self, size):
        self.config = type("C", (), {"size": size})()

    def __call__(self, tiles, num_inference_steps=None, eta=0.0, generator=None, **kw):
        rng = np.random.default_rng(0)
        offsets = rng.choice([-0.01, 0.01], size=len(tiles))[:, None, None]
        depth = tiles + offsets + rng.normal(0, 0.002, tiles.shape)
        depth[tiles <= 0] = 0
        return type("O", (), {"depth": depth.astype(np.float32)})()


def _plane_frames(H=48, W=64):
    cad = np.full((1, H, W), 1.5, np.float32)
    cad[0, :, W // 2 :] = 1.8
    return rs.RealFrames(
        [FrameRef("a", "0")], cad, cad.copy(), np.ones((1, H, W), np.int32), Camera(50, 50, W / 2, H / 2, W, H),
        np.eye(4)[None], {1: "x"}, Path("."),
    )  # fmt: skip


def test_blended_tiles_show_no_seams_where_the_plain_grid_does():
    frames, pipe = _plane_frames(), _TileOffsetPipe(16)
    region = np.ones(frames.cad.shape, bool)
    plain = rs.simulate_tiles(pipe, frames, region, seed=0, overlap=0)
    blended = rs.simulate_tiles(pipe, frames, region, seed=0)  # default overlap: a quarter of the tile
    grid = [(0, x, y) for x, y in rs.tile_boxes(region[0], 16)]  # the plain grid's borders
    steps = [(0, x, y) for x, y in rs.tile_boxes(region[0], 16, 12)]
    ratio_plain = rs.seam_ratio(plain - frames.cad, grid, 16)
    ratio_blended = rs.seam_ratio(blended - frames.cad, steps, 16)
    wide = rs.simulate_tiles(pipe, frames, region, seed=0, overlap=8)
    ratio_wide = rs.seam_ratio(wide - frames.cad, [(0, x, y) for x, y in rs.tile_boxes(region[0], 16, 8)], 16)
    assert ratio_plain > 3.0  # the ±10 mm steps show at the plain grid's borders (4.7 here)
    assert ratio_blended < 1.3 and ratio_wide < ratio_blended  # blended: ~ the interior (1.23; 1.12 at 8 px)
    assert (blended > 0).all() and np.abs(blended - frames.cad).max() < 0.02  # every pixel, within the offsets


def test_blending_keeps_values_and_holes():
    tiles = np.full((2, 8, 8), 2.0, np.float32)
    tiles[1] = 3.0
    tiles[0, :, :2] = 0.0  # tile 0 sees a hole band at its left edge, which tile 1 does not cover
    out = rs.blend_tiles(tiles, [(0, 0, 0), (0, 4, 0)], (1, 8, 12), overlap=4)
    assert out.shape == (1, 8, 12)
    np.testing.assert_allclose(out[0, :, 2:4], 2.0)  # one tile: its value
    np.testing.assert_allclose(out[0, :, 8:], 3.0)
    assert (out[0, :, :2] == 0).all()  # its hole is kept
    overlap = out[0, :, 4:8]
    assert (np.diff(overlap, axis=1) > 0).all() and (overlap > 2.0).all() and (overlap < 3.0).all()  # a ramp
    with pytest.raises(ConfigError, match="tile stride"):
        rs.tile_boxes(np.ones((8, 8), bool), 4, 5)


def test_tiles_of_a_frame_start_and_stay_one_sample():
    """MultiDiffusion-style sync (`blend="sample"`): before the first step the tiles are cut from one noise map
    and after every step they are averaged where they overlap, so overlapping tiles hold the same values
    there (independent tiles averaged only at the end narrow the residual in the overlaps)."""
    from sim2real_kit.tiling import TileSync

    boxes = [(0, x, y) for x, y in rs.tile_boxes(np.ones((24, 28), bool), 8, 6)]
    sync = TileSync(boxes, (24, 28), 8, 2, torch.Generator().manual_seed(0))
    rng = torch.Generator().manual_seed(1)
    for i in (-1, 0, 3):
        x = sync(torch.randn((len(boxes), 1, 8, 8), generator=rng), slice(0, len(boxes)), i)
        canvas = torch.full((24, 28), float("nan"))
        for tile, (_, bx, by) in zip(x[:, 0], boxes):
            seen = canvas[by : by + 8, bx : bx + 8]
            both = ~torch.isnan(seen)
            assert torch.allclose(seen[both], tile[both], atol=1e-6), i  # overlaps agree
            canvas[by : by + 8, bx : bx + 8] = tile
        assert not torch.isnan(canvas).any()
    with pytest.raises(ConfigError, match="blend"):
        rs.simulate_tiles(_TileOffsetPipe(16), _plane_frames(), np.ones((1, 48, 64), bool), 0, blend="mean")


def test_pipeline_step_callback_sees_every_step_and_its_result_is_used(one_thread):
    from sim2real_kit.models.denoiser import ControlledDenoiser
    from sim2real_kit.pipeline import Sim2RealPipeline

    torch.manual_seed(0)
    cfg = load_config("tiny", overrides=["data.size=16", *TINY_MODEL, "sampling.steps=3"])
    pipe = Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)])
    cad = np.full((2, 16, 16), 1.5, np.float32)
    calls = []

    def same(x, frames, i):
        calls.append((frames, i))
        return x

    base = pipe(cad, generator=torch.Generator().manual_seed(0)).depth
    again = pipe(cad, generator=torch.Generator().manual_seed(0), step_callback=same).depth
    np.testing.assert_allclose(again, base, atol=1e-6)  # an identity callback changes nothing
    assert [i for _, i in calls] == [-1, 0, 1, 2] and calls[0][0] == slice(0, 2)
    zero = pipe(cad, generator=torch.Generator().manual_seed(0), step_callback=lambda x, f, i: x * 0).depth
    assert np.abs(np.asarray(zero) - np.asarray(base)).max() > 0  # its result is what the next step uses


def test_tile_sync_runs_in_the_static_loop_as_in_the_diffusers_loop(one_thread):
    """The CUDA-graph / compiled loop (`_denoise_static`, eagerly on the CPU here) applies the MultiDiffusion
    callback between its steps exactly where diffusers' loop does, so tiled sampling keeps the fast path."""
    from sim2real_kit.depth import normalize_depth
    from sim2real_kit.models.denoiser import ControlledDenoiser
    from sim2real_kit.pipeline import Sim2RealPipeline
    from sim2real_kit.tiling import TileSync

    torch.manual_seed(0)
    cfg = load_config("tiny", overrides=["data.size=16", *TINY_MODEL])
    pipe = Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)])
    boxes = [(0, x, y) for x, y in rs.tile_boxes(np.ones((16, 28), bool), 16, 12)]  # 2 tiles, 4 px overlap
    condition = pipe.codec.encode(normalize_depth(torch.full((len(boxes), 16, 16), 1.5))[:, None])
    latents = torch.randn(len(boxes), 1, 16, 16, generator=torch.Generator().manual_seed(1))
    outs = []
    for loop in (pipe._denoise, pipe._denoise_static):
        sync = TileSync(boxes, (16, 28), 16, 4, torch.Generator().manual_seed(2))
        calls = []

        def hook(x, i, sync=sync, calls=calls):
            calls.append(i)
            return sync(x, slice(0, len(boxes)), i)

        if loop == pipe._denoise:
            outs.append(loop(0, latents, condition, 4, 0.0, None, False, callback=hook))
        else:
            outs.append(loop(0, latents, condition, 4, callback=hook))
        assert calls == [-1, 0, 1, 2, 3]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)


def test_tiles_of_several_frames_in_one_call_stay_each_frames_own():
    """`tile_batch` groups whole frames into one pipeline call (a GPU filled at 640 x 480); each frame's tiles
    are blended into that frame only, and a deterministic pipeline gives the same frames either way."""
    frames, pipe = _plane_frames(), _TileOffsetPipe(16)
    cad = np.concatenate([frames.cad, frames.cad[:, ::-1] * 1.1, frames.cad * 0.9])  # 3 different frames
    sizes = []

    class Counting(_TileOffsetPipe):  # deterministic: every tile its CAD + 1 % + a ramp across the tile
        def __call__(self, tiles, **kw):
            sizes.append(len(tiles))
            ramp = np.linspace(0, 0.01, tiles.shape[-1], dtype=np.float32)
            return type("O", (), {"depth": np.where(tiles > 0, tiles * 1.01 + ramp, 0).astype(np.float32)})()

    from sim2real_kit.tiling import simulate_tiled

    per_frame = [simulate_tiled(Counting(16), cad[f : f + 1], blend="after")[0] for f in range(3)]
    n = sizes[0]
    sizes.clear()
    grouped = simulate_tiled(Counting(16), cad, blend="after", tile_batch=2 * n)
    assert sizes == [2 * n, n]  # frames 0 + 1 in one call, frame 2 alone
    np.testing.assert_allclose(grouped, np.stack(per_frame), atol=1e-6)  # each frame blended from its own tiles
    assert np.abs(grouped - cad * 1.01).max() > 1e-3  # the ramp is there: the test can fail
    sizes.clear()
    simulate_tiled(Counting(16), cad, blend="after")
    assert sizes == [n, n, n]  # the default: one frame per call
    sizes.clear()
    simulate_tiled(Counting(16), cad, blend="after", tile_batch=1)
    assert sizes == [n, n, n]  # a frame with more tiles than tile_batch goes alone
    with pytest.raises(ConfigError, match="blend"):
        simulate_tiled(pipe, cad, blend="mean", tile_batch=1)


def test_tile_sync_over_several_frames_keeps_frames_apart():
    """One TileSync over the tiles of two frames: overlaps agree within a frame, and a frame's tiles are
    averaged with its own tiles only (frame 1's values never reach frame 0)."""
    from sim2real_kit.tiling import TileSync

    one = [(x, y) for x, y in rs.tile_boxes(np.ones((8, 14), bool), 8, 6)]
    boxes = [(0, x, y) for x, y in one] + [(1, x, y) for x, y in one]
    sync = TileSync(boxes, (8, 14), 8, 2, torch.Generator().manual_seed(0))
    x = torch.cat([torch.zeros(len(one), 1, 8, 8), torch.ones(len(one), 1, 8, 8)])
    y = sync(x, slice(0, len(boxes)), 0)
    assert torch.equal(y[: len(one)], torch.zeros_like(y[: len(one)]))
    assert torch.equal(y[len(one) :], torch.ones_like(y[len(one) :]))
    noise = sync(x, slice(0, len(boxes)), -1)
    assert not torch.allclose(noise[0], noise[len(one)])  # one noise map per frame


# ---------------------------------------------------------------------- train on some samples, test on others (issue 23)
def _toy_sample(root, sensor: str, seed: int, frames: int = 2, test_only: bool = False) -> Path:
    """A small imported sample (lasa_depth layout with instance ids, 48x64): two box objects on no-CAD
    background, real = CAD + 3 mm noise with holes on the objects' outlines."""
    from sim2real_kit.data.layout import DepthLayout

    rng = np.random.default_rng(seed)
    H, W = 48, 64
    splits = {"unit": "frame", **({"test_only": True} if test_only else {})}
    meta = {"sensor": sensor, "classes": {1: "box", 2: "slab"}, "splits": splits}
    lay = DepthLayout.create(root, Camera(60, 60, W / 2, H / 2, W, H), meta=meta)
    refs = []
    for f in range(frames):
        cad, inst = np.zeros((H, W), np.float32), np.zeros((H, W), np.int32)
        x0 = 6 + 3 * f + seed
        cad[8:30, x0 : x0 + 20], inst[8:30, x0 : x0 + 20] = 1.0 + 0.05 * seed, 1
        cad[20:44, 34:58], inst[20:44, 34:58] = 1.2 + np.linspace(0, 0.05, 24, dtype=np.float32), 2
        real = np.where(cad > 0, cad + rng.normal(0, 0.003, cad.shape), 0).astype(np.float32)
        real[(inst > 0) & (np.abs(np.diff(inst, prepend=0, axis=1)) > 0)] = 0  # holes at the left outlines
        ref = FrameRef("s", f"{f:03d}")
        lay.write_frame(ref, cad, real, np.eye(4), instance=inst)
        refs.append(ref)
    if test_only:
        lay.write_split("val", refs)
    else:
        lay.write_split("train", refs[:-1])
        lay.write_split("val", refs[-1:])
    return lay.root


@pytest.fixture(scope="module")
def toy_samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_samples")
    return {
        "a": _toy_sample(root / "a", "toy sensor A", 0, frames=3),
        "b": _toy_sample(root / "b", "toy sensor A", 1, frames=2),
        "test": _toy_sample(root / "test", "toy sensor B", 2, frames=1, test_only=True),
    }


def test_cross_mode_trains_on_some_samples_and_scores_on_others(toy_samples, tmp_path):
    cfg = load_config("tiny", None, TOY)
    result = rs.evaluate_real_sample(
        tmp_path / "run", cfg, train_samples=[toy_samples["a"], toy_samples["b"]], test_samples=[toy_samples["test"]],
        steps=4, seeds=1, progress=False,
    )  # fmt: skip
    assert result.out_dir == RunFolder(tmp_path / "run").benchmark_dir / "real_sample_cross"
    for name in ("results.csv", "results.md", "summary.json", "figures/w1_objects.png", "figures/objects_panels.png"):
        assert result.paths[name].is_file(), name
    for region in ("objects", "silhouettes"):
        assert result.row(region, "real")["w1_mm"] == 0.0
        assert math.isfinite(result.row(region, "stage1")["w1_mm"]) and result.row(region, "physical")["w1_mm"] > 0
    # the toy sensor loses depth on outlines: the silhouette band has more holes than all object pixels
    assert result.row("silhouettes", "real")["hole_all_pct"] > result.row("objects", "real")["hole_all_pct"]
    summary = json.loads(result.paths["summary.json"].read_text())
    assert summary["mode"] == "cross" and summary["cross_sensor"] and summary["cross_scene"]
    assert [t["frames"] for t in summary["train"]] == [3, 2] and summary["test"][0]["sensor"] == "toy sensor B"
    assert "cross-scene and cross-sensor" in result.markdown() and "toy sensor B" in result.markdown()


def test_cross_mode_never_trains_on_a_test_frame(toy_samples, tmp_path, monkeypatch):
    import shutil

    from test_leaks import spy

    from sim2real_kit import stage1

    given = spy(monkeypatch, stage1, "train_denoiser", 1)
    cfg = load_config("tiny", None, TOY)
    test = rs.load_frames(rs.import_real_sample(tmp_path / "run", toy_samples["test"]))
    rs.evaluate_real_sample(
        tmp_path / "run", cfg, train_samples=[toy_samples["a"]], test_samples=[toy_samples["test"]], steps=2,
        seeds=1, progress=False,
    )  # fmt: skip
    (ds,) = given
    assert ds.roots == (toy_samples["a"],) and ds.holdout_id is None
    real = ds.maps[:, 1]  # the real depth every crop is cut from
    assert real.shape[0] == 3 and not any(np.array_equal(r, t) for r in real for t in test.real)
    # the same folder on both sides, or a test frame copied into a training sample, is refused before training
    with pytest.raises(ConfigError, match="both a training and a test sample"):
        rs.evaluate_real_sample(tmp_path / "run", cfg, train_samples=[toy_samples["a"]],
                                test_samples=[toy_samples["a"]], steps=2, seeds=1, progress=False)  # fmt: skip
    leak = tmp_path / "leak"
    shutil.copytree(toy_samples["a"], leak)
    for kind in ("gt", "scan", "inst"):
        shutil.copy(
            toy_samples["test"] / "lasa_depth" / "s" / f"000_{kind}.png", leak / "lasa_depth" / "s" / f"001_{kind}.png"
        )
    with pytest.raises(ConfigError, match=r"test frame .*test.*s/000 .* training frame .*leak.*s/001"):
        rs.evaluate_real_sample(tmp_path / "run", cfg, train_samples=[leak], test_samples=[toy_samples["test"]],
                                steps=2, seeds=1, progress=False)  # fmt: skip
    assert len(given) == 1  # neither reached the trainer


def test_a_test_only_sample_is_scored_but_never_trained_on_alone(toy_samples, tmp_path, capsys):
    from sim2real_kit.cli import main

    cfg = load_config("tiny", None, TOY)
    with pytest.raises(ConfigError, match="test-only.*--train-sample"):
        rs.evaluate_real_sample(tmp_path / "run", cfg, toy_samples["test"], steps=2, seeds=1, progress=False)
    with pytest.raises(ConfigError, match="test-only"):
        rs.evaluate_real_sample(tmp_path / "run", cfg, train_samples=[toy_samples["test"]],
                                test_samples=[toy_samples["a"]], steps=2, seeds=1, progress=False)  # fmt: skip
    # physical baselines only: the sample's row
    result = rs.evaluate_real_sample(tmp_path / "run", cfg, toy_samples["test"], seeds=1, stage1=False, progress=False)
    assert result.row("objects", "physical")["w1_mm"] > 0 and "toy sensor B" in result.markdown()
    args = ["evaluate-real", "--run", str(tmp_path / "run"), "--test-sample", str(toy_samples["test"])]
    assert main([*args, "--no-stage1"]) == 2
    assert "--train-sample" in capsys.readouterr().err  # one role alone: named
    assert main([*args, "--train-sample", str(toy_samples["a"]), "--no-stage1", "--seeds", "1", *TOY]) == 0
    assert "cross-scene and cross-sensor" in capsys.readouterr().out


# ---------------------------------------------------------------------- physics prior (issue 23, part 4)
def test_a_physics_prior_pipeline_takes_the_physical_output_as_a_second_condition(tmp_path):
    from sim2real_kit.models.denoiser import ControlledDenoiser
    from sim2real_kit.pipeline import Sim2RealPipeline

    torch.manual_seed(0)
    cfg = load_config("tiny", overrides=["data.size=16", *TINY_MODEL, "sampling.steps=2"])
    with pytest.raises(ConfigError, match="stage 1 takes 1 condition map.*needs 2"):
        Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)], prior="nguyen2012")
    pipe = Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg, cond_maps=2)], prior="nguyen2012")
    with torch.no_grad():  # as if trained: ControlNet's zero-initialised convs would hide every condition
        for param in pipe.denoisers[0].parameters():
            param.add_(0.05 * torch.randn_like(param))
    cad = np.full((2, 16, 16), 1.5, np.float32)
    prior = cad + np.random.default_rng(0).normal(0, 0.005, cad.shape).astype(np.float32)
    with pytest.raises(ConfigError, match="nguyen2012.*prior_depth"):
        pipe(cad)
    base = pipe(cad, prior_depth=prior, generator=torch.Generator().manual_seed(0)).depth
    other = pipe(cad, prior_depth=prior + 0.02, generator=torch.Generator().manual_seed(0)).depth
    assert np.abs(base - other).max() > 0  # the prior is a condition the output depends on
    pipe.save_pretrained(tmp_path / "p")
    again = Sim2RealPipeline.from_pretrained(tmp_path / "p")
    assert again.config.prior == "nguyen2012"
    np.testing.assert_allclose(again(cad, prior_depth=prior, generator=torch.Generator().manual_seed(0)).depth, base,
                               atol=1e-5)  # fmt: skip
    plain = Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)])
    with pytest.raises(ConfigError, match="no physics prior"):
        plain(cad, prior_depth=prior)


def test_physics_alone_learned_alone_and_physics_plus_learned(toy_samples, tmp_path, monkeypatch):
    from test_leaks import spy

    from sim2real_kit import stage1

    given = spy(monkeypatch, stage1, "train_denoiser", 1)
    cfg = load_config("tiny", None, TOY)
    result = rs.evaluate_real_sample(
        tmp_path / "run", cfg, train_samples=[toy_samples["a"]], test_samples=[toy_samples["test"]], steps=2,
        seeds=1, physics_prior=True, progress=False,
    )  # fmt: skip
    for region in ("objects", "silhouettes"):
        for name in ("physical", "stage1", "stage1_physics"):
            assert math.isfinite(result.row(region, name)["w1_mm"]), (region, name)
    assert "physics prior" in result.markdown()
    plain, prior = given
    assert "prev_n" not in plain[0] and prior[0]["prev_n"].shape == (1, SIZE, SIZE)
    # the prior of the training crops is the physical model run on the training frames' CAD, nothing else
    train = rs.load_frames(rs.import_real_sample(tmp_path / "run", toy_samples["a"]))
    sim = rs.baseline_simulators(cfg)["physical"]
    np.testing.assert_array_equal(prior.prior, sim.from_cad(train.cad, train.camera, cfg.seed))


# ---------------------------------------------------------------------- beside the benchmark (issue 21)
def test_the_real_sample_job_gives_what_the_section_gives_here(run, tmp_path, monkeypatch):
    """`start_real_sample` (notebook 05 starts it before the benchmark): the section in a spawned process on half
    the cores, this process on the rest until `result()`; the same table as evaluating here, and an error of the
    job is raised here with its message."""
    from sim2real_kit import jobs

    monkeypatch.setattr(jobs, "busy_cores", lambda *a, **k: 0.0)  # as on a quiet machine
    cfg = resolve_config(run, "tiny", overrides=TOY, quick=True, save=False)
    kw = dict(holdout="mug", steps=4, seeds=1, progress=False)
    before = torch.get_num_threads()
    job = rs.start_real_sample(run, cfg, rs.DEFAULT_SAMPLE, out=tmp_path / "bg", **kw)
    assert job.background == (rs.usable_cores() >= 2)
    away = job.result()
    assert torch.get_num_threads() == before  # given back
    here = rs.evaluate_real_sample(run, cfg, rs.DEFAULT_SAMPLE, out=tmp_path / "fg", **kw)
    assert {(e["region"], e["simulator"]) for e in away.table} == {(e["region"], e["simulator"]) for e in here.table}
    for e in here.table:
        assert away.row(e["region"], e["simulator"])["w1_mm"] == pytest.approx(e["w1_mm"], rel=1e-6, abs=1e-9)
    assert away.out_dir == tmp_path / "bg" and (tmp_path / "bg" / "results.md").is_file() and away.figures
    bad = rs.start_real_sample(run, cfg, rs.DEFAULT_SAMPLE, out=tmp_path / "bad", holdout="banana", steps=1,
                               seeds=1, progress=False)  # fmt: skip
    with pytest.raises(Sim2RealError, match="'banana'"):
        bad.result()
    assert torch.get_num_threads() == before


# ---------------------------------------------------------------------- the hole threshold, calibrated (issue 20)
class _ValidityPipe:
    """A stand-in hole-model pipeline: depth = CAD, P(valid) = a constant of each tile (tile k: 0.2 + 0.6 k / (N-1))."""

    def __init__(self, size):
        self.config = type("C", (), {"size": size})()

    def __call__(self, tiles, **kw):
        n = len(tiles)
        p = np.linspace(0.2, 0.8, n, dtype=np.float32)[:, None, None] * np.ones_like(tiles)
        return type("O", (), {"depth": tiles.copy(), "validity": np.where(tiles > 0, p, 0.0)})()


def test_tiles_return_their_validity_blended():
    """`simulate_tiled(return_validity=True)`: P(valid) of the tiles blended as a weighted mean (a ramp in the
    overlap between two tiles' constants, each tile's own value where it lies alone); `simulate_full`: its window's
    P(valid), 0 outside; a pipeline without a hole model is refused by name."""
    from sim2real_kit.tiling import simulate_full, simulate_tiled

    cad = np.full((1, 16, 28), 1.5, np.float32)  # two 16-px tiles overlapping by 4 px: lefts 0 and 12
    depth, prob = simulate_tiled(_ValidityPipe(16), cad, overlap=4, return_validity=True)
    np.testing.assert_allclose(depth, cad)
    np.testing.assert_allclose(prob[0, :, :12], 0.2, atol=1e-6)  # tile 0 alone
    np.testing.assert_allclose(prob[0, :, 16:], 0.8, atol=1e-6)  # tile 1 alone
    ramp = prob[0, 8, 12:16]
    assert (np.diff(ramp) > 0).all() and (ramp > 0.2).all() and (ramp < 0.8).all()
    assert simulate_tiled(_ValidityPipe(16), cad, overlap=4).shape == cad.shape  # default: depth only
    region = np.zeros(cad.shape, bool)
    region[0, 4:8, 4:8] = True  # one window of the model size around it: rows 0-16, columns 0-16 (margin 4 px)
    depth, prob = simulate_full(_ValidityPipe(16), cad, region, margin=4, return_validity=True)
    assert (prob[0, :, :16] == np.float32(0.2)).all() and (prob[0, :, 16:] == 0).all()  # one call: its P(valid)
    np.testing.assert_allclose(depth[0, :, :16], 1.5)
    with pytest.raises(ConfigError, match="data.holes=model"):
        simulate_tiled(_TileOffsetPipe(16), cad, overlap=4, return_validity=True)


def test_match_hole_rate_counts_only_the_region():
    """The threshold matches the real hole rate on the region's pixels only: real holes 30 % inside the region,
    none outside, P(valid) uniform -> a threshold of ~0.3 (it would be ~0.15 over the whole frame)."""
    from sim2real_kit.simulate import match_hole_rate

    rng = np.random.default_rng(0)
    cad = np.full((2, 40, 40), 1.0, np.float32)
    region = np.zeros(cad.shape, bool)
    region[:, :, :20] = True
    real = np.where(region & (rng.random(cad.shape) < 0.3), 0.0, cad)
    prob = rng.random(cad.shape).astype(np.float32)
    inside = match_hole_rate(cad, real, cad, prob, region=region)
    assert inside["threshold"] == pytest.approx(0.3, abs=0.03) and inside["pixels"] == 2 * 40 * 20
    assert inside["real_rate"] == pytest.approx(0.3, abs=0.02)
    assert match_hole_rate(cad, real, cad, prob)["threshold"] == pytest.approx(0.15, abs=0.03)
    with pytest.raises(ConfigError, match="empty region"):
        match_hole_rate(cad, real, cad, prob, region=np.zeros(cad.shape, bool))


def _spy_calibration(monkeypatch, threshold=None):
    """Record `match_hole_rate`'s CAD and region (and force its threshold, if given)."""
    from sim2real_kit import simulate

    seen, real_fn = [], simulate.match_hole_rate

    def spy(cad, real, depth, prob, region=None):
        out = real_fn(cad, real, depth, prob, region=region)
        seen.append({"cad": cad, "region": region, "out": dict(out)})
        return {**out, "threshold": threshold} if threshold is not None else out

    monkeypatch.setattr(simulate, "match_hole_rate", spy)
    return seen


HOLES = [*TOY, "data.holes=model", "model.validity=channel", "benchmark.real_sample_calibrate_holes=true"]


def test_calibrated_holes_come_from_the_training_samples_and_reach_the_rows(toy_samples, tmp_path, monkeypatch):
    """Train / test mode with `benchmark.real_sample_calibrate_holes`: the threshold is matched on the training
    samples' object pixels (never a test frame) and is the one the `stage1_calibrated` rows use: forced to 1.0
    nearly every object pixel is a hole, forced to 0.0 none; the `stage1` rows are the pipeline's own threshold."""
    cfg = load_config("tiny", None, HOLES)
    train = [toy_samples["a"]]
    rates = {}
    for forced in (1.0, 0.0):
        calls = _spy_calibration(monkeypatch, forced)
        result = rs.evaluate_real_sample(
            tmp_path / "run", cfg, train_samples=train, test_samples=[toy_samples["test"]], steps=4, seeds=1,
            progress=False, out=tmp_path / f"out{forced}",
        )  # fmt: skip
        (call,) = calls
        train_frames = rs.load_frames(rs.import_real_sample(tmp_path / "run", toy_samples["a"]))
        assert call["cad"].shape == train_frames.cad.shape  # the training frames, not the test frame
        np.testing.assert_array_equal(call["region"], train_frames.object_mask())
        rates[forced] = result.row("objects", "stage1_calibrated")["hole_all_pct"]
        assert math.isfinite(result.row("objects", "stage1")["w1_mm"])
        summary = json.loads(result.paths["summary.json"].read_text())["stage1"]
        assert summary["holes_threshold"] == forced and summary["holes_threshold_default"] == 0.5
        assert summary["holes_calibration_px"] == int(train_frames.object_mask().sum())
        assert "stage1_calibrated" in result.paths["results.csv"].read_text() and "calibrated" in result.markdown()
    assert rates[1.0] > 90.0 and rates[0.0] == 0.0  # at 1.0 only pixels of P(valid) exactly 1 keep their depth


def test_calibrated_holes_never_see_the_held_out_object(run, tmp_path, monkeypatch):
    """Held-out-object mode: the threshold is matched on the other objects' pixels (Stage-I's training pixels);
    no pixel of the held-out object, the scored one, is in the calibration region."""
    calls = _spy_calibration(monkeypatch)
    cfg = resolve_config(run, "tiny", overrides=HOLES, quick=True, save=False)
    result = rs.evaluate_real_sample(run, cfg, holdout="mug", steps=2, seeds=1, out=tmp_path / "h", progress=False)
    frames = rs.load_frames(rs.import_real_sample(run))
    held = frames.object_mask(rs.resolve_holdout(frames, "mug"))
    (call,) = calls
    assert call["region"].any() and not (call["region"] & held).any()
    np.testing.assert_array_equal(call["region"], frames.object_mask() & ~held)
    assert 0.05 <= result.summary["stage1"]["holes_threshold"] <= 0.95
    assert math.isfinite(result.row("heldout", "stage1_calibrated")["w1_mm"])


def test_calibrating_holes_needs_a_hole_model_and_the_cli_flag_reaches_the_config(run, monkeypatch, capsys):
    from sim2real_kit.cli import main

    cfg = resolve_config(run, "tiny", overrides=[*TOY, "benchmark.real_sample_calibrate_holes=true"], save=False)
    with pytest.raises(ConfigError, match="data.holes=model"):
        rs.evaluate_real_sample(run, cfg, holdout="mug", steps=2, seeds=1, progress=False)
    given = []
    monkeypatch.setattr(rs, "evaluate_real_sample", lambda run, cfg, *a, **k: given.append(cfg) or _Stop())
    main(["evaluate-real", "--run", str(run), "--calibrate-holes", "data.holes=model", "model.validity=channel"])
    main(["evaluate-real", "--run", str(run), "data.holes=model", "model.validity=channel"])
    assert [c.benchmark.real_sample_calibrate_holes for c in given] == [True, False]


class _Stop:
    seconds, out_dir = 0.0, Path(".")

    def markdown(self):
        return ""
