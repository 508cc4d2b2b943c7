"""`model.validity: head` (issue 20, kit extension): the denoiser trains as a `data.holes: mask` one, a separate
small CNN (`holes.ValidityHead`) fit after it gives P(valid) from the CAD, and the pipeline draws holes from it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL
from test_holes import _band_layout

from sim2real_kit.config import load_config
from sim2real_kit.errors import ConfigError
from sim2real_kit.holes import HEAD_FOLDER, ValidityHead, correlated_uniform, draw_holes, fit_validity_head
from sim2real_kit.models.denoiser import ControlledDenoiser
from sim2real_kit.pipeline import Sim2RealPipeline
from sim2real_kit.run import RunFolder

pytestmark = pytest.mark.usefixtures("one_thread")

HEAD = ["data.holes=model", "model.validity=head"]


def _cfg(size=16, *extra):
    return load_config("tiny", overrides=[f"data.size={size}", *TINY_MODEL, *extra])


def _pipes(cfg, head_seed=0):
    """(the pipeline of an untrained mask-mode denoiser, the same with a random validity head)."""
    torch.manual_seed(0)
    denoiser = ControlledDenoiser.from_config(cfg)
    torch.manual_seed(head_seed)
    head = ValidityHead(width=8)
    plain = Sim2RealPipeline.build(cfg, [denoiser])
    return plain, Sim2RealPipeline.build(cfg, [denoiser]).set_validity_head(head)


def _cad(frames=3, size=16):
    cad = np.full((frames, size, size), 1.5, np.float32)
    cad[:, 4:10, 4:10] = 1.0  # a box: edges for the head's input
    cad[:, :, -2:] = 0.0  # no CAD
    return cad


def test_config_validity_head_needs_holes_model():
    with pytest.raises(ConfigError, match=r"model.validity.*data.holes"):
        load_config("tiny", overrides=["model.validity=head"])
    with pytest.raises(ConfigError, match=r"model.validity = 'sometimes'; allowed: channel, head"):
        load_config("tiny", overrides=["data.holes=model", "model.validity=sometimes"])
    with pytest.raises(ConfigError, match=r"model.validity.*data.holes"):
        load_config("tiny", overrides=["model.validity=channel"])
    cfg = load_config("tiny", overrides=HEAD)
    assert cfg.model.validity == "head" and cfg.train.validity_head_steps == 1500
    # the head is the default hole model (2026-12-07): data.holes=model alone gives it, and a mask run is unchanged
    from sim2real_kit.config import denoiser_holes, validity_channel, validity_head

    assert load_config("tiny", overrides=["data.holes=model"]).model.validity == "head"
    mask = load_config("tiny")
    assert validity_head(load_config("tiny", overrides=["data.holes=model"])) and not validity_head(mask)
    assert not validity_channel(mask) and denoiser_holes(mask) == "mask"


def test_knob_reaches_the_denoiser_and_the_dataset(plane_layout):
    """With a head the denoiser has no validity channel and the dataset's items are a mask run's."""
    from sim2real_kit.data.dataset import PairedDepthDataset

    head, mask = _cfg(16, *HEAD), _cfg(16)
    assert ControlledDenoiser.from_config(head).hole_channels == 0
    assert ControlledDenoiser.from_config(_cfg(16, "data.holes=model", "model.validity=channel")).hole_channels == 1
    a = PairedDepthDataset.from_config(head, plane_layout, "train", train=True)[0]
    b = PairedDepthDataset.from_config(mask, plane_layout, "train", train=True)[0]
    for key in ("target", "mask", "cad_n"):
        assert torch.equal(a[key], b[key]), key


def test_pipeline_with_a_head_keeps_the_depth_and_draws_the_holes():
    """Same generator: the depth where kept is the head-less pipeline's (u drawn after the diffusion noise, from a
    fork of the generator), the holes are exactly where u > P(valid), validity is P(valid) (0 without CAD)."""
    from sim2real_kit.holes import fork_generator

    cfg = _cfg(16, "model.residual_scale=100")
    plain, piped = _pipes(cfg)
    cad = _cad()
    base = plain(cad, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    out = piped(cad, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert base.validity is None and out.validity.shape == (3, 16, 16)
    cad_ok = cad > 0
    p = piped.validity_head.p_valid(torch.from_numpy(cad)).numpy()
    np.testing.assert_allclose(out.validity, np.where(cad_ok, p, 0.0), atol=1e-6)
    gen = torch.Generator().manual_seed(0)
    torch.randn((3, 1, 16, 16), generator=gen)  # the diffusion noise of the one stage
    u = correlated_uniform((3, 16, 16), 1.0, fork_generator(gen)).numpy()
    holes = cad_ok & (u > out.validity)
    assert holes.any() and (cad_ok & ~holes).any()
    assert np.array_equal(out.depth == 0, holes | ~cad_ok | (base.depth == 0))
    np.testing.assert_array_equal(out.depth[~holes], base.depth[~holes])


def test_drawn_hole_rate_is_the_mean_of_one_minus_p_valid():
    """Over many pixels the drawn holes' rate is mean(1 - P(valid)) (to ~4 binomial sd of the blob-correlated
    draw: 3 x 64 x 64 pixels, blobs of ~sigma^2 ~ 3 px, so ~4 000 independent draws)."""
    p = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1)) * 0.6 + 0.2
    holes = draw_holes(p, torch.Generator().manual_seed(2))
    expected = float((1 - p).mean())
    tol = 4 * np.sqrt(expected * (1 - expected) / 4000)
    assert float(holes.float().mean()) == pytest.approx(expected, abs=tol)


def test_pipeline_with_a_head_round_trips_and_old_pipelines_load(tmp_path):
    cfg = _cfg(16, *HEAD, "model.residual_scale=100")
    plain, piped = _pipes(cfg)
    cad = _cad()
    piped.save_pretrained(tmp_path / "head")
    plain.save_pretrained(tmp_path / "plain")
    assert (tmp_path / "head" / HEAD_FOLDER / "diffusion_pytorch_model.safetensors").is_file()
    assert not (tmp_path / "plain" / HEAD_FOLDER).exists()
    assert "validity_head" not in json.loads((tmp_path / "plain" / "model_index.json").read_text())
    loaded = Sim2RealPipeline.from_pretrained(tmp_path / "head")
    assert loaded.validity_head is not None and loaded.validity_head.config.width == 8
    a = piped(cad, num_inference_steps=2, generator=torch.Generator().manual_seed(3))
    b = loaded(cad, num_inference_steps=2, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.validity, b.validity)
    old = Sim2RealPipeline.from_pretrained(tmp_path / "plain")
    assert old.validity_head is None
    c = plain(cad, num_inference_steps=2, generator=torch.Generator().manual_seed(3))
    d = old(cad, num_inference_steps=2, generator=torch.Generator().manual_seed(3))
    assert d.validity is None
    np.testing.assert_array_equal(c.depth, d.depth)


def test_head_on_a_channel_pipeline_is_refused():
    cfg = _cfg(16, "data.holes=model", "model.validity=channel")
    pipe = Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)])
    with pytest.raises(ConfigError, match="validity channel"):
        pipe.set_validity_head(ValidityHead(width=4))


def test_head_learns_a_band_of_pixels(tmp_path):
    """On the toy sensor that drops a 1-px-dilated band at the box's silhouette (tests/test_holes.py), the head's
    P(valid) < 0.5 region on val frames it never saw has IoU > 0.8 with the band (measured 1.00 / 1.00 / 0.999 for
    head seeds 0-2 at 300 steps)."""
    from sim2real_kit.data.dataset import PairedDepthDataset

    layout = _band_layout(tmp_path / "ds", frames=32)
    cfg = _cfg(32, *HEAD)
    head = fit_validity_head(cfg, layout, steps=300, seed=0)
    val = PairedDepthDataset.from_config(cfg, layout, "val", train=False)
    cad = torch.stack([val[i]["cad"][0] for i in range(len(val))])
    real = torch.stack([val[i]["real"][0] for i in range(len(val))])
    predicted, true = (head.p_valid(cad) < 0.5) & (cad > 0), (real == 0) & (cad > 0)
    iou = float((predicted & true).sum() / (predicted | true).sum())
    assert true.float().mean() > 0.05 and iou > 0.8, iou


def test_fit_names_the_dataset_when_the_train_split_is_empty(tmp_path):
    from sim2real_kit.errors import LayoutError

    layout = _band_layout(tmp_path / "ds", frames=4)
    layout.write_split("train", [])
    with pytest.raises(LayoutError, match=r"train split has no frame.*ds|ds.*train split has no frame"):
        fit_validity_head(_cfg(32, *HEAD), layout, steps=2, seed=0)


def _stage1(run_dir, layout, *extra):
    from sim2real_kit import stage1
    from sim2real_kit.run import resolve_config

    cfg = _cfg(16, f"data.root={layout.root}")
    RunFolder(run_dir).save_config(cfg)
    overrides = ["train.steps=3", "train.batch_size=2", "train.val_frames=1", "sampling.steps=2", *extra]
    stage1.train_stage1(run_dir, resolve_config(run_dir, overrides=overrides), progress=False)
    return Sim2RealPipeline.from_pretrained(RunFolder(run_dir).pipeline_dir(1))


def test_stage1_with_a_head_trains_the_mask_denoiser_and_saves_the_head(tmp_path, plane_layout, monkeypatch):
    """The knob reaches the artifact: a Stage-I with `model.validity=head` has a denoiser bit-identical to a
    `data.holes=mask` run's (same seed and steps), 0 hole channels and a saved head; resumed, the head is not
    refit."""
    from sim2real_kit import holes

    mask = _stage1(tmp_path / "mask", plane_layout)
    head = _stage1(tmp_path / "head", plane_layout, *HEAD, "train.validity_head_steps=5")
    assert mask.validity_head is None and head.validity_head is not None
    assert head.denoisers[0].hole_channels == 0
    a, b = mask.denoisers[0].state_dict(), head.denoisers[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    saved = {k: v.clone() for k, v in head.validity_head.state_dict().items()}

    def refit(*args, **kw):
        raise AssertionError("the saved head was refit")

    monkeypatch.setattr(holes, "fit_validity_head", refit)
    again = _stage1(tmp_path / "head", plane_layout, *HEAD, "train.validity_head_steps=5")
    assert all(torch.equal(saved[k], v) for k, v in again.validity_head.state_dict().items())


def test_calibrate_holes_with_a_head_is_refused(tmp_path, plane_layout, capsys):
    from sim2real_kit.cli import main
    from sim2real_kit.simulate import calibrate_validity_threshold

    cfg = _cfg(16, *HEAD, f"data.root={plane_layout.root}")
    run = RunFolder(tmp_path / "run")
    run.save_config(cfg)
    msg = "the validity head draws holes at its fitted probability; there is no threshold to calibrate"
    with pytest.raises(ConfigError, match=msg):
        calibrate_validity_threshold(run, cfg)
    assert main(["sample", "--run", str(run.root), "--calibrate-holes"]) == 2
    assert msg in capsys.readouterr().err


def _constant_head(logit: float) -> ValidityHead:
    """A head whose P(valid) is sigmoid(logit) everywhere."""
    head = ValidityHead(width=4)
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.net[-1].bias.fill_(logit)
    return head


@pytest.mark.parametrize("path", ["call", "native", "tiled", "full"])
def test_every_sampling_path_draws_the_heads_holes(path):
    """The plain call, `native=True`, `tiling.simulate_tiled` and `simulate_full`: a head certain of depth keeps
    the head-less depth exactly (same generator), one certain of none leaves no depth, one at P(valid) = 0.7 drops
    ~30 % of the CAD pixels (tiled: one field per frame cut into its overlapping tiles), and where it keeps depth
    that is the head-less depth: the hole draws shift none of the diffusion's, over several calls too."""
    from sim2real_kit.tiling import simulate_full, simulate_tiled

    cfg = _cfg(16, "model.residual_scale=100")
    plain, _ = _pipes(cfg)
    cad = np.full((2, 24, 40), 1.5, np.float32)
    cad[:, 6:14, 10:20] = 1.0

    def run(pipe, gen):
        head = pipe.validity_head is not None
        if path == "tiled":
            return simulate_tiled(pipe, cad, generator=gen, steps=2, return_validity=head)
        if path == "full":
            return simulate_full(pipe, cad, generator=gen, steps=2, return_validity=head)
        out = pipe(cad if path == "native" else cad[:, :, :24], num_inference_steps=2, generator=gen,
                   native=path == "native")  # fmt: skip
        return out.depth, out.validity

    base = run(plain, torch.Generator().manual_seed(0))
    base = base[0] if isinstance(base, tuple) else base
    for logit, rate in ((20.0, 0.0), (-20.0, 1.0), (float(np.log(0.7 / 0.3)), 0.3)):
        pipe = Sim2RealPipeline.build(cfg, list(plain.denoisers)).set_validity_head(_constant_head(logit))
        depth, prob = run(pipe, torch.Generator().manual_seed(0))
        on = (base > 0) if path != "call" else (base > 0) | (depth > 0)
        assert prob.shape == depth.shape and np.allclose(prob[on], 1 / (1 + np.exp(-logit)), atol=1e-4)
        holes = on & (depth == 0)
        assert float(holes.sum() / on.sum()) == pytest.approx(rate, abs=0.08), (logit, path)
        np.testing.assert_array_equal(depth[depth > 0], base[depth > 0])
        if rate == 0.0:
            np.testing.assert_array_equal(depth, base)


