"""`PairedDepthDataset`: CAD / real depth pairs of a `lasa_depth` layout as model-ready tensors
(paper Sec. 3.2, release normalisation), with the two transforms of the release:

- training (Stage-I): a joint random resized crop — a square window of side min(H, W) / zoom,
  zoom log-uniform in `data.crop_scale` (0.5-2.0), placed at random (zoom < 1 lets the window
  extend past the frame; outside pixels are invalid depth), resized to the model size;
- evaluation (Stage-II, sampling): the centre crop (side `data.eval_crop`, 0 = min(H, W): 192 for
  LASA's 256x192) resized to the model size.

Depth is resized with NEAREST sampling: averaging depth across an edge would invent flying pixels
that the sensor never produced, and the model must learn the sensor's, not ours.
The camera of every sample is cropped/resized with the frame, so back-projection stays exact.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sim2real_kit.camera import Camera
from sim2real_kit.config import HOLE_MODES, denoiser_holes
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.depth import (
    cad_condition,
    depth_in_range,
    encode_residual,
    normalize_depth,
    previous_stage_condition,
    valid_mask,
)
from sim2real_kit.errors import LayoutError, Sim2RealError

MAP_KEYS = ("cad", "real", "cad_n", "real_n", "target", "mask", "valid")
# outside the frame: invalid; with `holes = model` two channels follow: validity target (-1) and its weight (0)
_FILL = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0], np.float32)
_EXTRA = {"target": 7, "mask": 8}  # channel of a key's second map in the `holes = model` stack
# Encoded frames a PairedDepthDataset keeps (MB): training reads every frame once per epoch (Stage-I of the tiny
# demo: 200 steps of 8, 25 epochs of its 64 train frames), and decoding the two PNGs was 3/4 of an item's time.
FRAME_CACHE_MB = 256


def crop_resize(image: np.ndarray, box: tuple[int, int, int, int], size: int, fill=0.0) -> np.ndarray:
    """Crop `box` = (left, top, w, h) out of [H, W] or channel-first [C, H, W] and resize to
    size x size, nearest. Pixels of the window outside the frame take `fill` (scalar or per channel)."""
    left, top, w, h = box
    H, W = image.shape[-2:]
    # nearest source pixel of each output pixel centre
    cols = left + np.floor((np.arange(size) + 0.5) * w / size).astype(np.int64)
    rows = top + np.floor((np.arange(size) + 0.5) * h / size).astype(np.int64)
    out = np.take(np.take(image, np.clip(rows, 0, H - 1), axis=-2), np.clip(cols, 0, W - 1), axis=-1)
    outside_r, outside_c = (rows < 0) | (rows >= H), (cols < 0) | (cols >= W)
    if outside_r.any() or outside_c.any():
        fill = np.asarray(fill, out.dtype)
        if out.ndim == 3 and fill.ndim == 1:
            fill = fill[:, None, None]  # one value per channel
        mask = outside_r[:, None] | outside_c[None, :]  # [size, size]
        out = np.where(mask, fill, out).astype(out.dtype, copy=False)
    return out


def eval_box(camera: Camera, eval_crop: int = 0) -> tuple[int, int, int, int]:
    """Centre crop box of the evaluation transform (side eval_crop, 0 = min(H, W))."""
    side = min(camera.width, camera.height) if eval_crop <= 0 else eval_crop
    if side > min(camera.width, camera.height):
        raise Sim2RealError(f"data.eval_crop = {side} does not fit a {camera.width}x{camera.height} frame")
    return camera.center_crop_box(side, side)


def random_box(camera: Camera, zoom_range: tuple[float, float], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Square window of side min(H, W) / zoom, zoom log-uniform in `zoom_range`, at a random position."""
    lo, hi = zoom_range
    zoom = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    side = max(2, int(round(min(camera.width, camera.height) / zoom)))
    x_lo, x_hi = min(0, camera.width - side), max(0, camera.width - side)
    y_lo, y_hi = min(0, camera.height - side), max(0, camera.height - side)
    return int(rng.integers(x_lo, x_hi + 1)), int(rng.integers(y_lo, y_hi + 1)), side, side


