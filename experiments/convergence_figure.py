"""The figure of Stage-I's convergence run (experiments/stage1_convergence.py): the loss, W1 and the two-sample
AUC per milestone, and the residual (simulated − CAD) of two val frames at every milestone beside the real one.

    python experiments/convergence_figure.py docs/results_data/gpu_stage1_convergence_h100 \\
        --out docs/figures/gpu_stage1_convergence.png
    python experiments/convergence_figure.py docs/results_data/gpu_stage1_convergence_ema_h200 --label "EMA" \\
        --baseline docs/results_data/gpu_stage1_convergence_h100 --baseline-label "no EMA" \\
        --out docs/figures/gpu_stage1_convergence_ema.png"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sim2real_kit.depth import read_depth_png  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="folder with convergence.json, stage1_losses.csv, samples/samples_<N>/")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--frames", nargs="+", default=["000", "002"])
    ap.add_argument("--label", default="", help="name of this run in the legends (with --baseline)")
    ap.add_argument("--baseline", type=Path, help="another convergence run whose W1 and AUC are drawn beside")
    ap.add_argument("--baseline-label", default="baseline")
    args = ap.parse_args(argv)
    rows = json.loads((args.data / "convergence.json").read_text())
    base = json.loads((args.baseline / "convergence.json").read_text()) if args.baseline else []
    tag = f" ({args.label})" if args.label else ""
    losses = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader((args.data / "stage1_losses.csv").open())]
    steps = [r["steps"] for r in rows]
    cols = len(rows) + 1
    fig = plt.figure(figsize=(2.0 * cols, 3.2 + 2.0 * len(args.frames)), constrained_layout=True)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.6, len(args.frames)])
    ax, ax_w1 = top.subplots(1, 2)
    s, v = np.array(losses).T
    ax.plot(s, v, lw=0.6, alpha=0.5, label="loss (every 10 steps)")
    k = 15
    ax.plot(s[k - 1 :], np.convolve(v, np.ones(k) / k, "valid"), lw=1.5, label=f"running mean of {k}")
    flat = "flat" if abs(rows[-1]["loss_change"]) < 2 * rows[-1].get("loss_change_sem", 0) else "still falling"
    ax.set(
        xlabel="step", ylabel="denoising loss", yscale="log", title=f"Stage-I loss{tag}: {flat} at {steps[-1]} steps"
    )
    ax.legend(fontsize=7)
    ax = ax_w1
    ax.plot(steps, [r["w1_mm"] for r in rows], "o-", label=f"residual W1 matched (mm){tag}")
    if base:
        bsteps = [r["steps"] for r in base]
        ax.plot(bsteps, [r["w1_mm"] for r in base], "o-", color="grey", alpha=0.6, label=f"W1, {args.baseline_label}")
    ax.axhline(rows[0]["w1_cad_mm"], color="grey", ls="--", lw=1, label="clean CAD")
    ax.set(
        xlabel="Stage-I steps",
        ylabel="W1 to real (mm)",
        ylim=(0, 1.4 * rows[0]["w1_cad_mm"]),  # headroom above clean CAD for the legends
        title="W1 and two-sample AUC per milestone",
    )
    ax2 = ax.twinx()
    ax2.plot(steps, [r.get("auc", np.nan) for r in rows], "s:", color="C3", label=f"two-sample AUC{tag}")
    if base:
        ax2.plot(
            bsteps,
            [r.get("auc", np.nan) for r in base],
            "s:",
            color="C3",
            alpha=0.35,
            label=f"AUC, {args.baseline_label}",
        )
    ax2.set(ylabel="AUC (0.5: like real)", ylim=(0.5, 1.15))  # headroom above 1.0 for the legends
    ax.legend(loc="upper left", fontsize=7)
    ax2.legend(loc="upper right", fontsize=7)
    panels_axes = bottom.subplots(len(args.frames), cols, squeeze=False)
    for i, frame in enumerate(args.frames):
        d = args.data / "samples" / f"samples_{steps[-1]}"
        cad = read_depth_png(d / f"{frame}_gt.png")
        real = read_depth_png(d / f"{frame}_scan.png")
        ok = cad > 0
        panels = [("real", np.where(ok & (real > 0), real - cad, np.nan))]
        for n in steps:
            sim = read_depth_png(args.data / "samples" / f"samples_{n}" / f"{frame}_sim1.png")
            panels.append((f"{n} steps", np.where(ok & (sim > 0), sim - cad, np.nan)))
        for j, (title, res) in enumerate(panels):
            a = panels_axes[i, j]
            im = a.imshow(1000 * res, cmap="RdBu_r", vmin=-150, vmax=150)
            a.set_title(f"{title}" if i == 0 else "", fontsize=8)
            a.set_xticks([]), a.set_yticks([])
            if j == 0:
                a.set_ylabel(f"val s0000/{frame}", fontsize=8)
    bottom.colorbar(im, ax=panels_axes[:, -1], fraction=0.05, label="residual mm (simulated or real − CAD)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
