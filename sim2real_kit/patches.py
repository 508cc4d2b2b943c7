"""Local patches of a depth frame for the 3D-aware discriminator (paper Sec. 3.3) and the flags
it produces for the Stage-II loss re-weighting (Sec. 3.4).

What lives here (pure torch, GPU-capable; no model code):

- `patch_grid`: a regular grid of pixel boxes `(r0, r1, c0, c1)` (rows r0..r1-1, columns
  c0..c1-1) over the model frame. Boxes are in model-frame pixels; `scale_boxes` maps them to
  another frame size (the release's files use the 512x512 frame whatever the model size).
- `extract_patch_points`: every patch of a generated/real depth frame and of its CAD depth is
  back-projected with the camera (pixel centres at +0.5) to 3D points in the camera frame,
  invalid pixels dropped, resampled to N points, and centred/scaled **consistently** for the
  pair (see below). Vectorised over frames and patches: no Python loop.
- flags <-> pixel masks <-> weight maps: `flags_to_mask`, `mask_to_flags`, `boxes_to_flags`,
  `weight_map` (λ on flagged pixels, ω elsewhere, nearest-resized to the denoiser's size; the
  "w/o bin" ablation uses continuous scores), `batch_has_flags` (the release's unweighted
  fallback), `flags_from_scores` (P(real) -> flags).
- files: the release's `<frame>_diff_id.txt` / `<frame>_<k>_position.txt` format
  (`write_release_flags`, `read_release_flags`, 512-frame coordinates) and the kit's compact
  per-split flag file (`save_flag_file`, `load_flag_file` -> `FlagFile`: npz + json sidecar).

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

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sim2real_kit.camera import Camera
from sim2real_kit.errors import ConfigError, DepthFormatError, MissingArtifactError, Sim2RealError
from sim2real_kit.io import atomic_path, atomic_write_json, atomic_write_text

RELEASE_FRAME = 512  # the release writes patch positions in the 512x512 model frame
NORMALIZE_MODES = ("cad", "pair", "none")
FLAG_FILE_FORMAT = "sim2real_kit.flags"
FLAG_FILE_VERSION = 1


# ---------------------------------------------------------------------- the patch grid
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
    fh, fw = _size_hw(from_size)
    th, tw = _size_hw(to_size)
    boxes = check_boxes(boxes, fh, fw)
    scale = torch.tensor([th / fh, th / fh, tw / fw, tw / fw], dtype=torch.float64)
    out = torch.round(boxes.double() * scale).long()
    r0 = out[:, 0].clamp(0, th - 1)
    c0 = out[:, 2].clamp(0, tw - 1)
    r1 = torch.maximum(out[:, 1].clamp(max=th), r0 + 1)
    c1 = torch.maximum(out[:, 3].clamp(max=tw), c0 + 1)
    return torch.stack([r0, r1, c0, c1], dim=1)


def _size_hw(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(s) for s in size)
    return h, w


def _box_pixels(boxes: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    P, N = len(boxes), int(num_points)
    if P == 0:
        raise Sim2RealError("no patch boxes given")
    sizes = torch.stack([boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]], 1)
    if not bool((sizes == sizes[0]).all()):
        raise Sim2RealError("extract_patch_points needs boxes of one size (a patch_grid); got several sizes")

    # 1. pixels of every patch: flat index [P, K], K = patch height * width
    pix, _ = _box_pixels(boxes, W)
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

    # 2. sampling: valid pixels first in random order; slots beyond n_valid drawn with replacement
    keys = torch.rand(B, P, K, generator=generator, device=device).masked_fill(~ok, 2.0)
    m = min(N, K)
    order = keys.topk(m, dim=-1, largest=False).indices  # [B, P, m]
    slot = torch.arange(N, device=device)
    nv = n_valid[..., None].clamp(min=1)
    extra = (torch.rand(B, P, N, generator=generator, device=device) * nv).long()
    extra = torch.minimum(extra, nv - 1)
    pos = torch.where(slot < n_valid[..., None], slot, extra).clamp(max=m - 1)  # [B, P, N]
    local = order.gather(-1, pos)  # [B, P, N] in [0, K)

    # 3. back-projection of the sampled pixels (Camera convention: rays through pixel centres)
    rays = torch.as_tensor(camera.pixel_rays(np.float32), device=device, dtype=depth.dtype).reshape(H * W, 3)
    flat = pix.expand(B, P, K).gather(-1, local)  # [B, P, N] flat pixel index
    points = d.gather(-1, local)[..., None] * rays[flat]  # [B, P, N, 3]
    cad_points = c.gather(-1, local)[..., None] * rays[flat]  # [B, P, N, 3]

    # 4. consistent centring / scaling of the pair
    valid = n_valid >= min_valid  # [B, P]
    if normalize == "none":
        centre = torch.zeros(B, P, 3, device=device, dtype=depth.dtype)
        scale = torch.ones(B, P, device=device, dtype=depth.dtype)
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
    return PatchPoints(points, cad_points, valid, n_valid, centre, scale, boxes, normalize)


def _as_frames(x, name: str, device=None, dtype=torch.float32) -> torch.Tensor:
    """numpy / torch [B, H, W] or [B, 1, H, W] -> torch [B, H, W] on `device`."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3:
        raise DepthFormatError(f"{name} must have shape [B, H, W] (or [B, 1, H, W]), got {tuple(t.shape)}")
    return t.to(device=device if device is not None else t.device, dtype=dtype)


