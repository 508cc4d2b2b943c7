"""The flow over a run folder (stage1, flagging, stage2, simulate): bad input of the stage functions, the
Stage-II loss weighting and its batch fallback, the target scale, and the CLI's error handling. (The flow
itself runs in tests/test_notebooks.py and tests/test_knobs.py.)"""

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL

from sim2real_kit import flagging, simulate, stage1, stage2
from sim2real_kit.cli import main
from sim2real_kit.config import load_config
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.errors import ConfigError, MissingArtifactError
from sim2real_kit.models.denoiser import diffusion_loss
from sim2real_kit.run import RunFolder, SampleSet, resolve_config


@pytest.fixture
def run_dir(tmp_path, plane_layout):
    cfg = load_config("tiny", overrides=[f"data.root={plane_layout.root}", "data.size=16", *_TINY])
    RunFolder(tmp_path / "run").save_config(cfg)
    return tmp_path / "run"


_TINY = TINY_MODEL


def test_stage2_without_stage1_names_the_command(run_dir):
    with pytest.raises(MissingArtifactError, match=r"sim2real sample --run .* --split train --stages 1"):
        stage2.train_stage_n(run_dir, resolve_config(run_dir), 2)


def test_sampling_without_pipeline_names_the_command(run_dir):
    with pytest.raises(MissingArtifactError, match="sim2real train --stage 1"):
        simulate.sample_split(run_dir, resolve_config(run_dir), "val", 1)


def test_flag_without_samples_names_the_command(run_dir):
    with pytest.raises(MissingArtifactError, match="sim2real sample"):
        flagging.train_and_flag(run_dir, resolve_config(run_dir))


@pytest.mark.parametrize("override", ["stage2.flagged_weight=-1", "stage2.other_weight=-0.5", "disc.threshold=2"])
def test_bad_weights_and_threshold(run_dir, override):
    with pytest.raises(ConfigError):
        resolve_config(run_dir, overrides=[override])


def test_flag_threshold_outside_unit_interval(run_dir):
    with pytest.raises(ConfigError, match="threshold"):
        flagging.train_and_flag(run_dir, resolve_config(run_dir, overrides=["disc.threshold=1.5"]))


def test_weighted_loss_and_batch_fallback(run_dir):
    from sim2real_kit.models.codec import build_codec
    from sim2real_kit.models.denoiser import ControlledDenoiser, make_scheduler

    cfg = resolve_config(run_dir, save=False)
    codec, denoiser, scheduler = build_codec(cfg), ControlledDenoiser.from_config(cfg, 2), make_scheduler(cfg)
    model = stage1.StageModel(codec, denoiser)
    loss_fn = stage1.denoising_loss(scheduler, use_prev=True, reweight=True)
    b = 2
    batch = {
        "target": torch.rand(b, 1, 16, 16) * 0.2,
        "cad_n": torch.rand(b, 1, 16, 16) * 2 - 1,
        "prev_n": torch.rand(b, 1, 16, 16) * 2 - 1,
        "mask": torch.ones(b, 1, 16, 16),
        "flag_weight": torch.full((b, 1, 16, 16), 0.5),
        "has_flag": torch.tensor([False, False]),
    }
    batch["flag_weight"][:, :, :8, :8] = 1.5
    batch["mask"][:, :, -2:] = 0

    def reference(weight):
        return diffusion_loss(
            model, codec, scheduler, batch["target"], [batch["cad_n"], batch["prev_n"]], weight,
            torch.Generator().manual_seed(0),
        )[0]  # fmt: skip

    no_flag = loss_fn(model, batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(no_flag, reference(batch["mask"]))  # unweighted (only the valid mask)
    batch["has_flag"] = torch.tensor([True, False])
    flagged = loss_fn(model, batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(flagged, reference(batch["flag_weight"] * batch["mask"]))
    assert not torch.isclose(flagged, no_flag)
    # the weighted mean by hand: sum(w * e) / sum(w) over pixels of the (pixel-space) codec
    gen = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (b,), generator=gen)
    noise = torch.randn(b, 1, 16, 16, generator=gen)
    noisy = scheduler.add_noise(batch["target"], noise, t)
    with torch.no_grad():
        pred = model(noisy, t, torch.cat([batch["cad_n"], batch["prev_n"]], 1))
    err = (pred - batch["target"]).pow(2)
    w = batch["flag_weight"] * batch["mask"]
    torch.testing.assert_close(flagged.detach(), (w * err).sum() / w.sum(), rtol=1e-5, atol=1e-7)


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["train", "--stage", "2"]) == 2
    assert "needs --run" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "missing")]) == 1