class PairedDepthDataset(Dataset):
    """Pairs of one split of a layout. Each item is a dict:

    - `cad`, `real`: [1, S, S] float32 metres at the model size S (0 = invalid)
    - `cad_n`: [1, S, S] the condition, `depth.cad_condition(cad)`: a function of the CAD alone, exactly
      what `Sim2RealPipeline` computes at sampling time (invalid CAD -> 1)
    - `real_n`: [1, S, S] log-normalised real depth in [-1, 1] (see `holes`)
    - `target`: [1, S, S] what the denoiser learns: residual (real_n - cad_n) * scale, or real_n (`direct`);
      [2, S, S] with `holes = model`: then the validity, +1 where the real sensor returned depth, -1 where not
    - `mask`: [1, S, S] float32 loss weight map (1 = pixel counts; see `holes`); [2, S, S] with `holes = model`
      (the target's weights, then the validity's)
    - `valid`: [1, S, S] float32, 1 where CAD and real are both valid and |real - cad| < max_diff
    - `camera`: [4] fx, fy, cx, cy of the sample's crop at S px; `pose`: [4, 4] camera-to-world
    - `scene`, `frame`: strings; `index`: int

    holes = "mask" (paper): the loss weighs the `valid` pixels only; elsewhere real_n takes the CAD's
    value (residual 0), so the model never learns to make holes. holes = "model" (kit extension): the
    residual as in `mask` (weighed on `valid` pixels only, so holes never distort it), plus the validity
    channel weighed on every CAD-valid pixel: the model learns where the sensor loses data. holes =
    "generate" (kit extension, fails: docs/results.md): every CAD-valid pixel weighs 1 and real holes stay
    far depth (1) in real_n. Either way the condition `cad_n` never sees the real capture.
    """

    def __init__(
        self,
        root: str | Path | DepthLayout,
        split: str = "train",
        size: int = 64,
        train: bool | None = None,
        holes: str = "mask",
        target: str = "residual",
        residual_scale: float = 0.5,
        max_diff_m: float = 0.5,
        crop_scale: tuple[float, float] = (0.5, 2.0),
        eval_crop: int = 0,
        seed: int = 0,
        max_frames: int | None = None,
        keys: tuple[str, ...] = MAP_KEYS,
    ):
        self.layout = root if isinstance(root, DepthLayout) else DepthLayout(root)
        self.split = split
        self.refs: list[FrameRef] = self.layout.frames(split)
        if max_frames is not None:
            self.refs = self.refs[:max_frames]
        if not self.refs:
            raise LayoutError(f"split {split!r} has no frames", self.layout.list_path(split))
        if size <= 0:
            raise Sim2RealError(f"model size must be positive, got {size}")
        if holes not in HOLE_MODES:
            raise Sim2RealError(f"data.holes must be one of {', '.join(HOLE_MODES)}, got {holes!r}")
        if target not in ("residual", "direct"):
            raise Sim2RealError(f"model.target must be 'residual' or 'direct', got {target!r}")
        self.size, self.holes, self.target = size, holes, target
        self.train = (split == "train") if train is None else train
        self.residual_scale, self.max_diff_m = residual_scale, max_diff_m
        self.crop_scale, self.eval_crop, self.seed = tuple(crop_scale), eval_crop, seed
        self.epoch = 0
        unknown = [k for k in keys if k not in MAP_KEYS]
        if unknown or not keys:
            raise Sim2RealError(f"unknown map keys {unknown}; valid: {', '.join(MAP_KEYS)}")
        self.keys = tuple(keys)  # the maps an item carries (training needs only cad_n, target, mask)
        self._frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # index -> (maps, pose), see `frame_maps`
        self._frames_bytes = 0

    @classmethod
    def from_config(cls, cfg, root, split: str = "train", train: bool | None = None, **kw) -> PairedDepthDataset:
        d = cfg.data
        return cls(
            root,
            split,
            size=d.size,
            train=train,
            holes=denoiser_holes(cfg),  # model.validity=head: the denoiser's data is a mask run's
            target=cfg.model.target,
            residual_scale=cfg.model.residual_scale,
            max_diff_m=d.max_diff_m,
            crop_scale=d.crop_scale,
            eval_crop=d.eval_crop,
            seed=cfg.seed,
            **kw,
        )

    def set_epoch(self, epoch: int) -> None:
        """Random crops are a function of (seed, epoch, index): resumable and worker-independent."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.refs)

    def box(self, index: int) -> tuple[int, int, int, int]:
        cam = self.layout.camera
        if not self.train:
            return eval_box(cam, self.eval_crop)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return random_box(cam, self.crop_scale, rng)

    def __getitem__(self, index: int) -> dict:
        ref = self.refs[index]
        stack, pose = self.frame_maps(index)
        cam = self.layout.camera
        box = self.box(index)
        channels = [self.channels_of(k) for k in self.keys]
        keep = [c for cs in channels for c in cs]
        maps = crop_resize(stack, box, self.size, fill=_FILL[keep])
        bounds = np.cumsum([0, *map(len, channels)])
        out = {k: torch.from_numpy(maps[bounds[i] : bounds[i + 1]]) for i, k in enumerate(self.keys)}
        sample_cam = cam.crop(*box).resize(self.size, self.size)
        out.update(
            camera=torch.from_numpy(sample_cam.as_vector()),
            pose=torch.from_numpy(pose.astype(np.float32)),
            scene=ref.scene,
            frame=ref.frame,
            index=index,
        )
        return out

    def frame_maps(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(the item's maps at the frame's raw size [C, H, W] float32, pose [4, 4]) of frame `index`, read-only:
        read and encoded once, then kept while the kept frames fit FRAME_CACHE_MB. Nearest resizing commutes with
        the per-pixel encoding, so items encode at the raw size (fewer pixels) and crop/resize all maps at once."""
        if index in self._frames:
            return self._frames[index]
        ref = self.refs[index]
        frame = self.layout.read_frame(ref)
        cam = self.layout.camera
        if frame["cad"].shape != (cam.height, cam.width):
            raise LayoutError(
                f"frame size {frame['cad'].shape[1]}x{frame['cad'].shape[0]} differs from the camera "
                f"{cam.width}x{cam.height}",
                self.layout.depth_path(ref, "gt"),
            )
        keep = [c for k in self.keys for c in self.channels_of(k)]
        stack, pose = self.encode_maps(frame["cad"], frame["real"])[keep], np.asarray(frame["pose"])
        stack.setflags(write=False)
        pose.setflags(write=False)
        if self._frames_bytes + stack.nbytes + pose.nbytes <= FRAME_CACHE_MB * 2**20:
            self._frames[index] = (stack, pose)
            self._frames_bytes += stack.nbytes + pose.nbytes
        return stack, pose

    def __getstate__(self) -> dict:  # DataLoader workers start with an empty cache
        return {**self.__dict__, "_frames": {}, "_frames_bytes": 0}

    def channels_of(self, key: str) -> list[int]:
        """Channels of `key` in the `encode_maps` stack: MAP_KEYS order, and with `holes = model` the second
        maps of `target` and `mask` appended after them (so `MAP_KEYS.index(key)` stays each key's first map)."""
        first = [MAP_KEYS.index(key)]
        return first + [_EXTRA[key]] if self.holes == "model" and key in _EXTRA else first

    def encode_maps(self, cad: np.ndarray, real: np.ndarray) -> np.ndarray:
        """Metres [H, W] -> [7, H, W] float32 stack of MAP_KEYS (see the class docstring); with `holes = model`
        [9, H, W]: then the validity target (+1 real depth in range, -1 hole) and its weight (CAD valid)."""
        cad_ok = valid_mask(cad)
        valid = valid_mask(cad, real, self.max_diff_m)
        cad_n = cad_condition(cad)
        if self.holes == "generate":
            real_n = normalize_depth(real, cad_ok)
            mask = cad_ok
        else:
            real_n = np.where(valid, normalize_depth(real), cad_n)
            mask = valid
        target = encode_residual(real_n, cad_n, self.residual_scale) if self.target == "residual" else real_n
        maps = [cad, real, cad_n, real_n, target, mask, valid]
        if self.holes == "model":
            maps += [np.where(cad_ok & depth_in_range(real), 1.0, -1.0), cad_ok]
        return np.stack(maps).astype(np.float32, copy=False)

    def encode(self, cad: np.ndarray, real: np.ndarray) -> dict:
        """Metres [S, S] -> dict of [1, S, S] tensors ([2, S, S]: `target`, `mask` with `holes = model`) for maps
        already at the model size."""
        maps = self.encode_maps(cad, real)
        return {k: torch.from_numpy(maps[self.channels_of(k)]) for k in MAP_KEYS}


