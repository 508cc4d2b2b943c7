"""A few-shot Stage-I on the real sample: native-resolution crops of the real frames with one object held out
of the loss (`HeldOutCrops`), trained with the kit's `stage1.train_denoiser` (with `model.validity: head`, and a
validity head fit on the other objects' pixels: `heldout_validity_head`), then run on model-size tiles covering
the objects (`simulate_tiles`, through `tiling.simulate_tiled`)."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sim2real_kit.config import Config, validity_head
from sim2real_kit.data.dataset import MAP_KEYS
from sim2real_kit.data.layout import DepthLayout
from sim2real_kit.depth import previous_stage_condition
from sim2real_kit.errors import ConfigError, LayoutError
from sim2real_kit.io import atomic_write_json
from sim2real_kit.real_sample.frames import RealFrames
from sim2real_kit.tiling import simulate_full, simulate_tiled

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

    Items: `cad_n`, `target`, `mask`, `heldout` (1 on held-out pixels), each [1, S, S] float32 (`target` and
    `mask` [2, S, S] with `data.holes: model` and the validity channel: the validity and its weight follow, 0 on
    held-out pixels too; with a validity head they are a `data.holes: mask` run's; `channels` maps each key to its
    channels of `maps`); with a physics
    prior (`prior` [F, H, W] metres: a physical sensor model's output on the frames' CAD, nothing of the real
    depth) also `prev_n`, the prior as `depth.previous_stage_condition` encodes a previous stage's output."""

    def __init__(
        self,
        frames: RealFrames,
        encoder,
        holdout_id: int | None,
        size: int,
        length: int = 256,
        seed: int = 0,
        keys: Sequence[str] = ("cad_n", "target", "mask", "heldout"),
        prior: np.ndarray | None = None,
        condition: str = "depth",
    ):
        H, W = frames.cad.shape[-2:]
        if not 0 < size <= min(H, W):
            raise ConfigError(f"crop size {size} px does not fit the {W}x{H} frames (data.size)")
        if prior is not None:
            if np.shape(prior) != frames.cad.shape:
                raise ConfigError(f"physics prior of shape {np.shape(prior)} for frames of shape {frames.cad.shape}")
            keys = (*keys, "prev_n") if "prev_n" not in keys else tuple(keys)
        valid_keys = (*_MAPS, "heldout", *(("prev_n",) if prior is not None else ()))
        unknown = [k for k in keys if k not in valid_keys]
        if unknown:
            raise ConfigError(f"unknown map keys {unknown}; valid: {', '.join(valid_keys)}")
        self.prior = None if prior is None else np.asarray(prior, np.float32)  # [F, H, W] metres
        self.condition = condition
        self.size, self.length, self.seed, self.keys = int(size), int(length), int(seed), tuple(keys)
        self.epoch = 0
        self.holdout_id = None if holdout_id is None else int(holdout_id)
        self.heldout = frames.instance == (-1 if holdout_id is None else self.holdout_id)  # [F, H, W]
        self.roots = frames.roots  # the sample folders the crops come from
        self.channels = {k: encoder.channels_of(k) for k in _MAPS}  # target / mask: 2 with holes = model
        maps = []
        for cad, real, held in zip(frames.cad, frames.real, self.heldout):
            m = encoder.encode_maps(cad, real)  # [7, H, W] ([9, H, W] with holes = model)
            m[:, held] = encoder.encode_maps(cad, cad)[:, held]  # CAD only: no trace of the real depth
            for c in (*self.channels["mask"], _VALID):  # every loss weight (the validity's too)
                m[c, held] = 0.0
            maps.append(m)
        self.maps = np.stack(maps)  # [F, C, H, W]: the encode_maps stack
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
            elif key == "prev_n":
                prior = torch.from_numpy(np.ascontiguousarray(self.prior[frame][win]))[None, None]  # [1, 1, S, S]
                cad_n = torch.from_numpy(np.ascontiguousarray(self.maps[frame, _MAPS.index("cad_n")][win]))[None, None]
                arr = previous_stage_condition(prior, cad_n, self.condition, self.residual_scale)[0, 0].numpy()
            else:
                arr = self.maps[frame, self.channels[key]][(slice(None), *win)]  # [C, S, S]
            out[key] = torch.from_numpy(np.ascontiguousarray(arr if arr.ndim == 3 else arr[None]))
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


