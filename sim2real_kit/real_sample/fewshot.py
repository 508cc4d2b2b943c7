"""A few-shot Stage-I on the real sample: native-resolution crops of the real frames with one object held out
of the loss (`HeldOutCrops`), trained with the kit's `stage1.train_denoiser`, then run on model-size tiles
covering the objects (`simulate_tiles`)."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sim2real_kit.config import Config
from sim2real_kit.data.dataset import MAP_KEYS
from sim2real_kit.data.layout import DepthLayout
from sim2real_kit.errors import ConfigError, LayoutError
from sim2real_kit.io import atomic_write_json
from sim2real_kit.real_sample.frames import RealFrames

_MAPS = MAP_KEYS  # channels of PairedDepthDataset.encode_maps
_MASK, _TARGET, _VALID = _MAPS.index("mask"), _MAPS.index("target"), _MAPS.index("valid")


# ====================================================================== few-shot Stage-I
class HeldOutCrops(Dataset):
    """Random native-resolution crops (side `size` px) of the real frames for Stage-I, one object held out
    (`holdout_id`; None: none, every object trains — the train-on-some-samples, test-on-others mode).

    The maps are the kit's (`PairedDepthDataset.encode_maps` of `encoder`: log-normalised CAD and real,
    residual target, loss mask of `data.holes`) at full resolution. On the held-out object's pixels they
    are replaced by the maps of (CAD, CAD) — the CAD condition stays, the real depth is gone, the target
    is a zero residual — and the loss weight is set to 0: its real depth never reaches the model. (A zero
    weight alone would not do: the noisy input x_t holds the target at every pixel, and the UNet carries
    it to the loss pixels around.) Crops
    are centred on a random loss-weighted pixel, drawn from (seed, epoch, index).

    Items: `cad_n`, `target`, `mask`, `heldout` (1 on held-out pixels), each [1, S, S] float32."""

    def __init__(
        self,
        frames: RealFrames,
        encoder,
        holdout_id: int | None,
        size: int,
        length: int = 256,
        seed: int = 0,
        keys: Sequence[str] = ("cad_n", "target", "mask", "heldout"),
    ):
        H, W = frames.cad.shape[-2:]
        if not 0 < size <= min(H, W):
            raise ConfigError(f"crop size {size} px does not fit the {W}x{H} frames (data.size)")
        unknown = [k for k in keys if k not in (*_MAPS, "heldout")]
        if unknown:
            raise ConfigError(f"unknown map keys {unknown}; valid: {', '.join((*_MAPS, 'heldout'))}")
        self.size, self.length, self.seed, self.keys = int(size), int(length), int(seed), tuple(keys)
        self.epoch = 0
        self.holdout_id = None if holdout_id is None else int(holdout_id)
        self.heldout = frames.instance == (-1 if holdout_id is None else self.holdout_id)  # [F, H, W]
        self.roots = frames.roots  # the sample folders the crops come from
        maps = []
        for cad, real, held in zip(frames.cad, frames.real, self.heldout):
            m = encoder.encode_maps(cad, real)  # [6, H, W]
            m[:, held] = encoder.encode_maps(cad, cad)[:, held]  # CAD only: no trace of the real depth
            m[_MASK, held] = m[_VALID, held] = 0.0
            maps.append(m)
        self.maps = np.stack(maps)  # [F, 6, H, W]
        self.residual_scale = float(encoder.residual_scale)
        self.target_kind = encoder.target
        self.centres = np.argwhere(self.maps[:, _MASK] > 0)  # [N, 3] (frame, row, col) of loss pixels
        if not len(self.centres):
            why = "in the training frames" if holdout_id is None else f"left once object {holdout_id} is held out"
            raise LayoutError(f"no loss-weighted pixel {why}", frames.root)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def box(self, index: int) -> tuple[int, int, int, int]:
        """(frame, left, top, size) of item `index` in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        f, row, col = self.centres[rng.integers(len(self.centres))]
        H, W = self.maps.shape[-2:]
        half = self.size // 2
        left = int(np.clip(col - half, 0, W - self.size))
        top = int(np.clip(row - half, 0, H - self.size))
        return int(f), left, top, self.size

    def crop(self, frame: int, left: int, top: int) -> dict[str, torch.Tensor]:
        """The maps of the window [left, left+S) x [top, top+S) of `frame` as [1, S, S] tensors."""
        win = (slice(top, top + self.size), slice(left, left + self.size))
        out = {}
        for key in self.keys:
            if key == "heldout":
                arr = self.heldout[frame][win].astype(np.float32)
            else:
                arr = self.maps[frame, _MAPS.index(key)][win]
            out[key] = torch.from_numpy(np.ascontiguousarray(arr)[None])
        return out

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        f, left, top, _ = self.box(index)
        return self.crop(f, left, top)

    def target_std(self) -> float:
        """Std of the unscaled residual (real_n - cad_n) over the pixels where CAD and real are both valid
        and within max_diff (held-out excluded): holes (generate mode) never set the scale."""
        keep = (self.maps[:, _MASK] > 0) & (self.maps[:, _VALID] > 0)
        t = self.maps[:, _TARGET][keep].astype(np.float64) / self.residual_scale
        return float(t.std())

    def set_residual_scale(self, scale: float) -> None:
        """Re-scale the residual target to `scale` x (real_n - cad_n)."""
        if self.target_kind != "residual":
            raise ConfigError("set_residual_scale needs model.target = residual")
        self.maps[:, _TARGET] *= float(scale) / self.residual_scale
        self.residual_scale = float(scale)