def test_fork_generator_leaves_the_generator_and_is_its_function():
    from sim2real_kit.holes import fork_generator

    g = torch.Generator().manual_seed(5)
    a = torch.rand(4, generator=fork_generator(g))
    b = torch.rand(4, generator=fork_generator(g))
    assert torch.equal(a, b)  # a function of the state, which the fork does not advance
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(a, torch.rand(4, generator=fork_generator(g)))  # another state, another fork


def test_the_chain_keeps_the_head_and_a_finished_stage1_keeps_its_pipeline(tmp_path, plane_layout):
    """Stage-I with a head, its samples (holes drawn), flags and Stage-II: the Stage-II pipeline keeps Stage-I's
    head (later stages are conditioned on depth with holes); Stage-I called again trains and fits nothing and keeps
    its pipeline (same save), so its samples stay current."""
    from sim2real_kit import flagging, simulate, stage1, stage2
    from sim2real_kit.run import resolve_config

    run = RunFolder(tmp_path / "run")
    run.save_config(_cfg(16, f"data.root={plane_layout.root}", *HEAD))
    more = ["train.steps=2", "train.batch_size=2", "train.val_frames=1", "sampling.steps=2", "disc.steps=2",
            "disc.patch_size=8", "disc.stride=8", "disc.num_points=16", "disc.batch_size=8", "disc.min_valid=4",
            "train.validity_head_steps=3"]  # fmt: skip
    cfg = resolve_config(run.root, overrides=more)
    stage1.train_stage1(run.root, cfg, progress=False)
    for split in ("train", "val"):
        simulate.sample_split(run, cfg, split, stage=1, progress=False)
    stamp = run.pipeline_stamp(1)
    stage1.train_stage1(run.root, cfg, progress=False)
    assert run.pipeline_stamp(1) == stamp and run.has_samples(1, "val")
    flagging.train_and_flag(run, cfg, stage=1, progress=False)
    stage2.train_chain(run, cfg, 2, progress=False, final_splits=("val",))
    one = Sim2RealPipeline.from_pretrained(run.pipeline_dir(1))
    two = Sim2RealPipeline.from_pretrained(run.pipeline_dir(2))
    assert two.num_stages == 2 and all(d.hole_channels == 0 for d in two.denoisers)
    h1, h2 = one.validity_head.state_dict(), two.validity_head.state_dict()
    assert all(torch.equal(h1[k], h2[k]) for k in h1)


