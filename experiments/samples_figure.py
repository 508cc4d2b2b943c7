"""Samples of every row of bench_stage2_controls.py on the same frames: one figure row per (seed, frame), the
CAD depth and the residuals (x − CAD, mm) of real, Stage-I, the Stage-I control and Stage-II side by side, each
panel titled with its residual W1 to real on that frame (matched pixels, the benchmark's metric).

    python experiments/samples_figure.py --seed-dir /tmp/s2c_1/seed1 --seed-dir /tmp/s2c_2/seed2 \
        --scene s0000 --frames 000 001 --out docs/figures/gpu_s2c_samples.png

A seed dir is bench_stage2_controls.py's <out>/seed<k> (or the part of it that experiments/gpu_stage2_controls.sh
tarred into samples_seed<k>.tgz before ff6f470). Since ff6f470 the script brings back val_seed<k>.tgz (each row's
own maps) and val_ref.tgz (CAD and real once): experiments/s2c_offline.py reads those, figure included."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# row name -> (column title, folder under the seed dir, depth key in it)
ROWS = {
    "stage1": ("Stage-I", "stage1", "sim1"),
    "control": ("Stage-I control\n(+ Stage-II's steps)", "controls/stage1_long/stage1", "sim1"),
    "stage2": ("Stage-II", "stage2", "sim2"),
}


def _frame_w1_mm(cad: np.ndarray, real: np.ndarray, sim: np.ndarray) -> float:
    from sim2real_kit.metrics import matched_residual_w1

    return 1000 * float(matched_residual_w1(cad[None], sim[None], real[None]))


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim2real_kit.depth import read_depth_png

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed-dir", type=Path, action="append", required=True)
    p.add_argument("--scene", default="s0000")
    p.add_argument("--frames", nargs="+", default=["000", "001"])
    p.add_argument("--clip-mm", type=float, default=150.0, help="colour range of the residual panels (± mm)")
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), help="the columns to show")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    rows = [ROWS[r] for r in args.rows]

    lines = [(d, f) for d in args.seed_dir for f in args.frames]
    fig, axes = plt.subplots(len(lines), 2 + len(rows), figsize=(3.0 * (2 + len(rows)), 2.9 * len(lines)))
    axes = np.atleast_2d(axes)
    for i, (seed_dir, frame) in enumerate(lines):
        base = seed_dir / "stage1" / "samples" / "val" / args.scene
        cad = read_depth_png(base / f"{frame}_gt.png")
        real = read_depth_png(base / f"{frame}_scan.png")
        panels = [("real", real)]
        for title, folder, key in rows:
            path = seed_dir / folder / "samples" / "val" / args.scene / f"{frame}_{key}.png"
            panels.append((title, read_depth_png(path)))
        valid = cad > 0
        ax = axes[i, 0]
        ax.imshow(np.where(valid, cad, np.nan), cmap="viridis")
        ax.set_title(f"{seed_dir.name} · {args.scene}/{frame}\nCAD depth [m]", fontsize=9)
        for j, (title, depth) in enumerate(panels, start=1):
            res = np.where(valid & (depth > 0), (depth - cad) * 1000, np.nan)
            ax = axes[i, j]
            im = ax.imshow(res, cmap="RdBu_r", vmin=-args.clip_mm, vmax=args.clip_mm)
            note = "" if title == "real" else f"\nW1 {_frame_w1_mm(cad, real, depth):.1f} mm"
            ax.set_title(f"{title} − CAD{note}", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[:, 1:], shrink=0.6, label="residual x − CAD [mm] (clipped)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80, bbox_inches="tight")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
