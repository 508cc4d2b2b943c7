"""A condition is a function of the CAD (and the previous stages' outputs) only, built by one function
that training and sampling share: the real capture's holes and mismatches never reach it.

Each test compares the condition maps a training dataset hands the denoiser with the maps the sampler
(`Sim2RealPipeline`, the GAN baselines) feeds it for the same frames, on frames whose real capture has
holes and >= max_diff mismatches (where the two used to differ)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL

from sim2real_kit import simulate, stage1, stage2
from sim2real_kit.camera import Camera, look_at
from sim2real_kit.config import load_config
from sim2real_kit.data.dataset import PairedDepthDataset
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.metrics import hole_rates
from sim2real_kit.patches import patch_grid, save_flag_file
from sim2real_kit.pipeline import Sim2RealPipeline
from sim2real_kit.run import RunFolder, resolve_config

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 16


def _layout_with_holes(root, scenes=3, frames=3, width=32, height=24, seed=0) -> DepthLayout:
    """Planes and a box; the real capture has random holes, a band of flying pixels 0.8 m behind the CAD
    (>= max_diff: masked out in `mask` mode) and 1 cm noise."""
    rng = np.random.default_rng(seed)
    cam = Camera(width * 0.8, width * 0.8, width / 2, height / 2, width, height)
    lay = DepthLayout.create(root, cam, meta={"source": "test"})
    refs = {"train": [], "val": []}
    for s in range(scenes):
        split = "val" if s == scenes - 1 else "train"
        for f in range(frames):
            ref = FrameRef(f"s{s:02d}", f"{f:03d}")
            cad = np.full((height, width), 1.5 + 0.2 * f, np.float32)
            cad[height // 4 : height // 2, width // 4 : width // 2] = 1.0
            cad[:, -3:] = 0.0  # no CAD geometry
            real = cad + rng.normal(0, 0.01, cad.shape).astype(np.float32)
            real[rng.random(cad.shape) < 0.15] = 0.0  # holes
            real[height // 2 : height // 2 + 2] += 0.8  # mismatch >= max_diff
            lay.write_frame(ref, cad, np.clip(real, 0, None), look_at([0, -3 - s, 1.5], [0, 0, 1.0]))
            refs[split].append(ref)
    for split, r in refs.items():
        lay.write_split(split, r)
    return lay


def _record_encodes(pipe: Sim2RealPipeline) -> list[torch.Tensor]:
    """Make `pipe.codec.encode` record every map it encodes: the condition maps the denoisers see."""
    seen: list[torch.Tensor] = []
    encode = pipe.codec.encode

    def recording(x):
        seen.append(x.detach().clone())
        return encode(x)

    pipe.codec.encode = recording
    return seen


def test_issue_example_condition_ignores_the_real_capture():
    """cad = [1, 1, 2] m, real = [0, 1.01, 2.9] m: the training condition is the CAD's alone."""
    from sim2real_kit.depth import cad_condition

    cad = np.array([[1.0, 1.0, 2.0]], np.float32)
    real = np.array([[0.0, 1.01, 2.9]], np.float32)
    expected = np.log(cad / 0.05) / np.log(100) * 2 - 1  # [0.301, 0.301, 0.602]
    np.testing.assert_allclose(expected, [[0.301, 0.301, 0.602]], atol=1e-3)
    for holes in ("mask", "model", "generate"):
        ds = PairedDepthDataset.__new__(PairedDepthDataset)
        ds.holes, ds.target, ds.residual_scale, ds.max_diff_m = holes, "residual", 0.5, 0.5
        maps = ds.encode(cad, real)
        np.testing.assert_allclose(maps["cad_n"][0].numpy(), expected, atol=1e-6, err_msg=holes)
        np.testing.assert_allclose(cad_condition(torch.from_numpy(cad)).numpy(), expected, atol=1e-6)
        assert maps["valid"][0].tolist() == [[0.0, 1.0, 0.0]]


