"""Where does the real-sample Stage-I's heavy residual tail lie (docs/results.md, "One window instead of tiles":
tiles p99 18.7 mm vs the Xtion's 5.4)? Samples the held-out object once per mode (`simulate_tiles`, seed 0) with
the run's trained few-shot Stage-I and splits the pixels with |CAD - depth| > 10 mm by distance to the object's
silhouette (px), by distance to the nearest tile border, and by frame, beside the real capture's.

    python experiments/heldout_tail.py --run /tmp/ff_run      # a run folder whose real_sample/stage1 is trained
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--big-mm", type=float, default=10.0)
    args = ap.parse_args(argv)

    import numpy as np
    from scipy import ndimage

    from sim2real_kit.real_sample import (
        import_real_sample,
        load_frames,
        resolve_holdout,
        simulate_tiles,
        train_heldout_stage1,
    )
    from sim2real_kit.run import resolve_config
    from sim2real_kit.tiling import tile_boxes

    cfg = resolve_config(args.run, args.preset, save=False)
    frames = load_frames(import_real_sample(args.run, progress=False))
    holdout = resolve_holdout(frames, cfg.benchmark.real_sample_holdout or None)
    steps = int(cfg.benchmark.real_sample_steps or cfg.train.steps)
    pipe, _ = train_heldout_stage1(frames, cfg, holdout, args.run / "real_sample" / "stage1", steps)
    held = frames.object_mask(holdout)
    size = int(cfg.data.size)
    silhouette = np.stack([ndimage.distance_transform_edt(h) for h in held])  # px to the object's outline
    border = np.full(held.shape, np.inf)  # px to the nearest tile border (tiles as simulate_tiles lays them)
    rows, cols = np.mgrid[0 : held.shape[1], 0 : held.shape[2]]
    for f in range(held.shape[0]):
        for x, y in tile_boxes(held[f], size, size - size // 4):
            inside = (cols >= x) & (cols < x + size) & (rows >= y) & (rows < y + size)
            edge = np.minimum.reduce([cols - x, x + size - 1 - cols, rows - y, y + size - 1 - rows]).astype(float)
            border[f] = np.where(inside, np.minimum(border[f], edge), border[f])
    real_res = (frames.cad - frames.real) * 1000.0
    for mode, blend in (("tiles", "sample"), ("full", "full")):
        depth = simulate_tiles(pipe, frames, held, 0, cfg.sampling.steps, blend=blend)
        ok = held & (depth > 0) & (frames.real > 0)
        res = np.abs((frames.cad - depth) * 1000.0)[ok]
        real = np.abs(real_res[ok])
        big = res > args.big_mm
        print(f"{mode}: {ok.sum()} px, |res| p99 {np.percentile(res, 99):.2f} mm (real {np.percentile(real, 99):.2f}), "
              f"> {args.big_mm:g} mm: {big.mean() * 100:.2f} % (real {(real > args.big_mm).mean() * 100:.2f} %)")  # fmt: skip
        if not big.any():
            continue
        print(f"  those px: median {np.median(silhouette[ok][big]):.1f} px from the silhouette (all px "
              f"{np.median(silhouette[ok]):.1f}), {np.median(border[ok][big]):.1f} px from a tile border (all "
              f"{np.median(border[ok]):.1f}), signed residual mean {((frames.cad - depth) * 1000.0)[ok][big].mean():.1f} mm")  # fmt: skip
        for lo, hi in ((0, 2), (2, 5), (5, np.inf)):
            band = (silhouette[ok] > lo) & (silhouette[ok] <= hi)
            print(f"  {lo}-{hi} px from the silhouette: > {args.big_mm:g} mm {(res[band] > args.big_mm).mean() * 100:.2f} % "
                  f"(real {(real[band] > args.big_mm).mean() * 100:.2f} %), {band.sum()} px")  # fmt: skip
        for f in range(held.shape[0]):
            keep = ok[f]
            r = np.abs((frames.cad[f] - depth[f]) * 1000.0)[keep]
            print(f"  frame {f}: > {args.big_mm:g} mm {(r > args.big_mm).mean() * 100:.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
