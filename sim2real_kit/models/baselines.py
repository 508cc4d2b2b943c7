"""Learned and naive baselines of the benchmark (paper Sec. 4.1 "Methods in comparison"; DESIGN §5).

Every baseline is a *simulator*: clean CAD depth in, simulated captured depth out, with the same call
`simulate(cad_m, camera=None, generator=None) -> depth_m` (metres, 0 = hole; numpy or torch, shape kept).

- `RandomPerturbation`: Gaussian noise + random pixel dropout on the CAD depth — what DisCo's pretraining
  does to synthetic data ("w/o sim. data" of the paper's Tables 1-2).
- **pix2pix** (Isola et al. 2017), trained on the paired CAD / real frames: `UNetGenerator` (CAD_n -> depth_n)
  and a conditional `PatchGANDiscriminator` on concat(CAD_n, depth_n); loss = adversarial (BCE, as the
  paper; or LSGAN) + lambda_L1 = 100 x L1 on the valid pixels of the dataset's mask.
- **CycleGAN** (Zhu et al. 2017), unpaired: generators CAD->real and real->CAD, unconditional PatchGANs per
  domain, LSGAN + lambda_cyc = 10 x cycle L1 + identity L1 (0.5 lambda_cyc). As the paper ("we train Cycle-GAN
  on the pair-shuffled LASA training data"), each batch's real maps are a random derangement of the batch
  (`shuffle_pairs`): no CAD frame ever meets its own capture. The history pool of fakes (50 images) of the
  original CycleGAN is left out: it would make the loss depend on state outside the Trainer's checkpoint.

Generator output (`BaselineConfig.output`): "direct" (default, Isola et al.: tanh of the U-Net = the
normalised depth itself) or "residual" (input + tanh(U-Net), clamped to [-1, 1]: the kit's residual idea
grafted on the GAN, measured in the ablations if wanted). Depth is the kit's log normalisation
(`depth.normalize_depth`); a generated value >= 4.9 m decodes to 0 (a hole) through `denormalize_depth`,
so the GANs can produce holes where their training target had invalid depth; the output is also 0 wherever
the CAD depth is 0.

The two nets are hand-written on purpose: the baselines *are* Isola et al.'s U-Net (4x4 stride-2 convs,
skip concatenations, decoder dropout) and 70x70 PatchGAN (sized down to the frame: 3 stride-2 layers at
64 px, fewer on smaller frames); a diffusers UNet2DModel would be another baseline. Norms are InstanceNorm
(CycleGAN's choice; no running statistics, so train and eval behave alike).

Training goes through the kit's `training.Trainer` (GAN pattern: one forward, {"G": loss_G, "D": loss_D},
simultaneous Adam updates, checkpoints, exact resume). `train_baseline` writes `baseline.json` (kind,
config, frame size) beside the Trainer's folders; `BaselineSimulator.load(run_dir)` rebuilds the generator.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sim2real_kit.config import BaselineConfig
from sim2real_kit.depth import cad_condition, check_depth, denormalize_depth
from sim2real_kit.errors import CheckpointError, ConfigError, DepthFormatError, MissingArtifactError
from sim2real_kit.io import atomic_write_json

KINDS = ("pix2pix", "cyclegan")
BASELINE_FILE = "baseline.json"
BASELINE_FORMAT = "sim2real_kit.baseline/1"


# ====================================================================== configuration
def baseline_config(cfg=None) -> BaselineConfig:
    """The `BaselineConfig` of a kit `Config`: its `baselines` section when it has one (a dataclass or a
    dict), else the defaults. A `BaselineConfig` is returned as it is."""
    if isinstance(cfg, BaselineConfig):
        return cfg.check()
    section = getattr(cfg, "baselines", None) if cfg is not None else None
    if section is None:
        return BaselineConfig()
    if dataclasses.is_dataclass(section):
        section = dataclasses.asdict(section)
    return BaselineConfig.from_dict(section)


def patchgan_layers(size: int) -> int:
    """Stride-2 layers of a PatchGAN for a `size`-pixel frame: 3 (Isola's 70x70) from 64 px, one fewer per
    halving (32 px: 2, 16 px: 1), so the output stays a grid of patches of at least 6x6."""
    return int(min(3, max(1, int(np.log2(max(size, 2))) - 3)))


# ====================================================================== networks
def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


class UNetGenerator(nn.Module):
    """Isola et al.'s U-Net: `levels` 4x4 stride-2 convolutions down, transposed convolutions up, skip
    concatenations, tanh output. Channels ngf * (1, 2, 4, 8, 8, ...). Input [B, in_channels, H, W] with H, W
    divisible by 2**levels; output [B, out_channels, H, W] in [-1, 1].

    output="direct": the image itself (Isola et al.); "residual": clamp(input[:, :1] + tanh(.), -1, 1).
    Dropout (`dropout`) sits in the inner decoder blocks (all but the innermost and the outermost), as in
    Isola et al.'s 512-channel blocks; it is active in training mode only (simulation is deterministic)."""

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ngf: int = 32,
        levels: int = 4,
        output: str = "direct",
        dropout: float = 0.5,
    ):
        super().__init__()
        if levels < 2:
            raise ConfigError(f"UNetGenerator needs levels >= 2, got {levels}")
        if output not in ("direct", "residual"):
            raise ConfigError(f"UNetGenerator output must be 'direct' or 'residual', got {output!r}")
        self.levels, self.output = int(levels), output
        widths = [ngf * min(2**i, 8) for i in range(levels)]
        self.down = nn.ModuleList()
        for i in range(levels):
            if i == 0:  # outermost: no activation before, no norm
                self.down.append(nn.Conv2d(in_channels, widths[0], 4, 2, 1))
            else:  # innermost (i = levels - 1): no norm on the bottleneck, as Isola et al.
                layers = [nn.LeakyReLU(0.2), nn.Conv2d(widths[i - 1], widths[i], 4, 2, 1)]
                if i < levels - 1:
                    layers.append(_norm(widths[i]))
                self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()  # up[i] produces the input of level i (same size as down[i - 1]'s output)
        for i in range(levels - 1, 0, -1):
            cin = widths[i] if i == levels - 1 else 2 * widths[i]
            layers = [nn.ReLU(), nn.ConvTranspose2d(cin, widths[i - 1], 4, 2, 1), _norm(widths[i - 1])]
            if dropout > 0 and i < levels - 1:
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))
        self.out = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * widths[0], out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2**self.levels or x.shape[-2] % 2**self.levels:
            raise DepthFormatError(
                f"UNetGenerator with {self.levels} levels needs H and W divisible by {2**self.levels}, "
                f"got {tuple(x.shape[-2:])}"
            )
        skips = []
        h = x
        for block in self.down:
            h = block(h)
            skips.append(h)
        h = skips.pop()  # the bottleneck
        for block in self.up:
            h = block(h)
            h = torch.cat([h, skips.pop()], dim=1)  # [B, 2 * w_i, H_i, W_i]
        out = self.out(h)  # [B, out, H, W] in [-1, 1]
        if self.output == "residual":
            out = torch.clamp(x[:, : out.shape[1]] + out, -1.0, 1.0)
        return out