class StageNDataset(Dataset):
    """Stage-k training data (paper Sec. 3.4): the items of `base` (the eval crop of the train split, as
    the release) plus

    - `prev_n`: [1, S, S] the previous stage's saved output (`previous` {"scene/frame": [S, S] metres}) as
      the second condition, `depth.previous_stage_condition` of `condition` ("depth" | "residual");
    - `flag_weight`: [1, S, S] λ (`flagged_weight`) on flagged patches, ω (`other_weight`) elsewhere
      (continuous scores for "w/o bin"), from the `flags` of the previous stage's output (a FlagFile);
    - `has_flag`: whether any patch of the frame is flagged (the loss re-weights a batch only then)."""

    def __init__(
        self,
        base: PairedDepthDataset,
        previous: dict[str, np.ndarray],
        flags,
        condition: str = "depth",
        residual_scale: float = 0.5,
        flagged_weight: float = 1.5,
        other_weight: float = 0.5,
    ):
        missing = [str(r) for r in base.refs if str(r) not in previous]
        if missing:
            raise LayoutError(f"{len(missing)} train frames have no previous-stage output (e.g. {missing[0]})")
        if flagged_weight < 0 or other_weight < 0:
            raise Sim2RealError(f"stage2 weights must be >= 0, got λ={flagged_weight}, ω={other_weight}")
        self.base, self.previous, self.flags = base, previous, flags
        self.condition, self.residual_scale = condition, residual_scale
        self.flagged_weight, self.other_weight = flagged_weight, other_weight

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        item = self.base[index]
        key = f"{item['scene']}/{item['frame']}"
        prev_m = torch.from_numpy(self.previous[key])[None]  # [1, S, S]
        item["prev_n"] = previous_stage_condition(
            prev_m[None], item["cad_n"][None], self.condition, self.residual_scale
        )[0]
        flags = self.flags.flags_for([key])  # [1, P]
        item["flag_weight"] = self.flags.weight_map(
            [key], flagged_weight=self.flagged_weight, other_weight=self.other_weight
        )[0]  # [1, S, S]
        item["has_flag"] = torch.tensor(bool((flags > 0).any()))
        return item
