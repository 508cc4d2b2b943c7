"""The flow over a run folder (DESIGN §1, §3b): data -> Stage-I -> discriminator flags -> Stage-II
-> ... Stage-N. Each function reads what the previous one wrote into `run_dir`, writes its own
artifacts beside its config, and resumes where it stopped. The CLI and the notebooks call these.

    runs/<name>/config.yaml, provenance.json
    runs/<name>/data/                      procedural dataset (when data.root == "generate")
    runs/<name>/stage1/checkpoints/ pipeline/ losses.csv samples/<split>/<scene>/<frame>_{gt,scan,sim1}.png
    runs/<name>/disc/model.safetensors flags/<split>/flags.npz metrics.json      (flags of Stage-I output)
    runs/<name>/stage2/...  samples/<split>/<scene>/<frame>_{gt,scan,sim1,sim2}.png
    runs/<name>/disc2/ ...                 (flags of Stage-II output, for Stage-III)
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sim2real_kit.camera import Camera
from sim2real_kit.config import Config, load_config, save_run_config
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.depth import read_depth_png, write_depth_png
from sim2real_kit.errors import ConfigError, LayoutError, MissingArtifactError, Sim2RealError
from sim2real_kit.io import atomic_write_json

SAMPLES_CAMERA = "camera.json"


# ---------------------------------------------------------------------- run folder and data
def run_config(run_dir: str | Path, preset: str = "tiny", config_file=None, overrides=(), save: bool = True) -> Config:
    """The run's config: `run_dir/config.yaml` when it exists (later steps), else the preset
    (+ file); `overrides` apply on top either way and the result is saved back."""
    run_dir = Path(run_dir)
    saved = run_dir / "config.yaml"
    if saved.is_file():
        cfg = Config.from_yaml(saved)
        if config_file:
            raise ConfigError(f"{saved} exists; a --config file applies only to a new run folder")
        cfg.override(list(overrides or []))
    else:
        cfg = load_config(preset, config_file, overrides)
    if save:
        save_run_config(run_dir, cfg, dataset_root=None, command=sys.argv)
    return cfg


def dataset_root(run_dir: str | Path, cfg: Config) -> Path:
    """Where the run's dataset is: the user's root, or `run_dir/data` for the procedural world."""
    return Path(run_dir) / "data" if cfg.data.root == "generate" else Path(cfg.data.root).expanduser()


def prepare_data(run_dir: str | Path, cfg: Config, progress: bool = True) -> DepthLayout:
    """Open the run's dataset; generate the procedural one first when `data.root == "generate"`
    (resumable: finished scenes are kept)."""
    root = dataset_root(run_dir, cfg)
    if cfg.data.root == "generate" and _complete_layout(root):
        # The run's dataset is made once: later notebooks (or ablation variants sharing it through a
        # link) with other data.synth_* values reuse it rather than refuse it. A new dataset = a new run.
        layout = DepthLayout(root)
        d = cfg.data
        if layout.meta.get("frames_per_scene") not in (None, d.synth_frames) and progress:
            print(f"note: reusing the run's dataset {root} ({layout.meta.get('frames_per_scene')} frames per scene)")
        return layout
    if cfg.data.root == "generate":
        from sim2real_kit.data.synth import synthesize

        d = cfg.data
        return synthesize(
            root, scenes=d.synth_scenes, frames=d.synth_frames, seed=cfg.seed, width=d.synth_width,
            height=d.synth_height, val_fraction=d.val_fraction, progress=progress, workers=d.synth_workers,
        )  # fmt: skip
    if not root.is_dir():
        raise MissingArtifactError(f"data.root {root} does not exist (set data.root=/path/to/dataset)")
    return DepthLayout(root)


def _complete_layout(root: Path) -> bool:
    """A generated dataset whose split lists exist and whose every listed scene is finished."""
    lists = [root / "lasa_depth" / f"{split}.lst" for split in ("train", "val")]
    if not all(p.is_file() for p in lists):
        return False
    scenes = {line.split("/")[0] for p in lists for line in p.read_text().split()}
    return bool(scenes) and all((root / "lasa_depth" / s / ".done").is_file() for s in scenes)


def stage_dir(run_dir, stage: int) -> Path:
    return Path(run_dir) / f"stage{stage}"


def disc_dir(run_dir, stage: int) -> Path:
    """Discriminator folder judging stage `stage`'s output: disc/ for Stage-I, disc2/ for Stage-II ..."""
    return Path(run_dir) / ("disc" if stage == 1 else f"disc{stage}")


def samples_dir(run_dir, stage: int, split: str) -> Path:
    return stage_dir(run_dir, stage) / "samples" / split


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------- model construction
def build_stage(cfg: Config, cond_maps: int = 1):
    """(codec, denoiser, ddpm scheduler) of a stage from the config."""
    from sim2real_kit.models.codec import build_codec
    from sim2real_kit.models.denoiser import ControlledDenoiser, make_scheduler

    codec = build_codec(cfg)
    denoiser = ControlledDenoiser.from_config(cfg, cond_maps=cond_maps)
    return codec, denoiser, make_scheduler(cfg, "ddpm")


class _StageModel(torch.nn.Module):
    """Denoiser + frozen codec as one module, so the Trainer saves/moves them together."""

    def __init__(self, codec, denoiser):
        super().__init__()
        self.codec, self.denoiser = codec, denoiser
        for p in codec.parameters():
            p.requires_grad_(False)

    def forward(self, noisy, timesteps, condition):
        return self.denoiser(noisy, timesteps, condition)


def _loss_fn(scheduler, use_prev: bool, reweight: bool):
    from sim2real_kit.models.denoiser import diffusion_loss
    from sim2real_kit.training import unwrap_model

    def loss_fn(model, batch, generator):
        inner = unwrap_model(model)
        conds = [batch["cad_n"], batch["prev_n"]] if use_prev else [batch["cad_n"]]
        weight = batch["mask"]
        if reweight and "flag_weight" in batch:
            # release behaviour: weights only when some sample of the batch is flagged (no host sync)
            weight = torch.where(batch["has_flag"].any(), batch["flag_weight"] * weight, weight)
        loss, _ = diffusion_loss(model, inner.codec, scheduler, batch["target"], conds, weight, generator)
        return loss

    return loss_fn


