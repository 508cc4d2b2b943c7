"""Which CAD-guided input should the 3D patch discriminator get (paper Sec. 3.3)? Per point, the
guided PointNet sees 6 channels: "offset" = (p - c, c) or "concat" = (p, c), p the depth point and c
the CAD point of the same pixel, both standardised per channel. "unguided" (p only) is the reference.
Every encoding is trained and scored on the same patches with the same seeds.

(a) Synthetic cases (1 thread, ~20 s CPU):
  - slope: real depth = CAD plane + an offset along its normal growing with the plane's tilt (a
    sensor on grazing surfaces); generated = the same offsets at the wrong tilts; depth alone has one
    distribution in both sets (`tests/test_discriminator.py::_slope_sets`, same construction);
  - noise: 32 px tilted planes 1.5-3 m away, real = CAD + 1 cm Gaussian noise, generated = the clean
    CAD, 8 px patches via `collect_patch_set` (`tests/test_discriminator.py::noisy_vs_clean`).
  Validation: whole frames held out (`train_discriminator`'s group split, 20 %).
(b) A run folder with Stage-I samples (`--run DIR`): train on the train split's patches
  (`flagging.patch_sets`, the run's `cfg.disc`), score the val split's: ROC-AUC, balanced accuracy at
  0.5, and for procedural data the agreement of the flags (P(real) < 0.5 on generated val patches)
  with the sensor's ground-truth effect masks (per effect: precision, recall, F1, and the base rate =
  share of valid patches carrying it; a patch carries an effect when >= 5 % of its pixels do; mean_f1
  averages F1 over the effects carried by some but not all patches).

    .venv/bin/python benchmarks/bench_disc_input.py                       # (a) only
    .venv/bin/python benchmarks/bench_disc_input.py --run runs/i17        # (a) + (b): ~3 min CPU on tiny i17

Writes docs/figures/disc_input.json (`--out`) and prints markdown tables (mean +- std over seeds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from sim2real_kit.camera import Camera
from sim2real_kit.config import DiscConfig
from sim2real_kit.models.discriminator import (
    PatchSet,
    collect_patch_set,
    roc_auc,
    score_patches,
    train_discriminator,
)

ENCODINGS = ("offset", "concat", "unguided")
MIN_EFFECT_FRACTION = (
    0.05  # a patch carries an effect when this share of its pixels does (flagging.flag_effect_agreement)
)


def disc_cfg(base: DiscConfig, encoding: str) -> DiscConfig:
    """`base` with the encoding's input ("unguided": cad_guidance off; guidance_input then unused)."""
    guided = encoding != "unguided"
    return dataclasses.replace(base, cad_guidance=guided, guidance_input=encoding if guided else base.guidance_input)