@pytest.mark.parametrize("holes", ["mask", "model", "generate"])
def test_stage1_condition_equals_the_pipelines(tmp_path, holes):
    layout = _layout_with_holes(tmp_path / "ds")
    cfg = load_config("tiny", overrides=[f"data.size={SIZE}", f"data.holes={holes}", *TINY_MODEL])
    ds = PairedDepthDataset.from_config(cfg, layout, "val", train=False)
    from sim2real_kit.models.denoiser import ControlledDenoiser

    pipe = Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)])
    seen = _record_encodes(pipe)
    cad = np.stack([layout.read_depth(r, "gt") for r in ds.refs])
    pipe(cad, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    train_cond = torch.stack([ds[i]["cad_n"] for i in range(len(ds))])  # [F, 1, S, S]
    assert (train_cond < 1).any() and (torch.stack([ds[i]["valid"] for i in range(len(ds))]) == 0).any()
    torch.testing.assert_close(seen[0], train_cond, rtol=0, atol=1e-6)


@pytest.mark.parametrize("holes", ["mask", "model", "channel", "generate"])
@pytest.mark.parametrize("condition", ["depth", "residual"])
def test_stage2_conditions_equal_the_pipelines(tmp_path, holes, condition):
    """Stage-II trains on (CAD condition, Stage-I's saved output) through `StageNDataset`; a 2-stage
    pipeline run on the same train frames with the same noise must feed the denoiser the same two maps.
    holes "model": the default hole model (a validity head, kept by the chain); "channel": the validity channel."""
    layout = _layout_with_holes(tmp_path / "ds")
    run = tmp_path / "run"
    mode = ["data.holes=model", "model.validity=channel"] if holes == "channel" else [f"data.holes={holes}"]
    overrides = [f"data.root={layout.root}", f"data.size={SIZE}", *mode, *TINY_MODEL]
    overrides += [
        f"stage2.condition={condition}",
        "train.steps=1",
        "train.batch_size=2",
        "train.val_frames=1",
        "model.target_std=0",
    ]
    run = RunFolder(run)
    cfg = resolve_config(run, overrides=overrides)
    stage1.train_stage1(run, cfg, progress=False)
    simulate.sample_split(run, cfg, "train", stage=1, progress=False)
    layout = DepthLayout(layout.root)
    samples = run.load_samples(1, "train", layout)
    boxes = patch_grid(SIZE, SIZE, 8, 8)
    save_flag_file(
        run.flags_path(1, "train"), scores=torch.full((len(samples.refs), 4), 0.2),
        boxes=boxes, frame_ids=[str(r) for r in samples.refs], frame_size=SIZE, threshold=0.5, binary=True,
        split="train",
    )  # fmt: skip
    ds = stage2.stage_n_dataset(run, cfg, layout, 2)
    first = simulate.load_pipeline(run, 1, cfg)
    pipe = Sim2RealPipeline.build(cfg, [first.denoisers[0], first.denoisers[0].expand_condition(2)])
    pipe.set_validity_head(first.validity_head)  # the chain keeps Stage-I's head (None without one)
    seen = _record_encodes(pipe)
    cad = np.stack([layout.read_depth(r, "gt") for r in ds.base.refs])
    gen = torch.Generator().manual_seed(cfg.seed + 1000)  # sample_split's generator for Stage-I
    extra = {}
    if holes == "model":  # a head draws its holes from a fork of the generator's state after every stage's noise,
        # so a 2-stage call's Stage-I holes are another draw than the stored 1-stage samples'; the kit's Stage-II
        # sampling is conditioned on the stored Stage-I draw (`sample_split`), as here
        at = {str(r): i for i, r in enumerate(samples.refs)}
        extra["given_stages"] = [np.stack([samples.sims[1][at[str(r)]] for r in ds.base.refs])]
    pipe(cad, num_inference_steps=cfg.sampling.steps, generator=gen, batch_size=cfg.sampling.batch_size, **extra)
    assert len(seen) == 2  # one batch: the CAD condition, then the Stage-I map
    items = [ds[i] for i in range(len(ds))]
    torch.testing.assert_close(seen[0], torch.stack([it["cad_n"] for it in items]), rtol=0, atol=1e-6)
    torch.testing.assert_close(seen[1], torch.stack([it["prev_n"] for it in items]), rtol=0, atol=1e-5)
    if holes in ("model", "channel") and condition == "depth":  # Stage-I's holes (far: 1) reach both sides alike
        cad_ok = torch.stack([it["cad"] for it in items]) > 0
        assert bool(((seen[1] == 1) & cad_ok).any())
        assert hole_rates(samples.cad, samples.sims[1])["all"] > 0  # the saved samples the benchmark reads


def test_stage2_samples_are_conditioned_on_the_stored_stage1_draw(tmp_path):
    """One Stage-I draw per frame everywhere: Stage-II's samples keep the Stage-I sample already stored for the
    frame (the one Stage-II's condition and every Stage-I metric read) instead of drawing Stage-I again, and
    Stage-II is the pipeline's output on exactly that map. Without stored Stage-I samples, they are made first."""
    layout = _layout_with_holes(tmp_path / "ds")
    run = RunFolder(tmp_path / "run")
    overrides = [f"data.root={layout.root}", f"data.size={SIZE}", *TINY_MODEL, "train.steps=1"]
    overrides += ["train.batch_size=2", "train.val_frames=1", "model.target_std=0", "sampling.steps=2"]
    cfg = resolve_config(run, overrides=overrides)
    stage1.train_stage1(run, cfg, progress=False)
    first = simulate.load_pipeline(run, 1, cfg)
    chain = Sim2RealPipeline.build(cfg, [first.denoisers[0], first.denoisers[0].expand_condition(2)])
    with torch.no_grad():  # a Stage-II whose condition matters
        for p in chain.denoisers[1].controlnet.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.05)
    chain.save_pretrained(run.pipeline_dir(2))
    layout = DepthLayout(layout.root)
    for split in ("val", "train"):
        if split == "val":
            simulate.sample_split(run, cfg, split, stage=1, progress=False)
        simulate.sample_split(run, cfg, split, stage=2, progress=False)  # train: Stage-I is sampled first
        s1, s2 = run.load_samples(1, split, layout), run.load_samples(2, split, layout)
        assert [str(r) for r in s1.refs] == [str(r) for r in s2.refs]
        np.testing.assert_array_equal(s2.sims[1], s1.sims[1])
        pipe = simulate.load_pipeline(run, 2, cfg)
        gen = torch.Generator().manual_seed(cfg.seed + 2000)  # sample_split's generator for Stage-II
        out = pipe(s1.cad, generator=gen, given_stages=[s1.sims[1]])
        np.testing.assert_allclose(s2.sims[2], out.depth, atol=1.5e-3)  # PNG: 1 mm steps
        assert np.abs(s2.sims[2] - s2.sims[1])[s1.cad > 0].max() > 1e-3  # Stage-II did run


@pytest.mark.parametrize("kind", ["pix2pix", "cyclegan"])
@pytest.mark.parametrize("holes", ["mask", "model", "generate"])
def test_gan_baseline_condition_equals_the_training_datasets(tmp_path, kind, holes):
    from sim2real_kit.models.baselines import BaselineConfig, BaselineSimulator, build_baseline

    layout = _layout_with_holes(tmp_path / "ds")
    ds = PairedDepthDataset(layout, "val", size=SIZE, train=False, holes=holes)
    sim = BaselineSimulator.from_model(build_baseline(kind, BaselineConfig(ngf=4, ndf=4, levels=2), SIZE), kind, SIZE)
    seen = []
    simulate_normalized = sim.simulate_normalized
    sim.simulate_normalized = lambda cad_n: seen.append(cad_n.clone()) or simulate_normalized(cad_n)
    items = [ds[i] for i in range(len(ds))]
    sim.simulate(torch.stack([it["cad"][0] for it in items]))
    torch.testing.assert_close(seen[0], torch.stack([it["cad_n"] for it in items]), rtol=0, atol=1e-6)
