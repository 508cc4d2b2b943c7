"""Torch threads on a loaded CPU: tiny-model training img/s with other programs keeping cores busy, at torch's
default thread count and at `jobs.adapt_threads()`'s (the cores left free), in ONE process.

    .venv/bin/python benchmarks/bench_threads.py                    # loads 0 and 1 busy core, tiny, batch 8, bf16
    .venv/bin/python benchmarks/bench_threads.py --loads 0 1 --json docs/results_data/threads_load.json

What is timed: `bench_train.run_variant` (the library's `Trainer.step` on Stage-I's tiny model, the `bf16`
variant: the demo's `mixed_precision: fast` on this CPU). A load is N spawned Python busy loops
(`while True: pass`), started 1 s before and killed after each measurement; `adapt` calls
`jobs.adapt_threads()` with the load running, as `notebook.setup` does at the start of every notebook.
Why: torch's intra-op threads meet at every op, so one thread on a shared core stalls the others (docs/performance.md)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def measure(load: int, mode: str, args) -> dict:
    """img/s of the tiny training step with `load` busy loops beside it; mode 'default' | 'adapt'."""
    from bench_train import run_variant

    from sim2real_kit import jobs

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
    try:
        time.sleep(1.0)
        torch.set_num_threads(args.default_threads)
        if mode == "adapt":
            env = os.environ.pop("OMP_NUM_THREADS", None)
            jobs.adapt_threads()
            if env is not None:
                os.environ["OMP_NUM_THREADS"] = env
        threads = torch.get_num_threads()
        with tempfile.TemporaryDirectory(prefix="bench_threads_") as tmp:
            r = run_variant(args.preset, "bf16", args, torch.device("cpu"), Path(tmp))
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    return {
        "load_cores": load,
        "mode": mode,
        "threads": threads,
        "img_per_s": r["img_per_s"],
        "all": r["img_per_s_all"],
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--loads", type=int, nargs="+", default=[0, 1], help="busy cores beside the training")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    args.size, args.override, args.prompt_tokens = None, [], 77
    from sim2real_kit import jobs

    args.default_threads = torch.get_num_threads()  # torch's default (physical cores), unless OMP_NUM_THREADS
    results = [measure(load, mode, args) for load in args.loads for mode in ("default", "adapt")]
    print(f"usable cores {jobs.usable_cores()}, torch default threads {args.default_threads}")
    print("| busy cores beside | threads | img/s (median of repeats) | vs default |")
    print("| --- | --- | --- | --- |")
    for r in results:
        base = next(x for x in results if x["load_cores"] == r["load_cores"] and x["mode"] == "default")
        label = "default" if r["mode"] == "default" else "adapt_threads"
        print(
            f"| {r['load_cores']} | {r['threads']} ({label}) | {r['img_per_s']:.2f} | "
            f"{r['img_per_s'] / base['img_per_s']:.2f}x |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cores": jobs.usable_cores(), "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
