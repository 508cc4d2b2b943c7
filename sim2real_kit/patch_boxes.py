"""Pixel boxes of a depth frame: the regular patch grid of the 3D-aware discriminator (paper Sec. 3.3)
and the checks, scaling and pixel enumeration that the patch points (`patches.py`) and the flags
(`flags.py`) share.

A box is `(r0, r1, c0, c1)`: rows r0..r1-1, columns c0..c1-1 of the frame, in model-frame pixels;
`scale_boxes` maps boxes to another frame size (the release's files use the 512x512 frame
whatever the model size). Pure torch; no model code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sim2real_kit.errors import ConfigError, Sim2RealError


def patch_grid(height: int, width: int, patch_size: int, stride: int | None = None, cover: bool = True) -> torch.Tensor:
    """Boxes of a regular grid over a height x width frame -> long [P, 4] as (r0, r1, c0, c1), pixels.

    Patches are `patch_size` square, `stride` apart (default: `patch_size`, no overlap), row-major.
    With `cover` a last row/column of patches flush with the bottom/right border is added when the
    stride does not reach it, so every pixel lies in a patch (all boxes keep the same size)."""
    stride = patch_size if stride is None else stride
    if int(patch_size) != patch_size or patch_size <= 0:
        raise ConfigError(f"disc.patch_size must be a positive integer, got {patch_size!r}")
    if int(stride) != stride or stride <= 0:
        raise ConfigError(f"disc.stride must be a positive integer, got {stride!r}")
    if patch_size > height or patch_size > width:
        raise ConfigError(f"disc.patch_size = {patch_size} px is larger than the {height}x{width} frame")
    rows = _grid_starts(height, patch_size, stride, cover)
    cols = _grid_starts(width, patch_size, stride, cover)
    r0, c0 = torch.meshgrid(rows, cols, indexing="ij")
    r0, c0 = r0.reshape(-1), c0.reshape(-1)
    return torch.stack([r0, r0 + patch_size, c0, c0 + patch_size], dim=1)  # [P, 4]


def _grid_starts(length: int, patch_size: int, stride: int, cover: bool) -> torch.Tensor:
    starts = list(range(0, length - patch_size + 1, stride))
    if cover and starts[-1] + patch_size < length:
        starts.append(length - patch_size)
    return torch.tensor(starts, dtype=torch.long)


def check_boxes(boxes, height: int, width: int, name: str = "boxes") -> torch.Tensor:
    """`boxes` as a long tensor [P, 4] inside a height x width frame, or raise Sim2RealError."""
    boxes = torch.as_tensor(boxes)
    if boxes.ndim == 1 and boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise Sim2RealError(f"{name} must have shape [P, 4] as (r0, r1, c0, c1), got {tuple(boxes.shape)}")
    if boxes.is_floating_point():
        if not torch.equal(boxes, boxes.round()):
            raise Sim2RealError(f"{name} must be integer pixel coordinates")
    boxes = boxes.long()
    if boxes.numel():
        r0, r1, c0, c1 = boxes.unbind(1)
        bad = (r0 < 0) | (c0 < 0) | (r1 > height) | (c1 > width) | (r1 <= r0) | (c1 <= c0)
        if bool(bad.any()):
            k = int(bad.nonzero()[0, 0])
            raise Sim2RealError(
                f"{name}[{k}] = {boxes[k].tolist()} is empty or outside the {height}x{width} frame "
                "(boxes are r0 r1 c0 c1 with 0 <= r0 < r1 <= height, 0 <= c0 < c1 <= width)"
            )
    return boxes


def scale_boxes(boxes, from_size: int | Sequence[int], to_size: int | Sequence[int]) -> torch.Tensor:
    """Boxes of a frame of `from_size` -> the same regions in a frame of `to_size` (sizes: side or (H, W)).

    Coordinates are scaled and rounded to the nearest pixel (exact for the kit's sizes, e.g.
    64 <-> 512: x8), then kept inside the frame with at least one pixel per side."""
    fh, fw = size_hw(from_size)
    th, tw = size_hw(to_size)
    boxes = check_boxes(boxes, fh, fw)
    scale = torch.tensor([th / fh, th / fh, tw / fw, tw / fw], dtype=torch.float64)
    out = torch.round(boxes.double() * scale).long()
    r0 = out[:, 0].clamp(0, th - 1)
    c0 = out[:, 2].clamp(0, tw - 1)
    r1 = torch.maximum(out[:, 1].clamp(max=th), r0 + 1)
    c1 = torch.maximum(out[:, 3].clamp(max=tw), c0 + 1)
    return torch.stack([r0, r1, c0, c1], dim=1)


def size_hw(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(s) for s in size)
    return h, w


def box_pixels(boxes: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All pixels of all boxes (ragged): (flat pixel index [T], patch index [T])."""
    r0, r1, c0, c1 = boxes.unbind(1)
    bw = c1 - c0
    sizes = (r1 - r0) * bw
    patch = torch.repeat_interleave(torch.arange(len(boxes), device=boxes.device), sizes)
    offsets = torch.cumsum(sizes, 0) - sizes
    local = torch.arange(int(sizes.sum()), device=boxes.device) - offsets[patch]
    rows = r0[patch] + local // bw[patch]
    cols = c0[patch] + local % bw[patch]
    return rows * width + cols, patch


__all__ = ["box_pixels", "check_boxes", "patch_grid", "scale_boxes", "size_hw"]
