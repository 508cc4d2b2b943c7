"""3D-aware local discriminating (paper Sec. 3.3), over a run folder: patches of real and generated depth
(back-projected, CAD-guided), the PointNet discriminator trained real vs stage-k output, its scores and the
flags that re-weight the next stage's loss, and the frozen discriminator as a realism score.

One scoring path, `score_depth`, serves flagging (`train_and_flag`), the realism score of any simulator
(`share_judged_fake`: the paper's 67.8 % on Stage-I -> 32.5 % on Stage-II) and the benchmark.
The network itself is `models.discriminator`; patch geometry is `patches`; flag files are `flags`.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from sim2real_kit.config import Config
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.errors import MissingArtifactError
from sim2real_kit.io import atomic_write_json
from sim2real_kit.run import RunFolder, SampleSet, as_run

SCORE_SEED_OFFSET = 7  # patch points for scoring are drawn with seed cfg.seed + 7 (training draws with cfg.seed)


def patch_pixel_mask(samples: SampleSet, cfg: Config) -> torch.Tensor | None:
    """The pixels [F, S, S] bool every patch (real or generated) is made of, or None for all valid ones.

    `data.holes = mask`: CAD and real both valid and |real - CAD| < max_diff, the pixels the Stage-II loss
    weighs and so the only ones a later stage can change. Real holes and flying pixels outside them would be
    flagged for a difference the generator is never trained to make. `model`: the same plus the real's holes
    (CAD valid, real out of range): the validity channel (or, `model.validity: head`, the validity head) learns
    those, so a patch with holes is valid input and its hole pattern part of what is judged (a hole is no point of
    its patch); the real's >= max_diff mismatches stay out. `generate`: None (every valid pixel of each map)."""
    from sim2real_kit.depth import depth_in_range, valid_mask

    if cfg.data.holes == "generate":
        return None
    pixels = valid_mask(samples.cad, samples.real, cfg.data.max_diff_m)
    if cfg.data.holes == "model":
        pixels = pixels | (valid_mask(samples.cad) & ~depth_in_range(samples.real))
    return torch.from_numpy(np.asarray(pixels))


def patch_sets(samples: SampleSet, stage: int, cfg: Config, seed: int = 0):
    """(real PatchPoints, generated PatchPoints, boxes) of a sample set for training the discriminator; both
    on the pixels of `patch_pixel_mask`, points drawn with one generator (real first)."""
    from sim2real_kit.patches import extract_patch_points, patch_grid

    size = samples.cad.shape[-1]
    boxes = patch_grid(size, size, cfg.disc.patch_size, cfg.disc.stride)
    gen = torch.Generator().manual_seed(seed)
    cad = torch.from_numpy(samples.cad)
    kw = dict(camera=samples.camera, boxes=boxes, num_points=cfg.disc.num_points, min_valid=cfg.disc.min_valid)
    kw["valid_mask"] = patch_pixel_mask(samples, cfg)
    real = extract_patch_points(torch.from_numpy(samples.real), cad, generator=gen, **kw)
    fake = extract_patch_points(torch.from_numpy(samples.sims[stage]), cad, generator=gen, **kw)
    return real, fake, boxes


def extraction_settings(model, cfg: Config) -> SimpleNamespace:
    """Patch extraction settings a discriminator was trained with (its meta), else the config's `disc`."""
    meta, d = model.meta or {}, cfg.disc
    return SimpleNamespace(
        patch_size=int(meta.get("patch_size") or d.patch_size),
        stride=int(meta.get("stride") or d.stride),
        num_points=int(meta.get("num_points") or d.num_points),
        min_valid=int(meta.get("min_valid") or d.min_valid),
        normalize=str(meta.get("normalize") or d.normalize),
    )


def score_depth(model, depth, samples: SampleSet, cfg: Config):
    """P(real) of every patch of `depth` [F, S, S] metres (generated, real, or any simulator's) over the sample
    set's CAD: (scores [F, P], 1.0 on skipped patches; valid [F, P]; boxes [P, 4]). The one scoring path of the
    kit: the discriminator's own extraction settings, the pixels of `patch_pixel_mask`, points drawn with seed
    `cfg.seed + SCORE_SEED_OFFSET`."""
    from sim2real_kit.models.discriminator import score_frames

    return score_frames(
        model,
        torch.from_numpy(np.ascontiguousarray(depth, np.float32)),
        torch.from_numpy(samples.cad),
        samples.camera,
        extraction_settings(model, cfg),
        generator=torch.Generator().manual_seed(cfg.seed + SCORE_SEED_OFFSET),
        valid_mask=patch_pixel_mask(samples, cfg),
    )