# ---------------------------------------------------------------------- flags <-> masks <-> weights
def flags_to_mask(flags, boxes, height: int, width: int) -> torch.Tensor:
    """Flags [B, P] (bool, or float scores in [0, 1]) -> pixel mask [B, 1, H, W] float.

    Each box gets its patch's value; where boxes overlap the maximum wins; pixels in no box are 0."""
    flags = _as_flags(flags)
    boxes = check_boxes(boxes, height, width).to(flags.device)
    B, P = flags.shape
    if P != len(boxes):
        raise Sim2RealError(f"flags have {P} patches per frame but there are {len(boxes)} boxes")
    pix, patch = _box_pixels(boxes, width)
    mask = torch.zeros(B, height * width, device=flags.device, dtype=flags.dtype)
    mask.scatter_reduce_(1, pix.expand(B, -1), flags[:, patch], reduce="amax", include_self=True)
    return mask.reshape(B, 1, height, width)


def mask_to_flags(mask, boxes, min_fraction: float = 0.5) -> torch.Tensor:
    """Pixel mask [B, 1, H, W] or [B, H, W] -> flags [B, P] bool.

    A patch is flagged when at least `min_fraction` of its box lies in the mask (mask > 0.5).
    flags -> `flags_to_mask` -> flags round-trips exactly for non-overlapping boxes (a grid with
    stride >= patch size); with overlap an unflagged patch covered by flagged neighbours flags too."""
    return mask_box_fraction(mask, boxes) >= min_fraction


def mask_box_fraction(mask, boxes) -> torch.Tensor:
    """Share [B, P] of each box's pixels where mask > 0.5 (integral image, vectorised)."""
    mask = torch.as_tensor(mask)
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.ndim != 3:
        raise Sim2RealError(f"mask must have shape [B, 1, H, W] or [B, H, W], got {tuple(mask.shape)}")
    B, H, W = mask.shape
    boxes = check_boxes(boxes, H, W).to(mask.device)
    m = (mask > 0.5).double()
    integral = F.pad(m.cumsum(1).cumsum(2), (1, 0, 1, 0))  # [B, H+1, W+1]
    r0, r1, c0, c1 = boxes.unbind(1)
    area = integral[:, r1, c1] - integral[:, r0, c1] - integral[:, r1, c0] + integral[:, r0, c0]  # [B, P]
    return (area / ((r1 - r0) * (c1 - c0)).double()).float()


