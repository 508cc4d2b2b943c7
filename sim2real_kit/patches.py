"""Local patches of a depth frame for the 3D-aware discriminator (paper Sec. 3.3) and the flags
it produces for the Stage-II loss re-weighting (Sec. 3.4).

Pure torch, GPU-capable; no model code. The public names of the three parts are all importable
from here (`sim2real_kit.patches` is the discriminator's one entry point):

- the patch grid (`patch_boxes.py`): `patch_grid`, a regular grid of pixel boxes `(r0, r1, c0, c1)`
  (rows r0..r1-1, columns c0..c1-1) over the model frame; `check_boxes`; `scale_boxes` maps boxes
  to another frame size (the release's files use the 512x512 frame whatever the model size).
- patch -> 3D points (this module): `extract_patch_points` back-projects every patch of a
  generated/real depth frame and of its CAD depth with the camera (pixel centres at +0.5) to 3D
  points in the camera frame, invalid pixels dropped, resampled to N points, and centred/scaled
  **consistently** for the pair (see below). Vectorised over frames and patches: no Python loop.
- flags (`flags.py`): flags <-> pixel masks <-> weight maps (`flags_to_mask`, `mask_to_flags`,
  `mask_box_fraction`, `boxes_to_flags`, `weight_map`, `batch_has_flags`, `flags_from_scores`,
  `check_threshold`) and the flag files (the release's `_diff_id.txt` / `_position.txt` format:
  `write_release_flags`, `read_release_flags`; the kit's per-split `FlagFile`: `save_flag_file`,
  `load_flag_file`).

Normalisation of a patch pair (the choice, and why). The discriminator must see *how the depth
deviates from the CAD surface*, so depth points and CAD points are expressed in one shared
frame: both are translated by the same centre and divided by the same scale. With
`normalize="cad"` (default) the centre is the centroid of the sampled CAD points and the scale
the largest distance of a CAD point from it (the CAD patch fits the unit ball); an offset or
noise of the depth relative to the CAD survives exactly, in units of the patch radius. The
centre and scale depend on the CAD only, so two simulators scored on the same frame get the
same transform. `normalize="pair"` uses the centroid and radius of both clouds together;
`normalize="none"` keeps camera-frame metres. Depth point i and CAD point i come from the same
pixel, so the 6-channel PointNet input pairs them point by point.

Sampling: valid pixels (depth > 0, CAD > 0, finite, inside the optional `valid_mask`) are
drawn without replacement in random order (uniform random keys, invalid pixels sorted last);
when a patch has fewer valid pixels than N, every valid pixel is taken once and the remaining
slots are drawn with replacement. A patch with fewer than `min_valid` valid pixels is skipped:
`valid` False, points zero (never NaN), still counted in `n_valid`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sim2real_kit.camera import Camera
from sim2real_kit.errors import ConfigError, DepthFormatError, Sim2RealError
from sim2real_kit.flags import (
    FLAG_FILE_FORMAT,
    FLAG_FILE_VERSION,
    RELEASE_FRAME,
    FlagFile,
    batch_has_flags,
    boxes_to_flags,
    check_threshold,
    flags_from_scores,
    flags_to_mask,
    load_flag_file,
    mask_box_fraction,
    mask_to_flags,
    read_release_flags,
    save_flag_file,
    weight_map,
    write_release_flags,
)
from sim2real_kit.patch_boxes import box_pixels, check_boxes, patch_grid, scale_boxes

NORMALIZE_MODES = ("cad", "pair", "none")


# ---------------------------------------------------------------------- patch -> 3D points
@dataclass
class PatchPoints:
    """Points of every patch of a batch of frames (see module docstring for the normalisation).

    points, cad_points: [B, P, N, 3] (zeros on skipped patches); valid: [B, P] bool (at least
    `min_valid` valid pixels); n_valid: [B, P] valid pixels per patch; centre [B, P, 3] metres
    (camera frame) and scale [B, P] metres undo the normalisation: camera = points * scale + centre;
    boxes: [P, 4] (r0, r1, c0, c1) in model-frame pixels."""

    points: torch.Tensor
    cad_points: torch.Tensor
    valid: torch.Tensor
    n_valid: torch.Tensor
    centre: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    normalize: str = "cad"

    @property
    def num_skipped(self) -> int:
        """Patches skipped for having fewer than `min_valid` valid pixels."""
        return int((~self.valid).sum())

    def to(self, device) -> PatchPoints:
        def move(t):
            return None if t is None else t.to(device)

        return PatchPoints(
            move(self.points),
            move(self.cad_points),
            move(self.valid),
            move(self.n_valid),
            move(self.centre),
            move(self.scale),
            move(self.boxes),
            self.normalize,
        )

    def camera_points(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(points, cad_points) back in camera-frame metres [B, P, N, 3] (for 3D views)."""
        s = self.scale[..., None, None]
        c = self.centre[..., None, :]
        return self.points * s + c, self.cad_points * s + c