def heldout_dataset(frames: RealFrames, cfg: Config, holdout_id: int | None, length: int = 256) -> HeldOutCrops:
    """`HeldOutCrops` at the config's model size with the kit's encoding (`data.holes`, `model.target`,
    `model.residual_scale`, `data.max_diff_m`). With `model.target_std > 0` (a residual target) the scale is
    set from the training pixels so the target has that std, and written into `cfg.model.residual_scale`.
    A test-only sample (`RealFrames.test_only`, one frame) is refused: nothing of it may be trained on."""
    from sim2real_kit.data.dataset import PairedDepthDataset

    if frames.test_only:
        raise ConfigError(
            f"the real sample {', '.join(map(str, frames.roots))} is test-only (one frame): Stage-I cannot train on "
            "it; train on another sample and score on this one (evaluate-real --train-sample OTHER --test-sample "
            "THIS), or skip Stage-I (--no-stage1)"
        )

    layout = DepthLayout(frames.root)
    encoder = PairedDepthDataset.from_config(cfg, layout, "train", train=False)
    ds = HeldOutCrops(frames, encoder, holdout_id, cfg.data.size, length=length, seed=cfg.seed)
    target_std = cfg.model.target_std
    if target_std > 0 and cfg.model.target == "residual":
        std = ds.target_std()
        if not std > 1e-9:
            raise ConfigError(f"model.target_std: CAD and real depth agree on the training pixels of {frames.root}")
        ds.set_residual_scale(target_std / std)
        cfg.model.residual_scale = ds.residual_scale
    return ds


def train_heldout_stage1(
    frames: RealFrames, cfg: Config, holdout_id: int | None, out_dir: str | Path, steps: int, progress: bool = False
):
    """Train (or reuse) a Stage-I on `HeldOutCrops` (holdout_id None: on every object of `frames`) with `stage1.train_denoiser` into `out_dir` (checkpoints,
    losses.csv, `pipeline/`, `settings.json`). A finished run with the same settings is loaded, not retrained; other
    settings start over. Returns (Sim2RealPipeline on the kit's device, summary dict)."""
    from sim2real_kit.pipeline import Sim2RealPipeline
    from sim2real_kit.stage1 import device, train_denoiser

    cfg = copy.deepcopy(cfg)
    out_dir = Path(out_dir)
    ds = heldout_dataset(frames, cfg, holdout_id)
    cfg.train = dataclasses.replace(cfg.train, steps=int(steps), val_every=0, sample_every=0)
    settings = json.loads(
        json.dumps(
            {
                "holdout_id": None if holdout_id is None else int(holdout_id),
                "steps": int(steps),
                "size": int(cfg.data.size),
                "seed": int(cfg.seed),
                "source": ", ".join(str(r) for r in frames.roots),
                "holes": cfg.data.holes,
                "max_diff_m": cfg.data.max_diff_m,
                "model": dataclasses.asdict(cfg.model),
                "train": dataclasses.asdict(cfg.train),
            },
            default=str,
        )
    )
    settings_path, pipe_dir = out_dir / "settings.json", out_dir / "pipeline"
    same = settings_path.is_file() and json.loads(settings_path.read_text()) == settings
    summary: dict = {"steps": int(steps), "residual_scale": ds.residual_scale, "reused": False}
    if same and (pipe_dir / "model_index.json").is_file():
        summary["reused"] = True
        return Sim2RealPipeline.from_pretrained(pipe_dir).to(device()), summary
    atomic_write_json(settings_path, settings)
    summary.update(train_denoiser(cfg, ds, out_dir, resume=same, overwrite=not same, progress=progress))
    return Sim2RealPipeline.from_pretrained(pipe_dir).to(device()), summary


