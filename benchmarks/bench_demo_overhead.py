"""Two of issue 21's cuts of the demo's overhead (2026-12-07), each against its baseline, on this machine's CPU:

- frames: `PairedDepthDataset` keeps each decoded + encoded frame (`dataset.FRAME_CACHE_MB`) instead of decoding
  its two PNGs on every epoch. Epochs of the tiny preset's training transform (64 px) over a layout of
  `--frames` frames at 128 x 96, `FRAME_CACHE_MB = 0` (the old behaviour) vs the default, in ONE process,
  interleaved, median of `--repeats`.
- malloc: the notebooks' kernels start with `runner.execute.MALLOC_TUNABLES` (glibc keeps torch's freed blocks
  instead of mapping and zero-filling them again). glibc reads it at process start, so this part runs
  `bench_train.py --preset tiny --batch-size 8 --variants bf16` (one thread) as child processes with and without
  it, interleaved; img/s from their JSON and their system time (`getrusage` of the children).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_demo_overhead.py [--parts frames malloc] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import plane_layout

from sim2real_kit.config import load_config
from sim2real_kit.data import dataset as dataset_mod
from sim2real_kit.runner.execute import MALLOC_TUNABLES

HERE = Path(__file__).resolve().parent


def frames_part(n_frames: int, epochs: int, repeats: int) -> dict:
    """Seconds for `epochs` epochs of the training transform, frame cache off vs on (same process)."""
    cfg = load_config("tiny")
    default_mb = dataset_mod.FRAME_CACHE_MB
    times: dict[str, list[float]] = {"cache_off": [], "cache_on": []}
    with tempfile.TemporaryDirectory() as tmp:
        plane_layout(Path(tmp) / "ds", scenes=n_frames // 16 + 1, frames=16, width=128, height=96)
        for _ in range(repeats):
            for name, mb in (("cache_off", 0), ("cache_on", default_mb)):
                dataset_mod.FRAME_CACHE_MB = mb
                ds = dataset_mod.PairedDepthDataset.from_config(
                    cfg, Path(tmp) / "ds", "train", keys=("cad_n", "target", "mask")
                )
                t = time.perf_counter()
                for e in range(epochs):
                    ds.set_epoch(e)
                    for i in range(len(ds)):
                        ds[i]
                times[name].append(time.perf_counter() - t)
        dataset_mod.FRAME_CACHE_MB = default_mb
    off, on = statistics.median(times["cache_off"]), statistics.median(times["cache_on"])
    return {"frames": len(ds), "epochs": epochs, "seconds": times, "speedup": off / on}


def malloc_part(repeats: int, steps: int) -> dict:
    """img/s and system seconds of bench_train (tiny, bf16, batch 8, one thread) without / with the tunables."""
    out: dict[str, dict[str, list[float]]] = {
        "default": {"img_s": [], "sys_s": []},
        "tunables": {"img_s": [], "sys_s": []},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for name in ("default", "tunables"):
                env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
                env.update(OMP_NUM_THREADS="1", SIM2REAL_THREADS="1")
                if name == "tunables":
                    env["GLIBC_TUNABLES"] = MALLOC_TUNABLES
                js = Path(tmp) / f"{name}{r}.json"
                before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime
                cmd = [sys.executable, str(HERE / "bench_train.py"), "--preset", "tiny", "--device", "cpu"]
                cmd += ["--batch-size", "8", "--variants", "bf16", "--steps", str(steps), "--json", str(js)]
                subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
                out[name]["sys_s"].append(resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime - before)
                res = json.loads(js.read_text())
                rows = res["results"] if isinstance(res, dict) and "results" in res else res
                row = rows[0] if isinstance(rows, list) else next(iter(rows.values()))
                out[name]["img_s"].append(float(row["img_per_s"]))
    med = {n: statistics.median(v["img_s"]) for n, v in out.items()}
    return {**out, "speedup": med["tunables"] / med["default"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["frames", "malloc"], choices=["frames", "malloc"])
    p.add_argument("--frames", type=int, default=64, help="train frames of the layout (the demo trains on 64)")
    p.add_argument("--epochs", type=int, default=25, help="epochs per timing (the demo's Stage-I: 25)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=20, help="malloc part: timed steps per bench_train repeat")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    res: dict = {}
    if "frames" in a.parts:
        res["frames"] = r = frames_part(a.frames, a.epochs, a.repeats)
        print(
            f"frames: {r['epochs']} epochs x {r['frames']} frames, median s: cache off "
            f"{statistics.median(r['seconds']['cache_off']):.2f}, on {statistics.median(r['seconds']['cache_on']):.2f}"
            f" -> {r['speedup']:.1f}x"
        )
    if "malloc" in a.parts:
        res["malloc"] = r = malloc_part(a.repeats, a.steps)
        for n in ("default", "tunables"):
            print(f"malloc {n}: img/s {r[n]['img_s']}, sys s {[round(x, 1) for x in r[n]['sys_s']]}")
        print(f"malloc: tunables / default img/s (medians) = {r['speedup']:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
