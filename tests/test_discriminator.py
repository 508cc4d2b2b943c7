"""Tests of sim2real_kit.models.discriminator: the CAD-guided PointNet, its training, scoring,
flags, the realism accuracy metric and safetensors save/load."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from sim2real_kit.camera import Camera
from sim2real_kit.config import DiscConfig
from sim2real_kit.errors import CheckpointError, ConfigError, Sim2RealError
from sim2real_kit.models.discriminator import (
    PatchSet,
    PointNetDiscriminator,
    collect_patch_set,
    discriminator_accuracy,
    flags_from_scores,
    roc_auc,
    score_frames,
    score_patches,
    train_discriminator,
)
from sim2real_kit.patches import extract_patch_points, patch_grid

pytestmark = pytest.mark.usefixtures("one_thread")


def _small_cfg(**kw) -> DiscConfig:
    cfg = dataclasses.replace(DiscConfig(num_points=32, steps=100, batch_size=32, hidden=(32, 64, 128), lr=2e-3), **kw)
    cfg.head_hidden = (32,)  # read with getattr by the model; not a DiscConfig field yet
    return cfg


def _planes(frames: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, Camera]:
    """CAD depth [F, size, size] of tilted planes 1.5-3 m away, and the camera."""
    g = torch.Generator().manual_seed(seed)
    cam = Camera(size * 1.1, size * 1.1, size / 2, size / 2, size, size)
    rays = torch.as_tensor(cam.pixel_rays(np.float32))  # [H, W, 3]
    normal = torch.randn(frames, 3, generator=g) * torch.tensor([0.3, 0.3, 0.0]) + torch.tensor([0.0, 0.0, -1.0])
    normal = normal / normal.norm(dim=1, keepdim=True)
    dist = 1.5 + 1.5 * torch.rand(frames, generator=g)
    depth = -dist[:, None, None] / torch.einsum("hwc,fc->fhw", rays, normal)  # plane n.x + dist = 0
    return depth, cam


@pytest.fixture(scope="module")
def noisy_vs_clean():
    """Real = CAD plane + 1 cm Gaussian noise, fake = the clean CAD plane; a trained guided model."""
    torch.set_num_threads(1)
    cad, cam = _planes(16)
    g = torch.Generator().manual_seed(1)
    real = cad + 0.01 * torch.randn(cad.shape, generator=g)
    cfg = _small_cfg(patch_size=8, stride=8)
    real_set, skipped = collect_patch_set(real, cad, cam, cfg, g)
    fake_set, _ = collect_patch_set(cad.clone(), cad, cam, cfg, g)
    assert skipped == 0 and len(real_set) == 16 * 16
    model, history = train_discriminator(real_set, fake_set, cfg, seed=0, progress=False)
    return dict(
        cad=cad, real=real, cam=cam, cfg=cfg, model=model, history=history, real_set=real_set, fake_set=fake_set
    )


def _cad_only_sets(n: int = 600, num_points: int = 32, seed: int = 0) -> tuple[PatchSet, PatchSet]:
    """Separable only through the CAD: real depth = its CAD patch + 0.1 along z (+ small noise);
    fake depth patches come from the same distribution but are paired with another pair's CAD,
    so depth alone (and CAD alone) has the same distribution in both sets."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(2 * n, num_points, 2, generator=g) * 2 - 1
    slope = torch.randn(2 * n, 1, 2, generator=g) * 0.5
    cad = torch.cat([xy, (xy * slope).sum(-1, keepdim=True)], -1)  # tilted planes through 0
    depth = cad + torch.tensor([0.0, 0.0, 0.1]) + 0.01 * torch.randn(2 * n, num_points, 3, generator=g)
    shuffled = n + torch.randperm(n, generator=g)
    return PatchSet(depth[:n], cad[:n]), PatchSet(depth[n:], cad[shuffled])