def extract_patch_points(
    depth,
    cad,
    camera: Camera,
    boxes,
    num_points: int,
    min_valid: int = 8,
    generator: torch.Generator | None = None,
    valid_mask=None,
    normalize: str = "cad",
) -> PatchPoints:
    """Back-project each patch of depth [B, H, W] and CAD depth [B, H, W] (metres, 0 = invalid)
    to `num_points` paired 3D points.

    `boxes` [P, 4] must all have the same size (a `patch_grid`); `camera` is the model frame's
    camera (width W, height H). `valid_mask` [B, H, W] bool optionally restricts the pixels (e.g.
    `depth.valid_mask(cad, real)`). `generator` (on the depth's device) makes the sampling
    reproducible. Returns `PatchPoints` with points [B, P, N, 3]."""
    depth, cad, boxes = _check_inputs(depth, cad, camera, boxes, num_points, min_valid, normalize)
    device = depth.device
    B, H, W = depth.shape
    P, N = len(boxes), int(num_points)

    # 1. pixels of every patch: flat index [P, K], K = patch height * width
    pix, _ = box_pixels(boxes, W)
    pix = pix.reshape(P, -1)
    K = pix.shape[1]
    d = depth.reshape(B, H * W)[:, pix]  # [B, P, K]
    c = cad.reshape(B, H * W)[:, pix]  # [B, P, K]
    ok = (d > 0) & (c > 0) & torch.isfinite(d) & torch.isfinite(c)
    if valid_mask is not None:
        vm = _as_frames(valid_mask, "valid_mask", device=device, dtype=torch.bool)
        if vm.shape != depth.shape:
            raise DepthFormatError(
                f"valid_mask shape {tuple(vm.shape)} does not match depth shape {tuple(depth.shape)}"
            )
        ok &= vm.reshape(B, H * W)[:, pix]
    n_valid = ok.sum(-1)  # [B, P]

    # 2. sampling: which of the K pixels fills each of the N slots
    local = _sample_slots(ok, n_valid, N, generator)  # [B, P, N] in [0, K)

    # 3. back-projection of the sampled pixels (Camera convention: rays through pixel centres)
    rays = torch.as_tensor(camera.pixel_rays(np.float32), device=device, dtype=depth.dtype).reshape(H * W, 3)
    flat = pix.expand(B, P, K).gather(-1, local)  # [B, P, N] flat pixel index
    points = d.gather(-1, local)[..., None] * rays[flat]  # [B, P, N, 3]
    cad_points = c.gather(-1, local)[..., None] * rays[flat]  # [B, P, N, 3]

    # 4. consistent centring / scaling of the pair; skipped patches zeroed
    valid = n_valid >= min_valid  # [B, P]
    points, cad_points, centre, scale = _normalise_pair(points, cad_points, valid, normalize)
    return PatchPoints(points, cad_points, valid, n_valid, centre, scale, boxes, normalize)


