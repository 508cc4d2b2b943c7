"""Does the Stage-I target's scale decide whether the diffusion model samples or regresses? (paper Sec. 3.2,
kit option `model.target_std`, docs/results_gpu.md)

Trains Stage-I twice on the same procedural dataset with the same seed and steps: once with the release's
fixed `model.residual_scale = 0.5`, once with `model.target_std = 0.5` (the scale set from the train split so
the target has std 0.5). Each is then sampled on the val frames with DDIM-5 and DDIM-50 and with two seeds:

- residual W1 vs real (mm; clean CAD for reference): realism of the residual distribution;
- residual std (mm) of the output vs the real sensor's: a regressor of E[residual | CAD] is too smooth;
- seed spread (mm, mean |seed 0 - seed 1|): a sampler draws different noise for different seeds;
- steps gap (mm, mean |DDIM-5 - DDIM-50|, same seed).

    .venv/bin/python experiments/target_scale.py --out /tmp/target_scale            # tiny, CPU
    python3 experiments/target_scale.py --preset small --steps 600 --data DIR --out DIR  # GPU

The dataset is generated once into `OUT/data` (tiny preset's procedural world) unless `--data` names one.
Prints a table and writes `OUT/target_scale.json`."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from sim2real_kit.data.dataset import PairedDepthDataset
from sim2real_kit.metrics import residual_w1, residuals
from sim2real_kit.run import RunFolder, prepare_data, resolve_config
from sim2real_kit.simulate import load_pipeline
from sim2real_kit.stage1 import train_stage1


def sample(pipe, cad: torch.Tensor, steps: int, seed: int, batch_size: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    return pipe(cad, num_inference_steps=steps, generator=gen, batch_size=batch_size).depth.cpu().numpy()


def evaluate(run: Path, cad: np.ndarray, real: np.ndarray, batch_size: int, device: str) -> dict:
    pipe = load_pipeline(run, 1, RunFolder(run).load_config()).to(device)
    cad_t = torch.from_numpy(cad)
    out = {"residual_scale": float(pipe.config.residual_scale)}
    d50 = sample(pipe, cad_t, 50, 0, batch_size)
    d5 = sample(pipe, cad_t, 5, 0, batch_size)
    d50b = sample(pipe, cad_t, 50, 1, batch_size)
    both = (cad > 0) & (d50 > 0) & (d50b > 0) & (d5 > 0)
    out["w1_ddim50_mm"] = 1000 * residual_w1(cad, d50, real)
    out["w1_ddim5_mm"] = 1000 * residual_w1(cad, d5, real)
    out["w1_ddim50_seed1_mm"] = 1000 * residual_w1(cad, d50b, real)
    out["residual_std_mm"] = 1000 * float(np.std(residuals(cad, d50)))
    out["seed_spread_mm"] = 1000 * float(np.abs(d50 - d50b)[both].mean())
    out["steps_gap_mm"] = 1000 * float(np.abs(d50 - d5)[both].mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=300, help="Stage-I optimizer steps of each run")
    ap.add_argument("--data", default="", help="an existing dataset (default: generate OUT/data)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--val-frames", type=int, default=32)
    ap.add_argument("--std", type=float, default=0.5, help="model.target_std of the scaled run")
    ap.add_argument("--override", action="append", default=[], help="extra config overrides for both runs")
    args = ap.parse_args()

    out = Path(args.out)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.data:
        data = Path(args.data)
    else:
        base = out / "base"
        cfg = resolve_config(base, args.preset)
        data = prepare_data(base, cfg, progress=False).root
    common = [f"data.root={data}", f"train.steps={args.steps}", "train.val_frames=8", *args.override]
    variants = {
        "fixed 0.5": ["model.target_std=0.0", "model.residual_scale=0.5"],
        f"std {args.std}": [f"model.target_std={args.std}"],
    }
    cfg = resolve_config(out / "probe", args.preset, overrides=common, save=False)
    val = PairedDepthDataset.from_config(cfg, data, "val", train=False, max_frames=args.val_frames)
    items = [val[i] for i in range(len(val))]
    cad = np.stack([it["cad"][0].numpy() for it in items])
    real = np.stack([it["real"][0].numpy() for it in items])
    results = {"preset": args.preset, "steps": args.steps, "frames": len(items), "device": device}
    results["w1_cad_mm"] = 1000 * residual_w1(cad, cad, real)
    results["real_residual_std_mm"] = 1000 * float(np.std(residuals(cad, real)))
    threads = os.environ.get("OMP_NUM_THREADS", str(torch.get_num_threads()))
    for name, extra in variants.items():
        run = out / name.replace(" ", "_")
        t0 = time.perf_counter()
        summary = train_stage1(run, resolve_config(run, args.preset, overrides=[*common, *extra]), progress=False)
        row = {"train_s": time.perf_counter() - t0, "loss": summary.get("loss")}
        row.update(evaluate(run, cad, real, batch_size=16, device=device))
        results[name] = row
        print(name, json.dumps(row), flush=True)
    results["threads"] = threads
    (out / "target_scale.json").write_text(json.dumps(results, indent=2))
    print(
        f"\n{args.preset}, {args.steps} steps, {len(items)} val frames; clean CAD W1 {results['w1_cad_mm']:.1f} mm, "
        f"real residual std {results['real_residual_std_mm']:.1f} mm"
    )
    keys = [
        "residual_scale",
        "w1_ddim50_mm",
        "w1_ddim5_mm",
        "w1_ddim50_seed1_mm",
        "residual_std_mm",
        "seed_spread_mm",
        "steps_gap_mm",
    ]
    print("| variant | " + " | ".join(keys) + " |")
    for name in variants:
        print(f"| {name} | " + " | ".join(f"{results[name][k]:.3g}" for k in keys) + " |")


if __name__ == "__main__":
    main()