# ---------------------------------------------------------------------- the network
def test_cad_guidance_sets_the_input_channels():
    guided = PointNetDiscriminator(hidden=(16, 32))
    plain = PointNetDiscriminator(hidden=(16, 32), cad_guidance=False)
    first = [next(m for m in model.point_mlp if isinstance(m, torch.nn.Linear)) for model in (guided, plain)]
    assert guided.in_channels == 6 and first[0].weight.shape == (16, 6)
    assert plain.in_channels == 3 and first[1].weight.shape == (16, 3)
    pts, cad = torch.randn(5, 40, 3), torch.randn(5, 40, 3)
    guided.eval()
    assert guided(pts, cad).shape == (5,) and plain.eval()(pts).shape == (5,)
    p = guided.prob_real(pts, cad)
    assert ((p > 0) & (p < 1)).all()
    with pytest.raises(Sim2RealError, match="cad_points are required"):
        guided(pts, None)
    with pytest.raises(ConfigError, match="disc.norm"):
        PointNetDiscriminator(norm="group")
    cfg = dataclasses.replace(DiscConfig(), cad_guidance=False, hidden=(8, 16))
    assert PointNetDiscriminator.from_config(cfg).in_channels == 3


def test_max_pool_makes_it_order_invariant():
    model = PointNetDiscriminator(hidden=(16, 32), norm="layer").eval()
    pts, cad = torch.randn(3, 50, 3), torch.randn(3, 50, 3)
    perm = torch.randperm(50)
    assert torch.allclose(model(pts, cad), model(pts[:, perm], cad[:, perm]), atol=1e-5)


# ---------------------------------------------------------------------- training
def test_separates_noisy_from_clean_planes(noisy_vs_clean):
    h = noisy_vs_clean["history"]
    assert h["val_accuracy"] > 0.9 and h["val_auc"] > 0.95
    assert len(h["train_loss"]) == 100 and h["step"][-1] == 100
    assert np.mean(h["train_loss"][-10:]) < 0.5 * np.mean(h["train_loss"][:10])  # the loss goes down
    assert h["n_val_real"] == round(0.2 * 256) and h["n_train_fake"] == 256 - round(0.2 * 256)
    assert h["val_step"][-1] == 100 and len(h["val_accuracy_curve"]) == len(h["val_step"])


def test_cad_guidance_is_used():
    real, fake = _cad_only_sets()
    guided, hg = train_discriminator(real, fake, _small_cfg(), seed=0, progress=False)
    plain, hp = train_discriminator(real, fake, _small_cfg(cad_guidance=False), seed=0, progress=False)
    assert hg["val_accuracy"] > 0.9  # separable through the CAD
    assert hp["val_accuracy"] < 0.7  # chance without it (240 val patches: +-0.03)
    # a trained guided model's output depends on the CAD input
    base = score_patches(guided, real)
    zeroed = score_patches(guided, PatchSet(real.points, torch.zeros_like(real.cad_points)))
    shuffled = score_patches(guided, PatchSet(real.points, real.cad_points[torch.randperm(len(real))]))
    assert (base - zeroed).abs().mean() > 0.2 and (base - shuffled).abs().mean() > 0.2


def test_training_is_reproducible_and_checks_its_inputs():
    real, fake = _cad_only_sets(n=60)
    cfg = _small_cfg(steps=5)
    _, h1 = train_discriminator(real, fake, cfg, seed=3, progress=False)
    _, h2 = train_discriminator(real, fake, cfg, seed=3, progress=False)
    assert h1["train_loss"] == h2["train_loss"]
    _, h0 = train_discriminator(real, fake, cfg, seed=3, val_fraction=0.0, progress=False)
    assert np.isnan(h0["val_accuracy"]) and h0["n_train_real"] == 60
    with pytest.raises(ConfigError, match="val_fraction"):
        train_discriminator(real, fake, cfg, val_fraction=1.0)
    with pytest.raises(Sim2RealError, match="fake patch set has 1"):
        train_discriminator(real, PatchSet(fake.points[:1], fake.cad_points[:1]), cfg)
    with pytest.raises(Sim2RealError, match="32 points but fake ones 16"):
        train_discriminator(real, PatchSet(fake.points[:, :16], fake.cad_points[:, :16]), cfg)


def test_roc_auc_rank_formula():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == 0.5
    assert roc_auc([0.9, 0.3, 0.6, 0.1], [1, 1, 0, 0]) == 0.75  # pairs (pos > neg): 0.9>0.6, 0.9>0.1, 0.3>0.1
    assert np.isnan(roc_auc([0.1, 0.2], [1, 1]))