def _collate(items):
    return torch.utils.data.default_collate(items)


# ---------------------------------------------------------------------- Stage-I
def train_stage1(
    run_dir, preset: str = "tiny", config_file=None, overrides=(), progress: bool = True, val_frames: int | None = None
) -> dict:
    """Train Stage-I (paper Sec. 3.2) into `run_dir/stage1/`, resuming a stopped run, then save
    the 1-stage pipeline to `run_dir/stage1/pipeline/`. Returns the trainer summary."""
    from sim2real_kit.data.dataset import PairedDepthDataset
    from sim2real_kit.training import Trainer

    cfg = run_config(run_dir, preset, config_file, overrides)
    torch.manual_seed(cfg.seed)
    layout = prepare_data(run_dir, cfg, progress=progress)
    resolve_target_scale(cfg, layout)
    save_run_config(run_dir, cfg, dataset_root=layout.root, command=sys.argv)
    cfg.to_yaml(stage_dir(run_dir, 1) / "config.yaml")  # what this stage was trained with
    # only the maps the loss reads: a third less work per item and half the worker -> main transfer
    train_ds = PairedDepthDataset.from_config(cfg, layout, "train", train=True, keys=("cad_n", "target", "mask"))
    codec, denoiser, scheduler = build_stage(cfg, cond_maps=1)
    model = _StageModel(codec, denoiser)
    val_fn = _val_fn(cfg, layout, codec, [], val_frames or cfg.train.val_frames)
    trainer = Trainer(
        model, _loss_fn(scheduler, use_prev=False, reweight=False), train_ds, cfg.train, stage_dir(run_dir, 1),
        seed=cfg.seed, collate_fn=_collate, val_fn=val_fn, best_metric="w1_mm", best_mode="min", resume=True,
        num_workers=cfg.data.num_workers, progress=progress,
    )  # fmt: skip
    summary = trainer.fit()
    _save_stage_pipeline(cfg, trainer, codec, previous=[], out=stage_dir(run_dir, 1) / "pipeline")
    return {**summary, "residual_scale": cfg.model.residual_scale}


def target_std(cfg: Config, layout: DepthLayout, max_frames: int = 256) -> float:
    """Std of the unscaled Stage-I target (real_n - cad_n) over the pixels where CAD and real are both
    valid and within `data.max_diff_m` (the same pixels in either `data.holes` mode: a hole is not a
    residual and must not set its scale), on up to `max_frames` train frames spread evenly over the
    split (eval crop, so deterministic)."""
    from sim2real_kit.data.dataset import PairedDepthDataset

    ds = PairedDepthDataset.from_config(cfg, layout, "train", train=False, keys=("target", "valid"))
    ds.residual_scale = 1.0
    picks = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), max_frames)).round().astype(int))
    total = count = total_sq = 0.0
    for i in picks:
        item = ds[int(i)]
        t = item["target"][item["valid"] > 0].double()
        total, total_sq, count = total + float(t.sum()), total_sq + float((t * t).sum()), count + t.numel()
    if count == 0:
        raise LayoutError(
            "no pixel with valid CAD and real depth in the sampled train frames: cannot set the target scale",
            layout.root,
        )
    mean = total / count
    return math.sqrt(max(total_sq / count - mean * mean, 0.0))


def resolve_target_scale(cfg: Config, layout: DepthLayout) -> float | None:
    """Scale the Stage-I residual target to the noise of the schedule (kit extension).

    The release multiplies the normalised residual by 0.5, which suits SD's latent space. In pixel
    space the residual of a real sensor is tiny (std ~0.008 at scale 0.5 on the procedural world): far
    below the noise even at t = 1 (sqrt(1 - alpha_bar) = 0.04), so x_t carries no information about x0
    and the denoiser degenerates into a regressor of E[residual | CAD] (docs/results_gpu.md). With
    `model.target_std > 0` the scale becomes target_std / std(real_n - cad_n) over the train split,
    written into `cfg.model.residual_scale` (saved with the run and the pipeline; decoding divides by
    the same value). Returns the new scale, or None when off or the target is not a residual."""
    m = cfg.model
    if m.target_std <= 0 or m.target != "residual":
        return None
    std = target_std(cfg, layout)
    if not std > 1e-6:
        raise ConfigError(
            f"model.target_std: real and CAD depth agree on the train split of {layout.root} (std {std:g})"
        )
    m.residual_scale = float(m.target_std / std)
    return m.residual_scale


def _save_stage_pipeline(cfg, trainer, codec, previous: list, out: Path) -> None:
    from sim2real_kit.pipeline import Sim2RealPipeline

    with trainer.ema_weights():
        denoiser = trainer.unwrapped_model.denoiser
        pipe = Sim2RealPipeline.build(cfg, [*previous, denoiser], codec=codec)
        pipe.save_pretrained(out)


def _val_fn(cfg, layout: DepthLayout, codec, previous: list, num_frames: int):
    """Validation: sample `num_frames` val frames with the current weights, W1 of residuals (mm)."""
    from sim2real_kit.data.dataset import PairedDepthDataset
    from sim2real_kit.metrics import residual_w1
    from sim2real_kit.pipeline import Sim2RealPipeline

    try:
        val_ds = PairedDepthDataset.from_config(cfg, layout, "val", train=False, max_frames=num_frames)
    except Sim2RealError:
        return None
    batch = _collate([val_ds[i] for i in range(len(val_ds))])

    def val_fn(model):
        from sim2real_kit.training import unwrap_model

        inner = unwrap_model(model)
        pipe = Sim2RealPipeline.build(cfg, [*previous, inner.denoiser], codec=codec)
        gen = torch.Generator().manual_seed(cfg.seed)
        out = pipe(batch["cad"][:, 0].to(torch.float32), generator=gen)  # Pipeline.build: cfg.sampling
        sim = out.depth.cpu().numpy()
        cad, real = batch["cad"][:, 0].numpy(), batch["real"][:, 0].numpy()
        return {"w1_mm": 1000 * residual_w1(cad, sim, real), "w1_cad_mm": 1000 * residual_w1(cad, cad, real)}

    return val_fn


