"""Stage-II: unsatisfactory area enhancement (paper Sec. 3.4), and the Stage-N chain (Sec. 4.5, stages III/IV).

Stage k > 1 is conditioned on the CAD and stage k-1's output, starts from stage k-1's weights, and weighs its
loss by the flags of stage k-1's output (λ = 1.5 on flagged patches, ω = 0.5 elsewhere). `train_chain` runs
the whole chain over a run folder: sample stage k-1 on both splits, flag it (`flagging`), train stage k.

Controls (is a gain the method, or more steps?): `control_run` makes a control run folder inside the run
(same dataset, shared steps copied) and `stage1_control` trains Stage-I on for Stage-II's steps.
`train_direct` trains the "w/o res" row (the real depth as the target) beside them.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

from sim2real_kit.config import Config
from sim2real_kit.data.dataset import PairedDepthDataset, StageNDataset
from sim2real_kit.data.layout import DepthLayout
from sim2real_kit.errors import ConfigError, MissingArtifactError
from sim2real_kit.flagging import train_and_flag
from sim2real_kit.run import RunFolder, as_run, resolve_config
from sim2real_kit.simulate import load_pipeline, sample_split
from sim2real_kit.stage1 import train_denoiser, train_stage1


def stage_n_dataset(run: RunFolder, cfg: Config, layout: DepthLayout, stage: int) -> StageNDataset:
    """Stage `stage`'s training data: the train split, stage k-1's saved output and its flags."""
    from sim2real_kit.patches import load_flag_file

    prev = run.load_samples(stage - 1, "train", layout)
    flag_path = run.flags_path(stage - 1, "train")
    state = run.flags_state(stage - 1)
    if state != "ok":
        what = (
            f"the flags at {flag_path} were made from other Stage-{stage - 1} samples than the current ones "
            f"(sampled again since)"
            if state == "stale"
            else f"no flags of Stage-{stage - 1} output at {flag_path}"
        )
        raise MissingArtifactError(f"{what}; make them with: sim2real flag --run {run.root} --stage {stage - 1}")
    base = PairedDepthDataset.from_config(cfg, layout, "train", train=False)
    missing = sorted({str(r) for r in base.refs} - {str(r) for r in prev.refs})
    if missing:
        raise MissingArtifactError(
            f"{len(missing)} train frames have no Stage-{stage - 1} sample (e.g. {missing[0]}); re-run "
            f"sim2real sample --run {run.root} --split train --stages {stage - 1}"
        )
    s2 = cfg.stage2
    return StageNDataset(
        base,
        {str(r): prev.sims[stage - 1][i] for i, r in enumerate(prev.refs)},
        load_flag_file(flag_path, split="train", frame_size=cfg.data.size),
        condition=s2.condition,
        residual_scale=cfg.model.residual_scale,
        flagged_weight=s2.flagged_weight,
        other_weight=s2.other_weight,
    )


def train_stage_n(run: RunFolder | str | Path, cfg: Config, stage: int = 2, progress: bool = True) -> dict:
    """Train stage `stage` >= 2 of a run from the flags of stage k-1's output into `stage<k>/` and save the
    chain's pipeline. Returns the Trainer's summary."""
    if stage < 2:
        raise ConfigError(f"train_stage_n trains stage >= 2, got {stage}")
    run = as_run(run)
    layout = run.layout(cfg)
    ds = stage_n_dataset(run, cfg, layout, stage)
    cfg.to_yaml(run.stage_config_path(stage))  # what this stage was trained with
    run.record_step(f"stage{stage}", cfg, steps=cfg.train.steps, reweight=cfg.stage2.reweight)
    prev_pipe = load_pipeline(run, stage - 1, cfg).to("cpu")
    return train_denoiser(
        cfg,
        ds,
        run.stage_dir(stage),
        previous=list(prev_pipe.denoisers),
        reweight=cfg.stage2.reweight,
        codec=prev_pipe.codec,
        seed=cfg.seed + stage,
        progress=progress,
        lineage=f"stage{stage - 1} {run.pipeline_stamp(stage - 1)}",
        validity_head=prev_pipe.validity_head,  # model.validity=head: the chain keeps Stage-I's head
    )


def train_chain(
    run: RunFolder | str | Path,
    cfg: Config,
    num_stages: int = 2,
    progress: bool = True,
    final_splits=("val", "benchmark"),
) -> dict:
    """Stages 2..N (paper Sec. 3.4 and the Stage-III/IV ablation): before each stage k, sample the
    previous stage on both splits and flag its output with a fresh discriminator pass (disc{k-1}/);
    finally sample `final_splits` with the whole chain (val for evaluation; benchmark, the scenes no simulator
    trained on, for the benchmark's downstream task and two-sample test; a split the dataset lacks is skipped). Finished steps are reused."""
    run = as_run(run)
    summaries = {}
    for k in range(2, num_stages + 1):
        for split in ("train", "val"):
            if not run.has_samples(k - 1, split):
                sample_split(run, cfg, split, stage=k - 1, progress=progress)
        if run.flags_state(k - 1) != "ok":  # missing, or made from samples drawn since
            train_and_flag(run, cfg, stage=k - 1, progress=progress)
        summaries[f"stage{k}"] = train_stage_n(run, cfg, k, progress=progress)
    for split in final_splits:
        if not run.layout(cfg).has_split(split):
            continue
        if not run.has_samples(num_stages, split):  # missing, or drawn before the chain's pipeline was saved anew
            sample_split(run, cfg, split, stage=num_stages, progress=progress)
    return summaries


# ---------------------------------------------------------------------- controls
def control_run(
    run: RunFolder | str | Path, cfg: Config, name: str, overrides=(), share: tuple[str, ...] = ("stage1",)
) -> tuple[RunFolder, Config]:
    """A control of a run: `controls/<name>/`, a run folder of its own with the run's config `cfg` plus
    `overrides`, the run's dataset linked (never copied or re-made) and copies of the `share`d step folders
    (e.g. stage1/, disc/), so the control differs from the run only where the overrides say. Made once; a
    second call reuses it (and its finished steps). Returns (its RunFolder, its config)."""
    run = as_run(run)
    return _linked_run(run, cfg, run.control(name), overrides, share, name)


def _linked_run(
    run: RunFolder, cfg: Config, out: RunFolder, overrides, share: tuple[str, ...], name: str
) -> tuple[RunFolder, Config]:
    if not out.has_config():
        out.root.mkdir(parents=True, exist_ok=True)
        for step in share:
            src = run.root / step
            if not src.is_dir():
                raise MissingArtifactError(f"control {name!r} shares {step}/ of {run.root}, which does not exist yet")
            shutil.copytree(src, out.root / step, dirs_exist_ok=True)
        if cfg.data.root == "generate" and not out.data_dir.exists():
            os.symlink(os.path.relpath(run.data_dir.resolve(), out.root.resolve()), out.data_dir)
        out.save_config(copy.deepcopy(cfg))
    return out, resolve_config(out, overrides=overrides)


def stage1_control(
    run: RunFolder | str | Path,
    cfg: Config,
    extra_steps: int | None = None,
    progress: bool = True,
    splits: tuple[str, ...] = ("val",),
) -> RunFolder:
    """Stage-I trained on for as many steps as Stage-II trained (default `train.steps`), from Stage-I's last
    checkpoint, same data and seed: the control that tells the gain of Stage-II's re-weighting and second
    condition from the gain of more steps. Runs in `controls/stage1_long/`; samples `splits` (a split the
    dataset lacks is skipped)."""
    run = as_run(run)
    trained = Config.from_yaml(run.stage_config_path(1)).train.steps
    extra = cfg.train.steps if extra_steps is None else int(extra_steps)
    control, ccfg = control_run(run, cfg, "stage1_long", [f"train.steps={trained + extra}"], share=("stage1",))
    done = control.stage_config_path(1).is_file() and Config.from_yaml(control.stage_config_path(1)).train.steps
    if not control.has_samples(1, "val") or done != trained + extra:
        # samples in the control's stage1/ came with the copy of Stage-I's (or from a model the training below
        # changes): never let them stand for the control's if this call is stopped before it samples anew
        shutil.rmtree(control.stage_dir(1) / "samples", ignore_errors=True)
        train_stage1(control, ccfg, progress=progress)
        sample_split(control, ccfg, "val", stage=1, progress=progress)
    _sample_missing(control, ccfg, 1, splits, progress)
    return control


def start_stage1_control(run: RunFolder | str | Path, cfg: Config, *, background: bool = True, **kwargs):
    """`stage1_control(run, cfg, **kwargs)` started now in its own process on half the cores
    (`jobs.BackgroundJob`), so that Stage-II trains meanwhile on the others (notebook 04); `.result()` returns
    the control's RunFolder. The control shares only stage1/ with the run, so the two never write the same
    file. background=False (CI-sized runs: a process start costs more than it saves) or one core: trained at
    `.result()`, here."""
    from sim2real_kit.jobs import BackgroundJob

    kwargs.setdefault("progress", False)
    return BackgroundJob(stage1_control, as_run(run), cfg, background=background, **kwargs)


def train_direct(run: RunFolder | str | Path, cfg: Config, progress: bool = True) -> RunFolder:
    """The paper's "w/o res" row (Sec. 4.5): Stage-I predicting the real depth itself (`model.target=direct`)
    instead of the residual, same data, seed and steps, in the run's `direct/` where the benchmark's `direct`
    simulator reads it; samples val and benchmark. Finished steps are reused."""
    run = as_run(run)
    out, dcfg = _linked_run(run, cfg, RunFolder(run.direct_dir), ["model.target=direct"], (), "direct")
    if not (out.pipeline_dir(1) / "model_index.json").is_file():
        train_stage1(out, dcfg, progress=progress)
    _sample_missing(out, dcfg, 1, ("val", "benchmark"), progress)
    return out


def _sample_missing(run: RunFolder, cfg: Config, stage: int, splits, progress: bool) -> None:
    layout = run.layout(cfg)
    for split in splits:
        if layout.has_split(split) and not run.has_samples(stage, split):
            sample_split(run, cfg, split, stage=stage, progress=progress)