# ---------------------------------------------------------------------- scoring and flags
def test_scores_flags_and_accuracy_on_frames(noisy_vs_clean):
    d = noisy_vs_clean
    cad, real, cam, cfg, model = d["cad"][:4].clone(), d["real"][:4].clone(), d["cam"], d["cfg"], d["model"]
    real[0, :8, :8] = 0.0  # one patch without any valid pixel
    g = torch.Generator().manual_seed(5)
    boxes = patch_grid(32, 32, cfg.patch_size, cfg.stride)
    pp_fake = extract_patch_points(cad, cad, cam, boxes, cfg.num_points, cfg.min_valid, g)
    pp_real = extract_patch_points(real, cad, cam, boxes, cfg.num_points, cfg.min_valid, g)
    s_fake, s_real = score_patches(model, pp_fake), score_patches(model, pp_real)
    assert s_fake.shape == (4, 16) and torch.isfinite(s_fake).all() and torch.isfinite(s_real).all()
    assert not pp_real.valid[0, 0] and s_real[0, 0] == 1.0  # skipped: judged real, never flagged
    acc_fake = discriminator_accuracy(s_fake, pp_fake.valid)
    acc_real = discriminator_accuracy(s_real, pp_real.valid)
    assert acc_fake > 0.8 and acc_real < 0.2  # clean "generated" planes judged fake, noisy real ones not
    flags = flags_from_scores(s_real, pp_real.valid, 0.5, True)
    assert not flags[0, 0] and flags.dtype == torch.bool
    assert discriminator_accuracy(s_fake, pp_fake.valid, 0.5) == float(
        flags_from_scores(s_fake, None, 0.5).float().mean()
    )
    cont = flags_from_scores(s_real, pp_real.valid, 0.5, binary=False)
    assert cont[0, 0] == 0.0 and torch.allclose(cont[pp_real.valid], 1 - s_real[pp_real.valid])
    # the convenience wrapper gives the same numbers as extract + score with the same generator
    scores, valid, b = score_frames(model, cad, cad, cam, cfg, torch.Generator().manual_seed(5), batch_size=3)
    assert torch.equal(b, boxes) and valid.all() and scores.shape == (4, 16)
    assert torch.allclose(
        scores[:3],
        score_patches(
            model, extract_patch_points(cad[:3], cad[:3], cam, boxes, 32, 8, torch.Generator().manual_seed(5))
        ),
    )


def test_accuracy_bad_inputs():
    with pytest.raises(ConfigError, match="disc.threshold"):
        discriminator_accuracy(torch.rand(2, 3), threshold=1.01)
    with pytest.raises(ConfigError, match="disc.threshold"):
        discriminator_accuracy(torch.rand(2, 3), threshold=-0.5)
    with pytest.raises(Sim2RealError, match="no valid patch"):
        discriminator_accuracy(torch.rand(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    assert discriminator_accuracy(torch.tensor([[0.1, 0.9, 0.4, 0.2]]), torch.tensor([[1, 1, 1, 0]]).bool()) == 2 / 3


def test_all_patches_skipped_gives_no_nan():
    model = PointNetDiscriminator(hidden=(8, 16)).eval()
    depth = torch.zeros(2, 16, 16)
    cam = Camera(20.0, 20.0, 8.0, 8.0, 16, 16)
    pp = extract_patch_points(depth, depth + 2.0, cam, patch_grid(16, 16, 8), 16, 4)
    assert pp.num_skipped == 8
    scores = score_patches(model, pp)
    assert torch.equal(scores, torch.ones(2, 4))
    assert not flags_from_scores(scores, pp.valid, 0.5).any()


# ---------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path, noisy_vs_clean):
    model = noisy_vs_clean["model"]
    path = model.save(tmp_path / "disc" / "model.safetensors")
    assert path.is_file() and (tmp_path / "disc" / "model.json").is_file()
    loaded = PointNetDiscriminator.load(path)
    assert not loaded.training and loaded.meta["num_points"] == 32 and loaded.meta["patch_size"] == 8
    s = noisy_vs_clean["real_set"]
    assert torch.allclose(score_patches(model, s), score_patches(loaded, s), atol=1e-6)
    (tmp_path / "disc" / "model.json").unlink()  # the config is in the safetensors metadata too
    assert PointNetDiscriminator.load(path).hidden == (32, 64, 128)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing.safetensors"):
        PointNetDiscriminator.load(tmp_path / "missing.safetensors")
    path = PointNetDiscriminator(hidden=(8, 16)).save(tmp_path / "d.safetensors")
    cfg = json.loads((tmp_path / "d.json").read_text())
    cfg["hidden"] = [8, 32]
    (tmp_path / "d.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"d\.safetensors.*do not fit"):
        PointNetDiscriminator.load(path)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        PointNetDiscriminator.load(tmp_path / "junk.safetensors")
