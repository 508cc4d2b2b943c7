"""Tests of sim2real_kit.models.discriminator: the CAD-guided PointNet, its training, scoring,
flags, the realism accuracy metric and safetensors save/load."""

from __future__ import annotations

import dataclasses
import inspect
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
    split_by_group,
    train_discriminator,
)
from sim2real_kit.patches import extract_patch_points, patch_grid

pytestmark = pytest.mark.usefixtures("one_thread")


DEFAULT_GUIDANCE = inspect.signature(PointNetDiscriminator).parameters["guidance_input"].default


def _disc_cfg(base: DiscConfig | None = None, **kw) -> DiscConfig:
    """dataclasses.replace(base or DiscConfig(), **kw), with the model's default guidance_input unless given."""
    return dataclasses.replace(base if base is not None else DiscConfig(), **{"guidance_input": DEFAULT_GUIDANCE, **kw})


def _small_cfg(**kw) -> DiscConfig:
    base = DiscConfig(num_points=32, steps=100, batch_size=32, hidden=(32, 64, 128), head_hidden=(32,), lr=2e-3)
    return _disc_cfg(base, **kw)


def _sources(frames: torch.Tensor) -> torch.Tensor:
    """PatchSet.source [M, 2] of patches with frame indices `frames` [M] (patch index 0)."""
    return torch.stack([frames, torch.zeros_like(frames)], 1)


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
    src = _sources(torch.arange(n))  # pair i of either set: frame i
    return PatchSet(depth[:n], cad[:n], src), PatchSet(depth[n:], cad[shuffled], src.clone())


