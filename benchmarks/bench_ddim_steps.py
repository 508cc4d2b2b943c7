"""Quality vs DDIM steps, trailing vs leading timestep spacing, on a trained run (issue 17, item 7).

For the saved pipeline of stage `--stage` of a run folder, sample the val split with each step count and each
spacing (same initial noise), and report the residual W1 to real (mm; `metrics.residual_w1`) and frames/s.
Leading spacing with `steps_offset 1` (the release) starts 10-step sampling at t = 901 and 4-step at 751;
trailing starts at t = 999 whatever the count.

    python benchmarks/bench_ddim_steps.py --run runs/demo --steps 1 2 4 10 20 50 --out docs/figures/cpu_ddim_steps.json

Prints a markdown table; `--out` writes JSON (and a PNG of the curve beside it)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--stage", type=int, default=1)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 10, 20, 50])
    ap.add_argument("--frames", type=int, default=32, help="val frames (first N)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from diffusers import DDIMScheduler

    from sim2real_kit.metrics import residual_w1
    from sim2real_kit.run import RunFolder
    from sim2real_kit.simulate import load_pipeline

    run = RunFolder(args.run)
    cfg = run.load_config()
    pipe = load_pipeline(run, args.stage, cfg)
    val = run.load_samples(args.stage, "val", run.layout(cfg))
    cad, real = val.cad[: args.frames], val.real[: args.frames]
    schedulers = {
        "trailing": DDIMScheduler.from_config({**dict(pipe.scheduler.config), "timestep_spacing": "trailing"}),
        "leading": DDIMScheduler.from_config({**dict(pipe.scheduler.config), "timestep_spacing": "leading"}),
    }
    rows = []
    w1_cad = 1000 * residual_w1(cad, cad, real)
    for spacing, scheduler in schedulers.items():
        pipe.scheduler = scheduler
        for steps in args.steps:
            t0 = time.perf_counter()
            out = pipe(
                torch.from_numpy(cad), num_inference_steps=steps, generator=torch.Generator().manual_seed(args.seed)
            )
            seconds = time.perf_counter() - t0
            depth = out.depth.cpu().numpy()
            scheduler.set_timesteps(steps)
            rows.append(
                {
                    "spacing": spacing,
                    "steps": steps,
                    "first_t": int(scheduler.timesteps[0]),
                    "w1_mm": 1000 * residual_w1(cad, depth, real),
                    "frames_per_s": len(cad) / seconds,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    lines = [
        f"run {args.run}, stage {args.stage}, {len(cad)} val frames, seed {args.seed}; clean CAD W1 {w1_cad:.1f} mm",
        "",
        "| steps | trailing: first t | trailing W1 mm | leading: first t | leading W1 mm | frames/s (trailing) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for steps in args.steps:
        tr = next(r for r in rows if r["spacing"] == "trailing" and r["steps"] == steps)
        le = next(r for r in rows if r["spacing"] == "leading" and r["steps"] == steps)
        lines.append(
            f"| {steps} | {tr['first_t']} | {tr['w1_mm']:.1f} | {le['first_t']} | {le['w1_mm']:.1f} | "
            f"{tr['frames_per_s']:.1f} |"
        )
    print("\n".join(lines))
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"run": str(args.run), "stage": args.stage, "frames": len(cad), "w1_cad_mm": w1_cad, "rows": rows}
        args.out.write_text(json.dumps(record, indent=1))
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for spacing in schedulers:
            pts = [(r["steps"], r["w1_mm"]) for r in rows if r["spacing"] == spacing]
            ax.plot(*np.array(pts).T, marker="o", label=spacing)
        ax.axhline(w1_cad, color="0.5", ls="--", label="clean CAD")
        ax.set_xscale("log")
        ax.set_xlabel("DDIM steps")
        ax.set_ylabel("residual W1 to real (mm)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out.with_suffix(".png"), dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
