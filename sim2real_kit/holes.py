"""Holes from a separate validity head (kit extension, issue 20; `model.validity: head` with `data.holes: model`).

The validity channel beside the residual (`model.validity: channel`) makes the denoiser learn where the sensor
returns nothing, at a cost to the residual on the GPU (docs/results.md). Here the two are decoupled: the denoiser
is trained exactly as a `data.holes: mask` one, and a small CNN (`ValidityHead`) reads the CAD condition and its
edge map (`head_input`: functions of the CAD alone, as at sampling time) and is fit with binary cross-entropy on
the train split's real validity (the sensor returned depth), on whole frames preprocessed as sampling sees them
(`fit_validity_head`); the real sample's few-shot Stage-I fits it on random crops of its frames at native
resolution, on the training objects' pixels only (`fit_validity_head_on_frames`). At sampling, holes are drawn
(`draw_holes`), not thresholded: a pixel is a hole where a spatially correlated uniform u > P(valid), so each
pixel is a hole with probability 1 - P(valid) and holes come as blobs (`correlated_uniform`)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from sim2real_kit.errors import ConfigError, LayoutError

HEAD_FOLDER = "validity_head"  # the head's subfolder of a saved pipeline
NO_THRESHOLD = "the validity head draws holes at its fitted probability; there is no threshold to calibrate"


class ValidityHead(ModelMixin, ConfigMixin):
    """[B, 2, H, W] (CAD condition, edge map: `head_input`) -> [B, 1, H, W] logits of P(valid); fully
    convolutional, receptive field 15 px. Saves / loads with `save_pretrained` / `from_pretrained` (safetensors)."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=4, dilation=4),
            nn.GELU(),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def p_valid(self, cad_m: torch.Tensor) -> torch.Tensor:
        """CAD metres [B, H, W] -> P(valid) [B, H, W] in (0, 1), fp32, on the CAD's device (0 is not forced where
        the CAD has no depth: the caller masks)."""
        p = next(self.parameters())
        x = head_input(cad_m[:, None].to(p.device, torch.float32)).to(p.dtype)
        return torch.sigmoid(self(x).float())[:, 0].to(cad_m.device)


def head_input(cad_m: torch.Tensor) -> torch.Tensor:
    """CAD metres [B, 1, H, W] -> [B, 2, H, W] fp32: the normalised condition (`depth.cad_condition`) and its edge
    map (`depth.cad_edge_map`)."""
    from sim2real_kit.depth import cad_condition, cad_edge_map

    cad_n = cad_condition(cad_m)
    return torch.cat([cad_n, cad_edge_map(cad_n)], dim=1).float()