def boxes_to_flags(flagged_boxes, grid_boxes, height: int, width: int, min_fraction: float = 0.5) -> torch.Tensor:
    """Flagged boxes [K, 4] of one frame (any boxes, e.g. read from release files and scaled to the
    model frame) -> flags [P] bool over `grid_boxes` [P, 4] of a height x width frame."""
    flagged_boxes = check_boxes(flagged_boxes, height, width, "flagged boxes")
    ones = torch.ones(1, len(flagged_boxes))
    mask = flags_to_mask(ones, flagged_boxes, height, width)
    return mask_to_flags(mask, grid_boxes, min_fraction)[0]


def weight_map(
    flags,
    boxes,
    height: int,
    width: int,
    flagged_weight: float = 1.5,
    other_weight: float = 0.5,
    out_size: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """Per-pixel Stage-II loss weights [B, 1, h, w] from flags [B, P] over boxes of a height x width frame.

    Binary flags: λ = `flagged_weight` on flagged boxes, ω = `other_weight` elsewhere (paper 1.5 / 0.5).
    Continuous scores s in [0, 1] ("w/o bin"): ω + (λ - ω) * s. The box mask is resized with nearest
    neighbour to `out_size` (side or (h, w); default the frame), sampling source pixel floor(i * H / h)
    as the release's cv2.INTER_NEAREST does."""
    mask = flags_to_mask(flags, boxes, height, width)  # [B, 1, H, W]
    if out_size is not None:
        h, w = _size_hw(out_size)
        if (h, w) != (height, width):
            mask = F.interpolate(mask, size=(h, w), mode="nearest")
    return other_weight + (flagged_weight - other_weight) * mask


def batch_has_flags(flags) -> bool:
    """True when any sample of the batch has a flagged patch (flags or scores [B, P], or a flag mask
    [B, 1, H, W] from `flags_to_mask`); Stage-II falls back to the unweighted loss otherwise (release)."""
    flags = torch.as_tensor(flags)
    return bool((flags > 0).any())


def flags_from_scores(scores, valid=None, threshold: float = 0.5, binary: bool = True) -> torch.Tensor:
    """Discriminator scores P(real) [..., P] -> flags.

    binary: bool, flagged where P(real) < threshold and the patch is valid. Otherwise ("w/o bin")
    float 1 - P(real) on valid patches and 0 on invalid ones. threshold must lie in [0, 1]."""
    check_threshold(threshold)
    scores = torch.as_tensor(scores, dtype=torch.float32)
    ok = torch.isfinite(scores)
    if valid is not None:
        valid = torch.as_tensor(valid, dtype=torch.bool, device=scores.device)
        if valid.shape != scores.shape:
            raise Sim2RealError(f"valid shape {tuple(valid.shape)} does not match scores shape {tuple(scores.shape)}")
        ok = ok & valid
    if binary:
        return (scores < threshold) & ok
    return torch.where(ok, (1.0 - scores).clamp(0.0, 1.0), torch.zeros_like(scores))


def check_threshold(threshold: float, key: str = "disc.threshold") -> float:
    """Return `threshold` as float, or raise ConfigError when it is not a number in [0, 1]."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number in [0, 1], got {threshold!r}") from None
    if not 0.0 <= t <= 1.0:
        raise ConfigError(f"{key} must be in [0, 1], got {threshold!r}")
    return t


def _as_flags(flags) -> torch.Tensor:
    flags = torch.as_tensor(flags)
    if flags.ndim == 1:
        flags = flags[None]
    if flags.ndim != 2:
        raise Sim2RealError(f"flags must have shape [B, P], got {tuple(flags.shape)}")
    flags = flags.float()
    if flags.numel() and (not bool(torch.isfinite(flags).all()) or flags.min() < 0 or flags.max() > 1):
        raise Sim2RealError("flag scores must be finite and in [0, 1] (bool flags, or continuous 1 - P(real))")
    return flags


# ---------------------------------------------------------------------- the release's file format
def write_release_flags(
    out_dir: str | Path,
    frame_id: str,
    flagged_boxes_512,
    patch_ids: Sequence[int] | None = None,
    patch_points=None,
    absolute_paths: bool = True,
) -> Path:
    """Write one frame's flagged patches in the release's format; returns the `_diff_id.txt` path.

    `<out_dir>/<frame_id>_diff_id.txt` lists one patch file `<frame_id>_<k>.ply` per line (k from
    `patch_ids`, default 0..K-1; absolute paths by default, as the release opens each line as
    given); beside each, `<frame_id>_<k>_position.txt` holds `r0 r1 c0 c1` in the 512x512 frame on
    its first line. The release reads only the position files; the .ply files are written only
    when `patch_points` [K, N, 3] is given. A frame with no flag gets an empty list, so that a
    missing list means "not processed". `frame_id` may hold a scene folder (`scene/frame`)."""
    boxes = check_boxes(flagged_boxes_512, RELEASE_FRAME, RELEASE_FRAME, "flagged_boxes_512")
    ids = list(range(len(boxes))) if patch_ids is None else [int(k) for k in patch_ids]
    if len(ids) != len(boxes) or len(set(ids)) != len(ids):
        raise Sim2RealError(f"patch_ids must be {len(boxes)} distinct integers, got {list(patch_ids or [])}")
    diff_path = Path(out_dir) / f"{frame_id}_diff_id.txt"
    diff_path.parent.mkdir(parents=True, exist_ok=True)
    stem = Path(frame_id).name
    lines = []
    for j, (k, box) in enumerate(zip(ids, boxes.tolist())):
        ply = diff_path.parent / f"{stem}_{k}.ply"
        atomic_write_text(ply.parent / f"{stem}_{k}_position.txt", " ".join(str(v) for v in box) + "\n")
        if patch_points is not None:
            _write_ply(ply, np.asarray(torch.as_tensor(patch_points[j]).detach().cpu(), dtype=np.float32))
        lines.append(str(ply.resolve()) if absolute_paths else ply.name)
    atomic_write_text(diff_path, "".join(line + "\n" for line in lines))
    return diff_path


def read_release_flags(directory: str | Path, frame_id: str, missing_ok: bool = False) -> torch.Tensor:
    """Boxes [K, 4] (r0, r1, c0, c1, 512-frame pixels) of one frame's release-format flag files.

    Each listed patch path has its `.ply` replaced by `_position.txt`; a path that does not exist
    as written is looked up by name beside the list (a moved folder). A missing list raises
    MissingArtifactError unless `missing_ok` (then: no flags, as the release treats it)."""
    diff_path = Path(directory) / f"{frame_id}_diff_id.txt"
    if not diff_path.is_file():
        if missing_ok:
            return torch.zeros(0, 4, dtype=torch.long)
        raise MissingArtifactError("flag list not found (written by `sim2real flag` / write_release_flags)", diff_path)
    boxes = []
    for line in diff_path.read_text().splitlines():
        if not line.strip():
            continue
        pos = Path(line.strip().replace(".ply", "_position.txt"))
        if not pos.is_file():
            pos = diff_path.parent / pos.name
        if not pos.is_file():
            raise MissingArtifactError(f"position file {pos.name} listed in {diff_path.name} is missing", pos)
        first = pos.read_text().splitlines()[:1]
        numbers = [int(n) for n in re.findall(r"-?\d+", first[0])] if first else []
        if len(numbers) < 4:
            raise Sim2RealError(f"first line must hold 'r0 r1 c0 c1', got {first[0] if first else ''!r}", pos)
        boxes.append(numbers[:4])
    out = torch.tensor(boxes, dtype=torch.long).reshape(-1, 4)
    try:
        return check_boxes(out, RELEASE_FRAME, RELEASE_FRAME, "position boxes")
    except Sim2RealError as e:
        raise Sim2RealError(str(e), diff_path) from None


def _write_ply(path: Path, points: np.ndarray) -> None:
    points = points.reshape(-1, 3).astype("<f4")
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(points)}\n"
    header += "property float x\nproperty float y\nproperty float z\nend_header\n"
    from sim2real_kit.io import atomic_write_bytes

    atomic_write_bytes(path, header.encode("ascii") + points.tobytes())


# ---------------------------------------------------------------------- the kit's per-split flag file
@dataclass
class FlagFile:
    """Discriminator scores of one split: scores [F, P] P(real) (1.0 on invalid patches), valid
    [F, P], boxes [P, 4] in model-frame pixels of a frame_size (H, W) frame, frame ids
    (`scene/frame`), and the threshold / binary choice that turns scores into flags."""

    scores: torch.Tensor
    valid: torch.Tensor
    boxes: torch.Tensor
    frame_ids: list[str]
    frame_size: tuple[int, int]
    threshold: float
    binary: bool
    split: str
    path: Path | None = None
    meta: dict = field(default_factory=dict)
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self._index = {f: i for i, f in enumerate(self.frame_ids)}

    @property
    def flags(self) -> torch.Tensor:
        """[F, P]: bool flags (binary) or continuous 1 - P(real) ("w/o bin")."""
        return flags_from_scores(self.scores, self.valid, self.threshold, self.binary)

    def with_threshold(self, threshold: float, binary: bool | None = None) -> FlagFile:
        """The same scores with another threshold (and binary choice), e.g. for a threshold slider."""
        return dataclasses.replace(
            self, threshold=check_threshold(threshold), binary=self.binary if binary is None else bool(binary)
        )

    def index(self, frame_id: str) -> int:
        try:
            return self._index[frame_id]
        except KeyError:
            raise Sim2RealError(f"frame {frame_id!r} has no scores in this {self.split} flag file", self.path) from None

    def flags_for(self, frame_ids: Sequence[str]) -> torch.Tensor:
        """Flags [B, P] of the given frames."""
        return self.flags[[self.index(f) for f in frame_ids]]

    def weight_map(
        self,
        frame_ids: Sequence[str],
        out_size: int | Sequence[int] | None = None,
        flagged_weight: float = 1.5,
        other_weight: float = 0.5,
    ) -> torch.Tensor:
        """Stage-II weights [B, 1, h, w] of the given frames (see `weight_map`)."""
        h, w = self.frame_size
        return weight_map(self.flags_for(frame_ids), self.boxes, h, w, flagged_weight, other_weight, out_size)

    def to_release(self, out_dir: str | Path, absolute_paths: bool = True) -> int:
        """Write every frame's binary flags in the release's format (512-frame boxes); returns the
        number of flagged patches written."""
        boxes_512 = scale_boxes(self.boxes, self.frame_size, RELEASE_FRAME)
        flags = flags_from_scores(self.scores, self.valid, self.threshold, binary=True)
        total = 0
        for i, frame_id in enumerate(self.frame_ids):
            ids = flags[i].nonzero()[:, 0]
            write_release_flags(out_dir, frame_id, boxes_512[ids], ids.tolist(), absolute_paths=absolute_paths)
            total += len(ids)
        return total


def save_flag_file(
    path: str | Path,
    scores,
    boxes,
    frame_ids: Sequence[str],
    frame_size: int | Sequence[int],
    threshold: float,
    binary: bool,
    split: str,
    valid=None,
    meta: dict | None = None,
) -> Path:
    """Write scores [F, P] of a split as `<path>` (npz, atomic) + `<path minus .npz>.json` (readable
    summary). `valid` [F, P] defaults to all True; `meta` adds free-form entries (e.g. the
    discriminator's path). Returns the npz path."""
    path = Path(path)
    threshold = check_threshold(threshold)
    h, w = _size_hw(frame_size)
    boxes = check_boxes(boxes, h, w)
    scores = torch.as_tensor(scores, dtype=torch.float32).detach().cpu()
    frame_ids = [str(f) for f in frame_ids]
    if scores.ndim != 2 or scores.shape != (len(frame_ids), len(boxes)):
        raise Sim2RealError(
            f"scores must have shape [frames, patches] = [{len(frame_ids)}, {len(boxes)}], got {tuple(scores.shape)}",
            path,
        )
    valid = (
        torch.ones_like(scores, dtype=torch.bool) if valid is None else torch.as_tensor(valid, dtype=torch.bool).cpu()
    )
    if valid.shape != scores.shape:
        raise Sim2RealError(f"valid shape {tuple(valid.shape)} does not match scores {tuple(scores.shape)}", path)
    if not bool(torch.isfinite(scores).all()):
        raise Sim2RealError("scores contain NaN or inf (invalid patches must be scored 1.0)", path)
    flags = flags_from_scores(scores, valid, threshold, binary=True)
    info = {
        "format": FLAG_FILE_FORMAT,
        "version": FLAG_FILE_VERSION,
        "split": str(split),
        "frame_size": [h, w],
        "threshold": threshold,
        "binary": bool(binary),
        "num_frames": len(frame_ids),
        "num_patches": len(boxes),
        "num_valid": int(valid.sum()),
        "num_flagged": int(flags.sum()),
        "flagged_share_of_valid": float(flags.sum() / max(int(valid.sum()), 1)),
        **(meta or {}),
    }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                scores=scores.numpy(),
                valid=valid.numpy(),
                boxes=boxes.numpy(),
                frame_ids=np.array(frame_ids, dtype=np.str_),
                info=np.array(json.dumps(info)),
            )
    atomic_write_json(_sidecar(path), info)
    return path


def load_flag_file(
    path: str | Path, frame_size: int | Sequence[int] | None = None, split: str | None = None
) -> FlagFile:
    """Read a flag file written by `save_flag_file`. When `frame_size` or `split` is given and the
    file was made for another one, raise Sim2RealError naming the file and the difference."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError("flag file not found (written by `sim2real flag`)", path)
    try:
        with np.load(path, allow_pickle=False) as z:
            scores, valid, boxes = z["scores"], z["valid"], z["boxes"]
            frame_ids = [str(f) for f in z["frame_ids"].tolist()]
            info = json.loads(str(z["info"]))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise Sim2RealError(f"not a readable flag file: {e}", path) from None
    if info.get("format") != FLAG_FILE_FORMAT:
        raise Sim2RealError(f"not a {FLAG_FILE_FORMAT} file (format {info.get('format')!r})", path)
    h, w = (int(s) for s in info["frame_size"])
    if frame_size is not None and _size_hw(frame_size) != (h, w):
        eh, ew = _size_hw(frame_size)
        raise Sim2RealError(f"flag file was made for {h}x{w} frames but {eh}x{ew} frames are used", path)
    if split is not None and split != info["split"]:
        raise Sim2RealError(f"flag file holds split {info['split']!r} but split {split!r} was asked for", path)
    if scores.shape != (len(frame_ids), len(boxes)) or valid.shape != scores.shape:
        raise Sim2RealError(
            f"inconsistent flag file: scores {scores.shape}, valid {valid.shape}, {len(frame_ids)} frames, "
            f"{len(boxes)} boxes",
            path,
        )
    try:
        boxes_t = check_boxes(boxes, h, w)
    except Sim2RealError as e:
        raise Sim2RealError(str(e), path) from None
    return FlagFile(
        scores=torch.from_numpy(scores),
        valid=torch.from_numpy(valid),
        boxes=boxes_t,
        frame_ids=frame_ids,
        frame_size=(h, w),
        threshold=float(info["threshold"]),
        binary=bool(info["binary"]),
        split=str(info["split"]),
        path=path,
        meta=info,
    )


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json") if path.suffix == ".npz" else path.with_name(path.name + ".json")


__all__ = [
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