def test_cli_validate_ok(plane_layout, capsys):
    assert main(["validate", str(plane_layout.root)]) == 0
    assert "OK" in capsys.readouterr().out


def test_quick_overlay_shrinks_the_pixel_presets():
    for preset in ("tiny", "small"):
        cfg = load_config(preset, quick=True)
        assert cfg.data.size == 32 and cfg.train.steps < 100 and cfg.benchmark.seeds == 1, preset
        assert cfg.preset == preset and np.isfinite(cfg.train.lr)
    # the user's overrides go on top of the overlay
    assert load_config("tiny", overrides=["train.steps=7"], quick=True).train.steps == 7


def test_simulate_meshes_and_trajectory(tmp_path, one_thread):
    """CAD mesh + camera trajectory -> rendered CAD -> simulated depth in a layout, points, fused mesh."""
    import open3d as o3d

    from sim2real_kit.camera import Camera, look_at
    from sim2real_kit.data.layout import validate
    from sim2real_kit.pipeline import Sim2RealPipeline

    cfg = load_config("tiny", overrides=["data.size=16", *TINY_MODEL, "sampling.steps=2"])
    from sim2real_kit.models.denoiser import ControlledDenoiser

    Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)]).save_pretrained(tmp_path / "pipe")
    box = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1.0).translate([-0.5, -0.5, 0.0])
    o3d.io.write_triangle_mesh(str(tmp_path / "box.ply"), box)
    poses = np.stack([look_at([2.0 * np.cos(a), 2.0 * np.sin(a), 1.2], [0, 0, 0.5]) for a in (0.0, 0.4, 0.8)])
    np.savetxt(tmp_path / "traj.txt", poses.reshape(3, 16))
    cam = Camera(20.0, 20.0, 16.0, 12.0, 32, 24)
    cam.save_json(tmp_path / "cam.json")
    out = tmp_path / "sim"
    args = ["simulate", "--pipeline", str(tmp_path / "pipe"), "--mesh", str(tmp_path / "box.ply")]
    assert (
        main(
            [
                *args,
                "--trajectory",
                str(tmp_path / "traj.txt"),
                "--camera",
                str(tmp_path / "cam.json"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert validate(out) == []
    lay = DepthLayout(out)
    assert lay.frames("train") == [FrameRef("box", "0000"), FrameRef("box", "0001")]
    frame = lay.read_frame(lay.frames("train")[0])
    assert frame["cad"].shape == frame["real"].shape == (24, 32) and (frame["cad"] > 0).any()  # the camera's size
    np.testing.assert_allclose(frame["pose"], poses[0], atol=1e-6)
    assert len(list((out / "points" / "box").glob("*.ply"))) == 3
    assert (out / "meshes" / "box" / "simulated.ply").is_file()
    assert main([*args, "--out", str(tmp_path / "x")]) == 2  # no trajectory: a clear error


def test_target_std_sets_the_residual_scale(run_dir, plane_layout):
    """model.target_std: the train split's target, scaled, has exactly that std (on the pixels the loss uses)."""
    from sim2real_kit.data.dataset import PairedDepthDataset

    cfg = resolve_config(run_dir, overrides=["model.target_std=0.5"], save=False)
    scale = stage1.resolve_target_scale(cfg, plane_layout)
    assert scale == cfg.model.residual_scale and scale > 0.5  # the planes' 1 cm noise is tiny in log units
    ds = PairedDepthDataset.from_config(cfg, plane_layout, "train", train=False)
    items = [ds[i] for i in range(len(ds))]
    target = torch.cat([it["target"][it["mask"] > 0] for it in items])
    assert float(target.std(unbiased=False)) == pytest.approx(0.5, rel=1e-4)
    # off (0) or a direct target: the configured scale stays
    off = resolve_config(run_dir, overrides=["model.target_std=0"], save=False)
    assert stage1.resolve_target_scale(off, plane_layout) is None and off.model.residual_scale == 0.5
    # the pixel presets turn it on (configs/tiny.yaml: model.target_std 0.5)
    assert resolve_config(run_dir, save=False).model.target_std == 0.5
    direct = resolve_config(run_dir, overrides=["model.target_std=0.5", "model.target=direct"], save=False)
    assert stage1.resolve_target_scale(direct, plane_layout) is None
    with pytest.raises(ConfigError, match="target_std"):
        resolve_config(run_dir, overrides=["model.target_std=-1"], save=False)


def test_target_std_ignores_holes_and_mismatches(run_dir, plane_layout):
    """The scale is set by residuals, never by holes (far depth in `generate` mode) or >= max_diff
    mismatches (nor the validity channel of `model` mode): every `data.holes` mode gives the std of the same
    pixels, valid in CAD and real."""
    from sim2real_kit.data.dataset import PairedDepthDataset

    stds = {}
    for holes in ("mask", "model", "generate"):
        cfg = resolve_config(run_dir, overrides=["model.target_std=0.5", f"data.holes={holes}"], save=False)
        stds[holes] = stage1.target_std(cfg, plane_layout)
    assert stds["generate"] == pytest.approx(stds["mask"], rel=1e-9)
    assert stds["model"] == pytest.approx(stds["mask"], rel=1e-9)
    cfg = resolve_config(run_dir, overrides=["model.target_std=0.5", "data.holes=generate"], save=False)
    ds = PairedDepthDataset.from_config(cfg, plane_layout, "train", train=False)
    ds.residual_scale = 1.0
    items = [ds[i] for i in range(len(ds))]
    holes = torch.cat([it["target"][(it["mask"] > 0) & (it["valid"] == 0)] for it in items])
    residuals = torch.cat([it["target"][it["valid"] > 0] for it in items])
    assert len(holes) > 0 and float(holes.abs().min()) > 10 * float(residuals.abs().max())  # holes dwarf noise
    assert stds["mask"] == pytest.approx(float(residuals.double().std(unbiased=False)), rel=1e-6)


def test_train_stage1_saves_the_resolved_scale(run_dir):
    import json

    from sim2real_kit.config import Config

    overrides = [
        "model.target_std=0.5",
        "train.steps=2",
        "train.batch_size=2",
        "train.val_frames=1",
        "sampling.steps=2",
    ]
    summary = stage1.train_stage1(run_dir, resolve_config(run_dir, overrides=overrides), progress=False)
    saved = Config.from_yaml(run_dir / "config.yaml").model
    index = json.loads((run_dir / "stage1" / "pipeline" / "model_index.json").read_text())
    assert saved.target_std == 0.5 and saved.residual_scale == pytest.approx(summary["residual_scale"])
    assert index["residual_scale"] == pytest.approx(summary["residual_scale"]) and summary["residual_scale"] > 0.5


def test_discriminator_patches_share_the_loss_pixels():
    """`mask` mode: real and generated patches are made of the pixels valid in CAD and real within max_diff,
    so a real hole or a 0.8 m flying pixel (which the loss weighs 0, and Stage-II never learns to make)
    cannot be what gets a patch flagged. `generate` mode keeps every valid pixel of each map. `model` mode (the
    validity channel learns holes): the real's holes are part of the patch pixels (a hole is no point, so a patch
    with holes is valid input and its hole pattern is judged), its flying pixels are not."""
    from sim2real_kit.camera import Camera
    from sim2real_kit.config import load_config

    rng = np.random.default_rng(0)
    size, frames = 16, 2
    cad = np.full((frames, size, size), 2.0, np.float32)
    real = cad + rng.normal(0, 0.005, cad.shape).astype(np.float32)
    real[:, 2:4, :] += 0.8  # flying pixels, >= max_diff
    real[:, 10:12, :] = 0.0  # holes
    sim = cad + rng.normal(0, 0.005, cad.shape).astype(np.float32)
    cam = Camera(20.0, 20.0, size / 2, size / 2, size, size)
    samples = SampleSet([None] * frames, cad, real, {1: sim}, cam, np.stack([np.eye(4)] * frames))
    for holes, flying_kept in (("mask", False), ("model", False), ("generate", True)):
        cfg = load_config(
            "tiny", overrides=[f"data.holes={holes}", "disc.patch_size=8", "disc.stride=8", "disc.num_points=64"]
        )
        real_pp, fake_pp, _ = flagging.patch_sets(samples, 1, cfg, seed=0)
        real_z = real_pp.camera_points()[0][..., 2][real_pp.valid]  # [M, N] metres
        assert bool((real_z > 2.5).any()) == flying_kept, holes
        if holes == "mask":
            assert torch.equal(real_pp.n_valid, fake_pp.n_valid)  # the same pixel set on both sides
            assert int(real_pp.n_valid[0, 0]) == 8 * 8 - 2 * 8  # rows 2-3 left out of the top-left patch
        if holes == "model":
            pixels = flagging.patch_pixel_mask(samples, cfg)
            assert not bool(pixels[:, 2:4].any()) and bool(pixels[:, 10:12].all())  # flying pixels out, holes in
            sim_holes = sim.copy()
            sim_holes[:, 12:14, :] = 0.0  # generated holes, beside the real ones
            with_holes = SampleSet([None] * frames, cad, real, {1: sim_holes}, cam, samples.poses)
            real_pp, fake_pp, _ = flagging.patch_sets(with_holes, 1, cfg, seed=0)
            assert int(real_pp.n_valid[0, 0]) == int(fake_pp.n_valid[0, 0]) == 8 * 8 - 2 * 8  # flying rows out
            # bottom-left patch: the real lacks rows 10-11, the generated rows 12-13; both are valid patches
            assert int(real_pp.n_valid[0, 2]) == int(fake_pp.n_valid[0, 2]) == 8 * 8 - 2 * 8
            assert bool(real_pp.valid[0, 2]) and bool(fake_pp.valid[0, 2])


def test_difference_flags_are_the_papers_wo_bin(tmp_path):
    """disc.mode = difference (the paper's "w/o bin", Sec. 4.5 (3)): a patch is flagged when its mean
    |Stage-I - real| exceeds disc.diff_threshold_m, on the loss pixels; a hand-made frame gives known flags."""
    from sim2real_kit.camera import Camera
    from sim2real_kit.config import load_config

    size = 16
    cad = np.full((1, size, size), 2.0, np.float32)
    real = cad.copy()
    sim = cad.copy()
    sim[0, :8, :8] += 0.05  # top-left patch: 5 cm off
    sim[0, :8, 8:] += 0.01  # top-right: 1 cm
    sim[0, 8:, :8] -= 0.03  # bottom-left: 3 cm
    real[0, 8:, 8:] = 0.0  # bottom-right: real holes everywhere -> no valid pixel -> skipped
    cam = Camera(20.0, 20.0, 8, 8, size, size)
    samples = SampleSet([None], cad, real, {1: sim}, cam, np.eye(4)[None])
    cfg = load_config("tiny", overrides=["disc.patch_size=8", "disc.stride=8", "disc.min_valid=4"])
    diff, valid, boxes = flagging.patch_differences(samples, sim, cfg)
    assert boxes.tolist() == [[0, 8, 0, 8], [0, 8, 8, 16], [8, 16, 0, 8], [8, 16, 8, 16]]
    np.testing.assert_allclose(diff[0, :3].numpy(), [0.05, 0.01, 0.03], atol=1e-6)
    assert valid[0].tolist() == [True, True, True, False]
    flagged = valid & (diff > 0.02)
    assert flagged[0].tolist() == [True, False, True, False]


def test_tiny_preset_keeps_an_ema_and_saves_its_weights(run_dir):
    """The tiny and small presets train with an EMA of the weights (without one, the last few updates set a
    frame-wide residual offset that swings from checkpoint to checkpoint: docs/results.md and
    docs/results_gpu.md, "EMA"), and the pipeline it saves holds the EMA's weights, not the last step's."""
    from safetensors.torch import load_file

    from sim2real_kit.pipeline import Sim2RealPipeline

    cfg = resolve_config(run_dir, overrides=["train.steps=3", "train.batch_size=2", "train.val_frames=1"])
    assert load_config("tiny").train.ema and cfg.train.ema
    assert load_config("small").train.ema and load_config("small").train.ema_decay == 0.999
    stage1.train_stage1(run_dir, cfg, progress=False)
    step = run_dir / "stage1" / "checkpoints" / "step-000003"
    ema, last = load_file(step / "ema.safetensors"), load_file(step / "model.safetensors")
    saved = dict(Sim2RealPipeline.from_pretrained(run_dir / "stage1" / "pipeline").denoisers[0].named_parameters())
    compared = 0
    for key, value in ema.items():
        name = key.removeprefix("denoiser.")
        if name in saved and not torch.equal(value, last[key]):
            torch.testing.assert_close(saved[name].detach(), value, rtol=0, atol=0)
            compared += 1
    assert compared > 10  # the EMA differs from the last step's weights, and the pipeline holds the EMA


def test_a_finished_stage_called_again_keeps_its_pipeline_and_samples(run_dir):
    """Training a finished stage again (a rerun notebook, a resumed GPU campaign) trains nothing, so it keeps the
    stage's pipeline and the splits sampled from it stay current: the old code saved it anew every call, which
    marked every split stale and sampled them all again (81 s per seed on the GPU, 2026-12-06). A new setting, more
    steps or a previous stage saved anew is another pipeline: saved again, and its samples stale. Flags made from
    samples drawn since are stale: Stage-II refuses them and `train_chain` flags again (before, it trained Stage-II
    on the flags of the Stage-I before)."""
    overrides = ["train.steps=2", "train.batch_size=2", "train.val_frames=1", "sampling.steps=2", "disc.steps=2"]
    run = RunFolder(run_dir)

    def train1(*more):
        cfg = resolve_config(run_dir, overrides=[*overrides, *more])
        stage1.train_stage1(run_dir, cfg, progress=False)
        return cfg

    cfg = train1()
    for split in ("train", "val"):
        simulate.sample_split(run, cfg, split, stage=1, progress=False)
    stamp1 = run.pipeline_stamp(1)
    train1()
    assert run.pipeline_stamp(1) == stamp1 and run.has_samples(1, "val") and run.has_samples(1, "train")

    stage2.train_chain(run, cfg, 2, progress=False, final_splits=("val",))
    stamp2, marked = run.pipeline_stamp(2), (run.samples_dir(2, "val") / "samples.json").read_text()
    stage2.train_chain(run, cfg, 2, progress=False, final_splits=("val",))
    assert run.pipeline_stamp(2) == stamp2 and run.has_samples(2, "val")
    assert (run.samples_dir(2, "val") / "samples.json").read_text() == marked  # not sampled again

    train1("sampling.steps=3")  # another setting: saved again
    assert run.pipeline_stamp(1) != stamp1 and run.samples_state(1, "val") == "stale"
    stamp1 = run.pipeline_stamp(1)
    cfg = train1("sampling.steps=3", "train.steps=3")  # trained on: saved again
    assert run.pipeline_stamp(1) != stamp1
    flags = run.flags_path(1, "train").stat().st_mtime_ns
    assert run.flags_state(1) == "ok"  # Stage-I's samples are stale, the flags still match them
    for split in ("train", "val"):
        simulate.sample_split(run, cfg, split, stage=1, progress=False)
    assert run.flags_state(1) == "stale"  # made from the samples of the Stage-I before
    with pytest.raises(MissingArtifactError, match=r"other Stage-1 samples .* sim2real flag --run .* --stage 1"):
        stage2.train_stage_n(run, cfg, 2, progress=False)
    stage2.train_chain(run, cfg, 2, progress=False, final_splits=())  # Stage-II finished, after another Stage-I
    assert run.flags_path(1, "train").stat().st_mtime_ns != flags and run.flags_state(1) == "ok"  # flagged again
    assert run.pipeline_stamp(2) != stamp2 and run.samples_state(2, "val") == "stale"
