"""Flags of the 3D-aware discriminator (paper Sec. 3.3) for the Stage-II loss re-weighting (Sec. 3.4):
how flags become pixel masks and weight maps, and the files that hold them.

- flags <-> pixel masks <-> weight maps: `flags_to_mask`, `mask_to_flags`, `mask_box_fraction`,
  `boxes_to_flags`, `weight_map` (λ on flagged pixels, ω elsewhere, nearest-resized to the
  denoiser's size; the "w/o bin" ablation uses continuous scores), `batch_has_flags` (the
  release's unweighted fallback), `flags_from_scores` (P(real) -> flags), `check_threshold`.
- files: the release's `<frame>_diff_id.txt` / `<frame>_<k>_position.txt` format
  (`write_release_flags`, `read_release_flags`, 512-frame coordinates) and the kit's compact
  per-split flag file (`save_flag_file`, `load_flag_file` -> `FlagFile`: npz + json sidecar).

Flags are per patch of a box grid (`patch_boxes.patch_grid`); every name here is also importable
from `sim2real_kit.patches`.
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

from sim2real_kit.errors import ConfigError, MissingArtifactError, Sim2RealError
from sim2real_kit.io import atomic_path, atomic_write_json, atomic_write_text
from sim2real_kit.patch_boxes import box_pixels, check_boxes, scale_boxes, size_hw

RELEASE_FRAME = 512  # the release writes patch positions in the 512x512 model frame
FLAG_FILE_FORMAT = "sim2real_kit.flags"
FLAG_FILE_VERSION = 1


# ---------------------------------------------------------------------- flags <-> masks <-> weights
def flags_to_mask(flags, boxes, height: int, width: int) -> torch.Tensor:
    """Flags [B, P] (bool, or float scores in [0, 1]) -> pixel mask [B, 1, H, W] float.

    Each box gets its patch's value; where boxes overlap the maximum wins; pixels in no box are 0."""
    flags = _as_flags(flags)
    boxes = check_boxes(boxes, height, width).to(flags.device)
    B, P = flags.shape
    if P != len(boxes):
        raise Sim2RealError(f"flags have {P} patches per frame but there are {len(boxes)} boxes")
    pix, patch = box_pixels(boxes, width)
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
        h, w = size_hw(out_size)
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
    h, w = size_hw(frame_size)
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
    if frame_size is not None and size_hw(frame_size) != (h, w):
        eh, ew = size_hw(frame_size)
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
    "FLAG_FILE_FORMAT",
    "FLAG_FILE_VERSION",
    "RELEASE_FRAME",
    "FlagFile",
    "batch_has_flags",
    "boxes_to_flags",
    "check_threshold",
    "flags_from_scores",
    "flags_to_mask",
    "load_flag_file",
    "mask_box_fraction",
    "mask_to_flags",
    "read_release_flags",
    "save_flag_file",
    "weight_map",
    "write_release_flags",
]