def heldout_dataset(
    frames: RealFrames, cfg: Config, holdout_id: int | None, length: int = 256, prior: np.ndarray | None = None
) -> HeldOutCrops:
    """`HeldOutCrops` at the config's model size with the kit's encoding (`data.holes`, `model.target`,
    `model.residual_scale`, `data.max_diff_m`). With `model.target_std > 0` (a residual target) the scale is
    set from the training pixels so the target has that std, and written into `cfg.model.residual_scale`.
    A test-only sample (`RealFrames.test_only`, one frame) is refused: nothing of it may be trained on. `prior`:
    a physics prior [F, H, W] metres (`HeldOutCrops`), encoded with `stage2.condition`."""
    from sim2real_kit.data.dataset import PairedDepthDataset

    if frames.test_only:
        raise ConfigError(
            f"the real sample {', '.join(map(str, frames.roots))} is test-only (one frame): Stage-I cannot train on "
            "it; train on another sample and score on this one (evaluate-real --train-sample OTHER --test-sample "
            "THIS), or skip Stage-I (--no-stage1)"
        )

    layout = DepthLayout(frames.root)
    encoder = PairedDepthDataset.from_config(cfg, layout, "train", train=False)
    ds = HeldOutCrops(
        frames, encoder, holdout_id, cfg.data.size, length=length, seed=cfg.seed, prior=prior,
        condition=cfg.stage2.condition,
    )  # fmt: skip
    target_std = cfg.model.target_std
    if target_std > 0 and cfg.model.target == "residual":
        std = ds.target_std()
        if not std > 1e-9:
            raise ConfigError(f"model.target_std: CAD and real depth agree on the training pixels of {frames.root}")
        ds.set_residual_scale(target_std / std)
        cfg.model.residual_scale = ds.residual_scale
    return ds


def train_heldout_stage1(
    frames: RealFrames,
    cfg: Config,
    holdout_id: int | None,
    out_dir: str | Path,
    steps: int,
    progress: bool = False,
    prior: np.ndarray | None = None,
    prior_name: str = "",
):
    """Train (or reuse) a Stage-I on `HeldOutCrops` (holdout_id None: on every object of `frames`) with
    `stage1.train_denoiser` into `out_dir` (checkpoints, losses.csv, `pipeline/`, `settings.json`). A finished run
    with the same settings is loaded, not retrained; other settings start over. `prior` / `prior_name`: a Stage-I
    with a physics prior, the output [F, H, W] metres of the physical model `prior_name` on the frames' CAD as its
    second condition.

    `model.validity: head` (with `data.holes: model`): the denoiser trains exactly as a `data.holes: mask` one,
    then a `holes.ValidityHead` is fit on the frames at native resolution (`holes.fit_validity_head_on_frames`:
    random `data.size`-px crops, `train.validity_head_steps` steps, seed `seed`), weighted by the training pixels:
    the object pixels but the held-out object's (holdout_id None: every object pixel), so the held-out object's
    real depth never reaches it either; it is saved with the pipeline (`pipeline/validity_head/`). A finished run
    is loaded with its head, not refit; a run whose pipeline lacks the head fits it and saves the pipeline again
    (the denoiser as it was). Returns (Sim2RealPipeline on the kit's device, summary dict; with a head also
    `validity_head_steps` and `validity_head_fitted`, whether this call fit it)."""
    from sim2real_kit.holes import HEAD_FOLDER, ValidityHead
    from sim2real_kit.pipeline import Sim2RealPipeline
    from sim2real_kit.stage1 import device, train_denoiser

    head_on = validity_head(cfg)
    cfg = copy.deepcopy(cfg)
    out_dir = Path(out_dir)
    if (prior is None) != (not prior_name):
        raise ConfigError("a physics prior needs both its output (prior) and the model's name (prior_name)")
    ds = heldout_dataset(frames, cfg, holdout_id, prior=prior)
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
                # the validity head's keys only with the head: settings saved before them (mask, channel) stay the same
                "model": {k: v for k, v in dataclasses.asdict(cfg.model).items() if head_on or k != "validity"},
                "train": {
                    k: v for k, v in dataclasses.asdict(cfg.train).items() if head_on or k != "validity_head_steps"
                },
                **({"prior": prior_name, "prior_sum": float(np.float64(prior).sum())} if prior_name else {}),
            },
            default=str,
        )
    )
    settings_path, pipe_dir = out_dir / "settings.json", out_dir / "pipeline"
    same = settings_path.is_file() and json.loads(settings_path.read_text()) == settings
    summary: dict = {"steps": int(steps), "residual_scale": ds.residual_scale, "reused": False}
    if head_on:
        summary.update(validity_head_steps=int(cfg.train.validity_head_steps), validity_head_fitted=False)
    has_head = (pipe_dir / HEAD_FOLDER / ValidityHead.config_name).is_file()
    if same and (pipe_dir / "model_index.json").is_file() and (has_head or not head_on):
        summary["reused"] = True
        return Sim2RealPipeline.from_pretrained(pipe_dir).to(device()), summary
    atomic_write_json(settings_path, settings)
    head = None
    if head_on:  # fit after the denoiser (a finished one resumed: not retrained), saved with its pipeline

        def head():
            summary["validity_head_fitted"] = True
            return heldout_validity_head(frames, cfg, holdout_id, device(), progress)

    summary.update(
        train_denoiser(
            cfg, ds, out_dir, resume=same, overwrite=not same, progress=progress, prior=prior_name, validity_head=head
        )
    )
    return Sim2RealPipeline.from_pretrained(pipe_dir).to(device()), summary