def _slope_sets(n: int = 600, num_points: int = 32, seed: int = 0, gain: float = 0.2) -> tuple[PatchSet, PatchSet]:
    """Separable only with the CAD, through its slope: CAD patches are tilted planes (slope ~ N(0, 0.5)
    per axis, height ~ N(0, 0.2)); real depth = CAD + m n along the unit normal n with m = gain * sin(tilt)
    (a sensor's error grows on grazing surfaces) + 0.005 noise. Generated pairs share that depth process,
    but their CAD sits where the offset has the magnitude of a random other patch's tilt (same magnitude
    distribution, wrong place): depth alone has one distribution in both sets."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(2 * n, num_points, 2, generator=g) * 2 - 1
    slope = torch.randn(2 * n, 1, 2, generator=g) * 0.5
    height = torch.randn(2 * n, 1, 1, generator=g) * 0.2
    cad = torch.cat([xy, (xy * slope).sum(-1, keepdim=True) + height], -1)  # [2n, N, 3]
    normal = torch.cat([-slope, torch.ones(2 * n, 1, 1)], -1)
    normal = normal / normal.norm(dim=-1, keepdim=True)  # [2n, 1, 3]
    m = gain * (1 - normal[..., 2:] ** 2).sqrt()  # [2n, 1, 1]: gain * sin(tilt)
    depth = cad + m * normal + 0.005 * torch.randn(2 * n, num_points, 3, generator=g)
    other = n + torch.randperm(n, generator=g)
    fake_cad = cad[n:] + (m[n:] - m[other]) * normal[n:]  # depth - fake_cad = m[other] * normal
    src = _sources(torch.arange(n))
    return PatchSet(depth[:n], cad[:n], src), PatchSet(depth[n:], fake_cad, src.clone())


def _twin_sets(frames: int = 60, per: int = 4, num_points: int = 32, seed: int = 0) -> tuple[PatchSet, PatchSet]:
    """No rule separates real from fake, but patches of one frame are near-duplicates: frame f has
    its own random point clouds R_f (real), Q_f (fake) and CAD C_f; its `per` real patches are R_f
    (fake: Q_f) + 0.02 jitter, paired with C_f + jitter. Separable by memorising frames only."""
    g = torch.Generator().manual_seed(seed)
    cad, shape_real, shape_fake = (torch.rand(frames, 1, num_points, 3, generator=g) * 2 - 1 for _ in range(3))
    src = torch.stack(torch.meshgrid(torch.arange(frames), torch.arange(per), indexing="ij"), -1).reshape(-1, 2)

    def make(shape: torch.Tensor) -> PatchSet:
        pts = shape + 0.02 * torch.randn(frames, per, num_points, 3, generator=g)
        c = cad + 0.02 * torch.randn(frames, per, num_points, 3, generator=g)
        return PatchSet(pts.reshape(-1, num_points, 3), c.reshape(-1, num_points, 3), src.clone())

    return make(shape_real), make(shape_fake)


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
    cfg = _disc_cfg(cad_guidance=False, hidden=(8, 16))
    assert PointNetDiscriminator.from_config(cfg).in_channels == 3
    with pytest.raises(ConfigError, match="disc.guidance_input"):
        PointNetDiscriminator(guidance_input="diff")


def test_guidance_input_encodings():
    pts, cad = torch.randn(2, 7, 3), torch.randn(2, 7, 3)
    offset = PointNetDiscriminator(hidden=(8,), guidance_input="offset")
    concat = PointNetDiscriminator(hidden=(8,), guidance_input="concat")
    assert torch.equal(offset.features(pts, cad), torch.cat([pts - cad, cad], -1))
    assert torch.equal(concat.features(pts, cad), torch.cat([pts, cad], -1))
    assert torch.equal(PointNetDiscriminator(hidden=(8,), cad_guidance=False).features(pts, cad), pts)
    for name in ("offset", "concat"):
        model = PointNetDiscriminator.from_config(_disc_cfg(hidden=(8,), guidance_input=name))
        assert model.guidance_input == name and model.config()["guidance_input"] == name
    assert PointNetDiscriminator(hidden=(8,)).guidance_input == DEFAULT_GUIDANCE


def test_module_reads_typed_config_fields_directly():
    from sim2real_kit.models import discriminator

    assert "getattr(" not in inspect.getsource(discriminator)


def test_max_pool_makes_it_order_invariant():
    model = PointNetDiscriminator(hidden=(16, 32), norm="layer").eval()
    pts, cad = torch.randn(3, 50, 3), torch.randn(3, 50, 3)
    perm = torch.randperm(50)
    assert torch.allclose(model(pts, cad), model(pts[:, perm], cad[:, perm]), atol=1e-5)


# ---------------------------------------------------------------------- the shared PointNet block holds every number
class _FrozenPointNorm(torch.nn.Module):
    """`_PointNorm` of models/discriminator.py before the shared block (models/pointnet.py), verbatim."""

    def __init__(self, channels: int, kind: str, affine: bool = True):
        super().__init__()
        self.kind = kind
        self.norm = torch.nn.BatchNorm1d(channels, affine=affine) if kind == "batch" else torch.nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "batch":
            return self.norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        return self.norm(x)


class _FrozenDiscriminator(torch.nn.Module):
    """PointNetDiscriminator's network before the shared block: the same construction code and forward."""

    def __init__(self, hidden, cad_guidance, head_hidden, norm, dropout, guidance_input):
        super().__init__()
        nn = torch.nn
        self.cad_guidance, self.guidance_input = cad_guidance, guidance_input
        self.in_channels = 6 if cad_guidance else 3
        layers: list[nn.Module] = [_FrozenPointNorm(self.in_channels, "batch", affine=False)]
        c = self.in_channels
        for w in hidden:
            layers += [nn.Linear(c, w), _FrozenPointNorm(w, norm), nn.ReLU(inplace=True)]
            c = w
        self.point_mlp = nn.Sequential(*layers)
        head: list[nn.Module] = []
        for w in head_hidden:
            head += [nn.Linear(c, w), nn.LayerNorm(w) if norm == "layer" else nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
            if dropout > 0:
                head.append(nn.Dropout(dropout))
            c = w
        head.append(nn.Linear(c, 1))
        self.head = nn.Sequential(*head)

    def forward(self, points, cad_points=None):
        if not self.cad_guidance:
            x = points
        elif self.guidance_input == "offset":
            x = torch.cat([points - cad_points, cad_points], dim=-1)
        else:
            x = torch.cat([points, cad_points], dim=-1)
        return self.head(self.point_mlp(x).amax(dim=1))[:, 0]


def _assert_same_network(old: torch.nn.Module, new: torch.nn.Module, inputs: tuple) -> None:
    """Same state_dict keys (in order) and values, same outputs (train mode, then eval mode), same gradients
    and same BatchNorm running statistics after the training step: bit for bit (torch.equal)."""
    assert list(old.state_dict()) == list(new.state_dict())
    assert all(torch.equal(v, new.state_dict()[k]) for k, v in old.state_dict().items())
    assert [n for n, _ in old.named_parameters()] == [n for n, _ in new.named_parameters()]
    outs = []
    for model in (old, new):
        model.train()
        torch.manual_seed(1)  # dropout
        out = model(*inputs)
        out.sum().backward()
        outs.append(out)
    assert torch.equal(outs[0], outs[1])
    grads = [{n: p.grad for n, p in model.named_parameters()} for model in (old, new)]
    assert all(torch.equal(g, grads[1][n]) for n, g in grads[0].items())
    assert all(torch.equal(v, new.state_dict()[k]) for k, v in old.state_dict().items())  # running stats
    assert torch.equal(old.eval()(*inputs), new.eval()(*inputs))


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize(("cad_guidance", "guidance_input"), [(True, "offset"), (True, "concat"), (False, "offset")])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_shared_pointnet_block_holds_weights_keys_and_outputs(norm, cad_guidance, guidance_input, dropout):
    """The discriminator built from models.pointnet is the network it was before (frozen copy above): same
    initial weights for a seed, same state_dict keys (saved checkpoints load), same outputs."""
    kw = dict(hidden=(16, 32, 64), cad_guidance=cad_guidance, head_hidden=(32, 16), norm=norm, dropout=dropout)
    kw["guidance_input"] = guidance_input
    torch.manual_seed(0)
    old = _FrozenDiscriminator(**kw)
    torch.manual_seed(0)
    new = PointNetDiscriminator(**kw)
    g = torch.Generator().manual_seed(2)
    pts, cad = torch.randn(4, 50, 3, generator=g), torch.randn(4, 50, 3, generator=g)
    _assert_same_network(old, new, (pts, cad) if cad_guidance else (pts,))
    loaded = PointNetDiscriminator(**kw)
    loaded.load_state_dict(old.state_dict(), strict=True)  # a checkpoint of the old network loads
    assert torch.equal(loaded.eval()(pts, cad), old.eval()(pts, cad))


def test_discriminator_state_dict_keys_are_the_checkpoint_format():
    keys = list(PointNetDiscriminator(hidden=(8,), head_hidden=(4,)).state_dict())
    assert keys == [
        "point_mlp.0.norm.running_mean",
        "point_mlp.0.norm.running_var",
        "point_mlp.0.norm.num_batches_tracked",
        "point_mlp.1.weight",
        "point_mlp.1.bias",
        "point_mlp.2.norm.weight",
        "point_mlp.2.norm.bias",
        "point_mlp.2.norm.running_mean",
        "point_mlp.2.norm.running_var",
        "point_mlp.2.norm.num_batches_tracked",
        "head.0.weight",
        "head.0.bias",
        "head.1.weight",
        "head.1.bias",
        "head.1.running_mean",
        "head.1.running_var",
        "head.1.num_batches_tracked",
        "head.3.weight",
        "head.3.bias",
    ]


# ---------------------------------------------------------------------- training
def test_separates_noisy_from_clean_planes(noisy_vs_clean):
    h = noisy_vs_clean["history"]
    assert h["val_accuracy"] > 0.9 and h["val_auc"] > 0.95
    assert len(h["train_loss"]) == 100 and h["step"][-1] == 100
    assert np.mean(h["train_loss"][-10:]) < 0.5 * np.mean(h["train_loss"][:10])  # the loss goes down
    # whole frames held out: round(0.2 * 16) = 3 of the 16 frames, 16 patches each
    assert h["n_groups"] == 16 and h["n_val_groups"] == 3
    assert h["n_val_real"] == h["n_val_fake"] == 3 * 16 and h["n_train_fake"] == 13 * 16
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


def test_cad_slope_case_needs_the_cad():
    """Real offset grows with the CAD's tilt, generated offset has the tilt of another patch: only
    a CAD-guided model can tell them apart (default encoding, held-out patches)."""
    real, fake = _slope_sets()
    guided, hg = train_discriminator(real, fake, _small_cfg(steps=150), seed=0, progress=False)
    _, hp = train_discriminator(real, fake, _small_cfg(steps=150, cad_guidance=False), seed=0, progress=False)
    assert hg["n_val_real"] == hp["n_val_real"] == 120  # the same 120 held-out pairs (seed 0)
    assert hp["val_auc"] < 0.62  # depth alone: chance (240 val patches, AUC sd ~0.04)
    assert hg["val_auc"] > 0.75 and hg["val_auc"] - hp["val_auc"] > 0.15
    # the guided model's output follows the CAD: the same depth with its real CAD vs a fake CAD
    assert (
        score_patches(guided, real).mean() - score_patches(guided, PatchSet(real.points, fake.cad_points)).mean() > 0.1
    )


def test_training_is_reproducible_and_checks_its_inputs():
    real, fake = _cad_only_sets(n=60)
    cfg = _small_cfg(steps=5)
    _, h1 = train_discriminator(real, fake, cfg, seed=3, progress=False)
    _, h2 = train_discriminator(real, fake, cfg, seed=3, progress=False)
    assert h1["train_loss"] == h2["train_loss"]
    _, h0 = train_discriminator(real, fake, cfg, seed=3, val_fraction=0.0, progress=False)
    assert np.isnan(h0["val_accuracy"]) and h0["n_train_real"] == 60 and h0["n_val_groups"] == 0
    no_source = PatchSet(real.points, real.cad_points)
    with pytest.raises(Sim2RealError, match="real patch set has no source"):
        train_discriminator(no_source, fake, cfg)
    _, h0 = train_discriminator(no_source, fake, cfg, val_fraction=0.0, progress=False)  # no split: no source needed
    assert h0["n_train_real"] == 60
    with pytest.raises(ConfigError, match="val_fraction"):
        train_discriminator(real, fake, cfg, val_fraction=1.0)
    with pytest.raises(Sim2RealError, match="fake patch set has 1"):
        train_discriminator(real, PatchSet(fake.points[:1], fake.cad_points[:1]), cfg)
    with pytest.raises(Sim2RealError, match="32 points but fake ones 16"):
        train_discriminator(real, PatchSet(fake.points[:, :16], fake.cad_points[:, :16]), cfg)


# ---------------------------------------------------------------------- validation split
def test_split_holds_out_whole_groups():
    frames_real = torch.tensor([0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 7])
    frames_fake = torch.tensor([0, 1, 2, 2, 3, 4, 4, 5, 6, 7, 7])
    scene = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])  # frame -> scene
    for groups, n_groups in ((None, 8), (scene, 4)):
        (vr, vf), held, g = split_by_group([frames_real, frames_fake], 0.25, groups, torch.Generator().manual_seed(1))
        assert g == n_groups and len(held) == round(0.25 * n_groups)
        lut = torch.arange(8) if groups is None else groups  # frame -> group
        for frames, val in ((frames_real, vr), (frames_fake, vf)):
            assert torch.equal(val, torch.isin(lut[frames], held))
        # no frame and no group on both sides, across the real and the fake set
        val_frames = set(frames_real[vr].tolist()) | set(frames_fake[vf].tolist())
        train_frames = set(frames_real[~vr].tolist()) | set(frames_fake[~vf].tolist())
        assert val_frames and train_frames and not val_frames & train_frames
        assert not {int(lut[f]) for f in val_frames} & {int(lut[f]) for f in train_frames}
    # one group: nothing held out; val_fraction 0: nothing held out; the count is clamped to [1, G - 1]
    assert len(split_by_group([frames_real], 0.5, torch.zeros(8, dtype=torch.long))[1]) == 0
    assert len(split_by_group([frames_real], 0.0)[1]) == 0
    assert len(split_by_group([frames_real], 0.01)[1]) == 1 and len(split_by_group([frames_real], 0.99)[1]) == 7
    with pytest.raises(Sim2RealError, match="groups maps 4 frames"):
        split_by_group([frames_real], 0.5, scene[:4])
    with pytest.raises(ConfigError, match="val_fraction"):
        split_by_group([frames_real], 1.0)


