"""Notebook 06's ablation grid: wall time of `runner.run_grid` on the demo grid with its variants one after the
other (jobs 1) and as worker processes (jobs 2), with and without 04's control, in ONE process, and the grid's
numbers of each setting (so a speed-up that moves them says so).

    make demo                                                      # a demo run to start from (runs/demo)
    .venv/bin/python benchmarks/bench_grid.py --base-run runs/demo
    .venv/bin/python benchmarks/bench_grid.py --base-run runs/demo --json docs/results_data/grid_jobs.json

What is timed: `runner.run_grid(grid, out, jobs=N, base_run=...)` from an empty output folder, notebooks
02_stage1 and 04_stage2 with the grid's `quick` sizes, kernel starts included. The settings:
- `jobs1_control`: the demo grid as it was before ba87d9b (base `control: true`, jobs 1);
- `jobs1`: `configs/ablations/demo.yaml` (control off), jobs 1;
- `jobs2`: the same with jobs 2 (notebook 06's default): each worker's notebooks start with the cores left
  free (`jobs.adapt_threads`), one thread each on 2 cores, so the sums run in another order.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from sim2real_kit.config import CONFIG_DIR
from sim2real_kit.runner import run_grid

SETTINGS = {"jobs1_control": (1, True), "jobs1": (1, False), "jobs2": (2, False)}


def grid_file(folder: Path, control: bool) -> Path:
    """The demo grid with base `control` set (the file's other keys unchanged)."""
    grid = yaml.safe_load((CONFIG_DIR / "ablations" / "demo.yaml").read_text())
    grid["base"]["control"] = control
    path = folder / f"demo_control_{control}.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def measure(name: str, base_run: Path, folder: Path) -> dict:
    jobs, control = SETTINGS[name]
    out = folder / name
    t0 = time.perf_counter()
    report = run_grid(grid_file(folder, control), out, jobs=jobs, base_run=base_run, progress=False)
    seconds = time.perf_counter() - t0
    rows = {r["variant"]: {k: v for k, v in r.items() if k.endswith(".mean")} for r in report.summary}
    return {"setting": name, "jobs": jobs, "control": control, "seconds": round(seconds, 1), "numbers": rows}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-run", required=True, help="a finished demo run (its data/ is linked into the variants)")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    base_run = Path(args.base_run).resolve()
    if not (base_run / "data").is_dir():
        sys.exit(f"{base_run}: no data/ here; run `make demo` first (or pass a run folder with data/)")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_grid_") as tmp:
        for name in args.settings:
            r = measure(name, base_run, Path(tmp))
            print(json.dumps(r), flush=True)
            results.append(r)
    base = results[0]["seconds"]  # the first setting asked for
    print(f"\n{'setting':<15}{'seconds':>9}{'ratio':>8}  numbers (mean per variant)")
    for r in results:
        nums = "; ".join(
            f"{v}: " + ", ".join(f"{k.removesuffix('.mean')} {x:.4g}" for k, x in m.items())
            for v, m in r["numbers"].items()
        )
        print(f"{r['setting']:<15}{r['seconds']:>9.1f}{base / r['seconds']:>7.2f}x  {nums}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