def share_judged_fake(model, depth, samples: SampleSet, cfg: Config) -> float:
    """Share (0-1) of the valid patches of `depth` [F, S, S] the frozen discriminator judges fake
    (P(real) < cfg.disc.threshold): the paper's realism metric, lower = more realistic."""
    from sim2real_kit.models.discriminator import discriminator_accuracy

    scores, valid, _ = score_depth(model, depth, samples, cfg)
    return discriminator_accuracy(scores, valid, cfg.disc.threshold)


def load_discriminator(run: RunFolder | str | Path, stage: int = 1):
    """The discriminator trained on stage `stage`'s output (an error naming the command that makes it)."""
    from sim2real_kit.models.discriminator import PointNetDiscriminator

    run = as_run(run)
    path = run.disc_model(stage)
    if not path.is_file():
        raise MissingArtifactError(
            f"no discriminator at {path}; make it with: sim2real flag --run {run.root} --stage {stage}"
        )
    return PointNetDiscriminator.load(path)


def run_share_judged_fake(run: RunFolder | str | Path, samples: SampleSet, depth, cfg: Config, stage: int = 1) -> float:
    """`share_judged_fake` by the run's frozen discriminator of stage `stage` (Stage-I by default)."""
    return share_judged_fake(load_discriminator(run, stage), depth, samples, cfg)


