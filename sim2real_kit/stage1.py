"""Stage-I: residual depth diffusion conditioned on the CAD depth (paper Sec. 3.2), and the training of
any stage of the chain.

`train_denoiser` trains one stage on a dataset of model-ready maps (`PairedDepthDataset` items: `cad_n`,
`target`, `mask`; later stages also `prev_n` and flag weights) and saves the chain's pipeline: Stage-I here,
Stage-N in `stage2`, the few-shot Stage-I of the real sample in `real_sample`. `train_stage1` is Stage-I of a
run folder; `resolve_target_scale` sets the residual's scale to the schedule's noise (kit extension).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from sim2real_kit.config import Config, validity_head
from sim2real_kit.data.dataset import PairedDepthDataset
from sim2real_kit.data.layout import DepthLayout
from sim2real_kit.errors import ConfigError, LayoutError, Sim2RealError
from sim2real_kit.run import RunFolder, as_run, prepare_data


def device() -> torch.device:
    """CUDA when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class StageModel(torch.nn.Module):
    """Denoiser + frozen codec as one module, so the Trainer saves and moves them together."""

    def __init__(self, codec, denoiser):
        super().__init__()
        self.codec, self.denoiser = codec, denoiser
        for p in codec.parameters():
            p.requires_grad_(False)

    def forward(self, noisy, timesteps, condition):
        return self.denoiser(noisy, timesteps, condition)

    def compile_frozen(self) -> None:
        """Compile what the loss runs outside `forward` (the Trainer compiles `forward` with `train.compile`):
        a latent codec's VAE encoder, which encodes the step's maps (`LatentCodec.compile_encoder`)."""
        if hasattr(self.codec, "compile_encoder"):
            self.codec.compile_encoder()


def denoising_loss(scheduler, use_prev: bool, reweight: bool, validity_weight: float = 1.0):
    """loss_fn(model, batch, generator) of one stage (paper Eq. 4-6): the diffusion loss of the batch's
    `target` conditioned on `cad_n` (+ `prev_n` for stage k > 1), weighted by `mask`; with `reweight`, by
    `flag_weight` x `mask` when some sample of the batch is flagged (the release's rule, no host sync).
    `validity_weight`: the validity channel's share against the residual's (`train.validity_weight`)."""
    from sim2real_kit.models.denoiser import diffusion_loss
    from sim2real_kit.training import unwrap_model

    def loss_fn(model, batch, generator):
        inner = unwrap_model(model)
        conds = [batch["cad_n"], batch["prev_n"]] if use_prev else [batch["cad_n"]]
        weight = batch["mask"]
        if reweight and "flag_weight" in batch:
            weight = torch.where(batch["has_flag"].any(), batch["flag_weight"] * weight, weight)
        loss, _ = diffusion_loss(
            model, inner.codec, scheduler, batch["target"], conds, weight, generator, validity_weight=validity_weight
        )
        return loss

    return loss_fn


def collate(items):
    return torch.utils.data.default_collate(items)