class PatchGANDiscriminator(nn.Module):
    """Isola et al.'s PatchGAN: `n_layers` 4x4 stride-2 convolutions (LeakyReLU 0.2, InstanceNorm after the
    first), one stride-1 convolution, then a 1-channel stride-1 convolution -> a grid of real/fake logits,
    one per overlapping patch (70x70 receptive field with n_layers = 3). Input [B, in_channels, H, W];
    pix2pix conditions on the CAD map (in_channels = 2: concat(CAD_n, depth_n)), CycleGAN does not (1)."""

    def __init__(self, in_channels: int = 2, ndf: int = 32, n_layers: int = 3):
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"PatchGANDiscriminator needs n_layers >= 1, got {n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1), _norm(ndf * mult), nn.LeakyReLU(0.2)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1), _norm(ndf * mult), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # [B, 1, h, w] logits


def build_baseline(kind: str, bcfg: BaselineConfig | None = None, size: int = 64) -> nn.ModuleDict:
    """The trainable module of a baseline for `size`-pixel frames.

    pix2pix: ModuleDict {"G": UNetGenerator, "D": PatchGANDiscriminator(2 ch)};
    cyclegan: ModuleDict {"G": {"ab": CAD->real, "ba": real->CAD}, "D": {"a": CAD domain, "b": real domain}}."""
    bcfg = (bcfg or BaselineConfig()).check()
    _check_kind(kind)
    if size % 2**bcfg.levels:
        raise ConfigError(
            f"baselines.levels = {bcfg.levels} needs a frame side divisible by {2**bcfg.levels}, got data.size = {size}"
        )
    n_layers = bcfg.disc_layers or patchgan_layers(size)

    def generator() -> UNetGenerator:
        return UNetGenerator(1, 1, bcfg.ngf, bcfg.levels, bcfg.output, bcfg.dropout)

    if kind == "pix2pix":
        return nn.ModuleDict({"G": generator(), "D": PatchGANDiscriminator(2, bcfg.ndf, n_layers)})
    return nn.ModuleDict(
        {
            "G": nn.ModuleDict({"ab": generator(), "ba": generator()}),
            "D": nn.ModuleDict(
                {"a": PatchGANDiscriminator(1, bcfg.ndf, n_layers), "b": PatchGANDiscriminator(1, bcfg.ndf, n_layers)}
            ),
        }
    )