def tile_boxes(region: np.ndarray, size: int, stride: int | None = None) -> list[tuple[int, int]]:
    """(left, top) of the size x size tiles of a regular grid (step `stride`, default `size`: no overlap) over
    a frame [H, W] that hold a pixel of `region` (the last row / column of tiles is shifted to end at the
    frame's border)."""
    H, W = region.shape
    step = size if stride is None else int(stride)
    if not 0 < step <= size:
        raise ConfigError(f"tile stride must be in 1..{size} (the tile side), got {stride}")
    lefts = sorted({*range(0, W - size + 1, step), W - size})
    tops = sorted({*range(0, H - size + 1, step), H - size})
    return [(x, y) for y in tops for x in lefts if region[y : y + size, x : x + size].any()]


def blend_window(size: int, overlap: int) -> np.ndarray:
    """[S, S] weights of one tile: 1 inside, a linear ramp over the `overlap` pixels at each side down to
    1 / (overlap + 1) at the edge (never 0, so a pixel only one tile covers keeps its value)."""
    ramp = np.ones(size, np.float32)
    if overlap > 0:
        r = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
        ramp[:overlap] = np.minimum(ramp[:overlap], r)
        ramp[size - overlap :] = np.minimum(ramp[size - overlap :], r[::-1])
    return np.outer(ramp, ramp)


def blend_tiles(
    tiles: np.ndarray, boxes: list[tuple[int, int, int]], shape: tuple[int, int, int], overlap: int
) -> np.ndarray:
    """Depth [F, H, W] from overlapping tiles [N, S, S] (metres, 0 = hole) at `boxes` (frame, left, top):
    each pixel the `blend_window`-weighted mean of the tiles' valid values, a hole where the weighted share
    of tiles that see a hole there is more than half; 0 where no tile lies. No step at a tile border: a
    tile's weight falls to ~0 at its edge. (The mean of independent samples is smoother than one sample in
    the overlap; the residual's spread there is reduced by up to 1/sqrt(2).)"""
    size = tiles.shape[-1]
    window = blend_window(size, overlap)
    acc = np.zeros(shape, np.float64)
    weight_valid = np.zeros(shape, np.float64)
    weight_all = np.zeros(shape, np.float64)
    for (f, x, y), tile in zip(boxes, tiles):
        valid = tile > 0
        acc[f, y : y + size, x : x + size] += window * np.where(valid, tile, 0.0)
        weight_valid[f, y : y + size, x : x + size] += window * valid
        weight_all[f, y : y + size, x : x + size] += window
    keep = weight_valid > 0.5 * weight_all
    out = np.where(keep, acc / np.maximum(weight_valid, 1e-12), 0.0)
    return out.astype(np.float32)


def seam_ratio(residual: np.ndarray, boxes: list[tuple[int, int, int]], size: int, valid=None) -> float:
    """How visible the tile borders are in a residual map [F, H, W] (metres): the mean |difference| of
    horizontally and vertically adjacent pixels across a tile's inner border (a tile edge that is not the
    frame's), over the same mean everywhere else. ~1: no seam; a step at the borders makes it grow.
    `valid` [F, H, W]: pixels to count (both of a pair must be valid); default residual != 0."""
    residual = np.asarray(residual, np.float64)
    ok = residual != 0 if valid is None else np.asarray(valid, bool)
    F, H, W = residual.shape
    seam_x = np.zeros((F, H, W - 1), bool)  # pair (x, x+1) straddles a vertical tile border
    seam_y = np.zeros((F, H - 1, W), bool)
    for f, x, y in boxes:
        for edge in (x, x + size):
            if 0 < edge < W:
                seam_x[f, y : y + size, edge - 1] = True
        for edge in (y, y + size):
            if 0 < edge < H:
                seam_y[f, edge - 1, x : x + size] = True
    dx, okx = np.abs(np.diff(residual, axis=2)), ok[:, :, 1:] & ok[:, :, :-1]
    dy, oky = np.abs(np.diff(residual, axis=1)), ok[:, 1:, :] & ok[:, :-1, :]
    border = np.concatenate([dx[okx & seam_x], dy[oky & seam_y]])
    inner = np.concatenate([dx[okx & ~seam_x], dy[oky & ~seam_y]])
    if border.size == 0 or inner.size == 0:
        return float("nan")
    return float(border.mean() / max(inner.mean(), 1e-12))


