"""Throughput of procedural dataset synthesis (render CAD + real, sensor, PNG writing) at 256x192.

Target: >= 30 frames/s on 2 cores, so a LASA-sized set (~47k frames) takes < 30 min; and the
notebooks' quick dataset (6 scenes x 6 frames) in < 30 s.

    .venv/bin/python benchmarks/bench_synth.py [--scenes 8] [--frames 30] [--workers 1 2] [--repeat 2]

Prints, per worker count, wall-clock frames/s and the CPU seconds per frame of this process and its
workers (a shared machine's load shows up in the wall clock, less in the CPU time), then a per-stage
CPU breakdown of one frame.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(scenes: int, frames: int, workers: int, root: Path) -> tuple[float, float]:
    from sim2real_kit.data.synth import synthesize

    out = root / f"w{workers}_{scenes}x{frames}"
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    synthesize(out, scenes=scenes, frames=frames, seed=0, progress=False, workers=workers)
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    shutil.rmtree(out)
    return wall, cpu


def stage_breakdown(n: int = 30) -> dict[str, float]:
    """CPU milliseconds per frame of each stage, on one scene."""
    import io

    from PIL import Image

    from sim2real_kit.data.scenes import make_scene
    from sim2real_kit.data.sensor import SensorModel
    from sim2real_kit.data.synth import PNG_COMPRESS_LEVEL, shade_rgb, synth_camera

    scene = make_scene(123, n, synth_camera())
    model = SensorModel()
    scene.render(0, "cad", full=False), scene.render(0, "real")  # build the BVHs outside the timing
    times = {}

    def timed(name, fn):
        t = time.process_time()
        out = [fn(f) for f in range(n)]
        times[name] = (time.process_time() - t) / n * 1000
        return out

    timed("render CAD (depth + instance)", lambda f: scene.render(f, "cad", full=False))
    real = timed("render real (+ normals, incidence)", lambda f: scene.render(f, "real"))
    caps = timed("sensor model", lambda f: model.capture(real[f], scene.camera, np.random.default_rng(f)))
    timed("rgb shading", lambda f: shade_rgb(real[f], scene))

    def png(f):
        for arr in (caps[f].depth, caps[f].depth, real[f].instance):
            img = np.rint(arr * 1000).astype(np.uint16) if arr.dtype != np.int32 else arr.astype(np.uint16)
            Image.fromarray(img).save(io.BytesIO(), format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        Image.fromarray(shade_rgb(real[f], scene)).save(io.BytesIO(), format="PNG", compress_level=PNG_COMPRESS_LEVEL)

    timed(f"PNG encoding (gt, scan, inst, rgb; zlib level {PNG_COMPRESS_LEVEL})", png)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2, help="runs per setting; the fastest counts (shared machines)")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(f"cores available: {cores}, load average (1 min) before: {load:.2f}")
    root = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        n = args.scenes * args.frames
        for w in args.workers:
            wall, cpu = min(run(args.scenes, args.frames, w, root) for _ in range(args.repeat))
            print(
                f"workers={w}: {n} frames (256x192, {args.scenes} scenes x {args.frames}) in {wall:.1f} s "
                f"-> {n / wall:.1f} frames/s wall; {cpu / n * 1000:.1f} CPU ms/frame "
                f"(-> {cores / (cpu / n):.1f} frames/s if {cores} cores were ours); LASA-size 47k frames: "
                f"{47000 / (n / wall) / 60:.1f} min"
            )
        wall, cpu = run(6, 6, 1, root)
        print(f"quick dataset 6 scenes x 6 frames, workers=1: {wall:.1f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("per-stage CPU ms/frame:")
    for name, ms in stage_breakdown().items():
        print(f"  {name:55s} {ms:6.2f}")
    print(f"load average (1 min) after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