def load_pipeline(run_dir, stage: int, cfg: Config | None = None):
    """The saved pipeline of stages 1..`stage` with the run's `sampling` section applied (steps, batch,
    eta, precision, CUDA graph, compile): the run's config says how to sample, not the values frozen
    into the pipeline when it was trained."""
    from sim2real_kit.pipeline import Sim2RealPipeline

    cfg = cfg if cfg is not None else run_config(run_dir, save=False)
    path = stage_dir(run_dir, stage) / "pipeline"
    if not (path / "model_index.json").is_file():
        cmd = (
            f"sim2real train --stage 1 --out {run_dir}"
            if stage == 1
            else f"sim2real train --stage {stage} --run {run_dir}"
        )
        raise MissingArtifactError(f"no Stage-{stage} pipeline at {path}; make it with: {cmd}")
    s = cfg.sampling
    return (
        Sim2RealPipeline.from_pretrained(path)
        .set_sampling(s.precision, s.cuda_graph, s.compile, s.steps, s.batch_size, s.eta)
        .to(_device())
    )


# ---------------------------------------------------------------------- sampling
def sample_split(
    run_dir, split: str = "val", stage: int = 1, overrides=(), max_frames: int | None = None, progress: bool = True
) -> Path:
    """Sample every frame of `split` with stages 1..`stage` into
    `run_dir/stage{stage}/samples/<split>/<scene>/<frame>_{gt,scan,sim1..simK}.png` (model size, mm),
    beside `camera.json` (the eval crop's camera). Never writes into the user's dataset."""
    from tqdm.auto import tqdm

    from sim2real_kit.data.dataset import PairedDepthDataset

    cfg = run_config(run_dir, overrides=overrides)
    layout = prepare_data(run_dir, cfg, progress=False)
    pipe = load_pipeline(run_dir, stage, cfg)
    ds = PairedDepthDataset.from_config(cfg, layout, split, train=False, max_frames=max_frames)
    out_dir = samples_dir(run_dir, stage, split)
    cam = Camera(*[float(v) for v in ds[0]["camera"]], cfg.data.size, cfg.data.size)
    cam.save_json(out_dir / SAMPLES_CAMERA)
    gen = torch.Generator().manual_seed(cfg.seed + 1000 * stage)
    bs = cfg.sampling.batch_size
    done = 0
    bar = tqdm(total=len(ds), desc=f"sample stage{stage} {split}", disable=not progress)
    for start in range(0, len(ds), bs):
        items = [ds[i] for i in range(start, min(start + bs, len(ds)))]
        batch = _collate(items)
        out = pipe(batch["cad"][:, 0], generator=gen, return_all_stages=True)  # the run's sampling settings
        stages_out = [s.cpu().numpy() for s in out.stages]
        for j, item in enumerate(items):
            ref = FrameRef(item["scene"], item["frame"])
            base = out_dir / ref.scene / ref.frame
            write_depth_png(f"{base}_gt.png", item["cad"][0].numpy())
            write_depth_png(f"{base}_scan.png", item["real"][0].numpy())
            for k, s in enumerate(stages_out, 1):
                write_depth_png(f"{base}_sim{k}.png", s[j])
        done += len(items)
        bar.update(len(items))
    bar.close()
    atomic_write_json(out_dir / "samples.json", {"split": split, "stage": stage, "frames": done, "size": cfg.data.size})
    return out_dir


@dataclass
class SampleSet:
    """The samples of one split and stage: arrays [F, S, S] metres, refs, camera, poses [F, 4, 4]."""

    refs: list[FrameRef]
    cad: np.ndarray
    real: np.ndarray
    sims: dict[int, np.ndarray]
    camera: Camera
    poses: np.ndarray


def load_samples(run_dir, stage: int, split: str, layout: DepthLayout | None = None) -> SampleSet:
    """Read `sample_split`'s output back (errors name the command that makes it)."""
    d = samples_dir(run_dir, stage, split)
    meta = d / "samples.json"
    if not meta.is_file():
        raise MissingArtifactError(
            f"no Stage-{stage} samples of split {split!r} in {d}; make them with: "
            f"sim2real sample --run {run_dir} --split {split} --stages {stage}"
        )
    if layout is None:
        cfg = run_config(run_dir, save=False)
        layout = DepthLayout(dataset_root(run_dir, cfg))
    refs = layout.frames(split)
    refs = [r for r in refs if (d / r.scene / f"{r.frame}_gt.png").is_file()]
    cad = np.stack([read_depth_png(d / r.scene / f"{r.frame}_gt.png") for r in refs])
    real = np.stack([read_depth_png(d / r.scene / f"{r.frame}_scan.png") for r in refs])
    sims = {
        k: np.stack([read_depth_png(d / r.scene / f"{r.frame}_sim{k}.png") for r in refs]) for k in range(1, stage + 1)
    }
    poses = np.stack([layout.read_pose(r) for r in refs])
    return SampleSet(refs, cad, real, sims, Camera.load_json(d / SAMPLES_CAMERA), poses)


# ---------------------------------------------------------------------- discriminator and flags
def patch_pixel_mask(samples: SampleSet, cfg: Config) -> torch.Tensor | None:
    """The pixels [F, S, S] bool every patch (real or generated) is made of, or None for all valid ones.

    `data.holes = mask`: CAD and real both valid and |real - CAD| < max_diff, the pixels the Stage-II loss
    weighs and so the only ones a later stage can change. Real holes and flying pixels outside them would be
    flagged for a difference the generator is never trained to make. `generate`: None (holes are learned)."""
    from sim2real_kit.depth import valid_mask

    if cfg.data.holes != "mask":
        return None
    return torch.from_numpy(np.asarray(valid_mask(samples.cad, samples.real, cfg.data.max_diff_m)))