def test_training_split_is_by_frame_group_and_reads_the_config():
    real, fake = _twin_sets(frames=20, per=4)
    # val_fraction=None reads cfg_disc.val_fraction; an explicit number overrides it
    _, h5 = train_discriminator(real, fake, _small_cfg(steps=2, val_fraction=0.5), seed=4, progress=False)
    _, h2 = train_discriminator(real, fake, _small_cfg(steps=2, val_fraction=0.5), 4, 0.2, progress=False)
    assert h5["n_val_real"] == 40 and h5["n_val_groups"] == 10
    assert h2["n_val_real"] == 16 and h2["n_val_groups"] == 4
    # groups: whole scenes held out, the same ones split_by_group draws with the seed
    base = _small_cfg(steps=2)
    scene = torch.arange(20) // 5  # 4 scenes of 5 frames
    _, h = train_discriminator(real, fake, base, seed=4, groups=scene, progress=False)
    (vr, vf), held, _ = split_by_group(
        [real.source[:, 0], fake.source[:, 0]], base.val_fraction, scene, torch.Generator().manual_seed(4)
    )
    assert h["n_groups"] == 4 and h["n_val_groups"] == len(held) == 1  # round(0.2 * 4) scenes held out
    assert h["n_val_real"] == int(vr.sum()) == 20 and h["n_val_fake"] == int(vf.sum()) == 20
    # a single group: no validation (NaN), with a warning
    with pytest.warns(UserWarning, match="1 frame group"):
        _, h1 = train_discriminator(real, fake, base, groups=torch.zeros(20, dtype=torch.long), progress=False)
    assert h1["n_val_groups"] == 0 and np.isnan(h1["val_auc"]) and h1["n_train_real"] == 80