def heldout_validity_head(frames: RealFrames, cfg: Config, holdout_id: int | None, device="cpu", progress=False):
    """The few-shot Stage-I's validity head (`model.validity: head`): `holes.fit_validity_head_on_frames` on the
    frames' CAD and real depth at native resolution, weighted by the training pixels (the object pixels but
    `holdout_id`'s; None: every object pixel), `data.size`-px crops, `train.validity_head_steps` steps, seed
    `seed`. Returns the head on the CPU in eval mode."""
    from sim2real_kit import holes

    weight = frames.object_mask() if holdout_id is None else frames.object_mask() & ~frames.object_mask(holdout_id)
    return holes.fit_validity_head_on_frames(
        frames.cad, frames.real, weight, crop=int(cfg.data.size), steps=int(cfg.train.validity_head_steps),
        seed=int(cfg.seed), device=device, progress=progress,
    )  # fmt: skip


def simulate_tiles(
    pipe,
    frames: RealFrames,
    region: np.ndarray,
    seed: int,
    steps: int | None = None,
    eta: float = 0.0,
    overlap: int | None = None,
    blend: str = "sample",
    prior: np.ndarray | None = None,
    return_validity: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Full-resolution simulated depth [F, H, W] of the real frames' CAD (0 outside the tiles): `tiling.simulate_tiled`
    on tiles covering `region` [F, H, W], noise from `seed` (blend "sample": the tiles of a frame are one sample;
    "after": independent tiles blended afterwards; overlap 0: the plain grid; "full": no tiles, one window per
    frame around `region` in one pass, `tiling.simulate_full`). `prior` [F, H, W] metres: the physics prior of a
    pipeline that has one. return_validity: (depth, P(valid) [F, H, W]) of a `data.holes: model` pipeline (with a
    validity head: the head's P(valid) on the tiles, blended; its holes are drawn from one field per frame, shared
    by the frame's tiles)."""
    generator = torch.Generator().manual_seed(int(seed))
    if blend == "full":
        return simulate_full(
            pipe, frames.cad, region, generator, steps, eta, prior=prior, return_validity=return_validity
        )
    return simulate_tiled(
        pipe, frames.cad, region, generator, steps, eta, overlap, blend, prior=prior, return_validity=return_validity
    )