def train_denoiser(
    cfg: Config,
    dataset,
    out_dir: str | Path,
    previous=(),
    reweight: bool = False,
    *,
    codec=None,
    seed: int | None = None,
    val_layout: DepthLayout | None = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    prior: str = "",
    lineage: str = "",
    validity_head=None,
) -> dict:
    """Train stage k = len(previous) + 1 of the chain on `dataset` into `out_dir` (checkpoints, losses.csv;
    resumes a stopped run) and save the chain (previous stages + this one) to `out_dir/pipeline`.

    Stage-I (no `previous`) is a new denoiser conditioned on the CAD; stage k > 1 is conditioned on the CAD and
    stage k-1's output and starts from stage k-1's weights (`stage2.init: stage1`) or anew (`base`).
    `reweight`: weigh the loss by the flags (Stage-II). `codec`: default the config's. `seed`: default
    `cfg.seed`; it seeds the initialisation and the Trainer. `val_layout`: sample its val frames during
    training and log their residual W1 (Stage-I). `prior`: a Stage-I with a physics prior (the items' `prev_n` is
    that sensor model's output; `Sim2RealPipeline(prior=...)`). `lineage`: which save of the previous stages'
    pipeline `previous` come from (kept in the saved pipeline: `save_chain`). `validity_head`: a
    `holes.ValidityHead` saved with the chain (`model.validity: head`), or a callable returning one, called after
    the denoiser's training (so the head's fit never touches the denoiser's). Returns the Trainer's summary."""
    from sim2real_kit.models.codec import build_codec
    from sim2real_kit.models.denoiser import ControlledDenoiser, make_scheduler

    seed = cfg.seed if seed is None else int(seed)
    previous = list(previous)
    torch.manual_seed(seed)
    codec = codec if codec is not None else build_codec(cfg)
    if not previous:
        denoiser = ControlledDenoiser.from_config(cfg, cond_maps=2 if prior else 1)
    elif cfg.stage2.init == "stage1":
        denoiser = previous[-1].expand_condition(2)
    else:
        denoiser = ControlledDenoiser.from_config(cfg, cond_maps=2)
    loss_fn = denoising_loss(
        make_scheduler(cfg, "ddpm"),
        use_prev=bool(previous or prior),
        reweight=reweight,
        validity_weight=cfg.train.validity_weight,
    )
    val_fn = None if val_layout is None else _val_fn(cfg, val_layout, codec, previous, cfg.train.val_frames)
    trainer = stage_trainer(
        cfg,
        StageModel(codec, denoiser),
        loss_fn,
        dataset,
        cfg.train,
        out_dir,
        seed,
        val_fn,
        resume,
        overwrite,
        progress,
    )
    summary = trainer.fit()
    trained_now = summary["steps"] > summary["start_step"]
    head = validity_head
    if callable(head) and not isinstance(head, torch.nn.Module):  # a function that fits (or loads) it
        head = head()
    save_chain(
        cfg,
        trainer,
        codec,
        previous,
        Path(out_dir) / "pipeline",
        prior=prior,
        keep_same=not trained_now,
        lineage=lineage,
        validity_head=head,
    )
    return summary


def stage_trainer(cfg: Config, model, loss_fn, dataset, train_cfg, out_dir, seed, val_fn, resume, overwrite, progress):
    """The Trainer of a diffusion stage's denoiser (a stage's training, a distilled student): the kit's collate and
    data workers, and `checkpoints/best/` kept by the validation's residual W1 (lower is better) when there is one."""
    from sim2real_kit.training import Trainer

    return Trainer(
        model,
        loss_fn,
        dataset,
        train_cfg,
        out_dir,
        seed=seed,
        collate_fn=collate,
        val_fn=val_fn,
        best_metric="w1_mm" if val_fn else None,
        best_mode="min",
        resume=resume,
        overwrite=overwrite,
        num_workers=cfg.data.num_workers,
        progress=progress,
    )


def _checkpoint_identity(trainer) -> str | None:
    """The trainer's latest checkpoint as "step-N:<mtime ns of its trainer state>" (None without one): a
    retrained or copied run folder gets another identity, so its pipeline is saved anew."""
    from sim2real_kit.checkpoints import STATE_FILE, latest_checkpoint

    found = latest_checkpoint(trainer.ckpt_root)
    return None if found is None else f"{found.name}:{(found / STATE_FILE).stat().st_mtime_ns}"


def save_chain(
    cfg: Config,
    trainer,
    codec,
    previous: list,
    out: Path,
    prior: str = "",
    keep_same: bool = False,
    lineage: str = "",
    validity_head=None,
) -> bool:
    """Save the pipeline of `previous` + the trainer's denoiser (EMA weights when kept); returns whether it saved.

    `keep_same` (a finished run resumed, no step trained in this call): keep the pipeline already in `out` when
    it was saved from the same checkpoint, after the same previous stages (`lineage`) and with the same settings
    (model_index.json equal but for its save_id). `validity_head`: saved with the pipeline (`validity_head/`).
    Saving it again would give it a new save_id and mark every split sampled from it stale (run.py), so a
    rerun notebook or a resumed campaign would sample them all again (81 s per seed on the GPU, 2026-12-06)."""
    from sim2real_kit.pipeline import Sim2RealPipeline

    source = _checkpoint_identity(trainer)
    if source is not None and lineage:
        source = f"{source} after {lineage}"
    with trainer.ema_weights():
        denoiser = trainer.unwrapped_model.denoiser
        pipe = Sim2RealPipeline.build(cfg, [*previous, denoiser], codec=codec, prior=prior)
        pipe.set_validity_head(validity_head)
        if keep_same and source is not None and Sim2RealPipeline.saved_index_config(out) == pipe.index_config(source):
            return False
        pipe.save_pretrained(out, trained_from=source)
    return True