def _check_inputs(
    depth, cad, camera: Camera, boxes, num_points: int, min_valid: int, normalize: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The arguments of `extract_patch_points` checked: (depth [B, H, W], cad [B, H, W] on the depth's
    device, boxes [P, 4] of one size on that device), or a clear error naming the argument."""
    depth = _as_frames(depth, "depth")
    device = depth.device
    cad = _as_frames(cad, "cad", device=device)
    if cad.shape != depth.shape:
        raise DepthFormatError(f"cad shape {tuple(cad.shape)} does not match depth shape {tuple(depth.shape)}")
    B, H, W = depth.shape
    if (camera.height, camera.width) != (H, W):
        raise Sim2RealError(f"camera is {camera.width}x{camera.height} but the depth frames are {W}x{H}")
    if normalize not in NORMALIZE_MODES:
        raise ConfigError(f"disc.normalize = {normalize!r}; allowed: {', '.join(NORMALIZE_MODES)}")
    if int(num_points) != num_points or num_points < 1:
        raise ConfigError(f"disc.num_points must be a positive integer, got {num_points!r}")
    if int(min_valid) != min_valid or min_valid < 1:
        raise ConfigError(f"disc.min_valid must be an integer >= 1, got {min_valid!r}")
    boxes = check_boxes(boxes, H, W).to(device)
    if len(boxes) == 0:
        raise Sim2RealError("no patch boxes given")
    sizes = torch.stack([boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]], 1)
    if not bool((sizes == sizes[0]).all()):
        raise Sim2RealError("extract_patch_points needs boxes of one size (a patch_grid); got several sizes")
    return depth, cad, boxes


def _sample_slots(ok: torch.Tensor, n_valid: torch.Tensor, N: int, generator: torch.Generator | None) -> torch.Tensor:
    """Pixel index in [0, K) of each of N slots per patch, from validity ok [B, P, K] and its count
    n_valid [B, P]: valid pixels first in random order; slots beyond n_valid drawn with replacement."""
    B, P, K = ok.shape
    device = ok.device
    keys = torch.rand(B, P, K, generator=generator, device=device).masked_fill(~ok, 2.0)
    m = min(N, K)
    order = keys.topk(m, dim=-1, largest=False).indices  # [B, P, m]
    slot = torch.arange(N, device=device)
    nv = n_valid[..., None].clamp(min=1)
    extra = (torch.rand(B, P, N, generator=generator, device=device) * nv).long()
    extra = torch.minimum(extra, nv - 1)
    pos = torch.where(slot < n_valid[..., None], slot, extra).clamp(max=m - 1)  # [B, P, N]
    return order.gather(-1, pos)  # [B, P, N] in [0, K)


def _normalise_pair(
    points: torch.Tensor, cad_points: torch.Tensor, valid: torch.Tensor, normalize: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(points, cad_points, centre [B, P, 3], scale [B, P]): both clouds [B, P, N, 3] centred and scaled
    by one transform per patch (module docstring); patches not `valid` get zero points, centre 0, scale 1."""
    B, P = valid.shape
    if normalize == "none":
        centre = torch.zeros(B, P, 3, device=points.device, dtype=points.dtype)
        scale = torch.ones(B, P, device=points.device, dtype=points.dtype)
    else:
        ref = cad_points if normalize == "cad" else torch.cat([points, cad_points], dim=-2)
        centre = ref.mean(-2)  # [B, P, 3]
        radius = (ref - centre[..., None, :]).norm(dim=-1).amax(-1)  # [B, P]
        # floor: a patch of one repeated pixel has radius 0; 1e-3 of its range keeps numbers finite
        scale = torch.maximum(radius, 1e-3 * centre[..., 2].abs()).clamp(min=1e-6)
        points = (points - centre[..., None, :]) / scale[..., None, None]
        cad_points = (cad_points - centre[..., None, :]) / scale[..., None, None]
    keep = valid[..., None, None]
    points = torch.where(keep, points, torch.zeros_like(points))
    cad_points = torch.where(keep, cad_points, torch.zeros_like(cad_points))
    centre = torch.where(valid[..., None], centre, torch.zeros_like(centre))
    scale = torch.where(valid, scale, torch.ones_like(scale))
    return points, cad_points, centre, scale


def _as_frames(x, name: str, device=None, dtype=torch.float32) -> torch.Tensor:
    """numpy / torch [B, H, W] or [B, 1, H, W] -> torch [B, H, W] on `device`."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3:
        raise DepthFormatError(f"{name} must have shape [B, H, W] (or [B, 1, H, W]), got {tuple(t.shape)}")
    return t.to(device=device if device is not None else t.device, dtype=dtype)


__all__ = [
    "FLAG_FILE_FORMAT",
    "FLAG_FILE_VERSION",
    "NORMALIZE_MODES",
    "RELEASE_FRAME",
    "FlagFile",
    "PatchPoints",
    "batch_has_flags",
    "boxes_to_flags",
    "check_boxes",
    "check_threshold",
    "extract_patch_points",
    "flags_from_scores",
    "flags_to_mask",
    "load_flag_file",
    "mask_box_fraction",
    "mask_to_flags",
    "patch_grid",
    "read_release_flags",
    "save_flag_file",
    "scale_boxes",
    "weight_map",
    "write_release_flags",
]