def correlated_uniform(shape, sigma: float, gen: torch.Generator | None, device=None) -> torch.Tensor:
    """[F, H, W] uniform in (0, 1) per pixel, spatially correlated: white noise (drawn from `gen` on its device)
    blurred by a Gaussian of `sigma` px (sigma 0: white), rescaled to unit variance, through the normal CDF;
    returned on `device` (default: where it was drawn)."""
    z = torch.randn(shape, generator=gen, device=None if gen is None else gen.device)
    if sigma > 0:
        r = max(1, int(math.ceil(3 * sigma)))
        x = torch.arange(-r, r + 1, dtype=torch.float32, device=z.device)
        k = torch.exp(-(x**2) / (2 * sigma**2))
        k = k / k.norm()  # unit-norm kernel: the blurred white noise keeps unit variance (away from the border)
        z = z[:, None]
        # reflect padding needs more pixels than the pad: replicate on maps smaller than the kernel
        mode = "reflect" if min(shape[-2:]) > r else "replicate"
        z = F.conv2d(F.pad(z, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
        z = F.conv2d(F.pad(z, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))[:, 0]
    u = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return u if device is None else u.to(device)


def fork_generator(generator: torch.Generator | None) -> torch.Generator:
    """A new generator on `generator`'s device (None: torch's default CPU one) seeded from a hash of its state,
    which it leaves as it is: a draw from the fork is a function of the caller's generator that shifts none of
    the caller's later draws (the pipeline's diffusion noise, the next call's), and is independent of them."""
    source = torch.default_generator if generator is None else generator
    digest = hashlib.sha256(source.get_state().cpu().numpy().tobytes() + b"validity holes").digest()
    return torch.Generator(device=source.device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def draw_holes(p: torch.Tensor, generator: torch.Generator | None, sigma: float = 1.0) -> torch.Tensor:
    """P(valid) [F, H, W] -> bool [F, H, W], True where a hole is drawn (u > P(valid), u `correlated_uniform`
    from `generator`): each pixel a hole with probability 1 - P(valid), holes as blobs of ~`sigma` px."""
    return correlated_uniform(tuple(p.shape), sigma, generator, device=p.device) > p


def fit_validity_head(
    cfg, layout, steps: int, seed: int, device="cpu", progress: bool = False, crops: bool = False, losses=None
) -> ValidityHead:
    """Fit a `ValidityHead` on the train split's whole frames (`PairedDepthDataset(train=False)`: the eval
    transform, as sampling preprocesses a frame): BCE of its logits against the real validity (the sensor
    returned depth), on CAD-valid pixels only; Adam lr 1e-3, batches of min(16, frames), `steps` steps, seeded by
    `seed`. `crops`: Stage-I's random crops instead (`train=True`; worse on whole frames: docs/results.md, "Holes
    from a separate validity head"). `losses`: a list each step's loss is appended to. Returns the head on the CPU
    in eval mode. LayoutError when the train split has no frame."""
    from sim2real_kit.data.dataset import PairedDepthDataset

    try:
        frames = layout.frames("train")
    except LayoutError as e:
        raise LayoutError(f"the train split has no frame to fit the validity head on ({e})", layout.root) from None
    if not frames:
        raise LayoutError("the train split has no frame to fit the validity head on", layout.root)
    ds = PairedDepthDataset.from_config(cfg, layout, "train", train=crops, keys=("cad", "real"))
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=min(16, len(ds)), shuffle=True, generator=gen, drop_last=True)
    it = None

    def batch():
        nonlocal it
        b = next(it, None) if it is not None else None
        if b is None:  # the first step, or the loader ran out: a new shuffled pass
            it = iter(loader)
            b = next(it)
        return b["cad"], b["real"], None

    return _fit_head(batch, steps, seed, device, progress, "validity head", losses)


def fit_validity_head_on_frames(
    cad_m,
    real_m,
    weight,
    crop: int,
    steps: int,
    seed: int,
    device="cpu",
    progress: bool = False,
    losses=None,
    batch: int = 16,
) -> ValidityHead:
    """Fit a `ValidityHead` on random `crop`-px crops of frames at their own resolution (the real sample's
    few-shot Stage-I, `real_sample.train_heldout_stage1`): CAD and real depth [F, H, W] metres (numpy or torch),
    `weight` [F, H, W] bool, the pixels allowed in the loss (e.g. the training objects' pixels: the held-out
    object's are not). Each step `batch` crops (frame, top, left drawn uniformly from a generator seeded by `seed`)
    and the BCE of `head_loss` on their CAD-valid pixels where the weight is on; the real validity (real > 0) is
    read only there (elsewhere the target is set to 0 before the loss). Adam lr 1e-3, `steps` steps, the
    initialisation seeded by `seed` too. `losses`: a list each step's loss is appended to. Returns the head on the
    CPU in eval mode. ConfigError when the shapes differ, the frames are smaller than the crop or the weight has
    no pixel with CAD."""
    cad = torch.as_tensor(np.asarray(cad_m, np.float32) if not torch.is_tensor(cad_m) else cad_m).float()
    real = torch.as_tensor(np.asarray(real_m, np.float32) if not torch.is_tensor(real_m) else real_m).float()
    on = torch.as_tensor(np.asarray(weight) if not torch.is_tensor(weight) else weight).bool()
    if cad.ndim != 3 or real.shape != cad.shape or on.shape != cad.shape:
        raise ConfigError(
            f"the validity head's frames must be [F, H, W] of one shape: CAD {tuple(cad.shape)}, real "
            f"{tuple(real.shape)}, weight {tuple(on.shape)}"
        )
    f, h, w = cad.shape
    if not 0 < int(crop) <= min(h, w):
        raise ConfigError(f"a crop of {crop} px does not fit the {w}x{h} frames the validity head is fit on")
    if not bool((on & (cad > 0)).any()):
        raise ConfigError("the validity head's weight has no pixel with CAD depth: nothing to fit it on")
    if int(steps) < 0 or int(batch) <= 0:
        raise ConfigError(f"the validity head needs steps >= 0 and batch > 0, got {steps} and {batch}")
    crop, batch = int(crop), int(batch)
    valid = ((real > 0) & on).float()  # the target: the real validity, read on weighted pixels only
    on = on.float()
    gen = torch.Generator().manual_seed(int(seed))

    def crops():
        idx = torch.randint(0, f, (batch,), generator=gen)
        ys = torch.randint(0, h - crop + 1, (batch,), generator=gen)
        xs = torch.randint(0, w - crop + 1, (batch,), generator=gen)
        return tuple(_crops(t, idx, ys, xs, crop) for t in (cad, valid, on))

    return _fit_head(crops, int(steps), int(seed), device, progress, f"validity head (seed {seed})", losses)


def _fit_head(batch, steps: int, seed: int, device, progress: bool, desc: str, losses=None) -> ValidityHead:
    """The head's optimisation, shared by `fit_validity_head` and `fit_validity_head_on_frames`: a `ValidityHead`
    initialised from `seed`, Adam lr 1e-3, `steps` steps of `head_loss` on `batch()` -> (CAD metres, real metres,
    weight or None) [B, 1, H, W]; each step's loss appended to `losses` when given. Returns it on the CPU, eval."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    head = ValidityHead().to(device)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=not progress):
        cad, real, weight = batch()
        loss = head_loss(head, cad.to(device), real.to(device), None if weight is None else weight.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if losses is not None:
            losses.append(loss.item())
    return head.to("cpu").eval()


def _crops(t: torch.Tensor, idx, ys, xs, crop: int) -> torch.Tensor:
    """[F, H, W] -> [B, 1, crop, crop]: the crops at frames `idx`, corners (`ys`, `xs`)."""
    return torch.stack([t[i, y : y + crop, x : x + crop] for i, y, x in zip(idx, ys, xs)])[:, None]


def head_loss(head: ValidityHead, cad: torch.Tensor, real: torch.Tensor, weight: torch.Tensor | None = None):
    """BCE of the head's logits on CAD metres [B, 1, H, W] against the real validity (real [B, 1, H, W] > 0),
    averaged over CAD-valid pixels (times `weight` [B, 1, H, W] when given)."""
    on = (cad > 0).float() if weight is None else (cad > 0).float() * weight
    target = (real > 0).float()
    logits = head(head_input(cad))
    return (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * on).sum() / on.sum().clamp(min=1)
