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


@pytest.fixture
def one_thread():
    """Tiny models are dominated by per-op overhead: one thread is faster and steadier on a shared CPU.
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_plane_layout(root, scenes=2, frames=3, width=32, height=24, seed=0):
    """A layout of fronto-parallel-ish planes with a box in front: CAD clean, real noisy with holes."""
    rng = np.random.default_rng(seed)
    cam = Camera(width * 0.8, width * 0.8, width / 2, height / 2, width, height)
    lay = DepthLayout.create(root, cam, meta={"source": "test"})
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


@pytest.fixture
def plane_layout(tmp_path):
    return make_plane_layout(tmp_path / "ds")