def train_stage1(run: RunFolder | str | Path, cfg: Config, progress: bool = True) -> dict:
    """Train Stage-I (paper Sec. 3.2) of a run into `stage1/` (resuming a stopped run) and save its pipeline.

    `cfg` is the call's resolved config (`run.resolve_config`); the residual scale it resolves
    (`model.target_std`) is written into it and saved with the run and the stage. Returns the Trainer's
    summary and the scale."""
    run = as_run(run)
    layout = prepare_data(run, cfg, progress=progress)
    resolve_target_scale(cfg, layout)
    run.save_config(cfg)
    cfg.to_yaml(run.stage_config_path(1))  # what this stage was trained with
    run.record_step("stage1", cfg, steps=cfg.train.steps)
    # only the maps the loss reads: a third less work per item and half the worker -> main transfer
    train_ds = PairedDepthDataset.from_config(cfg, layout, "train", train=True, keys=("cad_n", "target", "mask"))
    head = None
    if validity_head(cfg):  # model.validity=head: fit after the denoiser (which trains as a data.holes=mask one)
        head = lambda: stage1_validity_head(run, cfg, layout, progress)  # noqa: E731
    summary = train_denoiser(cfg, train_ds, run.stage_dir(1), val_layout=layout, progress=progress, validity_head=head)
    return {**summary, "residual_scale": cfg.model.residual_scale}


def stage1_validity_head(run: RunFolder, cfg: Config, layout: DepthLayout, progress: bool = True):
    """The validity head of a run's Stage-I (`model.validity: head`): the one saved with its pipeline when there
    is one (a resumed run does not refit it), else `holes.fit_validity_head` on the train split's whole frames
    (`train.validity_head_steps` steps, seed `cfg.seed`)."""
    from sim2real_kit.holes import HEAD_FOLDER, ValidityHead, fit_validity_head

    saved = run.pipeline_dir(1) / HEAD_FOLDER
    if (saved / ValidityHead.config_name).is_file():
        return ValidityHead.from_pretrained(saved)
    return fit_validity_head(cfg, layout, cfg.train.validity_head_steps, cfg.seed, device(), progress)


def target_std(cfg: Config, layout: DepthLayout, max_frames: int = 256) -> float:
    """Std of the unscaled Stage-I target (real_n - cad_n) over the pixels where CAD and real are both
    valid and within `data.max_diff_m` (the same pixels in either `data.holes` mode: a hole is not a
    residual and must not set its scale), on up to `max_frames` train frames spread evenly over the
    split (eval crop, so deterministic)."""
    ds = PairedDepthDataset.from_config(cfg, layout, "train", train=False, keys=("target", "valid"))
    ds.residual_scale = 1.0
    picks = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), max_frames)).round().astype(int))
    total = count = total_sq = 0.0
    for i in picks:
        item = ds[int(i)]
        t = item["target"][:1][item["valid"] > 0].double()  # the residual ([:1]: not the validity of holes=model)
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


def _val_fn(cfg: Config, layout: DepthLayout, codec, previous: list, num_frames: int):
    """Validation: sample `num_frames` val frames with the current weights, W1 of residuals (mm)."""
    from sim2real_kit.metrics import matched_residual_w1
    from sim2real_kit.pipeline import Sim2RealPipeline

    try:
        val_ds = PairedDepthDataset.from_config(cfg, layout, "val", train=False, max_frames=num_frames)
    except Sim2RealError:
        return None
    batch = collate([val_ds[i] for i in range(len(val_ds))])

    def val_fn(model):
        from sim2real_kit.training import unwrap_model

        pipe = Sim2RealPipeline.build(cfg, [*previous, unwrap_model(model).denoiser], codec=codec)
        out = pipe(batch["cad"][:, 0].to(torch.float32), generator=torch.Generator().manual_seed(cfg.seed))
        sim = out.depth.cpu().numpy()
        cad, real = batch["cad"][:, 0].numpy(), batch["real"][:, 0].numpy()
        limit = cfg.data.max_diff_m  # W1 as the benchmark measures it (matched pixels, |residual| < limit)
        return {
            "w1_mm": 1000 * matched_residual_w1(cad, sim, real, limit),
            "w1_cad_mm": 1000 * matched_residual_w1(cad, cad, real, limit),
        }

    return val_fn
