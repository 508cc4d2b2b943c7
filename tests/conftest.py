"""Shared fixtures: a tiny hand-made layout (no open3d needed) and torch thread settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim2real_kit.camera import Camera, look_at
from sim2real_kit.data.layout import DepthLayout, FrameRef

torch.set_num_threads(2)

# A tiny denoiser for unit tests (add f"data.size={size}"): two levels, attention at the second.
TINY_MODEL = [
    "model.block_out_channels=[8,16]",
    "model.attention_levels=[false,true]",
    "model.cross_attention_dim=8",
    "model.attention_head_dim=8",
    "model.norm_num_groups=4",
]


def tiny_vae(**kw):
    """SD's VAE in miniature: two levels (downscale 2), 4 latent channels, 3-channel images, random weights."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    args = dict(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    return AutoencoderKL(**{**args, **kw})


def tiny_sd_unet(**kw):
    """SD 2.1's UNet in miniature (4 latent channels, cross-attention at the second level), random weights."""
    from diffusers import UNet2DConditionModel

    args = dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        cross_attention_dim=8,
        attention_head_dim=(1, 2),
        norm_num_groups=4,
        use_linear_projection=True,
    )
    return UNet2DConditionModel(**{**args, **kw})


def write_tiny_sd(root):
    """A local SD-like folder (vae/, unet/) made by save_pretrained: the same loading code as real weights."""
    tiny_vae().save_pretrained(root / "vae")
    unet = tiny_sd_unet()
    unet.save_pretrained(root / "unet")
    return unet


@pytest.fixture
def one_thread():
    """Tiny models are dominated by per-op overhead: one thread is faster and steadier on a shared CPU.
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_plane_layout(root, scenes=2, frames=3, width=32, height=24, seed=0, benchmark_scenes=0):
    """A layout of fronto-parallel-ish planes with a box in front: CAD clean, real noisy with holes. The last
    scene is val, the `benchmark_scenes` after it form the benchmark split (scenes no simulator trains on)."""
    rng = np.random.default_rng(seed)
    cam = Camera(width * 0.8, width * 0.8, width / 2, height / 2, width, height)
    lay = DepthLayout.create(root, cam, meta={"source": "test"})
    refs = {"train": [], "val": []} | ({"benchmark": []} if benchmark_scenes else {})
    for s in range(scenes + benchmark_scenes):
        split = "train" if s < scenes - 1 else "val" if s == scenes - 1 else "benchmark"
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


@pytest.fixture
def plane_layout(tmp_path):
    return make_plane_layout(tmp_path / "ds")