def test_a_chain_sampled_stage_by_stage_keeps_stage1s_holes():
    """With a head, a two-stage chain called with Stage-I's output as `given_stages` (as `simulate.sample_split`
    samples Stage-II) makes no new draw: every stage's output has Stage-I's holes; in one call, too."""
    cfg = _cfg(16, "model.residual_scale=100")
    torch.manual_seed(0)
    one = ControlledDenoiser.from_config(cfg)
    head = _constant_head(0.0)  # P(valid) 0.5: half the pixels
    pipe = Sim2RealPipeline.build(cfg, [one, one.expand_condition(2)]).set_validity_head(head)
    cad = _cad()
    s1 = pipe(cad, stages=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).depth
    out = pipe(cad, num_inference_steps=2, generator=torch.Generator().manual_seed(1), given_stages=[s1],
               return_all_stages=True)  # fmt: skip
    assert 0.3 < float((s1[cad > 0] == 0).mean()) < 0.7
    np.testing.assert_array_equal(out.depth == 0, s1 == 0)
    both = pipe(cad, num_inference_steps=2, generator=torch.Generator().manual_seed(2), return_all_stages=True)
    np.testing.assert_array_equal(both.stages[0] == 0, both.stages[1] == 0)


def test_the_latent_preset_takes_the_head_and_keeps_its_depth(tmp_path):
    """sd21 (a tiny local SD folder): with the default hole model the latent denoiser gets no validity channels
    (the head lives in pixel space, on the CAD), and a pipeline with a head at P(valid) 0.7 drops ~30 % of the
    CAD pixels and keeps the head-less latent pipeline's depth exactly elsewhere."""
    from conftest import write_tiny_sd

    from sim2real_kit.models.codec import LatentCodec

    write_tiny_sd(tmp_path / "sd")
    cfg = load_config("sd21", overrides=[f"model.sd_path={tmp_path / 'sd'}", "data.size=16", "data.holes=model"])
    assert cfg.model.validity == "head"
    torch.manual_seed(0)
    denoiser = ControlledDenoiser.from_config(cfg)
    assert denoiser.hole_channels == 0
    codec = LatentCodec.from_pretrained(tmp_path / "sd")
    plain = Sim2RealPipeline.build(cfg, [denoiser], codec=codec)
    cad = np.full((2, 16, 16), 1.5, np.float32)
    cad[:, 4:10, 5:12] = 1.0
    base = plain(cad, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).depth
    head = Sim2RealPipeline.build(cfg, [denoiser], codec=codec).set_validity_head(_constant_head(float(np.log(7 / 3))))
    out = head(cad, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    on = base > 0
    assert float((on & (out.depth == 0)).sum() / on.sum()) == pytest.approx(0.3, abs=0.1)
    np.testing.assert_array_equal(out.depth[out.depth > 0], base[out.depth > 0])
    assert np.allclose(out.validity[on], 0.7, atol=1e-4)


# ---------------------------------------------------------------------- the real sample's few-shot Stage-I
def _outline_frames(frames=4, size=32, seed=0):
    """(cad, real) [F, size, size] metres: a box (1.0-1.4 m) in front of a plane (2.5-3.0 m); the real capture
    loses every pixel within 1 px of the box's silhouette (and 2 % at random elsewhere)."""
    rng = np.random.default_rng(seed)
    cad = np.empty((frames, size, size), np.float32)
    for f in range(frames):
        cad[f] = rng.uniform(2.5, 3.0)
        top, left = rng.integers(2, size // 2, 2)
        cad[f, top : top + size // 3, left : left + size // 3] = rng.uniform(1.0, 1.4)
    from scipy.ndimage import binary_dilation

    jump = np.zeros(cad.shape, bool)
    jump[:, :, 1:] |= np.abs(np.diff(cad, axis=2)) > 0.1
    jump[:, 1:] |= np.abs(np.diff(cad, axis=1)) > 0.1
    band = binary_dilation(jump, np.ones((1, 3, 3), bool))
    real = np.where(band | (rng.random(cad.shape) < 0.02), 0.0, cad + rng.normal(0, 0.003, cad.shape))
    return cad, real.astype(np.float32), band


def test_fit_on_frames_learns_the_silhouette_from_crops_and_is_seeded():
    """`holes.fit_validity_head_on_frames`: random crops of whole frames, BCE where the weight is on; the head
    (CPU, eval mode) predicts the silhouette band as holes and faces as valid; the same seed gives the same head,
    one loss per step."""
    from sim2real_kit.holes import fit_validity_head_on_frames

    cad, real, band = _outline_frames()
    weight = np.ones(cad.shape, bool)
    losses = []
    head = fit_validity_head_on_frames(cad, real, weight, crop=16, steps=150, seed=0, losses=losses)
    assert isinstance(head, ValidityHead) and not head.training
    assert all(p.device.type == "cpu" for p in head.parameters())
    assert len(losses) == 150 and np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])
    p = head.p_valid(torch.from_numpy(cad)).numpy()
    assert p[band].mean() < 0.4 and p[~band].mean() > 0.8, (p[band].mean(), p[~band].mean())
    again = fit_validity_head_on_frames(torch.from_numpy(cad), torch.from_numpy(real), torch.from_numpy(weight),
                                        crop=16, steps=5, seed=0)  # fmt: skip
    once = fit_validity_head_on_frames(cad, real, weight, crop=16, steps=5, seed=0)
    other = fit_validity_head_on_frames(cad, real, weight, crop=16, steps=5, seed=1)
    a, b, c = again.state_dict(), once.state_dict(), other.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)