def simulate_tiles(
    pipe,
    frames: RealFrames,
    region: np.ndarray,
    seed: int,
    steps: int | None = None,
    eta: float = 0.0,
    overlap: int | None = None,
    blend: str = "sample",
) -> np.ndarray:
    """Full-resolution simulated depth [F, H, W] (0 outside the tiles): the pipeline run on model-size
    native-resolution tiles of the CAD covering `region` [F, H, W] (no resize: tile side = pipeline size),
    overlapping by `overlap` pixels (default a quarter of the tile), so no tile border shows (`seam_ratio`).

    blend = "sample" (default): the tiles of a frame are one sample, MultiDiffusion-style (Bar-Tal et al.
    2023): their initial noise is cut from one noise map per frame and after every DDIM step the tiles are
    averaged where they overlap (`blend_window` weights), then the outputs are blended (`blend_tiles`).
    "after": independent samples per tile, blended afterwards — averaging independent samples narrows the
    residual in the overlaps. `overlap=0`: the plain grid."""
    size = int(pipe.config.size)
    overlap = size // 4 if overlap is None else int(overlap)
    if not 0 <= overlap < size:
        raise ConfigError(f"tile overlap must be in 0..{size - 1} pixels, got {overlap}")
    if blend not in ("sample", "after"):
        raise ConfigError(f"tile blend must be 'sample' or 'after', got {blend!r}")
    stride = size - overlap
    out = np.zeros_like(frames.cad)
    gen = torch.Generator().manual_seed(int(seed))
    for f in range(len(frames.refs)):
        boxes = [(0, x, y) for x, y in tile_boxes(region[f], size, stride)]
        if not boxes:
            continue
        tiles = np.stack([frames.cad[f, y : y + size, x : x + size] for _, x, y in boxes])  # [N, S, S]
        callback = None
        if blend == "sample" and overlap > 0 and len(boxes) > 1:
            callback = _TileSync(boxes, frames.cad.shape[1:], size, overlap, gen)
        depth = np.asarray(
            pipe(
                tiles, num_inference_steps=steps, eta=eta, generator=gen, batch_size=len(tiles), step_callback=callback
            ).depth
        )
        out[f] = blend_tiles(depth, boxes, (1, *frames.cad.shape[1:]), overlap)[0]
    return out


class _TileSync:
    """`step_callback` of `simulate_tiles`: the tiles of one frame as one sample. Before the first step each
    tile's noise is cut from one noise map of the frame (overlaps start equal); after every step the tiles
    are averaged where they overlap (`blend_window` weights) and cut again. Works on the denoised map at the
    codec's resolution (pixel presets: the tile itself)."""

    def __init__(self, boxes, frame_shape, size: int, overlap: int, generator: torch.Generator):
        self.boxes, self.frame_shape, self.size, self.overlap, self.gen = boxes, frame_shape, size, overlap, generator

    def _scaled(self, x: torch.Tensor):
        down = self.size // x.shape[-1]
        if (
            self.size % x.shape[-1]
            or any(v % down for _, bx, by in self.boxes for v in (bx, by))
            or self.overlap % down
        ):
            raise ConfigError(f"tile positions and overlap must be multiples of the codec's downscale {down}")
        H, W = (-(-d // down) for d in self.frame_shape)
        return down, H, W, x.shape[-1], self.overlap // down

    def __call__(self, x: torch.Tensor, frames: slice, i: int) -> torch.Tensor:
        down, H, W, s, ov = self._scaled(x)
        boxes = self.boxes[frames]
        if i < 0:  # one noise map per frame: overlapping tiles start from the same noise
            canvas = torch.randn((x.shape[1], H, W), generator=self.gen).to(x.device, x.dtype)
            return torch.stack(
                [canvas[:, by // down : by // down + s, bx // down : bx // down + s] for _, bx, by in boxes]
            )
        window = torch.from_numpy(blend_window(s, ov)).to(x.device, x.dtype)
        acc = torch.zeros((x.shape[1], H, W), device=x.device, dtype=x.dtype)
        wsum = torch.zeros((1, H, W), device=x.device, dtype=x.dtype)
        for tile, (_, bx, by) in zip(x, boxes):
            r, c = by // down, bx // down
            acc[:, r : r + s, c : c + s] += window * tile
            wsum[:, r : r + s, c : c + s] += window
        mean = acc / wsum.clamp_min(1e-12)
        return torch.stack([mean[:, by // down : by // down + s, bx // down : bx // down + s] for _, bx, by in boxes])
