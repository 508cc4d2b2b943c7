"""What several benchmark scripts share: the benchmark presets (tiny, small, sd21-random) and their models,
a random Stable-Diffusion-shaped VAE, a hand-made depth layout, the environment record, a device sync.

Imported as `benchlib` by the scripts beside it (`python benchmarks/bench_*.py` puts this folder on the path);
`sim2real_kit` must be importable (`pip install -e .`, or `PYTHONPATH=.` in a bare checkout, e.g. on the GPU
machine).

sd21-random is the paper's Stable Diffusion 2.1 UNet *architecture* with random weights (no download): the
kit's own `ControlledDenoiser.from_config` path for `model.space = latent`, with the two loaders it calls
(`_load_pretrained_unet`, `codec_geometry`) replaced by the kit's random-init UNet builder at SD 2.1's config
(block_out_channels 320/640/1280/1280, 5/10/20/20 heads of 64 channels, cross_attention_dim 1024, linear
projections, 4 latent channels at 64 x 64 = 512 px). The encoder is frozen as with pretrained weights (control
branch + UNet decoder train), the empty prompt is 77 zero tokens (SD's CLIP length).
"""

from __future__ import annotations

import contextlib
import os
import platform

import numpy as np
import torch

from sim2real_kit.models.codec import DepthCodec

PRESETS = ("tiny", "small", "sd21-random")


def preset_config(preset: str, size: int | None = None, overrides=()):
    """The kit config of a benchmark preset (sd21-random: the sd21 preset; no weights are read)."""
    from sim2real_kit.config import load_config

    ov = [f"data.size={size}"] if size else []
    ov += list(overrides or ())
    if preset == "sd21-random":
        return load_config("sd21", overrides=["model.sd_path=<random-init>", *ov])
    return load_config(preset, overrides=ov)


class PrecomputedLatents(DepthCodec):
    """Codec stand-in for a timed latent step: the batch already holds VAE latents [B, 4, 64, 64]. A
    `DepthCodec` whose input is the latents themselves (`input_channels` = 4), so `diffusion_loss` takes the
    target's 4 channels as the map (it took 1 since issue 20's validity split: the sd21 step benchmark broke)."""

    kind = "latent"

    def __init__(self, channels: int = 4, downscale: int = 8):
        super().__init__()
        self.channels, self.downscale, self.input_channels = channels, downscale, channels

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents


@contextlib.contextmanager
def random_sd_loaders(cfg):
    """Make the kit's latent path build SD 2.1's UNet with random weights instead of loading a folder."""
    from sim2real_kit.models import codec as codec_mod
    from sim2real_kit.models import denoiser as den

    saved = den._load_pretrained_unet, codec_mod.codec_geometry
    den._load_pretrained_unet = lambda sd_path: den._build_unet(cfg, 4, 8)
    codec_mod.codec_geometry = lambda c: (4, 8)
    try:
        yield
    finally:
        den._load_pretrained_unet, codec_mod.codec_geometry = saved


def build_denoiser(preset: str, cfg, prompt_tokens: int = 77, device="cpu"):
    """(ControlledDenoiser, codec) of a preset, its weights initialised directly on `device`;
    sd21-random through the kit's latent `from_config` path, its codec `PrecomputedLatents`."""
    from sim2real_kit.models.codec import PixelCodec
    from sim2real_kit.models.denoiser import ControlledDenoiser

    with torch.device(device):
        if preset != "sd21-random":
            return ControlledDenoiser.from_config(cfg, cond_maps=1), PixelCodec()
        with random_sd_loaders(cfg):
            model = ControlledDenoiser.from_config(cfg, cond_maps=1)  # pretrained=True: encoder frozen
        model.prompt_embedding = torch.zeros(1, prompt_tokens, int(cfg.model.cross_attention_dim))
    return model, PrecomputedLatents()


def random_sd_vae():
    """A random-init `AutoencoderKL` with Stable Diffusion's VAE config (83 M parameters)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=0.18215,
    )


def plane_layout(root, scenes: int = 2, frames: int = 3, width: int = 32, height: int = 24, seed: int = 0):
    """A dataset layout of fronto-parallel-ish planes with a box in front, CAD clean, real noisy with a row of
    holes, written without open3d (the layout `tests/conftest.py` builds for the unit tests)."""
    from sim2real_kit.camera import Camera, look_at
    from sim2real_kit.data.layout import DepthLayout, FrameRef

    rng = np.random.default_rng(seed)
    cam = Camera(width * 0.8, width * 0.8, width / 2, height / 2, width, height)
    lay = DepthLayout.create(root, cam, meta={"source": "benchmark"})
    refs = {"train": [], "val": []}
    for s in range(scenes):
        split = "val" if s == scenes - 1 else "train"
        for f in range(frames):
            ref = FrameRef(f"s{s:02d}", f"{f:03d}")
            cad = np.full((height, width), 2.0 + 0.1 * f, np.float32)
            cad[height // 4 : height // 2, width // 4 : width // 2] = 1.2
            real = cad + rng.normal(0, 0.01, cad.shape).astype(np.float32)
            real[0, :] = 0.0  # a row of holes
            pose = look_at([0, -3 - s, 1.5], [0, 0, 1.0])
            lay.write_frame(ref, cad, np.clip(real, 0, None), pose)
            refs[split].append(ref)
    for split, r in refs.items():
        lay.write_split(split, r)
    return lay


def environment(device) -> dict:
    import diffusers

    env = {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    else:
        env["load_avg"] = os.getloadavg()
    return env


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
