"""Realism tests of any depth simulator against the real captures: a classifier two-sample test with a
fresh 3D patch discriminator (`two_sample_auc`) and, for the procedural world, how much of each sensor
effect a simulator reproduces (`effect_reproduction`, `sensor_effect_reproduction`).

Why a fresh discriminator: the frozen Stage-I discriminator of `flagging.share_judged_fake` was trained
on Stage-I output only (every other simulator is out of its distribution: random noise can score best)
and Stage-II was trained against its very flags. A classifier two-sample test (C2ST; Lopez-Paz & Oquab,
ICLR 2017) instead trains, per simulator and seed, a new CAD-guided PointNet (paper Sec. 3.3,
`models.discriminator`) on real vs that simulator's patches of some scenes and reports its ROC-AUC on
the patches of *other* scenes: 0.5 = the discriminator cannot tell the simulator from the real sensor,
1.0 = it always can. Patches are made as for flagging (`flagging.patch_sets`: the `cfg.disc` patch grid,
each patch paired with its CAD patch, pixels as `flagging.patch_pixel_mask`) but on pixels chosen alike
for both sides (`pixel_masks`): flagging's choice, the real's pixels for both, tells a simulator of the
real's very law from the real (AUC 0.66 in the sensor-only world) when it makes holes.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from sim2real_kit.config import Config
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.errors import DepthFormatError, Sim2RealError
from sim2real_kit.flagging import effect_masks, patch_pixel_mask
from sim2real_kit.run import SampleSet

PIXELS = ("shared", "own")  # which pixels the real and simulated patches are made of (`pixel_masks`)
TEST_SEED_OFFSET = 1000  # patch points of the test frames are drawn with seed + 1000 (train frames: seed)

# the sensor components of `data.sensor.SensorModel` by how their effect is measured (`effect_reproduction`)
HOLE_EFFECTS = ("edge_dropout", "grazing_dropout", "material_holes", "range_limit")
DISPLACEMENT_EFFECTS = ("thin_structures", "flying_pixels")
NOISE_EFFECTS = ("relief", "lowres", "bias", "noise", "quantization")
EFFECT_KINDS = {
    **{n: "hole" for n in HOLE_EFFECTS},
    **{n: "displacement" for n in DISPLACEMENT_EFFECTS},
    **{n: "noise" for n in NOISE_EFFECTS},
}


# ====================================================================== classifier two-sample test
def _frame_indices(samples: SampleSet, frames, name: str) -> np.ndarray:
    """Indices into the sample set of `frames`: ints, FrameRefs or "scene/frame" strings."""
    if frames is None or len(frames) == 0:
        raise Sim2RealError(f"{name} is empty: the two-sample test needs frames on both sides")
    lookup = {str(r): i for i, r in enumerate(samples.refs)}
    out = []
    for f in frames:
        if isinstance(f, FrameRef | str):
            if str(f) not in lookup:
                raise Sim2RealError(f"{name}: frame {f} is not in the sample set")
            out.append(lookup[str(f)])
        else:
            i = int(f)
            if not 0 <= i < len(samples.refs):
                raise Sim2RealError(f"{name}: frame index {i} is outside the sample set's {len(samples.refs)} frames")
            out.append(i)
    idx = np.asarray(out, dtype=np.int64)
    if len(np.unique(idx)) != len(idx):
        raise Sim2RealError(f"{name} lists a frame twice")
    return idx


def _subset(samples: SampleSet, idx: np.ndarray) -> SampleSet:
    return dataclasses.replace(
        samples,
        refs=[samples.refs[i] for i in idx],
        cad=samples.cad[idx],
        real=samples.real[idx],
        sims={},
        poses=samples.poses[idx] if samples.poses is not None and len(samples.poses) else samples.poses,
    )


def pixel_masks(samples: SampleSet, depth_sim: np.ndarray, cfg: Config, pixels: str = "shared"):
    """(real mask, simulated mask) [F, S, S] bool: the pixels the patches of each are made of.

    Each depth's own pixels are `flagging.patch_pixel_mask` with that depth in the place of the real
    one (`data.holes = mask`: CAD and it valid and within `data.max_diff_m` of each other; `generate`:
    it valid). `pixels="shared"`: both get the pixels valid for both (the hole patterns are then equal
    and not compared); "own": each its own (a hole pattern inside the patches is part of the test).
    The flagging protocol (`flagging.patch_sets` / `score_depth`: the real's pixels for both) is not
    symmetric: a simulator with holes of the real's very law is told apart by its patches holding the
    holes of both. Measured (3 seeds, 150 steps, tiny preset's discriminator): the sensor-only world
    (8 scenes x 4 frames, 64x48, train 5 scenes / test 3) against a second capture of the same frames by
    the same `SensorModel` (fresh random draws): AUC 0.661 +- 0.005 with the real's pixels for both,
    0.489 +- 0.012 "shared", 0.485 +- 0.005 "own"; clean CAD: 1.000. Toy planes with 4 px block holes
    (tests/test_realism_test.py, 3 data draws x 2 seeds), a simulator of the same law: 0.57-0.61 with the
    real's pixels for both, 0.49-0.51 "shared" and "own"; one without holes: 0.49-0.51 "shared", 0.73-0.78
    "own"."""
    if pixels not in PIXELS:
        raise Sim2RealError(f"pixels must be one of {', '.join(PIXELS)}, got {pixels!r}")
    own = []
    for depth in (samples.real, depth_sim):
        m = patch_pixel_mask(dataclasses.replace(samples, real=depth), cfg)
        own.append(np.asarray(depth > 0) if m is None else np.asarray(m))
    if pixels == "shared":
        both = own[0] & own[1]
        return both, both
    return own[0], own[1]


def _patch_sets(samples: SampleSet, depth_sim: np.ndarray, cfg: Config, seed: int, pixels: str):
    """(real PatchSet, simulated PatchSet) of the frames of `samples` (sim: `depth_sim`, the same frames),
    on the pixels of `pixel_masks`, points drawn with one generator seeded `seed` (real first)."""
    from sim2real_kit.models.discriminator import collect_patch_set

    gen = torch.Generator().manual_seed(int(seed))
    cad = torch.from_numpy(np.ascontiguousarray(samples.cad, np.float32))
    out = []
    for depth, mask in zip((samples.real, depth_sim), pixel_masks(samples, depth_sim, cfg, pixels)):
        depth = torch.from_numpy(np.ascontiguousarray(depth, np.float32))
        out.append(collect_patch_set(depth, cad, samples.camera, cfg.disc, gen, torch.from_numpy(mask))[0])
    return out[0], out[1]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std over seeds (or discriminator seeds) of one metric; non-finite values (a failed seed:
    NaN, ±inf) are left out, one value has std 0, none gives (NaN, NaN)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def two_sample_auc(
    samples: SampleSet,
    depth_sim,
    cfg: Config,
    train_frames: Sequence,
    test_frames: Sequence,
    seeds: Sequence[int] = (0, 1, 2),
    groups: Sequence | None = None,
    steps: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    pixels: str = "shared",
) -> dict:
    """Classifier two-sample test of one simulator against the real captures, with the 3D patch discriminator.

    `samples`: the frames (cad, real [F, S, S] metres, refs, camera); `depth_sim` [F, S, S] metres: the
    simulator's depth of the same frames (0 = hole). `train_frames` / `test_frames`: frames of `samples`
    (indices, FrameRefs or "scene/frame"); no group (`groups` [F], default each frame's scene) may have
    frames on both sides (Sim2RealError otherwise): the discriminator is tested on unseen scenes.

    Per seed s: a fresh `PointNetDiscriminator` (`cfg.disc`: patch size, stride, points, width, CAD
    guidance, lr, batch size; `steps` overrides `cfg.disc.steps`) is trained (`train_discriminator`,
    seed s, no internal validation) on real (label 1) vs simulated (label 0) patches of the train
    frames; the patches of the test frames are then scored. Patches: the `cfg.disc` grid, each real
    and simulated patch paired with the same CAD patch, on the pixels of `pixel_masks`: by default
    ("shared") where CAD, real and simulator are all valid (with `data.holes = mask` also within
    `data.max_diff_m` of the CAD), the same pixels on both sides, so holes are not compared here (see
    `effect_reproduction`); `pixels="own"`: each depth on its own valid pixels, so the holes inside the
    patches count too. Points are drawn with seed s (train) and s + TEST_SEED_OFFSET (test).

    Returns {"auc", "auc_std", "auc_per_seed": ROC-AUC of P(real) on the test patches, real = positive
    (`roc_auc`; 0.5 = indistinguishable, 1 = always told apart, < 0.5 = the simulator looks *more* real
    than real on unseen scenes, i.e. chance level with an overfit classifier); "balanced_accuracy",
    "balanced_accuracy_std", "balanced_accuracy_per_seed": mean of the shares of real patches with
    P(real) >= 0.5 and simulated ones below; "pixels", "seeds", "steps", "n_train_frames", "n_test_frames",
    "train_groups", "test_groups", "n_train_real", "n_train_sim", "n_test_real", "n_test_sim" (valid
    patches)}. Mean and sample std (0 for one seed) over the seeds."""
    from sim2real_kit.models.discriminator import roc_auc, score_patches, train_discriminator

    depth_sim = np.asarray(depth_sim, dtype=np.float32)
    if depth_sim.shape != samples.real.shape:
        raise DepthFormatError(
            f"the simulated depth has shape {depth_sim.shape} but the sample set's frames {samples.real.shape}"
        )
    if pixels not in PIXELS:
        raise Sim2RealError(f"pixels must be one of {', '.join(PIXELS)}, got {pixels!r}")
    if not len(seeds):
        raise Sim2RealError("two_sample_auc needs at least one seed")
    tr = _frame_indices(samples, train_frames, "train_frames")
    te = _frame_indices(samples, test_frames, "test_frames")
    labels = [r.scene for r in samples.refs] if groups is None else list(groups)
    if len(labels) != len(samples.refs):
        raise Sim2RealError(f"groups has {len(labels)} entries for {len(samples.refs)} frames")
    g_tr, g_te = {labels[i] for i in tr}, {labels[i] for i in te}
    both = sorted(map(str, g_tr & g_te))
    if both:
        raise Sim2RealError(
            f"scene(s) {', '.join(both)} have frames on both the train and the test side of the two-sample test; "
            "the discriminator must be tested on scenes it was not trained on"
        )
    disc = cfg.disc if steps is None else dataclasses.replace(cfg.disc, steps=int(steps))
    cfg = dataclasses.replace(cfg, disc=disc)
    train, test = _subset(samples, tr), _subset(samples, te)
    sim_tr, sim_te = depth_sim[tr], depth_sim[te]

    aucs, baccs, counts = [], [], {}
    for seed in seeds:
        real_tr, fake_tr = _patch_sets(train, sim_tr, cfg, seed, pixels)
        real_te, fake_te = _patch_sets(test, sim_te, cfg, int(seed) + TEST_SEED_OFFSET, pixels)
        for name, s, where in (
            ("simulated", fake_tr, "train"),
            ("real", real_tr, "train"),
            ("simulated", fake_te, "test"),
            ("real", real_te, "test"),
        ):
            if len(s) < 2:
                whose = "the pixels valid for both real and simulated depth give" if pixels == "shared" else "has"
                raise Sim2RealError(
                    f"the {name} depth: {whose} {len(s)} valid patch(es) on the {where} frames; at least 2 are "
                    f"needed (patches need {cfg.disc.min_valid} valid pixels)"
                )
        model, _ = train_discriminator(
            real_tr, fake_tr, cfg.disc, seed=int(seed), val_fraction=0.0, progress=progress, device=device
        )
        p_real, p_sim = score_patches(model, real_te).cpu(), score_patches(model, fake_te).cpu()
        scores = torch.cat([p_real, p_sim])
        aucs.append(roc_auc(scores, torch.cat([torch.ones(len(p_real)), torch.zeros(len(p_sim))])))
        baccs.append(0.5 * (float((p_real >= 0.5).float().mean()) + float((p_sim < 0.5).float().mean())))
        counts = dict(
            n_train_real=len(real_tr), n_train_sim=len(fake_tr), n_test_real=len(real_te), n_test_sim=len(fake_te)
        )
    auc, auc_std = mean_std(aucs)
    bacc, bacc_std = mean_std(baccs)
    return {
        "auc": auc,
        "auc_std": auc_std,
        "auc_per_seed": aucs,
        "balanced_accuracy": bacc,
        "balanced_accuracy_std": bacc_std,
        "balanced_accuracy_per_seed": baccs,
        "pixels": pixels,
        "seeds": [int(s) for s in seeds],
        "steps": int(disc.steps),
        "n_train_frames": len(tr),
        "n_test_frames": len(te),
        "train_groups": sorted(map(str, g_tr)),
        "test_groups": sorted(map(str, g_te)),
        **counts,
    }


# ====================================================================== sensor effects reproduced
def _stack(x, name: str, shape=None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise DepthFormatError(f"{name} must be [H, W] or [F, H, W], got shape {np.asarray(x).shape}")
    if shape is not None and a.shape != shape:
        raise DepthFormatError(f"{name} has shape {a.shape}, expected {shape}")
    return a


def effect_reproduction(
    depth_sim,
    cad,
    real,
    effects: Mapping[str, np.ndarray],
    valid=None,
    kinds: Mapping[str, str] | None = None,
    fraction: float = 0.5,
    min_displacement_m: float = 0.005,
    max_abs_m: float | None = None,
) -> dict:
    """How much of each ground-truth sensor effect a simulator reproduces, pixel by pixel.

    depth_sim, cad, real: [F, H, W] (or [H, W]) metres, 0 = hole; `effects`: {component: bool mask of
    that shape}, the pixels where the real sensor's component acted (`flagging.effect_masks`, or
    `data.sensor.Capture.effects`); `valid` optionally restricts every count. Each effect's pixels E are
    its mask where the CAD is valid (& `valid`). By kind (`EFFECT_KINDS`, `kinds` overrides by name):

    - "hole" (edge_dropout, grazing_dropout, material_holes, range_limit): the real depth is a hole
      there. `reproduced` = share of E where the simulator also makes a hole (sim == 0); `real` = the
      same share for the real depth (1 at the native resolution; a reference after resizing).
    - "displacement" (thin_structures: a thin part replaced by what lies behind it; flying_pixels:
      foreground / background mixtures): on E' = E where real and CAD are valid and
      |real - cad| > `min_displacement_m`, `reproduced` = share of E' where the simulator moves the
      depth the same way by at least `fraction` of the real move: (sim - cad) * sign(real - cad) >=
      fraction * |real - cad| (sim valid); `holes` = share of E' where the simulator makes a hole
      instead (a missing thin part); `n_pixels` = |E'|.
    - "noise" (relief, lowres, bias, noise, quantization): on E'' = E where CAD, real and sim are
      all valid, the residuals r_real = real - cad and r_sim = sim - cad (each without |r| >=
      `max_abs_m` when given, as `metrics.residuals`): `std_ratio` = std(r_sim) / std(r_real)
      (1 = the effect's spread reproduced, 0 = none, e.g. clean CAD), `w1_m` = Wasserstein-1 distance
      of the two residual distributions (metres; `metrics.wasserstein_1d`), `real_std_m`, `sim_std_m`.

    In the procedural world the residual on a pixel mixes the sensor's effect with the geometry's
    difference (bevels, clutter, misplacement); in the sensor-only world (`data.world = sensor_only`)
    it is the sensor's alone. Undefined values (no pixel) are NaN.

    Returns {"effects": {name: {"kind", "n_pixels", ...}}, "holes_elsewhere": {"n_pixels", "sim",
    "real"}: hole rates on the CAD-valid pixels outside every hole effect's mask (a simulator's
    false holes; the real's should be ~0)}."""
    from sim2real_kit.metrics import wasserstein_1d

    sim = _stack(depth_sim, "depth_sim").astype(np.float32)
    cad = _stack(cad, "cad", sim.shape).astype(np.float32)
    real = _stack(real, "real", sim.shape).astype(np.float32)
    base = cad > 0
    if valid is not None:
        base &= _stack(valid, "valid", sim.shape).astype(bool)
    kinds = {**EFFECT_KINDS, **dict(kinds or {})}
    if not 0 < fraction <= 1:
        raise Sim2RealError(f"fraction must be in (0, 1], got {fraction}")

    def share(hit: np.ndarray, where: np.ndarray) -> float:
        n = int(where.sum())
        return float((hit & where).sum()) / n if n else math.nan

    out: dict[str, dict] = {}
    any_hole = np.zeros_like(base)
    for name, mask in effects.items():
        if name not in kinds:
            raise Sim2RealError(f"unknown sensor effect {name!r}; known: {', '.join(kinds)} (or pass kinds=)")
        kind = kinds[name]
        e = _stack(mask, f"effects[{name!r}]", sim.shape).astype(bool) & base
        if kind == "hole":
            any_hole |= e
            out[name] = {
                "kind": kind,
                "n_pixels": int(e.sum()),
                "reproduced": share(sim == 0, e),
                "real": share(real == 0, e),
            }
        elif kind == "displacement":
            move = real - cad
            e = e & (real > 0) & (np.abs(move) > min_displacement_m)
            same_way = (sim > 0) & ((sim - cad) * np.sign(move) >= fraction * np.abs(move))
            out[name] = {
                "kind": kind,
                "n_pixels": int(e.sum()),
                "reproduced": share(same_way, e),
                "holes": share(sim == 0, e),
            }
        elif kind == "noise":
            e = e & (real > 0) & (sim > 0)
            r_real, r_sim = (real - cad)[e].astype(np.float64), (sim - cad)[e].astype(np.float64)
            if max_abs_m is not None:
                r_real, r_sim = r_real[np.abs(r_real) < max_abs_m], r_sim[np.abs(r_sim) < max_abs_m]
            ok = r_real.size > 0 and r_sim.size > 0
            s_real = float(r_real.std()) if r_real.size else math.nan
            s_sim = float(r_sim.std()) if r_sim.size else math.nan
            out[name] = {
                "kind": kind,
                "n_pixels": int(e.sum()),
                "std_ratio": s_sim / s_real if ok and s_real > 0 else math.nan,
                "w1_m": wasserstein_1d(r_sim, r_real) if ok else math.nan,
                "real_std_m": s_real,
                "sim_std_m": s_sim,
            }
        else:
            raise Sim2RealError(f"effect {name!r}: unknown kind {kind!r}; valid: hole, displacement, noise")
    elsewhere = base & ~any_hole
    return {
        "effects": out,
        "holes_elsewhere": {
            "n_pixels": int(elsewhere.sum()),
            "sim": share(sim == 0, elsewhere),
            "real": share(real == 0, elsewhere),
        },
    }


def sensor_effect_reproduction(
    layout: DepthLayout, samples: SampleSet, depth_sim, cfg: Config, masks: Mapping[str, np.ndarray] | None = None
) -> dict | None:
    """`effect_reproduction` of a simulator's depth [F, S, S] on a sample set of a procedural dataset,
    against the sensor's ground-truth effect masks (`flagging.effect_masks`, re-made from dataset.yaml:
    one scene build and capture per frame; pass `masks` to reuse them), residuals beyond
    `cfg.data.max_diff_m` dropped. None for datasets without sensor ground truth (not procedural)."""
    if masks is None:
        masks = effect_masks(layout, samples.refs, samples.cad.shape[-1], cfg.data.eval_crop)
    if masks is None:
        return None
    return effect_reproduction(depth_sim, samples.cad, samples.real, masks, max_abs_m=cfg.data.max_diff_m)


__all__ = [
    "DISPLACEMENT_EFFECTS",
    "EFFECT_KINDS",
    "HOLE_EFFECTS",
    "NOISE_EFFECTS",
    "PIXELS",
    "TEST_SEED_OFFSET",
    "effect_reproduction",
    "pixel_masks",
    "sensor_effect_reproduction",
    "two_sample_auc",
]