def test_frame_split_does_not_reward_memorising_frames():
    """Patches of one frame are near-duplicates and no rule separates real from fake. The old
    by-patch split put same-frame twins of every held-out patch into training (val AUC 1.0 by
    memorisation); held-out whole frames show chance."""
    real, fake = _twin_sets()
    model, h = train_discriminator(real, fake, _small_cfg(steps=150), seed=0, progress=False)
    assert h["val_auc"] < 0.75  # unseen frames: no better than chance (by-patch split: 1.0)
    assert h["n_val_groups"] == 12 and h["n_val_real"] == 48
    (vr, vf), _, _ = split_by_group([real.source[:, 0], fake.source[:, 0]], 0.2, None, torch.Generator().manual_seed(0))
    train_real, train_fake = real.subset(torch.where(~vr)[0]), fake.subset(torch.where(~vf)[0])
    scores = torch.cat([score_patches(model, train_real), score_patches(model, train_fake)])
    seen = roc_auc(scores, torch.cat([torch.ones(len(train_real)), torch.zeros(len(train_fake))]))
    assert seen > 0.95  # the training frames are memorised, which does not carry over to unseen frames


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
    assert loaded.guidance_input == model.guidance_input == DEFAULT_GUIDANCE
    (tmp_path / "disc" / "model.json").unlink()  # the config is in the safetensors metadata too
    assert PointNetDiscriminator.load(path).hidden == (32, 64, 128)


