"""`data.holes: model` (kit extension, issue 20): a validity channel in {-1, +1} beside the residual, so the
model learns where the sensor returns nothing; the residual's loss stays on the valid pixels only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL

from sim2real_kit.camera import Camera, look_at
from sim2real_kit.config import load_config
from sim2real_kit.data.dataset import PairedDepthDataset
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.errors import ConfigError, DepthFormatError
from sim2real_kit.models.codec import PixelCodec
from sim2real_kit.models.denoiser import ControlledDenoiser, diffusion_loss, make_scheduler
from sim2real_kit.pipeline import Sim2RealPipeline

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(size=16, *extra):
    return load_config(
        "tiny", overrides=[f"data.size={size}", "data.holes=model", "model.validity=channel", *TINY_MODEL, *extra]
    )


def test_config_names_the_hole_modes():
    with pytest.raises(ConfigError, match="data.holes = 'sometimes'; allowed: mask, model, generate"):
        load_config("tiny", overrides=["data.holes=sometimes"])
    assert load_config("tiny", overrides=["data.holes=model"]).data.holes == "model"
    assert load_config("sd21", overrides=["data.holes=model"]).data.holes == "model"  # latent too (was refused)


def test_validity_channel_round_trips_through_the_codec():
    """target [B, 1 + V, H, W] -> [B, C + V, h, w] -> (map [B, 1, H, W], validity [B, V, H, W]), exactly."""
    codec = PixelCodec()
    residual = torch.randn(2, 1, 8, 8)
    validity = torch.where(torch.rand(2, 1, 8, 8) < 0.3, -1.0, 1.0)
    encoded = codec.encode_target(torch.cat([residual, validity], dim=1))
    assert encoded.shape == (2, 2, 8, 8)
    decoded, valid_back = codec.decode_target(encoded)
    assert torch.equal(decoded, residual) and torch.equal(valid_back, validity)
    plain, none = codec.decode_target(codec.encode_target(residual))  # no validity channel: unchanged
    assert torch.equal(plain, residual) and none.shape == (2, 0, 8, 8)


def test_validity_round_trips_through_the_latent_codec_pixel_for_pixel():
    """Latent space (SD's VAE, here in miniature with downscale 2): the validity map goes space-to-depth into
    s² channels beside the 4 latent channels and comes back exactly, a 1-pixel hole included (an averaged
    1-channel map at the latent's resolution would lose it)."""
    from conftest import tiny_vae

    from sim2real_kit.models.codec import LatentCodec

    codec = LatentCodec(tiny_vae())
    residual = torch.rand(2, 1, 16, 16) * 2 - 1
    validity = torch.ones(2, 1, 16, 16)
    validity[0, 0, 5, 7] = -1.0  # one pixel
    validity[1, 0, :, 3] = -1.0  # a 1-pixel column
    encoded = codec.encode_target(torch.cat([residual, validity], dim=1))
    assert codec.validity_channels(1) == 4 and encoded.shape == (2, 4 + 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(encoded[:, :4], codec.encode(residual))
        decoded, valid_back = codec.decode_target(encoded)
    assert decoded.shape == (2, 1, 16, 16) and torch.equal(valid_back, validity)
    with pytest.raises(DepthFormatError, match="do not match encoded maps"):
        codec.join_validity(encoded[:, :4], validity[..., :15, :15])


def test_dataset_target_has_residual_and_validity_on_a_hand_made_frame():
    """cad = [1, 1, 1, 2, 0] m, real = [1.01, 0, 1.8, 6.0, 1.0] m: a residual, a hole, a >= max_diff mismatch,
    a reading beyond 4.9 m (a hole) and no CAD. Residual weighed only where both are valid and close; validity
    -1 on the holes, weighed wherever the CAD is valid."""
    ds = PairedDepthDataset.__new__(PairedDepthDataset)
    ds.holes, ds.target, ds.residual_scale, ds.max_diff_m = "model", "residual", 0.5, 0.5
    cad = np.array([[1.0, 1.0, 1.0, 2.0, 0.0]], np.float32)
    real = np.array([[1.01, 0.0, 1.8, 6.0, 1.0]], np.float32)
    maps = ds.encode(cad, real)
    assert maps["target"].shape == (2, 1, 5) and maps["mask"].shape == (2, 1, 5)
    residual, validity = maps["target"][0, 0], maps["target"][1, 0]
    expected = 0.5 * 2 * np.log(1.01) / np.log(100)  # (real_n - cad_n) * 0.5, normalised over ln(100) x 2
    np.testing.assert_allclose(residual.numpy(), [expected, 0, 0, 0, 0], atol=1e-6)  # masked pixels: residual 0
    assert validity.tolist() == [1.0, -1.0, 1.0, -1.0, -1.0]
    assert maps["mask"][0, 0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]  # residual: valid pixels only
    assert maps["mask"][1, 0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]  # validity: every CAD-valid pixel
    # the other modes keep their one-channel maps
    ds.holes = "mask"
    assert ds.encode(cad, real)["target"].shape == (1, 1, 5)


def test_dataset_items_crop_both_channels_alike(plane_layout):
    """Random crops carry the validity channel with the residual: outside the frame a hole of zero weight."""
    ds = PairedDepthDataset(plane_layout.root, "train", size=16, holes="model", crop_scale=(0.5, 0.5))
    item = ds[0]
    assert item["target"].shape == (2, 16, 16) and item["mask"].shape == (2, 16, 16)
    validity, weight = item["target"][1], item["mask"][1]
    assert set(validity.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(weight, (item["cad"][0] > 0).float())  # zoom 0.5: part of the window is outside
    assert bool((weight == 0).any()) and bool((validity[weight == 0] == -1).all())
    assert torch.equal(item["mask"][0], item["valid"][0])
    assert bool((validity[item["mask"][0] > 0] == 1).all())  # valid residual pixels are valid depth
    keys = PairedDepthDataset(plane_layout.root, "train", size=16, holes="model", keys=("target", "mask"))[0]
    assert keys["target"].shape == (2, 16, 16)


def test_residual_loss_ignores_holes_and_validity_loss_weighs_cad_pixels():
    """Each channel's error counts on its own weights (x0 prediction): the loss is the mean of the residual's
    weighted mean and the validity's, so the residual at a hole or the validity outside the CAD never count.
    (A stub denoiser with a fixed x0: the real one also sees the target in x_t, which is why the dataset sets
    the residual of a hole to 0.)"""
    cfg = _cfg(16)
    torch.manual_seed(0)
    denoiser = ControlledDenoiser.from_config(cfg)
    assert denoiser.sample_channels == 2 and denoiser.channels == 1 and denoiser.cond_channels == 1
    x0 = torch.randn(2, 2, 16, 16)

    def stub(noisy, timesteps, condition):
        assert noisy.shape == (2, 2, 16, 16) and condition.shape == (2, 1, 16, 16)
        return x0

    codec, scheduler = PixelCodec(), make_scheduler(cfg, "ddpm")
    cad_n = torch.rand(2, 1, 16, 16) * 2 - 1
    target = torch.cat([torch.randn(2, 1, 16, 16) * 0.1, torch.ones(2, 1, 16, 16)], dim=1)
    weight = torch.ones(2, 2, 16, 16)
    weight[:, 0, :4] = 0  # holes: no residual weight
    weight[:, 1, :, :2] = 0  # no CAD: no validity weight

    def loss(t):
        return diffusion_loss(stub, codec, scheduler, t, [cad_n], weight, torch.Generator().manual_seed(0))[0]

    error = (x0 - target) ** 2
    expected = 0.5 * error[:, 0, 4:].mean() + 0.5 * error[:, 1, :, 2:].mean()
    torch.testing.assert_close(loss(target), expected)
    moved = target.clone()
    moved[:, 0, :4] += 5.0
    moved[:, 1, :, :2] = -1.0
    torch.testing.assert_close(loss(moved), expected)
    moved[:, 1, 8:, 8:] = -1.0  # validity inside the CAD does count
    assert float(loss(moved)) != float(expected)


def test_denoiser_with_a_validity_channel_saves_and_loads(tmp_path):
    cfg = _cfg(16)
    torch.manual_seed(0)
    denoiser = ControlledDenoiser.from_config(cfg)
    denoiser.save_pretrained(tmp_path / "d")
    loaded = ControlledDenoiser.from_pretrained(tmp_path / "d")
    assert loaded.hole_channels == 1 and loaded.sample_channels == 2
    stage2 = loaded.expand_condition(2)
    assert stage2.hole_channels == 1 and stage2.cond_channels == 2


def test_pipeline_zeros_the_depth_exactly_where_validity_is_negative():
    cfg = _cfg(16, "model.residual_scale=100")  # an untrained net's residual: a few mm, never past 4.9 m
    torch.manual_seed(0)
    denoiser = ControlledDenoiser.from_config(cfg)  # untrained: validity of either sign
    pipe = Sim2RealPipeline.build(cfg, [denoiser])
    cad = np.full((3, 16, 16), 1.5, np.float32)
    cad[:, :, -2:] = 0.0  # no CAD
    out = pipe(cad, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    assert out.validity is not None and out.validity.shape == (3, 16, 16)
    cad_ok = cad > 0
    holes = cad_ok & (out.validity < 0.5)
    assert holes.any() and (cad_ok & ~holes).any()
    assert np.array_equal(out.depth == 0, holes | ~cad_ok)
    assert (out.validity[~cad_ok] == 0).all()
    # a mask-mode pipeline has no validity
    mask_cfg = load_config("tiny", overrides=["data.size=16", *TINY_MODEL])
    plain = Sim2RealPipeline.build(mask_cfg, [ControlledDenoiser.from_config(mask_cfg)])
    assert plain(cad, num_inference_steps=2).validity is None


def _toy_layout(root, frames: int, size: int, seed: int, make_frame) -> DepthLayout:
    """A toy sensor's layout: `make_frame(rng)` -> (CAD [S, S] metres, bool map of the pixels the sensor loses);
    the real capture is the CAD with 5 mm noise and no depth on those pixels. Every 4th frame is val."""
    rng = np.random.default_rng(seed)
    cam = Camera(size * 0.8, size * 0.8, size / 2, size / 2, size, size)
    lay = DepthLayout.create(root, cam, meta={"source": "test"})
    refs = {"train": [], "val": []}
    for f in range(frames):
        ref = FrameRef(f"s{f % 4:02d}", f"{f:03d}")
        cad, drop = make_frame(rng)
        real = cad + rng.normal(0, 0.005, cad.shape).astype(np.float32)
        real[drop] = 0.0
        lay.write_frame(ref, cad, real, look_at([0, -3, 1.5], [0, 0, 1.0]))
        refs["val" if f % 4 == 3 else "train"].append(ref)
    for split, r in refs.items():
        lay.write_split(split, r)
    return lay


def _train_toy(cfg, layout, tmp_path) -> tuple[Sim2RealPipeline, torch.Tensor, torch.Tensor]:
    """Stage-I trained on the toy layout's train split; (its pipeline, val CAD [F, S, S], val real [F, S, S])."""
    from sim2real_kit.stage1 import train_denoiser

    ds = PairedDepthDataset.from_config(cfg, layout, "train", train=False, keys=("cad_n", "target", "mask"))
    train_denoiser(cfg, ds, tmp_path / "stage1", progress=False)
    pipe = Sim2RealPipeline.from_pretrained(tmp_path / "stage1" / "pipeline")
    val = PairedDepthDataset.from_config(cfg, layout, "val", train=False)
    cad = torch.stack([val[i]["cad"][0] for i in range(len(val))])
    real = torch.stack([val[i]["real"][0] for i in range(len(val))])
    return pipe, cad, real


def _band_layout(root, frames: int, size: int = 32, seed: int = 0) -> DepthLayout:
    """A toy sensor that drops a known band: a box in front of a plane (both at random depths and places); the
    real capture has 5 mm noise and no depth within 1 px of the box's silhouette (CAD jumps > 0.1 m), as a
    sensor's edge dropout. Every 4th frame is val."""

    def frame(rng):
        cad = np.full((size, size), rng.uniform(2.5, 3.5), np.float32)
        top, left = rng.integers(2, size // 2, 2)
        bottom, right = top + rng.integers(size // 4, size // 2, 2)
        cad[top:bottom, left:right] = rng.uniform(1.0, 2.0)
        jump = np.zeros(cad.shape, bool)
        jump[:, 1:] |= np.abs(np.diff(cad, axis=1)) > 0.1
        jump[:, :-1] |= np.abs(np.diff(cad, axis=1)) > 0.1
        jump[1:] |= np.abs(np.diff(cad, axis=0)) > 0.1
        jump[:-1] |= np.abs(np.diff(cad, axis=0)) > 0.1
        band = jump.copy()  # dilated by 1 px (3x3)
        band[1:] |= jump[:-1]
        band[:-1] |= jump[1:]
        band[:, 1:] |= band[:, :-1].copy()
        band[:, :-1] |= band[:, 1:].copy()
        return cad, band

    return _toy_layout(root, frames, size, seed, frame)


def test_model_learns_to_drop_a_band_of_pixels(tmp_path):
    """Trained on the toy sensor (32 px, 150 steps of a tiny denoiser, ~30 s on one core), Stage-I drops the band
    on val frames it never saw: IoU of generated and real holes > 0.8 (measured 0.93; an untrained model makes
    holes at random)."""
    layout = _band_layout(tmp_path / "ds", frames=32)
    cfg = _cfg(32, "train.steps=150", "train.batch_size=8", "train.lr=0.002", "train.ckpt_every=1000")
    cfg.override(["train.log_every=50", "model.residual_scale=4.0", "sampling.steps=4"])
    pipe, cad, real = _train_toy(cfg, layout, tmp_path)
    out = pipe(cad, generator=torch.Generator().manual_seed(0))
    generated, true = (out.depth == 0) & (cad > 0), (real == 0) & (cad > 0)
    iou = float((generated & true).sum() / (generated | true).sum())
    assert true.float().mean() > 0.05 and iou > 0.8, iou


def test_hole_maps_figure_counts_holes_at_edges_and_on_flat_areas():
    from sim2real_kit import viz

    cad = np.full((2, 16, 16), 2.0, np.float32)
    cad[:, 4:12, 4:12] = 1.0  # a box: its silhouette is the CAD edge
    real = cad.copy()
    real[:, 3:5, 3:13] = 0.0  # holes along the box's top edge
    sim = cad.copy()
    sim[:, 14:, :] = 0.0  # holes on the flat floor
    fig = viz.hole_maps(cad, real, {"Stage-I": sim}, n=2)
    assert fig.holes["real"]["edge"] > 0.1 and fig.holes["real"]["flat"] == 0.0
    assert fig.holes["Stage-I"]["edge"] == 0.0 and fig.holes["Stage-I"]["flat"] > 0.1
    assert len(fig.axes) == 2 * 2 + 1  # real and Stage-I per frame, the bars


def test_latent_denoiser_gets_validity_channels_that_start_at_zero_and_save(tmp_path):
    """sd21-like (a tiny local SD folder): the pretrained UNet is widened by s² validity channels in and out with
    zero weights, so on the latent channels it computes what SD's UNet computes and predicts 0 (P = 0.5) on the
    validity; the widened model saves and loads, and its loss weighs the validity per pixel."""
    from conftest import write_tiny_sd

    from sim2real_kit.models.codec import LatentCodec

    write_tiny_sd(tmp_path / "sd")
    cfg = load_config("sd21", overrides=[f"model.sd_path={tmp_path / 'sd'}", "data.size=16", "data.holes=model",
                                               "model.validity=channel"])  # fmt: skip
    plain = ControlledDenoiser.from_config(load_config("sd21", overrides=[f"model.sd_path={tmp_path / 'sd'}",
                                                                           "data.size=16"]))  # fmt: skip
    denoiser = ControlledDenoiser.from_config(cfg)
    assert (denoiser.hole_channels, denoiser.channels, denoiser.cond_channels) == (4, 4, 4)
    assert denoiser.unet.config.in_channels == denoiser.unet.config.out_channels == 8
    g = torch.Generator().manual_seed(0)
    noisy, cond, t = torch.randn(2, 8, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g), torch.tensor([5, 500])
    with torch.no_grad():
        out = denoiser(noisy, t, cond)
        torch.testing.assert_close(out[:, :4], plain(noisy[:, :4], t, cond))
    assert not out[:, 4:].any()
    denoiser.save_pretrained(tmp_path / "d")
    loaded = ControlledDenoiser.from_pretrained(tmp_path / "d")
    assert loaded.hole_channels == 4 and loaded.sample_channels == 8
    # the loss: validity weights per pixel; a validity error outside the weights does not count
    codec, scheduler = LatentCodec.from_pretrained(tmp_path / "sd"), make_scheduler(cfg, "ddpm")
    cad_n = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    target = torch.cat([cad_n * 0.1, torch.ones(2, 1, 16, 16)], dim=1)
    weight = torch.ones(2, 2, 16, 16)
    weight[:, 1, :, :3] = 0  # no CAD in three columns: their validity does not count

    loss = diffusion_loss(loaded, codec, scheduler, target, [cad_n], weight, torch.Generator().manual_seed(1))[0]
    assert torch.isfinite(loss)
    x0 = torch.zeros(2, 8, 8, 8)  # a stub denoiser with a fixed x0 (validity +1): only the target moves the loss
    x0[:, 4:] = 1.0

    def stub_loss(tgt):
        stub = lambda noisy, timesteps, condition: x0  # noqa: E731
        return diffusion_loss(stub, codec, scheduler, tgt, [cad_n], weight, torch.Generator().manual_seed(1))[0]

    moved = target.clone()
    moved[:, 1, :, :3] = -1.0  # validity flipped only where it has no weight: the loss does not move
    torch.testing.assert_close(stub_loss(moved), stub_loss(target))
    moved[:, 1, 4:, 4:] = -1.0  # where it has weight: it does
    assert float(stub_loss(moved)) > float(stub_loss(target))


def test_latent_model_learns_where_the_band_is(tmp_path):
    """The toy sensor in latent space (a tiny SD folder: VAE downscale 2, so the validity goes space-to-depth into
    4 channels; the UNet encoder frozen as with SD's weights): after 400 steps Stage-I's holes overlap the real
    band with IoU > 0.3 on val frames it never saw (measured 0.47 / 0.43; 0.62-0.64 after 1000 steps; holes
    at random at the real rate would score ~0.09). It learns the place, more slowly than in pixel space (0.93
    after 150 steps): the place of a 1-px band has to come out of the VAE latent of the CAD at half resolution."""
    from conftest import write_tiny_sd

    from sim2real_kit.stage1 import train_denoiser

    write_tiny_sd(tmp_path / "sd")
    layout = _band_layout(tmp_path / "ds", frames=32)
    cfg = load_config("sd21", overrides=[
        f"model.sd_path={tmp_path / 'sd'}", "data.size=32", "data.holes=model", "model.validity=channel", "train.steps=400", "train.batch_size=8",
        "train.lr=0.002", "train.ckpt_every=1000", "train.log_every=100", "model.residual_scale=4.0",
        "sampling.steps=4", "sampling.batch_size=8", "data.num_workers=0",
    ])  # fmt: skip
    ds = PairedDepthDataset.from_config(cfg, layout, "train", train=False, keys=("cad_n", "target", "mask"))
    train_denoiser(cfg, ds, tmp_path / "stage1", progress=False)
    pipe = Sim2RealPipeline.from_pretrained(tmp_path / "stage1" / "pipeline")
    assert pipe.denoisers[0].hole_channels == 4
    val = PairedDepthDataset.from_config(cfg, layout, "val", train=False)
    cad = torch.stack([val[i]["cad"][0] for i in range(len(val))])
    real = torch.stack([val[i]["real"][0] for i in range(len(val))])
    out = pipe(cad, generator=torch.Generator().manual_seed(0))
    generated, true = (torch.as_tensor(out.validity) < 0.5) & (cad > 0), (real == 0) & (cad > 0)
    iou = float((generated & true).sum() / (generated | true).sum())
    assert iou > 0.3, iou


# ---------------------------------------------------------------------- the CAD's edges as a condition
def test_cad_edge_map_marks_depth_jumps_and_silhouettes_only():
    from sim2real_kit.depth import cad_condition, cad_edge_map

    cad = torch.full((1, 16, 16), 2.0)
    cad[0, 4:12, 4:12] = 1.9  # a 10 cm step
    cad[0, :, 14:] = 0.0  # no CAD: a silhouette against background
    cad[0, 13, :8] = 2.0 + 0.002 * torch.arange(8)  # a gentle slope stays flat
    e = cad_edge_map(cad_condition(cad)[:, None])[0, 0]
    assert e.shape == (16, 16) and float(e.min()) >= 0 and float(e.max()) <= 1
    assert float(e[4, 6]) == pytest.approx(np.tanh(0.1 / 0.05), abs=0.01)  # both sides of the step
    assert float(e[3, 6]) == pytest.approx(np.tanh(0.1 / 0.05), abs=0.01)
    assert float(e[8, 8]) < 1e-3 and float(e[1, 1]) < 1e-3 and float(e[13, 2]) < 0.1  # inside, flat, 4 mm
    assert float(e[6, 13]) > 0.99  # beside the missing CAD


def test_validity_weight_sets_the_share_of_the_validity_loss():
    """`train.validity_weight` w: the loss is (residual's weighted mean + w x the validity's) / (1 + w), so w = 1
    is the 1 : 1 mean (the default, unchanged) and w -> 0 trains the residual alone; the residual's weights and the
    validity's stay their own (a stub denoiser with a fixed x0, as above)."""
    cfg = _cfg(16)
    x0 = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    codec, scheduler = PixelCodec(), make_scheduler(cfg, "ddpm")
    cad_n = torch.rand(2, 1, 16, 16) * 2 - 1
    target = torch.cat([torch.randn(2, 1, 16, 16) * 0.1, torch.ones(2, 1, 16, 16)], dim=1)
    weight = torch.ones(2, 2, 16, 16)
    weight[:, 0, :4] = 0
    weight[:, 1, :, :2] = 0
    error = (x0 - target) ** 2
    res, val = error[:, 0, 4:].mean(), error[:, 1, :, 2:].mean()

    def loss(**kw):
        return diffusion_loss(
            lambda *a: x0, codec, scheduler, target, [cad_n], weight, torch.Generator().manual_seed(0), **kw
        )

    torch.testing.assert_close(loss()[0], 0.5 * res + 0.5 * val)
    torch.testing.assert_close(loss(validity_weight=1.0)[0], loss()[0])
    for w in (0.25, 4.0):
        total, per_sample = loss(validity_weight=w)
        torch.testing.assert_close(total, (res + w * val) / (1 + w))
        r = error[:, 0, 4:].flatten(1).mean(1)
        v = error[:, 1, :, 2:].flatten(1).mean(1)
        torch.testing.assert_close(per_sample, (r + w * v) / (1 + w))
    with pytest.raises(ValueError, match="validity_weight"):
        loss(validity_weight=0.0)
    with pytest.raises(ConfigError, match="train.validity_weight"):
        _cfg(16, "train.validity_weight=-1")


def test_validity_weight_reaches_stage1_training(monkeypatch, tmp_path):
    """The config's `train.validity_weight` reaches the loss Stage-I trains with (a spy on `diffusion_loss`
    during a 2-step `train_denoiser`): 0.3 when set, 1.0 (the 1 : 1 mean) by default."""
    import sim2real_kit.models.denoiser as den_mod
    from sim2real_kit.stage1 import train_denoiser

    seen = []
    real_loss = den_mod.diffusion_loss

    def spy(*args, **kw):
        seen.append(kw.get("validity_weight"))
        return real_loss(*args, **kw)

    monkeypatch.setattr(den_mod, "diffusion_loss", spy)
    layout = _band_layout(tmp_path / "ds", frames=8, size=16)
    for w, name in ((0.3, "w03"), (1.0, "default")):
        extra = [f"train.validity_weight={w}"] if name != "default" else []
        cfg = _cfg(16, "train.steps=2", "train.batch_size=2", "train.ckpt_every=1000", *extra)
        ds = PairedDepthDataset.from_config(cfg, layout, "train", train=False, keys=("cad_n", "target", "mask"))
        seen.clear()
        train_denoiser(cfg, ds, tmp_path / name, progress=False)
        assert seen and set(seen) == {w}, (name, seen)


def test_cond_edges_reaches_the_denoiser_and_stage2_keeps_it(tmp_path):
    """The knob `model.cond_edges` reaches the saved denoiser (one more condition channel in pixel space, s² in
    latent space, right after codec(CAD)); Stage-II's widened condition keeps it; a pipeline samples with it."""
    cfg = _cfg(16, "model.cond_edges=true")
    den = ControlledDenoiser.from_config(cfg)
    assert den.edge_channels == 1 and den.cond_channels == 2
    den.save_pretrained(tmp_path / "d")
    assert ControlledDenoiser.from_pretrained(tmp_path / "d").edge_channels == 1
    two = den.expand_condition(2)
    assert two.cond_channels == 3 and two.edge_channels == 1
    pipe = Sim2RealPipeline.build(cfg, [den])
    out = pipe(torch.full((2, 16, 16), 2.0), num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.depth.shape == (2, 16, 16)
    plain = ControlledDenoiser.from_config(_cfg(16))
    assert plain.edge_channels == 0 and plain.cond_channels == 1
    with pytest.raises(ConfigError, match="cond_edges"):
        pipe.add_stage(plain.expand_condition(2))


def test_condition_input_puts_the_edge_map_after_the_cad():
    from sim2real_kit.depth import cad_condition, cad_edge_map
    from sim2real_kit.models.denoiser import condition_input

    cad = torch.full((1, 16, 16), 2.0)
    cad[0, 4:12, 4:12] = 1.5
    cad_n = cad_condition(cad)[:, None]
    prev = torch.zeros_like(cad_n)
    cond = condition_input(PixelCodec(), [cad_n, prev], cad_n, edge_channels=1)
    assert cond.shape == (1, 3, 16, 16)
    assert torch.equal(cond[:, 0], cad_n[:, 0]) and torch.equal(cond[:, 1], cad_edge_map(cad_n)[:, 0])
    assert torch.equal(condition_input(PixelCodec(), [cad_n, prev], cad_n), torch.cat([cad_n, prev], 1))


def _edge_dropout_layout(root, frames: int = 64, size: int = 32, p_edge: float = 0.4, p_flat: float = 0.03):
    """A toy sensor with *random* holes: each pixel within 1 px of a CAD depth jump (> 5 cm) is lost with
    probability `p_edge`, any other with `p_flat`; the jumps are small (boxes 8-30 cm in front of a plane at
    2-3 m), as in the procedural world. Every 4th frame is val."""
    from sim2real_kit.metrics import depth_edges

    def frame(rng):
        base = rng.uniform(2.0, 3.0)
        cad = np.full((size, size), base, np.float32)
        for _ in range(2):
            top, left = rng.integers(0, size - 8, 2)
            h, w = rng.integers(6, size // 2, 2)
            cad[top : top + h, left : left + w] = base - rng.uniform(0.08, 0.3)
        return cad, np.where(depth_edges(cad, 0.05, 1), rng.random(cad.shape) < p_edge, rng.random(cad.shape) < p_flat)

    return _toy_layout(root, frames, size, 0, frame)


def test_model_with_cad_edges_puts_random_holes_at_edges(tmp_path):
    """Random edge dropout (40 % at CAD jumps, 3 % elsewhere, `_edge_dropout_layout`): with `model.cond_edges`
    Stage-I's holes on val frames fall at the edges at about the real rate (measured 0.32 vs 0.40 at edges, 0.022
    vs 0.029 elsewhere, 300 steps, ~40 s on one core; without the edge map 0.20 / 0.044)."""
    from sim2real_kit.metrics import depth_edges

    layout = _edge_dropout_layout(tmp_path / "ds")
    cfg = _cfg(32, "train.steps=300", "train.batch_size=8", "train.lr=0.002", "train.ckpt_every=10000")
    cfg.override(["train.log_every=100", "model.residual_scale=4.0", "sampling.steps=4", "model.cond_edges=true"])
    pipe, cad, _ = _train_toy(cfg, layout, tmp_path)
    assert pipe.denoisers[0].edge_channels == 1
    edges = depth_edges(cad.numpy(), 0.05, 1)
    flat = ~edges & (cad.numpy() > 0)
    holes = np.stack([pipe(cad, generator=torch.Generator().manual_seed(s)).depth.numpy() == 0 for s in range(2)])
    at_edges, on_flat = holes[:, edges].mean(), holes[:, flat].mean()
    assert at_edges > 0.25 and on_flat < 0.04 and at_edges > 6 * on_flat, (at_edges, on_flat)


def test_validity_threshold_reaches_the_pipeline_and_sets_the_holes(tmp_path):
    """`sampling.validity_threshold` (a pixel is a hole where P(valid) < it) goes from the run's config through
    `simulate.load_pipeline` into the sampled depth: 0 keeps every CAD pixel, 1 drops every pixel that is not
    certain, and in between the holes are exactly the pixels whose P(valid) is below it (same noise)."""
    from sim2real_kit.run import RunFolder
    from sim2real_kit.simulate import load_pipeline

    cfg = _cfg(16, "model.residual_scale=100")
    torch.manual_seed(0)
    run = RunFolder(tmp_path / "run")
    Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)]).save_pretrained(run.pipeline_dir(1))
    cad = np.full((3, 16, 16), 1.5, np.float32)
    cad[:, :, -2:] = 0.0
    cad_ok = cad > 0
    holes = {}
    for tau in (0.0, 0.3, 0.5, 0.7, 1.0):
        pipe = load_pipeline(run, 1, cfg.override([f"sampling.validity_threshold={tau}"]))
        assert pipe.config.validity_threshold == tau
        out = pipe(cad, num_inference_steps=3, generator=torch.Generator().manual_seed(0))
        holes[tau] = cad_ok & (out.depth == 0)
        assert np.array_equal(holes[tau], cad_ok & (out.validity < tau))
    assert not holes[0.0].any() and holes[1.0].sum() > holes[0.7].sum() > holes[0.5].sum() > holes[0.3].sum()
    with pytest.raises(ConfigError, match="validity_threshold"):
        Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)]).set_sampling(validity_threshold=1.5)


def test_calibrated_threshold_matches_the_real_hole_rate_of_the_train_split(monkeypatch, tmp_path):
    """`calibrate_validity_threshold` picks the threshold whose generated hole rate on the train split equals
    the real one there: with P(valid) uniform on [0, 1] and the real sensor dropping ~20 % of the pixels, ~0.20
    (to the grid's 0.01 and the sample's noise: 20.7 % real holes in this draw)."""
    from sim2real_kit import simulate

    rng = np.random.default_rng(0)
    cad = np.full((8, 32, 32), 1.5, np.float32)
    real = np.where(rng.random(cad.shape) < 0.2, 0.0, cad).astype(np.float32)
    prob = rng.random(cad.shape).astype(np.float32)
    seen = {}

    def fake(run, cfg, split, seed, max_frames=None):
        seen["split"] = split
        return cad, real, cad.copy(), prob

    monkeypatch.setattr(simulate, "sample_validity", fake)
    cal = simulate.calibrate_validity_threshold(tmp_path, _cfg(32))
    assert seen["split"] == "train"  # never the scored split
    assert cal["threshold"] == pytest.approx(0.20, abs=0.025)
    assert cal["rate"] == pytest.approx(cal["real_rate"], abs=0.006) and cal["real_rate"] == pytest.approx(
        0.2, abs=0.01
    )
    assert cal["rate_at_0.5"] == pytest.approx(0.5, abs=0.01) and cal["frames"] == 8


def test_sample_calibrate_holes_saves_the_threshold_and_samples_with_it(tmp_path, plane_layout, capsys):
    """`sim2real sample --calibrate-holes` writes the calibrated threshold into the run's config.yaml and the
    val samples it then writes have exactly the holes of that threshold (a mask-mode run is refused)."""
    from sim2real_kit.cli import main
    from sim2real_kit.run import RunFolder, resolve_config
    from sim2real_kit.simulate import sample_validity

    cfg = _cfg(16, f"data.root={plane_layout.root}", "model.residual_scale=100")
    run = RunFolder(tmp_path / "run")
    run.save_config(cfg)
    torch.manual_seed(0)
    Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)]).save_pretrained(run.pipeline_dir(1))
    assert main(["sample", "--run", str(run.root), "--calibrate-holes"]) == 0
    saved = resolve_config(run.root, save=False)
    assert "sampling.validity_threshold" in capsys.readouterr().out and saved.sampling.validity_threshold != 0.5
    cad, _, depth, prob = sample_validity(run, saved, "val", saved.seed + 1000)  # sample_split's val draw
    val = run.load_samples(1, "val", run.layout(saved))
    expected = np.where(prob < saved.sampling.validity_threshold, 0.0, depth)
    np.testing.assert_allclose(val.sims[1], expected, atol=1e-3)  # 1 mm PNG steps
    mask_cfg = load_config("tiny", overrides=["data.size=16", *TINY_MODEL])
    with pytest.raises(ConfigError, match="data.holes=model"):
        sample_validity(run, mask_cfg, "val", 0)
