"""Issue 22 (640 x 480 frames/s): does a pixel-space Stage-I hold its quality when it runs on a whole window of the
frame in one pass (`sampling.native_mode=full`, `tiling.simulate_full`) instead of MultiDiffusion tiles (`tiles`,
`tiling.simulate_tiled`), and which is faster? On the real sample (YCB-Video, Asus Xtion, 640 x 480): the few-shot
Stage-I of the benchmark's real-sample section (trained once on native-resolution crops with the held-out object
out of the loss, reused when the run folder already holds it), scored on the held-out object with both modes over
the same sampling seeds by `evaluate_real_sample` (its W1 / holes / edge and flat columns), then timed: the
held-out object's pixels and every CAD pixel of one frame, each mode alone, same process.

    python experiments/full_frame.py --run runs/demo_copy --seeds 3 --json docs/results_data/full_frame_tiny.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls (after none: the first call is a call like the others here)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--run", type=Path, required=True, help="a run folder (the demo's: its real-sample Stage-I is reused)"
    )
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats per mode (median)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--override", action="append", default=[], help="config override KEY=VALUE (repeatable)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from sim2real_kit.real_sample import (
        evaluate_real_sample,
        import_real_sample,
        load_frames,
        resolve_holdout,
        simulate_tiles,
        train_heldout_stage1,
    )
    from sim2real_kit.run import resolve_config

    result: dict = {"run": str(args.run), "threads": torch.get_num_threads(), "modes": {}}
    for mode in ("tiles", "full"):
        cfg = resolve_config(args.run, args.preset, overrides=[*args.override, f"sampling.native_mode={mode}"],
                             save=False)  # fmt: skip
        res = evaluate_real_sample(args.run, cfg, seeds=args.seeds, out=args.run / f"full_frame_{mode}", progress=False)
        rows = {r: res.row(r, "stage1") for r in ("heldout",)}
        result["modes"][mode] = {
            "heldout": {k: rows["heldout"][k] for k in rows["heldout"] if k not in ("region", "simulator")},
            "cad_w1_mm": res.row("heldout", "cad")["w1_mm"],
            "physical_w1_mm": res.row("heldout", "physical")["w1_mm"],
            "reused_stage1": bool(res.summary["stage1"].get("reused", False)),
        }
        print(mode, json.dumps(result["modes"][mode]["heldout"], default=str)[:400], flush=True)
    # speed: the same trained Stage-I, the held-out object's pixels, then every CAD pixel of frame 0
    frames = load_frames(import_real_sample(args.run, progress=False))
    holdout = resolve_holdout(frames, cfg.benchmark.real_sample_holdout or None)
    steps = int(cfg.benchmark.real_sample_steps or cfg.train.steps)
    pipe, _ = train_heldout_stage1(frames, cfg, holdout, args.run.joinpath("real_sample", "stage1"), steps)
    held = frames.object_mask(holdout)
    one = np.zeros_like(held)
    one[0] = frames.cad[0] > 0
    for name, region in (("heldout_all_frames", held), ("frame0_all_cad", one)):
        for mode, blend in (("tiles", "sample"), ("full", "full")):
            sec = timed(
                lambda r=region, b=blend: simulate_tiles(pipe, frames, r, 0, cfg.sampling.steps, blend=b), args.repeats
            )
            result.setdefault("seconds", {}).setdefault(name, {})[mode] = sec
            print(f"{name} {mode}: {sec:.2f} s", flush=True)
    for t in result["seconds"].values():
        t["full_speedup"] = t["tiles"] / t["full"]
    result["frames"], result["sampling_steps"] = len(frames.refs), int(cfg.sampling.steps)
    print(json.dumps(result["seconds"], indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