# ---------------------------------------------------------------------- (a) synthetic cases
def slope_sets(n: int = 600, num_points: int = 32, seed: int = 0, gain: float = 0.2) -> tuple[PatchSet, PatchSet]:
    """Tilted CAD planes (slope ~ N(0, 0.5) per axis, height ~ N(0, 0.2)); real depth = CAD + m n along
    the unit normal, m = gain * sin(tilt), + 0.005 noise; generated pairs share the depth process but
    their CAD sits where the offset has another patch's magnitude. Points [n, N, 3], patch units."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(2 * n, num_points, 2, generator=g) * 2 - 1
    slope = torch.randn(2 * n, 1, 2, generator=g) * 0.5
    height = torch.randn(2 * n, 1, 1, generator=g) * 0.2
    cad = torch.cat([xy, (xy * slope).sum(-1, keepdim=True) + height], -1)
    normal = torch.cat([-slope, torch.ones(2 * n, 1, 1)], -1)
    normal = normal / normal.norm(dim=-1, keepdim=True)
    m = gain * (1 - normal[..., 2:] ** 2).sqrt()
    depth = cad + m * normal + 0.005 * torch.randn(2 * n, num_points, 3, generator=g)
    other = n + torch.randperm(n, generator=g)
    fake_cad = cad[n:] + (m[n:] - m[other]) * normal[n:]
    src = torch.stack([torch.arange(n), torch.zeros(n, dtype=torch.long)], 1)
    return PatchSet(depth[:n], cad[:n], src), PatchSet(depth[n:], fake_cad, src.clone())


def noise_sets(cfg: DiscConfig, frames: int = 16, size: int = 32) -> tuple[PatchSet, PatchSet]:
    """Tilted planes 1.5-3 m away [F, size, size]; real = CAD + 1 cm noise, generated = clean CAD."""
    g = torch.Generator().manual_seed(0)
    cam = Camera(size * 1.1, size * 1.1, size / 2, size / 2, size, size)
    rays = torch.as_tensor(cam.pixel_rays(np.float32))
    normal = torch.randn(frames, 3, generator=g) * torch.tensor([0.3, 0.3, 0.0]) + torch.tensor([0.0, 0.0, -1.0])
    normal = normal / normal.norm(dim=1, keepdim=True)
    dist = 1.5 + 1.5 * torch.rand(frames, generator=g)
    cad = -dist[:, None, None] / torch.einsum("hwc,fc->fhw", rays, normal)
    g = torch.Generator().manual_seed(1)
    real = cad + 0.01 * torch.randn(cad.shape, generator=g)
    real_set, _ = collect_patch_set(real, cad, cam, cfg, g)
    fake_set, _ = collect_patch_set(cad.clone(), cad, cam, cfg, g)
    return real_set, fake_set


def synthetic(seeds: list[int]) -> dict:
    small = DiscConfig(num_points=32, batch_size=32, hidden=(32, 64, 128), head_hidden=(32,), lr=2e-3)
    cases = {
        "slope": (slope_sets(), dataclasses.replace(small, steps=150)),
        "noise_1cm": (noise_sets(dataclasses.replace(small, patch_size=8, stride=8)), small),
    }
    out = {}
    for name, ((real, fake), base) in cases.items():
        out[name] = {"steps": base.steps, "n_real": len(real), "n_fake": len(fake)}
        for enc in ENCODINGS:
            runs = []
            for seed in seeds:
                _, h = train_discriminator(real, fake, disc_cfg(base, enc), seed=seed, val_fraction=0.2, progress=False)
                runs.append({"auc": h["val_auc"], "bal_acc": h["val_accuracy"]})
            out[name][enc] = summarise(runs)
            print(f"  {name:9s} {enc:8s} AUC {fmt(out[name][enc]['auc'])}", flush=True)
    return out


# ---------------------------------------------------------------------- (b) a run folder
def run_folder(run_dir: Path, seeds: list[int], steps: int | None, max_frames: int | None) -> dict:
    from sim2real_kit import flagging
    from sim2real_kit.patches import mask_box_fraction
    from sim2real_kit.run import RunFolder

    run = RunFolder(run_dir)
    cfg = run.load_config()
    layout = run.layout(cfg)
    train, val = run.load_samples(1, "train", layout), run.load_samples(1, "val", layout)
    if max_frames:
        train, val = (take(s, max_frames) for s in (train, val))
    size = val.cad.shape[-1]
    t0 = time.perf_counter()
    masks = flagging.effect_masks(layout, val.refs, size, cfg.data.eval_crop)  # {effect: [F, S, S]} or None
    t_masks = time.perf_counter() - t0
    base = cfg.disc if steps is None else dataclasses.replace(cfg.disc, steps=steps)
    out: dict = {
        "run": str(run_dir),
        "frames_train": len(train.refs),
        "frames_val": len(val.refs),
        "frame_size": size,
        "disc": {k: v for k, v in dataclasses.asdict(base).items() if not k.startswith("_")},
        "effect_masks": masks is not None,
        "effect_masks_s": round(t_masks, 1),
    }
    per_enc: dict[str, list[dict]] = {e: [] for e in ENCODINGS}
    for seed in seeds:
        real_tr, fake_tr, boxes = flagging.patch_sets(train, 1, cfg, seed=seed)
        real_va, fake_va, _ = flagging.patch_sets(val, 1, cfg, seed=seed + 7)
        real_set, fake_set = PatchSet.from_patch_points(real_tr), PatchSet.from_patch_points(fake_tr)
        out.setdefault("patches", {"train_real": len(real_set), "train_fake": len(fake_set)})
        out["patches"].update(val_real=int(real_va.valid.sum()), val_fake=int(fake_va.valid.sum()))
        carried = (
            None
            if masks is None
            else {
                k: (mask_box_fraction(torch.from_numpy(m[:, None].astype(np.float32)), boxes) >= MIN_EFFECT_FRACTION)
                & fake_va.valid
                for k, m in masks.items()
            }
        )
        for enc in ENCODINGS:
            t = time.perf_counter()
            model, _ = train_discriminator(
                real_set, fake_set, disc_cfg(base, enc), seed=seed, val_fraction=0.0, progress=False
            )
            s_real, s_fake = score_patches(model, real_va), score_patches(model, fake_va)  # [F, P]
            r, f = s_real[real_va.valid], s_fake[fake_va.valid]
            res = {
                "auc": roc_auc(torch.cat([r, f]), torch.cat([torch.ones(len(r)), torch.zeros(len(f))])),
                "bal_acc": 0.5 * (float((r >= 0.5).float().mean()) + float((f < 0.5).float().mean())),
                "flag_rate": float((f < 0.5).float().mean()),
                "seconds": time.perf_counter() - t,
            }
            if carried is not None:
                flagged = (s_fake < 0.5) & fake_va.valid
                f1s = []
                for name, has in carried.items():
                    tp, nf, nh = float((has & flagged).sum()), float(flagged.sum()), float(has.sum())
                    prec = tp / nf if nf else float("nan")
                    rec = tp / nh if nh else float("nan")
                    f1 = 2 * prec * rec / (prec + rec) if nf and nh and prec + rec > 0 else float("nan")
                    res[f"{name}/precision"], res[f"{name}/recall"], res[f"{name}/f1"] = prec, rec, f1
                    res[f"{name}/base_rate"] = nh / float(fake_va.valid.sum())
                    if 0 < nh < float(fake_va.valid.sum()):  # an effect on no / every patch says nothing
                        f1s.append(f1)
                res["mean_f1"] = float(np.nanmean(f1s)) if np.isfinite(f1s).any() else float("nan")
            per_enc[enc].append(res)
            print(
                f"  run seed {seed} {enc:8s} AUC {res['auc']:.3f} bal acc {res['bal_acc']:.3f} "
                f"({res['seconds']:.0f} s)",
                flush=True,
            )
    for enc in ENCODINGS:
        out[enc] = summarise(per_enc[enc])
    return out


def take(samples, n: int):
    """The first `n` frames of a SampleSet (spread over scenes as the split lists them)."""
    return dataclasses.replace(
        samples,
        refs=samples.refs[:n],
        cad=samples.cad[:n],
        real=samples.real[:n],
        sims={k: v[:n] for k, v in samples.sims.items()},
        poses=samples.poses[:n],
    )


# ---------------------------------------------------------------------- summaries
def summarise(runs: list[dict]) -> dict:
    """{metric: {mean, std, values}} over seeds (std 0 for one seed)."""
    out = {}
    for key in runs[0]:
        vals = [float(r[key]) for r in runs]
        finite = [v for v in vals if np.isfinite(v)]
        out[key] = {
            "mean": statistics.fmean(finite) if finite else float("nan"),
            "std": statistics.stdev(finite) if len(finite) > 1 else 0.0,
            "values": [round(v, 4) for v in vals],
        }
    return out


def fmt(m: dict) -> str:
    return f"{m['mean']:.3f} +- {m['std']:.3f}"


def table(results: dict) -> str:
    """Markdown: ROC-AUC / balanced accuracy per case, then the run's per-effect flag precision / recall."""
    head = "| case | metric | " + " | ".join(ENCODINGS) + " |"
    lines = [head, "|---|---|" + "---|" * len(ENCODINGS)]
    for case in (c for c in results.get("synthetic", {}) if isinstance(results["synthetic"][c], dict)):
        for metric in ("auc", "bal_acc"):
            row = [fmt(results["synthetic"][case][e][metric]) for e in ENCODINGS]
            lines.append(f"| {case} (held-out frames) | {metric} | " + " | ".join(row) + " |")
    run = results.get("run")
    if not run:
        return "\n".join(lines)
    for metric in ("auc", "bal_acc", "flag_rate") + (("mean_f1",) if "mean_f1" in run["offset"] else ()):
        row = [fmt(run[e][metric]) for e in ENCODINGS]
        lines.append(f"| run val split | {metric} | " + " | ".join(row) + " |")
    effects = sorted(k.split("/")[0] for k in run["offset"] if k.endswith("/base_rate"))
    if effects:
        lines += ["", "| effect (run val split) | base rate | " + " | ".join(f"{e} P / R" for e in ENCODINGS) + " |"]
        lines.append("|---|---|" + "---|" * len(ENCODINGS))
        for name in effects:
            base = run["offset"][f"{name}/base_rate"]["mean"]
            if base == 0:
                continue
            cells = [
                f"{run[e][f'{name}/precision']['mean']:.3f} / {run[e][f'{name}/recall']['mean']:.3f}" for e in ENCODINGS
            ]
            lines.append(f"| {name} | {base:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finite_or_null(x):
    """`x` with NaN / inf floats replaced by None (strict JSON)."""
    if isinstance(x, dict):
        return {k: finite_or_null(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_or_null(v) for v in x]
    return None if isinstance(x, float) and not np.isfinite(x) else x


def timing(wall0: float, cpu0: float) -> tuple[float, float]:
    """(wall, CPU) seconds since `wall0` (perf_counter) and `cpu0` (process_time)."""
    return round(time.perf_counter() - wall0, 1), round(time.process_time() - cpu0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="run folder with Stage-I samples of train and val")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (training and patch sampling)")
    ap.add_argument("--steps", type=int, default=None, help="run part: discriminator steps (default: the run's)")
    ap.add_argument("--max-frames", type=int, default=None, help="run part: first N frames of each split")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs/figures/disc_input.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    results: dict = {
        "command": "python benchmarks/bench_disc_input.py"
        + (f" --run {args.run}" if args.run else "")
        + (f" --steps {args.steps}" if args.steps else "")
        + (f" --max-frames {args.max_frames}" if args.max_frames else "")
        + f" --seeds {args.seeds}"
        + (" --skip-synthetic" if args.skip_synthetic else ""),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} CPU, {args.threads} thread(s)",
        "seeds": seeds,
    }
    t, cpu = time.perf_counter(), time.process_time()
    if not args.skip_synthetic:
        results["synthetic"] = synthetic(seeds)
        results["synthetic"]["seconds"], results["synthetic"]["cpu_seconds"] = timing(t, cpu)
    if args.run is not None:
        t1, cpu1 = time.perf_counter(), time.process_time()
        results["run"] = run_folder(args.run, seeds, args.steps, args.max_frames)
        results["run"]["seconds"], results["run"]["cpu_seconds"] = timing(t1, cpu1)
    results["seconds"] = timing(t, cpu)[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(finite_or_null(results), indent=1, allow_nan=False) + "\n")
    print(table(results))
    print(f"wrote {args.out} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