def test_old_checkpoints_load_as_concat(tmp_path):
    """Checkpoints from before guidance_input fed (p, c): they load as "concat" and score as saved."""
    from safetensors.torch import save_file

    old = PointNetDiscriminator(hidden=(8, 16), head_hidden=(8,), guidance_input="concat").eval()
    cfg = old.config()
    del cfg["guidance_input"]
    state = {k: v.contiguous() for k, v in old.state_dict().items()}
    save_file(state, str(tmp_path / "old.safetensors"), metadata={"config": json.dumps(cfg)})
    (tmp_path / "old.json").write_text(json.dumps(cfg))
    pts, cad = torch.randn(4, 20, 3), torch.randn(4, 20, 3)
    for sidecar in (True, False):
        if not sidecar:
            (tmp_path / "old.json").unlink()
        loaded = PointNetDiscriminator.load(tmp_path / "old.safetensors")
        assert loaded.guidance_input == "concat"
        assert torch.allclose(loaded(pts, cad), old(pts, cad), atol=1e-6)
    for name in ("offset", "concat"):
        path = PointNetDiscriminator(hidden=(8,), guidance_input=name).save(tmp_path / f"{name}.safetensors")
        assert PointNetDiscriminator.load(path).guidance_input == name


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


def _old_layout_copy(model: PointNetDiscriminator) -> PointNetDiscriminator:
    """The same weights with the layout before bench_disc_step.py: ReLUs in place (on point_norm's view)."""
    import copy

    old = copy.deepcopy(model)
    for m in old.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = True
    return old