def patch_sets(samples: SampleSet, stage: int, cfg: Config, seed: int = 0):
    """(real PatchPoints, generated PatchPoints, boxes) of a sample set, for the discriminator; both on
    the pixels of `patch_pixel_mask`."""
    from sim2real_kit.patches import extract_patch_points, patch_grid

    size = samples.cad.shape[-1]
    boxes = patch_grid(size, size, cfg.disc.patch_size, cfg.disc.stride)
    gen = torch.Generator().manual_seed(seed)
    cad = torch.from_numpy(samples.cad)
    kw = dict(camera=samples.camera, boxes=boxes, num_points=cfg.disc.num_points, min_valid=cfg.disc.min_valid,
              valid_mask=patch_pixel_mask(samples, cfg))  # fmt: skip
    real = extract_patch_points(torch.from_numpy(samples.real), cad, generator=gen, **kw)
    fake = extract_patch_points(torch.from_numpy(samples.sims[stage]), cad, generator=gen, **kw)
    return real, fake, boxes


def train_and_flag(
    run_dir, threshold: float | None = None, binary: bool | None = None, stage: int = 1, overrides=(),
    progress: bool = True,
) -> dict:  # fmt: skip
    """Train the 3D patch discriminator (paper Sec. 3.3) on real vs stage-`stage` patches of the
    train split, score every patch of train and val, write flags; returns the metrics."""
    from sim2real_kit.models.discriminator import (
        PatchSet,
        discriminator_accuracy,
        flags_from_scores,
        score_patches,
        train_discriminator,
    )
    from sim2real_kit.patches import check_threshold, save_flag_file

    ov = list(overrides or [])
    if threshold is not None:
        ov.append(f"disc.threshold={check_threshold(threshold)}")
    if binary is not None:
        ov.append(f"disc.binary={'true' if binary else 'false'}")
    cfg = run_config(run_dir, overrides=ov)
    layout = DepthLayout(dataset_root(run_dir, cfg))
    out = disc_dir(run_dir, stage)
    train = load_samples(run_dir, stage, "train", layout)
    val = load_samples(run_dir, stage, "val", layout)
    real_tr, fake_tr, boxes = patch_sets(train, stage, cfg, seed=cfg.seed)
    scenes = sorted({r.scene for r in train.refs})
    model, history = train_discriminator(
        PatchSet.from_patch_points(real_tr),
        PatchSet.from_patch_points(fake_tr),
        cfg.disc,
        seed=cfg.seed,
        progress=progress,
        groups=torch.tensor([scenes.index(r.scene) for r in train.refs]),
    )  # validation on held-out scenes (disc.val_fraction of them): no frame or scene on both sides
    model.save(out / "model.safetensors")
    metrics = {"train_history": {k: v for k, v in history.items() if not isinstance(v, list)}}
    for split, samples in (("train", train), ("val", val)):
        real_pp, fake_pp, _ = patch_sets(samples, stage, cfg, seed=cfg.seed + 7)
        s_fake = score_patches(model, fake_pp)
        s_real = score_patches(model, real_pp)
        flags = flags_from_scores(s_fake, fake_pp.valid, cfg.disc.threshold, cfg.disc.binary)
        save_flag_file(
            out / "flags" / split / "flags.npz", scores=s_fake, boxes=boxes, frame_ids=[str(r) for r in samples.refs],
            frame_size=samples.cad.shape[-1], threshold=cfg.disc.threshold, binary=cfg.disc.binary, split=split,
            valid=fake_pp.valid,
        )  # fmt: skip
        np.savez_compressed(
            out / "flags" / split / "scores_real.npz", scores=s_real.numpy(), valid=real_pp.valid.numpy()
        )
        acc_fake = discriminator_accuracy(s_fake, fake_pp.valid, cfg.disc.threshold)
        acc_real = 1.0 - discriminator_accuracy(s_real, real_pp.valid, cfg.disc.threshold)
        metrics[split] = {
            "acc_generated": acc_fake,  # share of generated patches judged fake (paper: 67.8 % on Stage-I)
            "acc_real": acc_real,  # share of real patches judged real
            "flag_rate": float(flags[fake_pp.valid].float().mean()) if cfg.disc.binary else None,
            "skipped_patches": int((~fake_pp.valid).sum()),
        }
    metrics.update(threshold=cfg.disc.threshold, binary=cfg.disc.binary, cad_guidance=cfg.disc.cad_guidance)
    metrics["val_accuracy"] = history.get("val_accuracy")
    metrics["val_auc"] = history.get("val_auc")
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


# ---------------------------------------------------------------------- Stage-II and beyond
class StageNDataset(torch.utils.data.Dataset):
    """Stage-k training data (paper Sec. 3.4): the eval-style crop of the train split (as the
    release), the previous stage's saved output as condition, and the flag weight map
    (λ on flagged patches, ω elsewhere; continuous scores for "w/o bin")."""

    def __init__(self, cfg: Config, layout: DepthLayout, run_dir, stage: int):
        from sim2real_kit.data.dataset import PairedDepthDataset
        from sim2real_kit.patches import load_flag_file

        self.cfg, self.stage = cfg, stage
        self.base = PairedDepthDataset.from_config(cfg, layout, "train", train=False)
        self.prev_dir = samples_dir(run_dir, stage - 1, "train")
        prev = load_samples(run_dir, stage - 1, "train", layout)
        flag_path = disc_dir(run_dir, stage - 1) / "flags" / "train" / "flags.npz"
        if not flag_path.is_file():
            raise MissingArtifactError(
                f"no flags of Stage-{stage - 1} output at {flag_path}; make them with: "
                f"sim2real flag --run {run_dir} --stage {stage - 1}"
            )
        self.flags = load_flag_file(flag_path, split="train", frame_size=cfg.data.size)
        keep = {str(r) for r in prev.refs}
        missing = [str(r) for r in self.base.refs if str(r) not in keep]
        if missing:
            raise MissingArtifactError(
                f"{len(missing)} train frames have no Stage-{stage - 1} sample (e.g. {missing[0]}); re-run "
                f"sim2real sample --run {run_dir} --split train --stages {stage - 1}"
            )
        self.prev = {str(r): prev.sims[stage - 1][i] for i, r in enumerate(prev.refs)}

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        from sim2real_kit.pipeline import previous_stage_map

        item = self.base[index]
        key = f"{item['scene']}/{item['frame']}"
        prev_m = torch.from_numpy(self.prev[key])[None]  # [1, S, S]
        item["prev_n"] = previous_stage_map(
            prev_m[None], item["cad_n"][None], self.cfg.stage2.condition, self.cfg.model.residual_scale
        )[0]
        s2 = self.cfg.stage2
        flags = self.flags.flags_for([key])  # [1, P]
        item["flag_weight"] = self.flags.weight_map(
            [key], flagged_weight=s2.flagged_weight, other_weight=s2.other_weight
        )[0]  # [1, S, S]
        item["has_flag"] = torch.tensor(bool((flags > 0).any()))
        return item