# ====================================================================== losses
def gan_loss(logits: torch.Tensor, real: bool, kind: str = "lsgan") -> torch.Tensor:
    """Adversarial loss of PatchGAN logits against the label real (1) / fake (0): "lsgan" = mean squared
    error (Mao et al.), "bce" = binary cross-entropy on the logits (Goodfellow et al., Isola et al.)."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    if kind == "lsgan":
        return F.mse_loss(logits, target)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    raise ConfigError(f"GAN loss must be 'lsgan' or 'bce', got {kind!r}")


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |pred - target| over the pixels where `mask` > 0 (all pixels without a mask); [B, 1, H, W]."""
    diff = (pred - target).abs()
    if mask is None:
        return diff.mean()
    weight = mask.to(diff.dtype)
    return (diff * weight).sum() / weight.sum().clamp_min(1.0)


def shuffle_pairs(batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random derangement of range(batch_size) (one random cycle through the batch): index i of the result
    is the sample whose real map pairs with CAD map i. No sample keeps its own capture (pair-shuffled data)."""
    if batch_size < 2:
        raise ConfigError(f"CycleGAN pair shuffling needs batches of >= 2 frames (train.batch_size), got {batch_size}")
    device = generator.device if generator is not None else torch.device("cpu")
    order = torch.randperm(batch_size, generator=generator, device=device)
    perm = torch.empty_like(order)
    perm[order] = order.roll(-1)  # order[k] -> order[k + 1]: a single cycle, so no fixed point
    return perm


def pix2pix_loss_fn(bcfg: BaselineConfig | None = None):
    """loss_fn(model, batch, generator) -> ({"G", "D"}, logs) for the Trainer's GAN pattern.

    batch: `PairedDepthDataset` items collated: `cad_n`, `real_n` [B, 1, H, W], `mask` [B, 1, H, W].
    loss_G = GAN(D(CAD, G(CAD)) -> real) + l1_weight * masked L1(G(CAD), real_n); loss_D = (GAN(D(CAD, real) ->
    real) + GAN(D(CAD, G(CAD).detach()) -> fake)) / 2 (Isola et al. halve D's loss)."""
    bcfg = (bcfg or BaselineConfig()).check()
    kind = bcfg.resolved_gan_loss("pix2pix")

    def loss_fn(model, batch, generator):
        cad_n, real_n, mask = batch["cad_n"], batch["real_n"], batch.get("mask")
        if mask is not None:  # data.holes = model: [B, 2, H, W]; the GAN has no validity channel, so mask mode's
            mask = mask[:, :1]
        G, D = model["G"], model["D"]
        fake = G(cad_n)  # [B, 1, H, W]
        l1 = masked_l1(fake, real_n, mask)
        g_gan = gan_loss(D(torch.cat([cad_n, fake], 1)), True, kind)
        loss_G = g_gan + bcfg.l1_weight * l1
        d_real = gan_loss(D(torch.cat([cad_n, real_n], 1)), True, kind)
        d_fake = gan_loss(D(torch.cat([cad_n, fake.detach()], 1)), False, kind)
        loss_D = 0.5 * (d_real + d_fake)
        return {"G": loss_G, "D": loss_D}, {"l1": l1, "g_gan": g_gan, "d_real": d_real, "d_fake": d_fake}

    return loss_fn


def cyclegan_loss_fn(bcfg: BaselineConfig | None = None):
    """loss_fn(model, batch, generator) -> ({"G", "D"}, logs) for the Trainer's GAN pattern, unpaired.

    Domain A = CAD maps `cad_n`, domain B = real maps `real_n[shuffle_pairs(B, generator)]` (pair-shuffled).
    loss_G = GAN(D_b(G_ab(a))) + GAN(D_a(G_ba(b))) + cycle_weight * (|G_ba(G_ab(a)) - a| + |G_ab(G_ba(b)) - b|)
    + identity_weight * cycle_weight * (|G_ab(b) - b| + |G_ba(a) - a|); loss_D = per domain (GAN(D(real) -> 1) +
    GAN(D(fake.detach()) -> 0)) / 2, summed over the two domains."""
    bcfg = (bcfg or BaselineConfig()).check()
    kind = bcfg.resolved_gan_loss("cyclegan")

    def loss_fn(model, batch, generator):
        cad_n, real_n = batch["cad_n"], batch["real_n"]
        perm = shuffle_pairs(cad_n.shape[0], generator)
        a, b = cad_n, real_n[perm]  # unpaired: no frame meets its own capture
        G_ab, G_ba = model["G"]["ab"], model["G"]["ba"]
        D_a, D_b = model["D"]["a"], model["D"]["b"]
        fake_b, fake_a = G_ab(a), G_ba(b)  # [B, 1, H, W]
        cycle = masked_l1(G_ba(fake_b), a) + masked_l1(G_ab(fake_a), b)
        g_gan = gan_loss(D_b(fake_b), True, kind) + gan_loss(D_a(fake_a), True, kind)
        loss_G = g_gan + bcfg.cycle_weight * cycle
        logs: dict[str, Any] = {"cycle": cycle, "g_gan": g_gan}
        if bcfg.identity_weight > 0:
            identity = masked_l1(G_ab(b), b) + masked_l1(G_ba(a), a)
            loss_G = loss_G + bcfg.identity_weight * bcfg.cycle_weight * identity
            logs["identity"] = identity
        d_b = 0.5 * (gan_loss(D_b(b), True, kind) + gan_loss(D_b(fake_b.detach()), False, kind))
        d_a = 0.5 * (gan_loss(D_a(a), True, kind) + gan_loss(D_a(fake_a.detach()), False, kind))
        logs.update(d_a=d_a, d_b=d_b, shuffled=(perm != torch.arange(len(perm), device=perm.device)).float().mean())
        return {"G": loss_G, "D": d_a + d_b}, logs

    return loss_fn


# ====================================================================== training
def train_baseline(
    kind: str,
    dataset,
    run_dir: str | Path,
    cfg=None,
    steps: int | None = None,
    seed: int | None = None,
    *,
    baseline: BaselineConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> nn.ModuleDict:
    """Train a pix2pix or CycleGAN baseline on `dataset` (a `PairedDepthDataset` of the train split) with the
    kit's Trainer; returns the trained ModuleDict (see `build_baseline`).

    cfg: the kit `Config` (its `train` section gives log / checkpoint cadence, grad clip, precision; its
    `baselines` section, when present, the `BaselineConfig`; `baseline=` overrides it). steps / seed: default
    `baselines.steps` (or `train.steps`) and `cfg.seed`. run_dir gets `baseline.json` plus the Trainer's
    `checkpoints/`, `losses.csv`; `resume=True` continues it."""
    from sim2real_kit.config import Config, TrainConfig
    from sim2real_kit.training import Trainer

    _check_kind(kind)
    cfg = cfg if cfg is not None else Config()
    bcfg = baseline_config(baseline if baseline is not None else cfg)
    seed = int(cfg.seed if seed is None else seed)
    train_cfg = getattr(cfg, "train", None) or TrainConfig()
    size = _dataset_size(dataset)
    steps = int(steps or bcfg.steps or train_cfg.steps)
    batch_size = int(bcfg.batch_size or train_cfg.batch_size)
    train_cfg = dataclasses.replace(train_cfg, steps=steps, batch_size=batch_size, lr=bcfg.lr, ema=False)
    if kind == "cyclegan" and batch_size < 2:
        raise ConfigError(f"CycleGAN pair shuffling needs batches of >= 2 frames, got batch_size = {batch_size}")

    with torch.random.fork_rng(devices=[]):  # the initial weights follow `seed`, not whatever ran before
        torch.manual_seed(seed)
        model = build_baseline(kind, bcfg, size)
    run_dir = Path(run_dir)
    meta = {"format": BASELINE_FORMAT, "kind": kind, "size": size, "seed": seed, "config": dataclasses.asdict(bcfg)}
    meta_path = run_dir / BASELINE_FILE
    if resume and meta_path.is_file():
        old = _read_meta(meta_path)
        if {k: old.get(k) for k in ("kind", "size", "config")} != {k: meta[k] for k in ("kind", "size", "config")}:
            raise CheckpointError(
                f"cannot resume: the folder holds a {old.get('kind')} baseline of size {old.get('size')} with another "
                "config; use another run folder or overwrite",
                meta_path,
            )
    loss_fn = pix2pix_loss_fn(bcfg) if kind == "pix2pix" else cyclegan_loss_fn(bcfg)
    adam = {"lr": bcfg.lr, "betas": (bcfg.beta1, 0.999), "weight_decay": 0.0}  # Adam as the papers (no decay)
    trainer = Trainer(
        model,
        loss_fn,
        dataset,
        train_cfg,
        run_dir,
        seed=seed,
        param_groups={"G": {"params": model["G"], **adam}, "D": {"params": model["D"], **adam}},
        resume=resume,
        overwrite=overwrite,
        progress=progress,
    )
    atomic_write_json(meta_path, meta)
    trainer.fit()
    model.eval()
    return model


def _dataset_size(dataset) -> int:
    if len(dataset) == 0:
        raise ConfigError("the baseline's training dataset is empty")
    cad_n = dataset[0]["cad_n"]
    if cad_n.ndim != 3 or cad_n.shape[0] != 1:
        raise DepthFormatError(f"dataset items must hold cad_n of shape [1, S, S], got {tuple(cad_n.shape)}")
    return int(cad_n.shape[-1])


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown baseline kind {kind!r}; valid: {', '.join(KINDS)}")


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read the baseline description ({e})", path) from None
    if not isinstance(meta, dict) or meta.get("format") != BASELINE_FORMAT:
        raise CheckpointError(f"not a baseline description of format {BASELINE_FORMAT}", path)
    if meta.get("kind") not in KINDS:
        raise CheckpointError(f"unknown baseline kind {meta.get('kind')!r}", path)
    return meta


# ====================================================================== simulators
class RandomPerturbation:
    """Naive simulator: CAD depth + Gaussian noise (std `sigma_m` metres) on every valid pixel, then each valid
    pixel dropped (set to 0) with probability `dropout`. CAD 0 stays 0; the result is clipped at 0."""

    name = "random"

    def __init__(self, sigma_m: float = 0.01, dropout: float = 0.05, seed: int = 0):
        if not sigma_m >= 0:
            raise ConfigError(f"RandomPerturbation sigma_m must be >= 0 metres, got {sigma_m!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ConfigError(f"RandomPerturbation dropout must be in [0, 1], got {dropout!r}")
        self.sigma_m, self.dropout = float(sigma_m), float(dropout)
        self._rng = np.random.default_rng(seed)

    def simulate(self, cad_m, camera=None, generator=None):
        """cad_m: [..., H, W] metres (numpy or torch) -> depth_m of the same kind, shape and device.

        generator: torch.Generator, numpy Generator, int seed, or None (the instance's own stream, seeded at
        construction). `camera` is accepted for the common simulator call and not used."""
        is_torch = isinstance(cad_m, torch.Tensor)
        cad = cad_m if is_torch else torch.from_numpy(np.asarray(cad_m, dtype=np.float32))
        check_depth(cad, "CAD depth")
        gen = _torch_generator(generator, self._rng, cad.device)
        noise = torch.randn(cad.shape, generator=gen, device=cad.device, dtype=cad.dtype) * self.sigma_m
        keep = torch.rand(cad.shape, generator=gen, device=cad.device) >= self.dropout
        out = torch.where((cad > 0) & keep, (cad + noise).clamp_min(0.0), torch.zeros_like(cad))
        return out if is_torch else out.numpy().astype(np.asarray(cad_m).dtype, copy=False)


def _torch_generator(generator, fallback: np.random.Generator, device) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None:
        rng = fallback
    elif isinstance(generator, np.random.Generator):
        rng = generator
    else:
        rng = np.random.default_rng(int(generator))
    gen = torch.Generator(device=device)
    gen.manual_seed(int(rng.integers(2**62)))
    return gen


class BaselineSimulator:
    """A trained GAN generator as a simulator: CAD depth (metres) -> normalised -> G -> denormalised depth.

    generator: the CAD->real network (pix2pix "G", CycleGAN "G"/"ab"); kind: "pix2pix" | "cyclegan"; size: the
    frame side it was trained at (frames of other sides divisible by 2**levels are accepted, but the GAN saw
    only `size`-pixel frames: feed the pipeline's model-size crops)."""

    def __init__(
        self,
        generator: nn.Module,
        kind: str,
        size: int | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
    ):
        _check_kind(kind)
        self.kind, self.name, self.size = kind, kind, size
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.batch_size = int(batch_size)

    @classmethod
    def from_model(cls, model: nn.ModuleDict, kind: str, size: int | None = None, **kw) -> BaselineSimulator:
        """From the ModuleDict `train_baseline` returns."""
        _check_kind(kind)
        return cls(model["G"] if kind == "pix2pix" else model["G"]["ab"], kind, size, **kw)

    @classmethod
    def load(cls, run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str | Path | None = None):
        """Rebuild from a `train_baseline` folder: `baseline.json` + the newest checkpoint (or `checkpoint`, e.g.
        `run_dir/checkpoints/step-000100`). Missing files raise errors naming them."""
        from sim2real_kit.training import load_weights

        run_dir = Path(run_dir)
        meta_path = run_dir / BASELINE_FILE
        if not meta_path.is_file():
            raise MissingArtifactError(
                f"no {BASELINE_FILE}: not a trained baseline folder (make one with models.baselines.train_baseline)",
                meta_path,
            )
        meta = _read_meta(meta_path)
        try:
            bcfg = BaselineConfig.from_dict(meta.get("config"), source=str(meta_path))
        except (TypeError, ConfigError) as e:
            raise CheckpointError(f"bad baseline config ({e})", meta_path) from None
        model = build_baseline(meta["kind"], bcfg, int(meta["size"]))
        load_weights(model, checkpoint if checkpoint is not None else run_dir)
        return cls.from_model(model, meta["kind"], int(meta["size"]), device=device)

    @torch.no_grad()
    def simulate_normalized(self, cad_n: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] log-normalised CAD -> [B, 1, H, W] normalised simulated depth, in batches."""
        outs = []
        for start in range(0, cad_n.shape[0], self.batch_size):
            chunk = cad_n[start : start + self.batch_size].to(self.device, torch.float32)
            outs.append(self.generator(chunk))
        return torch.cat(outs).to(cad_n.device)

    def simulate(self, cad_m, camera=None, generator=None):
        """cad_m: [H, W], [B, H, W] or [B, 1, H, W] metres (numpy or torch) -> simulated depth, same kind and
        shape, metres, 0 = hole (generated >= 4.9 m) and 0 wherever the CAD is 0. Deterministic (dropout off):
        `camera` and `generator` are accepted for the common simulator call and not used."""
        is_torch = isinstance(cad_m, torch.Tensor)
        cad = cad_m.detach().float() if is_torch else torch.from_numpy(np.asarray(cad_m, dtype=np.float32))
        check_depth(cad, "CAD depth")
        if cad.ndim not in (2, 3, 4) or (cad.ndim == 4 and cad.shape[1] != 1):
            raise DepthFormatError(f"CAD depth must be [H, W], [B, H, W] or [B, 1, H, W], got {tuple(cad.shape)}")
        levels = getattr(self.generator, "levels", 0)
        if levels and (cad.shape[-1] % 2**levels or cad.shape[-2] % 2**levels):
            raise DepthFormatError(
                f"CAD depth of size {tuple(cad.shape[-2:])}: the {self.kind} generator needs H and W divisible by "
                f"{2**levels} (trained at {self.size} px; feed model-size crops)"
            )
        batch = cad.reshape(-1, 1, *cad.shape[-2:])  # [B, 1, H, W]
        cad_n = cad_condition(batch)  # as the training dataset's cad_n: the CAD alone
        depth = denormalize_depth(self.simulate_normalized(cad_n))
        depth = torch.where(batch > 0, depth, torch.zeros_like(depth)).reshape(cad.shape)
        if is_torch:
            return depth.to(cad_m.device, cad_m.dtype)
        return depth.numpy().astype(np.asarray(cad_m).dtype if np.asarray(cad_m).dtype.kind == "f" else np.float32)


__all__ = [
    "BaselineConfig",
    "baseline_config",
    "patchgan_layers",
    "UNetGenerator",
    "PatchGANDiscriminator",
    "build_baseline",
    "gan_loss",
    "masked_l1",
    "shuffle_pairs",
    "pix2pix_loss_fn",
    "cyclegan_loss_fn",
    "train_baseline",
    "RandomPerturbation",
    "BaselineSimulator",
    "KINDS",
]
