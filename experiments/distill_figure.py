"""Few-step samples of a teacher and its distilled students on the same val frames and initial noise: one figure row
per frame, the CAD depth, the real residual (real − CAD, mm), then the residual of the teacher at each of
`--teacher-steps` and of each student at its own step count, each panel titled with its W1 to real on that frame
(matched pixels, the benchmark's metric).

    python experiments/distill_figure.py --run /tmp/dd --frames 0 9 21 --teacher-steps 10 2 1 \
        --students /tmp/dd/stage1/distill_s2/pipeline /tmp/dd/stage1/distill_s1/pipeline \
        --out docs/figures/distill_samples_cpu.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim2real_kit.metrics import matched_residual_w1
    from sim2real_kit.pipeline import Sim2RealPipeline
    from sim2real_kit.run import RunFolder
    from sim2real_kit.simulate import load_pipeline

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--frames", type=int, nargs="+", default=[0, 1, 2], help="val frame indices")
    ap.add_argument("--teacher-steps", type=int, nargs="+", default=[10, 2, 1])
    ap.add_argument("--students", nargs="*", default=[], help="saved student pipelines")
    ap.add_argument("--seed", type=int, default=0, help="the initial noise of every panel")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    run = RunFolder(args.run)
    cfg = run.load_config()
    val = run.load_samples(1, "val", run.layout(cfg))
    idx = [i for i in args.frames if i < len(val.refs)]
    cad, real = val.cad[idx], val.real[idx]  # [F, S, S] metres
    teacher = load_pipeline(run, 1, cfg)
    columns = [(f"teacher, {s} step{'s' * (s > 1)}", teacher, s) for s in args.teacher_steps]
    for path in args.students:
        student = Sim2RealPipeline.from_pretrained(path)
        steps = int(student.config.distilled_steps)
        columns.append((f"student, {steps} step{'s' * (steps > 1)}", student, steps))
    sims = [
        (title, np.asarray(p(cad, num_inference_steps=s, generator=torch.Generator().manual_seed(args.seed)).depth))
        for title, p, s in columns
    ]

    def residual_mm(depth: np.ndarray, c: np.ndarray) -> np.ndarray:
        r = 1000 * (depth - c)
        return np.where((depth > 0) & (c > 0), r, np.nan)

    ncol = 2 + len(sims)
    fig, axes = plt.subplots(len(idx), ncol, figsize=(2.2 * ncol, 2.3 * len(idx)), squeeze=False)
    # colour range: the first column's (the teacher at its most steps) 99th percentile; real residuals beyond it
    # (the procedural world's geometry mismatches, metres) saturate
    lim = float(np.nanpercentile(np.abs(residual_mm(sims[0][1], cad)), 99))
    for row, _ in enumerate(idx):
        c, r = cad[row], real[row]
        axes[row, 0].imshow(np.where(c > 0, c, np.nan), cmap="viridis")
        axes[row, 0].set_title(f"CAD (m)\n{val.refs[idx[row]].scene}/{val.refs[idx[row]].frame}", fontsize=8)
        axes[row, 1].imshow(residual_mm(r, c), cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[row, 1].set_title("real − CAD (mm)", fontsize=8)
        for k, (title, depth) in enumerate(sims):
            w1 = 1000 * float(matched_residual_w1(c[None], depth[row][None], r[None]))
            axes[row, 2 + k].imshow(residual_mm(depth[row], c), cmap="RdBu_r", vmin=-lim, vmax=lim)
            axes[row, 2 + k].set_title(f"{title}\nW1 {w1:.1f} mm", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"{args.run}: residuals on the same val frames and initial noise (colour ±{lim:.0f} mm)", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