def train_stage_n(run_dir, stage: int = 2, overrides=(), progress: bool = True) -> dict:
    """Train stage `stage` >= 2 from the flags of stage-1's output and save the chain's pipeline."""
    from sim2real_kit.training import Trainer

    if stage < 2:
        raise ConfigError(f"train_stage_n trains stage >= 2, got {stage}")
    cfg = run_config(run_dir, overrides=overrides)
    s2 = cfg.stage2
    if s2.flagged_weight < 0 or s2.other_weight < 0:
        raise ConfigError(f"stage2 weights must be >= 0, got λ={s2.flagged_weight}, ω={s2.other_weight}")
    torch.manual_seed(cfg.seed + stage)
    layout = DepthLayout(dataset_root(run_dir, cfg))
    ds = StageNDataset(cfg, layout, run_dir, stage)
    cfg.to_yaml(stage_dir(run_dir, stage) / "config.yaml")  # what this stage was trained with
    prev_pipe = load_pipeline(run_dir, stage - 1, cfg).to("cpu")
    if s2.init == "stage1":
        denoiser = prev_pipe.denoisers[-1].expand_condition(2)
    else:
        _, denoiser, _ = build_stage(cfg, cond_maps=2)
    from sim2real_kit.models.denoiser import make_scheduler

    codec = prev_pipe.codec
    model = _StageModel(codec, denoiser)
    trainer = Trainer(
        model, _loss_fn(make_scheduler(cfg, "ddpm"), use_prev=True, reweight=s2.reweight), ds, cfg.train,
        stage_dir(run_dir, stage), seed=cfg.seed + stage, collate_fn=_collate, resume=True,
        num_workers=cfg.data.num_workers, progress=progress,
    )  # fmt: skip
    summary = trainer.fit()
    _save_stage_pipeline(cfg, trainer, codec, list(prev_pipe.denoisers), stage_dir(run_dir, stage) / "pipeline")
    return summary


# ---------------------------------------------------------------------- controls
CONTROLS_DIR = "controls"


def control_run(run_dir, name: str, overrides=(), share: tuple[str, ...] = ("stage1",)) -> Path:
    """A control of a run: `run_dir/controls/<name>/`, a run folder of its own with the run's config plus
    `overrides`, the run's dataset linked (never copied or re-made) and copies of the `share`d step folders
    (e.g. stage1/, disc/), so the control differs from the run only where the overrides say.
    Made once; a second call reuses it (and its finished steps)."""
    import shutil

    run_dir = Path(run_dir)
    out = run_dir / CONTROLS_DIR / name
    cfg = run_config(run_dir, save=False)
    if not (out / "config.yaml").is_file():
        out.mkdir(parents=True, exist_ok=True)
        for step in share:
            src = run_dir / step
            if not src.is_dir():
                raise MissingArtifactError(f"control {name!r} shares {step}/ of {run_dir}, which does not exist yet")
            shutil.copytree(src, out / step, dirs_exist_ok=True)
        if cfg.data.root == "generate" and not (out / "data").exists():
            os.symlink(os.path.relpath((run_dir / "data").resolve(), out.resolve()), out / "data")
        save_run_config(out, cfg, dataset_root=dataset_root(run_dir, cfg), command=sys.argv)
    run_config(out, overrides=overrides)  # applied and saved
    return out


def stage1_control(run_dir, extra_steps: int | None = None, progress: bool = True) -> Path:
    """Stage-I trained on for as many steps as Stage-II trained (default `train.steps`), from Stage-I's last
    checkpoint, same data and seed: the control that tells the gain of Stage-II's re-weighting and second
    condition from the gain of more steps. Runs in `run_dir/controls/stage1_long/`; samples its val split."""
    import yaml

    trained = yaml.safe_load((stage_dir(run_dir, 1) / "config.yaml").read_text())["train"]["steps"]
    extra = int(run_config(run_dir, save=False).train.steps if extra_steps is None else extra_steps)
    out = control_run(run_dir, "stage1_long", [f"train.steps={int(trained) + extra}"], share=("stage1",))
    if not (samples_dir(out, 1, "val") / "samples.json").is_file() or _trained_steps(out, 1) != trained + extra:
        train_stage1(out, progress=progress)
        sample_split(out, "val", stage=1, progress=progress)
    return out


def _trained_steps(run_dir, stage: int) -> int | None:
    import yaml

    path = stage_dir(run_dir, stage) / "config.yaml"
    return yaml.safe_load(path.read_text())["train"]["steps"] if path.is_file() else None