def test_training_step_makes_no_copy_of_a_view_and_keeps_the_gradients():
    """The per-point MLP does no in-place op on a view (autograd's CopySlices copies the whole feature map in
    backward) and the max-pool's backward scatters to the argmax; both are speed changes only: on patches with
    duplicated points (resampled patches repeat pixels, so features tie) the loss and every parameter gradient
    equal those of the old layout (in-place ReLUs, amax pool)."""
    from sim2real_kit.models import discriminator as discriminator_module
    from sim2real_kit.models import pointnet

    torch.manual_seed(0)
    model = PointNetDiscriminator.from_config(_disc_cfg())
    g = torch.Generator().manual_seed(3)
    base = torch.randn(16, 40, 3, generator=g)
    idx = torch.randint(40, (16, 128), generator=g)  # 128 points drawn from 40: duplicates, as resampling makes
    points = torch.gather(base, 1, idx[..., None].expand(-1, -1, 3))
    cad = points + 0.01 * torch.randn(points.shape, generator=g)
    labels = (torch.arange(16) % 2).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(points, cad), labels)

    nodes, stack, seen = set(), [loss.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        nodes.add(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    assert "CopySlices" not in nodes and "AmaxBackward0" not in nodes, sorted(nodes)
    loss.backward()

    old = _old_layout_copy(model)
    old.zero_grad(set_to_none=True)
    amax_pool = lambda f: f.amax(dim=1)  # noqa: E731
    from unittest import mock

    with mock.patch("sim2real_kit.models.discriminator.max_pool", amax_pool):
        old_loss = torch.nn.functional.binary_cross_entropy_with_logits(old(points, cad), labels)
    old_loss.backward()
    assert discriminator_module.max_pool is pointnet.max_pool  # the patch is undone: the kit pools with pointnet's
    assert torch.allclose(loss, old_loss, rtol=0, atol=1e-7)
    for (name, p), q in zip(model.named_parameters(), old.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7), name