def patch_differences(samples: SampleSet, depth, cfg: Config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean |depth − real| (metres) per patch of the `cfg.disc` grid over the pixels valid in both (and in
    `patch_pixel_mask`): (differences [F, P], valid [F, P]: at least `disc.min_valid` pixels, boxes [P, 4])."""
    import torch.nn.functional as F

    from sim2real_kit.patches import patch_grid

    size = samples.cad.shape[-1]
    boxes = patch_grid(size, size, cfg.disc.patch_size, cfg.disc.stride)
    depth = torch.from_numpy(np.ascontiguousarray(depth, np.float32)).double()
    real = torch.from_numpy(samples.real).double()
    ok = (depth > 0) & (real > 0) & (torch.from_numpy(samples.cad) > 0)
    extra = patch_pixel_mask(samples, cfg)
    if extra is not None:
        ok &= extra
    r0, r1, c0, c1 = boxes.unbind(1)

    def box_sums(x: torch.Tensor) -> torch.Tensor:  # [F, H, W] -> [F, P] sums over each box (integral image)
        integral = F.pad(x.cumsum(1).cumsum(2), (1, 0, 1, 0))
        return integral[:, r1, c1] - integral[:, r0, c1] - integral[:, r1, c0] + integral[:, r0, c0]

    counts = box_sums(ok.double())
    sums = box_sums(torch.where(ok, (depth - real).abs(), 0.0))
    return (sums / counts.clamp(min=1)).float(), counts >= cfg.disc.min_valid, boxes


def difference_flags(run: RunFolder | str | Path, cfg: Config, stage: int = 1) -> dict:
    """The paper's "w/o bin" ablation (Sec. 4.5 (3)): no discriminator decides; a patch of stage `stage`'s
    output is flagged when its mean |output − real| exceeds `disc.diff_threshold_m`. Written as flag files in
    the same format (score 0 = flagged, 1 = not, threshold 0.5) plus the differences (`differences.npz`);
    returns {"mode", "diff_threshold_m", "threshold", "binary", split: {flag_rate, ...}} (`train_and_flag`
    merges it into its metrics)."""
    from sim2real_kit.patches import save_flag_file

    run = as_run(run)
    layout = run.layout(cfg)
    tau = cfg.disc.diff_threshold_m
    metrics: dict = {"mode": "difference", "diff_threshold_m": tau, "threshold": 0.5, "binary": True}
    for split in ("train", "val"):
        samples = run.load_samples(stage, split, layout)
        diff, valid, boxes = patch_differences(samples, samples.sims[stage], cfg)
        flagged = valid & (diff > tau)
        save_flag_file(
            run.flags_path(stage, split),
            scores=torch.where(flagged, 0.0, 1.0),
            boxes=boxes,
            frame_ids=[str(r) for r in samples.refs],
            frame_size=samples.cad.shape[-1],
            threshold=0.5,
            binary=True,
            split=split,
            valid=valid,
        )
        np.savez_compressed(
            run.flags_path(stage, split).with_name("differences.npz"), diff=diff.numpy(), valid=valid.numpy()
        )
        metrics[split] = {
            "flag_rate": float(flagged[valid].float().mean()) if valid.any() else float("nan"),
            "mean_difference_mm": 1000 * float(diff[valid].mean()) if valid.any() else float("nan"),
            "skipped_patches": int((~valid).sum()),
        }
    return metrics


def train_and_flag(run: RunFolder | str | Path, cfg: Config, stage: int = 1, progress: bool = True) -> dict:
    """Train the 3D patch discriminator on real vs stage-`stage` patches of the train split (validation on
    held-out scenes), score every patch of train and val, write the flags (threshold `disc.threshold`,
    binary or not per `disc.binary`) into the run's `disc<stage>/`; returns the metrics. With
    `disc.mode: difference` the flags come from `difference_flags` instead (the paper's "w/o bin"); the
    discriminator is still trained, for the realism score of notebooks 04-05."""
    from sim2real_kit.models.discriminator import (
        PatchSet,
        discriminator_accuracy,
        flags_from_scores,
        train_discriminator,
    )
    from sim2real_kit.patches import save_flag_file

    run = as_run(run)
    layout = run.layout(cfg)
    train, val = run.load_samples(stage, "train", layout), run.load_samples(stage, "val", layout)
    real_tr, fake_tr, _ = patch_sets(train, stage, cfg, seed=cfg.seed)
    scenes = sorted({r.scene for r in train.refs})
    model, history = train_discriminator(
        PatchSet.from_patch_points(real_tr),
        PatchSet.from_patch_points(fake_tr),
        cfg.disc,
        seed=cfg.seed,
        progress=progress,
        groups=torch.tensor([scenes.index(r.scene) for r in train.refs]),
    )  # validation: held-out scenes (disc.val_fraction); no frame or scene on both sides
    model.save(run.disc_model(stage))
    metrics = {"train_history": {k: v for k, v in history.items() if not isinstance(v, list)}}
    threshold = cfg.disc.threshold
    for split, samples in (("train", train), ("val", val)):
        s_fake, valid_fake, boxes = score_depth(model, samples.sims[stage], samples, cfg)
        s_real, valid_real, _ = score_depth(model, samples.real, samples, cfg)
        flags = flags_from_scores(s_fake, valid_fake, threshold, cfg.disc.binary)
        save_flag_file(
            run.flags_path(stage, split),
            scores=s_fake,
            boxes=boxes,
            frame_ids=[str(r) for r in samples.refs],
            frame_size=samples.cad.shape[-1],
            threshold=threshold,
            binary=cfg.disc.binary,
            split=split,
            valid=valid_fake,
        )
        np.savez_compressed(run.real_scores_path(stage, split), scores=s_real.numpy(), valid=valid_real.numpy())
        metrics[split] = {
            "acc_generated": discriminator_accuracy(s_fake, valid_fake, threshold),  # paper: 67.8 % on Stage-I
            "acc_real": 1.0 - discriminator_accuracy(s_real, valid_real, threshold),  # real judged real
            "flag_rate": float(flags[valid_fake].float().mean()) if cfg.disc.binary else None,
            "skipped_patches": int((~valid_fake).sum()),
        }
    metrics.update(
        threshold=threshold, binary=cfg.disc.binary, cad_guidance=cfg.disc.cad_guidance, mode="discriminator"
    )
    metrics["val_accuracy"] = history.get("val_accuracy")
    metrics["val_auc"] = history.get("val_auc")
    if cfg.disc.mode == "difference":  # the flags Stage-II reads come from |output - real| instead
        for key, value in difference_flags(run, cfg, stage).items():
            metrics[key] = {**metrics.get(key, {}), **value} if isinstance(value, dict) else value
    metrics["samples"] = {split: run.samples_drawn_by(stage, split) for split in ("train", "val")}  # flags_state
    atomic_write_json(run.disc_metrics(stage), metrics)
    run.record_step(f"flag{stage}", cfg, threshold=threshold, binary=cfg.disc.binary, mode=cfg.disc.mode)
    return metrics


def patch_points_for(samples: SampleSet, frame: int, patch: int, boxes, depths: dict, num_points: int = 256):
    """Camera-frame points (metres) of one patch for each named depth map, plus the CAD points (3D views)."""
    from sim2real_kit.patches import extract_patch_points

    out = {}
    cad = torch.from_numpy(samples.cad[frame : frame + 1])
    box = boxes[patch : patch + 1]
    for name, depth in depths.items():
        pp = extract_patch_points(
            torch.from_numpy(np.asarray(depth)[frame : frame + 1]),
            cad,
            samples.camera,
            box,
            num_points,
            1,
            generator=torch.Generator().manual_seed(0),
            normalize="none",
        )
        out[name] = pp.points[0, 0].numpy()
        out["CAD"] = pp.cad_points[0, 0].numpy()
    return out


# ---------------------------------------------------------------------- flags vs the sensor's ground truth
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


def flag_effect_agreement(
    layout: DepthLayout, cfg: Config, samples: SampleSet, flags, threshold: float, min_fraction: float = 0.05
) -> dict:
    """Per sensor component: precision (share of flagged patches containing its effect) and recall
    (share of patches containing it that are flagged). A patch contains an effect when at least
    `min_fraction` of its pixels carry it. {} for datasets without sensor ground truth."""
    from sim2real_kit.patches import mask_box_fraction

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