# ---------------------------------------------------------------------- CAD-only simulation
def _load_any_pipeline(pipeline: Path):
    """A saved pipeline folder as it is, or a run folder's last stage with the run's sampling settings."""
    from sim2real_kit.pipeline import Sim2RealPipeline

    if (pipeline / "model_index.json").is_file():
        return Sim2RealPipeline.from_pretrained(pipeline).to(_device())
    last = max((int(p.name[5:]) for p in pipeline.glob("stage[0-9]*") if (p / "pipeline").is_dir()), default=0)
    if not last:
        raise MissingArtifactError(f"{pipeline} holds no saved pipeline (stageN/pipeline/model_index.json)")
    if (pipeline / "config.yaml").is_file():
        return load_pipeline(pipeline, last)
    return Sim2RealPipeline.from_pretrained(pipeline / f"stage{last}" / "pipeline").to(_device())


def simulate_frames(pipe, cad_frames: list[np.ndarray], camera: Camera, refs: list[FrameRef], poses, out_dir,
                    stages: int | None = None, seed: int = 0, fuse: bool = True, progress: bool = True) -> DepthLayout:  # fmt: skip
    """Simulate captured depth for CAD frames [H, W] metres (one camera) and write it as a layout at the
    model size: `_gt` = the CAD crop, `_scan` = the simulated depth, poses as given (camera-to-world);
    plus `points/<scene>/<frame>.ply` (back-projected, world frame) and, with `fuse`, a TSDF mesh per
    scene `meshes/<scene>/simulated.ply` — training data for 3D networks elsewhere."""
    from tqdm.auto import tqdm

    from sim2real_kit.fusion import fuse_frames, save_mesh, save_point_cloud

    out_dir = Path(out_dir)
    gen = torch.Generator().manual_seed(seed)
    sims, cads, model_cam = [], [], None
    for cad in tqdm(cad_frames, desc="simulate", disable=not progress):
        out = pipe(cad, camera=camera, stages=stages, generator=gen)
        sims.append(np.asarray(out.depth[0], dtype=np.float32))
        cads.append(np.asarray(out.cad[0], dtype=np.float32))
        model_cam = out.camera
    layout = DepthLayout.create(out_dir, model_cam, meta={"source": "simulated", "stages": stages or pipe.num_stages})
    for ref, cad, sim, pose in zip(refs, cads, sims, poses):
        layout.write_frame(ref, cad, sim, pose)
        save_point_cloud(model_cam.backproject(sim, pose)[sim > 0], out_dir / "points" / ref.scene / f"{ref.frame}.ply")
    # every 5th frame in val.lst (at least one), the rest in train.lst: the layout validates as is
    val = set(refs[4::5] or refs[-1:])
    layout.write_split("train", [r for r in refs if r not in val] or refs)
    layout.write_split("val", [r for r in refs if r in val])
    if fuse:
        for scene in sorted({r.scene for r in refs}):
            idx = [i for i, r in enumerate(refs) if r.scene == scene]
            mesh = fuse_frames([sims[i] for i in idx], [poses[i] for i in idx], model_cam, progress=False)
            save_mesh(mesh, layout.mesh_path(scene, "simulated"))
    atomic_write_json(
        out_dir / "simulate.json", {"frames": len(refs), "stages": stages or pipe.num_stages, "fused": fuse}
    )
    return layout


def simulate_folder(pipeline: str | Path, cad_dir: str | Path, out_dir: str | Path, stages: int | None = None,
                    progress: bool = True) -> DepthLayout:  # fmt: skip
    """Simulate every CAD depth PNG under `cad_dir` (uint16 mm): a `lasa_depth` layout root (its poses
    and intrinsics are used, scenes fused), or any folder of depth PNGs (`intrinsics.json` beside them,
    else the LASA camera; identity poses, no fusion). See `simulate_frames` for the output."""
    from sim2real_kit.data.layout import read_pose

    pipe = _load_any_pipeline(Path(pipeline))
    cad_dir = Path(cad_dir)
    if (cad_dir / "lasa_depth").is_dir():  # a layout: simulate its CAD frames with their poses
        layout = DepthLayout(cad_dir)
        refs = sorted(
            {r for split in ("train", "val") if layout.list_path(split).is_file() for r in layout.frames(split)}
        )
        cads = [layout.read_depth(r, "gt") for r in refs]
        poses = [layout.read_pose(r) for r in refs]
        return simulate_frames(pipe, cads, layout.camera, refs, poses, out_dir, stages, progress=progress)
    files = sorted(p for p in cad_dir.rglob("*.png") if not p.name.endswith(("_scan.png", "_rgb.png", "_inst.png")))
    if not files:
        raise MissingArtifactError(f"no CAD depth PNGs under {cad_dir}")
    intr = cad_dir / "intrinsics.json"
    cads = [read_depth_png(f) for f in files]
    camera = Camera.load_json(intr) if intr.is_file() else Camera.lasa()
    for f, cad in zip(files, cads):
        if cad.shape != (camera.height, camera.width):
            raise MissingArtifactError(
                f"{f}: {cad.shape[1]}x{cad.shape[0]} depth but the camera ({intr if intr.is_file() else 'LASA default'}) "
                f"is {camera.width}x{camera.height}; put the right intrinsics.json beside the PNGs"
            )
    refs = [
        FrameRef("cad", str(f.relative_to(cad_dir).with_suffix("")).replace("/", "_").removesuffix("_gt"))
        for f in files
    ]
    poses = []
    for f in files:
        pose_file = f.with_name(f.name.removesuffix(".png").removesuffix("_gt") + ".txt")
        poses.append(read_pose(pose_file) if pose_file.is_file() else np.eye(4))
    known = all(f.with_name(f.name.removesuffix(".png").removesuffix("_gt") + ".txt").is_file() for f in files)
    return simulate_frames(pipe, cads, camera, refs, poses, out_dir, stages, fuse=known, progress=progress)


