"""DataLoader throughput of PairedDepthDataset: pairs/s at the sd21 model size (512 px).

Target (Foundation issue): >= 300 pairs/s with 2 workers on the 2-core CI machine, so data
loading never starves a GPU step. Usage:
    python benchmarks/bench_data.py [--size 512] [--workers 2] [--frames 256] [--batches 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import plane_layout

from sim2real_kit.data.dataset import MAP_KEYS, PairedDepthDataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--training-keys", action="store_true", help="only the maps training reads (cad_n, target, mask)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # ARKit-sized 256x192 frames (the LASA raw size)
        plane_layout(Path(tmp) / "ds", scenes=args.frames // 16 + 1, frames=16, width=256, height=192)
        keys = ("cad_n", "target", "mask") if args.training_keys else MAP_KEYS
        ds = PairedDepthDataset(Path(tmp) / "ds", "train", size=args.size, keys=keys)
        loader = torch.utils.data.DataLoader(
            ds, batch_size=args.batch, shuffle=True, num_workers=args.workers, persistent_workers=args.workers > 0
        )
        n, it = 0, iter(loader)
        next(it)  # warm-up: worker start
        t0 = time.perf_counter()
        for _ in range(args.batches):
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            n += batch["target"].shape[0]
        dt = time.perf_counter() - t0
    print(
        f"PairedDepthDataset train transform ({len(keys)} maps), 256x192 -> {args.size} px, {args.workers} workers, "
        f"batch {args.batch}: {n / dt:.0f} pairs/s ({n} pairs in {dt:.2f} s; torch {torch.__version__}, "
        f"numpy {np.__version__})"
    )


if __name__ == "__main__":
    main()