def test_fit_on_frames_never_reads_the_real_depth_outside_the_weight():
    """Flipping the real validity (depth <-> hole) where the weight is off leaves every weight of the head bit for
    bit as it was; the same flip where the weight is on changes them (the test can fail)."""
    from sim2real_kit.holes import fit_validity_head_on_frames

    cad, real, _ = _outline_frames()
    weight = np.ones(cad.shape, bool)
    weight[:, :, : cad.shape[2] // 2] = False  # the left half: a held-out object's pixels

    def flipped(where):
        return np.where(where, np.where(real > 0, 0.0, cad), real).astype(np.float32)

    def fit(r):
        return fit_validity_head_on_frames(cad, r, weight, crop=16, steps=20, seed=0).state_dict()

    base, out, seen = fit(real), fit(flipped(~weight)), fit(flipped(weight))
    assert all(torch.equal(base[k], out[k]) for k in base)
    assert not all(torch.equal(base[k], seen[k]) for k in base)


def test_fit_on_frames_names_bad_input():
    from sim2real_kit.holes import fit_validity_head_on_frames

    cad, real, _ = _outline_frames(size=24)
    ok = np.ones(cad.shape, bool)
    with pytest.raises(ConfigError, match=r"crop of 32 px.*24x24"):
        fit_validity_head_on_frames(cad, real, ok, crop=32, steps=1, seed=0)
    with pytest.raises(ConfigError, match=r"weight.*no pixel"):
        fit_validity_head_on_frames(cad, real, np.zeros(cad.shape, bool), crop=16, steps=1, seed=0)
    with pytest.raises(ConfigError, match=r"weight.*no pixel"):  # weight only where there is no CAD
        fit_validity_head_on_frames(np.zeros_like(cad), real, ok, crop=16, steps=1, seed=0)
    with pytest.raises(ConfigError, match=r"shape"):
        fit_validity_head_on_frames(cad, real[:, :-1], ok, crop=16, steps=1, seed=0)


def _toy_sample(root, frames: int = 3, seed: int = 0):
    """A small real sample (an imported `lasa_depth` layout with instance ids, 48x64): a box (id 1) and a slab
    (id 2) on no-CAD background; real = CAD + 3 mm noise, no depth within 1 px of either object's outline and on
    3 % of their other pixels at random (a sensor that loses silhouettes)."""
    from scipy.ndimage import binary_dilation, binary_erosion

    from sim2real_kit.camera import Camera
    from sim2real_kit.data.layout import DepthLayout, FrameRef

    rng = np.random.default_rng(seed)
    H, W = 48, 64
    meta = {"sensor": "toy sensor", "classes": {1: "box", 2: "slab"}, "splits": {"unit": "frame"}}
    lay = DepthLayout.create(root, Camera(60, 60, W / 2, H / 2, W, H), meta=meta)
    refs = []
    for f in range(frames):
        cad, inst = np.zeros((H, W), np.float32), np.zeros((H, W), np.int32)
        x0 = 6 + 3 * f
        cad[8:30, x0 : x0 + 20], inst[8:30, x0 : x0 + 20] = 1.0, 1
        cad[20:44, 34:58], inst[20:44, 34:58] = 1.2 + np.linspace(0, 0.05, 24, dtype=np.float32), 2
        outline = np.zeros((H, W), bool)
        for k in (1, 2):
            obj = inst == k
            outline |= obj & ~binary_erosion(obj) | binary_dilation(obj) & ~obj & (inst > 0)
        real = np.where(cad > 0, cad + rng.normal(0, 0.003, cad.shape), 0).astype(np.float32)
        real[(outline | (rng.random(cad.shape) < 0.03)) & (cad > 0)] = 0
        ref = FrameRef("s", f"{f:03d}")
        lay.write_frame(ref, cad, real, np.eye(4), instance=inst)
        refs.append(ref)
    lay.write_split("train", refs[:-1])
    lay.write_split("val", refs[-1:])
    return lay.root


@pytest.fixture(scope="module")
def toy_sample(tmp_path_factory):
    return _toy_sample(tmp_path_factory.mktemp("toy_sample") / "sample")


RS = ["train.batch_size=4", "train.log_every=5", "train.ckpt_every=1000", "sampling.steps=2", "sampling.batch_size=64"]


def _spy_head_fits(monkeypatch):
    """Record every `holes.fit_validity_head_on_frames` call's arguments (the fit still runs)."""
    from sim2real_kit import holes

    calls, real_fit = [], holes.fit_validity_head_on_frames

    def spy(cad, real, weight, **kw):
        calls.append({"cad": np.asarray(cad), "real": np.asarray(real), "weight": np.asarray(weight), **kw})
        return real_fit(cad, real, weight, **kw)

    monkeypatch.setattr(holes, "fit_validity_head_on_frames", spy)
    return calls


def test_real_sample_stage1_fits_the_head_on_the_training_pixels(toy_sample, tmp_path, monkeypatch):
    """The few-shot Stage-I with a head fits it on the frames at native resolution: weight = the object pixels
    but the held-out object's (holdout None: every object pixel), crops of data.size px, train.validity_head_steps
    steps, seed `seed`."""
    from sim2real_kit import real_sample as rs

    frames = rs.load_frames(rs.import_real_sample(tmp_path / "run", toy_sample))
    cfg = _cfg(16, *HEAD, *RS, "train.validity_head_steps=7", "seed=3")
    calls = _spy_head_fits(monkeypatch)
    pipe, summary = rs.train_heldout_stage1(frames, cfg, 2, tmp_path / "held", steps=2)
    rs.train_heldout_stage1(frames, cfg, None, tmp_path / "all", steps=2)
    held, every = calls
    np.testing.assert_array_equal(held["weight"], frames.object_mask() & ~frames.object_mask(2))
    np.testing.assert_array_equal(every["weight"], frames.object_mask())
    for call in calls:
        np.testing.assert_array_equal(call["cad"], frames.cad)
        assert (call["crop"], call["steps"], call["seed"]) == (16, 7, 3)
    assert pipe.validity_head is not None and summary["validity_head_fitted"] is True


def test_real_sample_stage1_with_a_head_saves_it_and_reuses_it(toy_sample, tmp_path, monkeypatch):
    """The knob reaches the artifact: the saved pipeline has validity_head/ iff model.validity=head; the denoiser
    is bit-identical to a data.holes=mask one's (no validity channel); settings.json carries the validity keys
    only with the head (a mask run's are as before). A finished run is reused without refitting; a run whose
    pipeline lacks the head fits it and saves it, the denoiser untouched."""
    from sim2real_kit import real_sample as rs

    frames = rs.load_frames(rs.import_real_sample(tmp_path / "run", toy_sample))
    mask_pipe, _ = rs.train_heldout_stage1(frames, _cfg(16, *RS), 2, tmp_path / "mask", steps=3)
    cfg = _cfg(16, *HEAD, *RS, "train.validity_head_steps=5")
    pipe, summary = rs.train_heldout_stage1(frames, cfg, 2, tmp_path / "head", steps=3)
    assert (tmp_path / "head" / "pipeline" / HEAD_FOLDER / "config.json").is_file()
    assert not (tmp_path / "mask" / "pipeline" / HEAD_FOLDER).exists() and mask_pipe.validity_head is None
    assert pipe.denoisers[0].hole_channels == 0 and not summary["reused"]
    a, b = mask_pipe.denoisers[0].state_dict(), pipe.denoisers[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    head_settings = json.loads((tmp_path / "head" / "settings.json").read_text())
    mask_settings = json.loads((tmp_path / "mask" / "settings.json").read_text())
    assert head_settings["model"]["validity"] == "head" and head_settings["train"]["validity_head_steps"] == 5
    assert "validity" not in mask_settings["model"] and "validity_head_steps" not in mask_settings["train"]
    assert head_settings["holes"] == "model" and mask_settings["holes"] == "mask"
    saved = {k: v.clone() for k, v in pipe.validity_head.state_dict().items()}

    calls = _spy_head_fits(monkeypatch)
    again, summary = rs.train_heldout_stage1(frames, cfg, 2, tmp_path / "head", steps=3)
    assert summary["reused"] and not calls  # loaded, not refit
    assert all(torch.equal(saved[k], v.cpu()) for k, v in again.validity_head.state_dict().items())
    # a pipeline without its head (as if saved before it): the head is fit and saved, the denoiser kept
    losses = (tmp_path / "head" / "losses.csv").read_text()
    again.set_validity_head(None).save_pretrained(tmp_path / "head" / "pipeline")
    mended, summary = rs.train_heldout_stage1(frames, cfg, 2, tmp_path / "head", steps=3)
    assert len(calls) == 1 and summary["validity_head_fitted"] is True
    assert (tmp_path / "head" / "pipeline" / HEAD_FOLDER / "config.json").is_file()
    assert (tmp_path / "head" / "losses.csv").read_text() == losses
    c = mended.denoisers[0].state_dict()
    assert all(torch.equal(b[k], c[k].cpu()) for k in b)
    assert all(torch.equal(saved[k], v.cpu()) for k, v in mended.validity_head.state_dict().items())


def test_the_held_out_objects_real_depth_never_reaches_the_head(toy_sample, tmp_path):
    """The few-shot Stage-I's head fit with the held-out object's real validity flipped (its holes filled with
    depth, its depth made holes) is bit-identical; the same flip on a training object changes it."""
    from sim2real_kit import real_sample as rs

    frames = rs.load_frames(rs.import_real_sample(tmp_path / "run", toy_sample))
    cfg = _cfg(16, *HEAD, *RS, "train.validity_head_steps=20")

    filled = frames.cad + np.random.default_rng(1).normal(0, 0.003, frames.cad.shape)  # depth where it had none

    def head_of(class_id, name):
        obj = frames.object_mask(class_id) if class_id else np.zeros(frames.cad.shape, bool)
        real = np.where(obj, np.where(frames.real > 0, 0.0, filled), frames.real).astype(np.float32)
        changed = rs.RealFrames(**{**frames.__dict__, "real": real})
        pipe, _ = rs.train_heldout_stage1(changed, cfg, 2, tmp_path / name, steps=1)
        return pipe.validity_head.state_dict()

    base, held, seen = head_of(None, "base"), head_of(2, "held"), head_of(1, "seen")
    assert all(torch.equal(base[k], held[k]) for k in base)
    assert not all(torch.equal(base[k], seen[k]) for k in base)


def test_real_sample_evaluation_draws_the_heads_holes(toy_sample, tmp_path):
    """`evaluate_real_sample` with `model.validity=head`: the Stage-I rows carry the head's drawn holes (the same
    draw as `simulate_tiles` with the saved pipeline, which keeps the head-less depth elsewhere; their extra hole
    rate is mean(1 - P(valid)) over the held-out object, P(valid) returned by `return_validity` < 1), the edge and
    flat hole columns are scored, and results.md / summary.json name the hole model."""
    from sim2real_kit import real_sample as rs
    from sim2real_kit.real_sample.evaluate import _blend

    cfg = _cfg(16, *HEAD, *RS, "train.validity_head_steps=30")
    result = rs.evaluate_real_sample(tmp_path / "run", cfg, toy_sample, holdout="slab", steps=2, seeds=2,
                                     progress=False)  # fmt: skip
    row = result.row("heldout", "stage1")
    assert row["hole_all_pct"] > 5 and math.isfinite(row["hole_edge_pct"]) and math.isfinite(row["hole_flat_pct"])
    assert result.summary["stage1"]["holes"] == "validity head" and "validity head" in result.markdown()
    saved = json.loads(result.paths["summary.json"].read_text())["stage1"]
    assert saved["holes"] == "validity head" and saved["validity_head_steps"] == 30
    pipe_dir = RunFolder(tmp_path / "run").real_sample_dir / "stage1" / "pipeline"
    assert (pipe_dir / HEAD_FOLDER).is_dir()
    frames = rs.load_frames(rs.import_real_sample(tmp_path / "run", toy_sample))
    held = frames.object_mask(2)
    pipe = Sim2RealPipeline.from_pretrained(pipe_dir)
    kw = dict(steps=cfg.sampling.steps, eta=cfg.sampling.eta, blend=_blend(cfg))
    depth, prob = rs.simulate_tiles(pipe, frames, held, 0, return_validity=True, **kw)
    seed0 = [r for r in result.rows if (r["region"], r["simulator"], r["seed"]) == ("heldout", "stage1", 0)][0]
    assert seed0["hole_all_pct"] == pytest.approx(100 * float((depth[held] == 0).mean()), abs=1e-9)
    assert 0 < prob[held].min() and prob[held].max() < 1
    plain = rs.simulate_tiles(pipe.set_validity_head(None), frames, held, 0, **kw)
    kept = depth > 0  # the head-less depth, but where overlapping tiles disagree on a hole (P(valid) at their borders)
    assert (depth[kept] == plain[kept]).mean() > 0.9 and np.abs(depth[kept] - plain[kept]).max() < 0.005
    extra = float(((depth == 0) & (plain > 0))[held].mean())
    expected = float((1 - prob)[held & (plain > 0)].mean()) * float((plain > 0)[held].mean())
    assert extra > 0.05 and extra == pytest.approx(expected, abs=0.08), (extra, expected)


def test_the_real_sample_refuses_calibrating_a_heads_holes(tmp_path):
    """--calibrate-holes with a head: the no-threshold error, before anything runs."""
    from sim2real_kit.real_sample.evaluate import evaluate_real_sample

    cfg = _cfg(16, *HEAD, "benchmark.real_sample_calibrate_holes=true")
    with pytest.raises(ConfigError, match="there is no threshold to calibrate"):
        evaluate_real_sample(tmp_path / "run", cfg, progress=False)


def test_moving_a_pipeline_with_a_head_logs_no_dtype_warning(caplog):
    """`Sim2RealPipeline.to(device)` moves the head without a dtype: diffusers' "should be kept in float32" warning
    (it fires on any `dtype=` keyword, None too) is not logged on every load of a head pipeline."""
    _, piped = _pipes(_cfg(16))
    with caplog.at_level("WARNING"):
        piped.to("cpu")
    assert "kept in float32" not in caplog.text
    piped.to(torch.float64)
    assert next(piped.validity_head.parameters()).dtype == torch.float64