def simulate_meshes(pipeline: str | Path, mesh: str | Path, trajectory, out_dir: str | Path, camera: Camera | None = None,
                    stages: int | None = None, progress: bool = True) -> DepthLayout:  # fmt: skip
    """CAD meshes + a camera trajectory -> rendered CAD depth -> simulated depth in a layout, point clouds
    and a fused mesh (`simulate_frames`). `trajectory`: [N, 4, 4] camera-to-world poses, or a text file of
    N x 16 numbers (one row-major 4x4 per line); `camera` defaults to the LASA ARKit camera."""
    from sim2real_kit.data.render import SceneRenderer
    from sim2real_kit.fusion import load_mesh

    if isinstance(trajectory, (str, Path)):
        rows = np.loadtxt(trajectory, dtype=np.float64, ndmin=2)
        if rows.shape[1] != 16:
            raise MissingArtifactError(
                f"{trajectory}: each line must hold one row-major 4x4 pose (16 numbers), got {rows.shape[1]}"
            )
        trajectory = rows.reshape(-1, 4, 4)
    from sim2real_kit.camera import check_pose

    poses = [check_pose(p, f"trajectory pose {i}") for i, p in enumerate(np.asarray(trajectory))]
    camera = camera or Camera.lasa()
    renderer = SceneRenderer({1: load_mesh(mesh)})
    cads = [renderer.render(camera, pose, full=False).depth.astype(np.float32) for pose in poses]
    scene = Path(mesh).stem
    refs = [FrameRef(scene, f"{i:04d}") for i in range(len(poses))]
    return simulate_frames(
        _load_any_pipeline(Path(pipeline)), cads, camera, refs, poses, out_dir, stages, progress=progress
    )


def read_metrics(path) -> dict:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else {}


# ---------------------------------------------------------------------- notebook helpers
# What `quick=True` shrinks (CI): data, resolution, steps. Applied before the user's overrides.
QUICK_OVERRIDES = (
    "data.synth_scenes=6",
    "data.synth_frames=6",
    "data.size=32",
    "model.block_out_channels=[16,32,32]",
    "model.cross_attention_dim=16",
    "model.norm_num_groups=8",
    "train.steps=24",
    "train.batch_size=8",
    "train.ckpt_every=12",
    "train.val_frames=4",
    "sampling.steps=4",
    "sampling.batch_size=32",
    "disc.patch_size=8",
    "disc.stride=8",
    "disc.num_points=64",
    "disc.steps=60",
    "disc.batch_size=32",
    "benchmark.seeds=1",
    "benchmark.num_points=20000",
    "benchmark.downstream_tasks=[classification]",
    "benchmark.downstream_steps=20",
)


def notebook_config(run_dir, preset: str = "tiny", quick: bool = False, seed: int = 0, overrides=()) -> Config:
    """The config a notebook works with: the run folder's (written by notebook 01) or a new one
    from the preset; `quick` CI sizes, the notebook's seed and the user's overrides on top."""
    ov = [*(QUICK_OVERRIDES if quick else ()), f"seed={int(seed)}", *(overrides or ())]
    return run_config(run_dir, preset, overrides=ov)


def write_notebook_metrics(run_dir, name: str, metrics: dict) -> Path:
    """`run_dir/notebooks/<name>.metrics.json` (what the runner's index and the tests read)."""
    path = Path(run_dir) / "notebooks" / f"{name}.metrics.json"
    atomic_write_json(path, metrics)
    return path


def dataset_summary(layout: DepthLayout, max_frames: int = 64) -> dict:
    """Counts and residual statistics of a layout (first `max_frames` val frames), for notebook 01."""
    from sim2real_kit.metrics import depth_edges, hole_rates, residual_w1, residuals

    train, val = layout.frames("train"), layout.frames("val")
    refs = val[:max_frames]
    cad = np.stack([layout.read_depth(r, "gt") for r in refs])
    real = np.stack([layout.read_depth(r, "scan") for r in refs])
    edges = depth_edges(cad, 0.05, 1)
    res = residuals(cad, real, max_abs_m=0.5)
    on_edges = residuals(cad, real, mask=edges, max_abs_m=0.5)
    flat = residuals(cad, real, mask=~edges, max_abs_m=0.5)
    holes = hole_rates(cad, real, edge_mask=edges)
    return {
        "train_frames": len(train),
        "val_frames": len(val),
        "train_scenes": len({r.scene for r in train}),
        "val_scenes": len({r.scene for r in val}),
        "frame_size": [layout.camera.width, layout.camera.height],
        "cad_valid_share": float((cad > 0).mean()),
        "real_valid_share": float((real > 0).mean()),
        "residual_mean_abs_mm": float(1000 * np.abs(res).mean()),
        "residual_mean_abs_edge_mm": float(1000 * np.abs(on_edges).mean()) if on_edges.size else float("nan"),
        "residual_mean_abs_flat_mm": float(1000 * np.abs(flat).mean()) if flat.size else float("nan"),
        "hole_rate": holes["all"],
        "hole_rate_edge": holes["edge"],
        "hole_rate_flat": holes["flat"],
        "w1_cad_vs_real_mm": 1000 * residual_w1(cad, cad, real),
    }


def realism_metrics(samples: SampleSet, stage: int, edge_threshold_m: float = 0.05) -> dict:
    """Depth realism of stage `stage` on a sample set: residual W1 (mm) of generated vs real and of
    clean CAD vs real, the residuals' std and 99th percentile of |residual| (mm; a regressor of the mean
    residual is too smooth), hole rates (overall, at CAD depth edges, on flat areas) of generated and real."""
    from sim2real_kit.metrics import depth_edges, hole_rates, residual_w1, residuals

    sim = samples.sims[stage]
    edges = depth_edges(samples.cad, edge_threshold_m, 1)
    h_sim, h_real = (
        hole_rates(samples.cad, sim, edge_mask=edges),
        hole_rates(samples.cad, samples.real, edge_mask=edges),
    )
    return {
        "frames": len(samples.refs),
        "w1_mm": 1000 * residual_w1(samples.cad, sim, samples.real),
        "w1_cad_mm": 1000 * residual_w1(samples.cad, samples.cad, samples.real),
        **{
            f"residual_{stat}{suffix}_mm": 1000 * float(fn(residuals(samples.cad, depth)))
            for suffix, depth in (("", sim), ("_real", samples.real))
            for stat, fn in (("std", np.std), ("p99", lambda r: np.percentile(np.abs(r), 99)))
        },
        "hole_rate": h_sim["all"],
        "hole_rate_edge": h_sim["edge"],
        "hole_rate_flat": h_sim["flat"],
        "hole_rate_real": h_real["all"],
        "hole_rate_real_edge": h_real["edge"],
        "hole_rate_real_flat": h_real["flat"],
    }


def load_discriminator(run_dir, stage: int = 1):
    from sim2real_kit.models.discriminator import PointNetDiscriminator

    path = disc_dir(run_dir, stage) / "model.safetensors"
    if not path.is_file():
        raise MissingArtifactError(
            f"no discriminator at {path}; make it with: sim2real flag --run {run_dir} --stage {stage}"
        )
    return PointNetDiscriminator.load(path)


def disc_accuracy(run_dir, samples: SampleSet, depth: np.ndarray, cfg: Config, disc_stage: int = 1) -> float:
    """Share of `depth`'s valid patches the frozen stage-`disc_stage` discriminator judges fake
    (the paper's realism metric: 67.8 % on Stage-I output -> 32.5 % on Stage-II); the benchmark's
    `discriminator_share_fake` as a fraction."""
    from sim2real_kit.benchmark import discriminator_share_fake

    return discriminator_share_fake(load_discriminator(run_dir, disc_stage), depth, samples, cfg) / 100


def patch_points_for(samples: SampleSet, frame: int, patch: int, boxes, depths: dict, num_points: int = 256):
    """Camera-frame points (metres) of one patch for each named depth map, plus the CAD points."""
    from sim2real_kit.patches import extract_patch_points

    out = {}
    cad = torch.from_numpy(samples.cad[frame : frame + 1])
    box = boxes[patch : patch + 1]
    for name, depth in depths.items():
        pp = extract_patch_points(
            torch.from_numpy(np.asarray(depth)[frame : frame + 1]), cad, samples.camera, box, num_points, 1,
            generator=torch.Generator().manual_seed(0), normalize="none",
        )  # fmt: skip
        out[name] = pp.points[0, 0].numpy()
        out["CAD"] = pp.cad_points[0, 0].numpy()
    return out


def train_chain(run_dir, num_stages: int = 2, progress: bool = True, final_splits=("val", "train")) -> dict:
    """Stages 2..N (paper Sec. 3.4 and the Stage-III/IV ablation): before each stage k, sample the
    previous stage on both splits and flag its output with a fresh discriminator pass (disc{k-1}/);
    finally sample `final_splits` with the whole chain (val for evaluation, train for the benchmark's
    downstream task). Finished steps are reused."""
    summaries = {}
    for k in range(2, num_stages + 1):
        for split in ("train", "val"):
            if not (samples_dir(run_dir, k - 1, split) / "samples.json").is_file():
                sample_split(run_dir, split, stage=k - 1, progress=progress)
        if not (disc_dir(run_dir, k - 1) / "flags" / "train" / "flags.npz").is_file():
            train_and_flag(run_dir, stage=k - 1, progress=progress)
        summaries[f"stage{k}"] = train_stage_n(run_dir, k, progress=progress)
    for split in final_splits:
        if num_stages > 1 or not (samples_dir(run_dir, num_stages, split) / "samples.json").is_file():
            sample_split(run_dir, split, stage=num_stages, progress=progress)
    return summaries


def sensor_effects(layout: DepthLayout, ref: FrameRef):
    """{'depth': captured depth, 'effects': {component: bool mask}} of a procedural frame, re-made
    from the dataset's recorded generator/sensor parameters; None for datasets of other sources."""
    if layout.meta.get("source") != "procedural":
        return None
    from sim2real_kit.data import synth

    truth = synth.reproduce_frame(layout.root, ref)
    return {"depth": truth.capture.depth, "effects": truth.capture.effects}


def effect_masks(
    layout: DepthLayout, refs: list[FrameRef], size: int, eval_crop: int = 0
) -> dict[str, np.ndarray] | None:
    """Sensor ground-truth effect masks [F, S, S] of frames after the eval transform (procedural only)."""
    from sim2real_kit.data.dataset import crop_resize, eval_box

    if layout.meta.get("source") != "procedural":
        return None
    box = eval_box(layout.camera, eval_crop)
    out: dict[str, list] = {}
    for ref in refs:
        for name, mask in sensor_effects(layout, ref)["effects"].items():
            out.setdefault(name, []).append(crop_resize(mask.astype(np.uint8), box, size) > 0)
    return {k: np.stack(v) for k, v in out.items()}


def flag_effect_agreement(run_dir, samples: SampleSet, flags, threshold: float, min_fraction: float = 0.05) -> dict:
    """Per sensor component: precision (share of flagged patches containing its effect) and recall
    (share of patches containing it that are flagged). A patch contains an effect when at least
    `min_fraction` of its pixels carry it. {} for datasets without sensor ground truth."""
    from sim2real_kit.patches import mask_box_fraction

    cfg = run_config(run_dir, save=False)
    layout = DepthLayout(dataset_root(run_dir, cfg))
    masks = effect_masks(layout, samples.refs, samples.cad.shape[-1], cfg.data.eval_crop)
    if masks is None:
        return {}
    flagged = (flags.with_threshold(threshold, binary=True).flags.bool() & flags.valid.bool()).numpy()  # [F, P]
    valid = flags.valid.bool().numpy()
    out = {"flag_rate": float(flagged[valid].mean()) if valid.any() else float("nan")}
    for name, mask in masks.items():
        frac = mask_box_fraction(torch.from_numpy(mask[:, None].astype(np.float32)), flags.boxes).numpy()  # [F, P]
        has = (frac >= min_fraction) & valid
        tp = float((has & flagged).sum())
        out[name] = {
            "patches_with_effect": int(has.sum()),
            "precision": tp / flagged.sum() if flagged.sum() else float("nan"),
            "recall": tp / has.sum() if has.sum() else float("nan"),
        }
    return out
