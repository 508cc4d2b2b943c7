"""The real sample's hole rates per object and per CAD incidence angle (issue 20): how much of where the Xtion
loses depth on an object's faces the CAD's geometry can tell.

    python experiments/real_sample_hole_rates.py --run runs/rs [--sample data/ycbv_sample] [--json out.json]

RUN: a run folder (the sample is imported into it, as `sim2real evaluate-real` does). For each object: its hole
rate overall, at silhouettes (CAD edges, the benchmark's: jumps > `benchmark.edge_threshold_m`, dilated) and on
faces (the rest), and on faces per incidence bin of the CAD surface (`geometry.cad_incidence`, degrees between
the surface normal and the viewing ray). Prints a markdown table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BINS = ((0, 30), (30, 45), (45, 60), (60, 75), (75, 90))


def hole_rates_by_object(run_dir: Path, sample: str | None = None) -> dict:
    """{object name: {pixels, all, edge, flat (%), faces_by_incidence: {"lo-hi": [hole %, pixels]}}}."""
    from sim2real_kit.config import load_config
    from sim2real_kit.geometry import cad_incidence
    from sim2real_kit.real_sample.frames import import_real_sample, load_frames
    from sim2real_kit.real_sample.measure import _Region, region_metrics

    cfg = load_config("tiny")
    frames = load_frames(import_real_sample(run_dir, sample) if sample else import_real_sample(run_dir))
    inc = np.stack([np.degrees(cad_incidence(f, frames.camera, undefined=np.nan)) for f in frames.cad])
    out = {}
    for oid, name in sorted(frames.classes.items()):
        mask = frames.object_mask(oid)
        if not mask.any():
            continue
        reg = _Region.of(frames, mask, cfg.benchmark.edge_threshold_m, cfg.benchmark.edge_dilate)
        r = region_metrics(frames.real, reg)[0]
        face = (reg.samples.cad > 0) & ~reg.edges
        hole = reg.samples.real <= 0
        by = {}
        for lo, hi in BINS:
            b = face & (inc >= lo) & (inc < hi)
            by[f"{lo}-{hi}"] = [float(100 * hole[b].mean()) if b.any() else None, int(b.sum())]
        out[name] = {"pixels": int(mask.sum()), "all": r["hole_all_pct"], "edge": r["hole_edge_pct"],
                     "flat": r["hole_flat_pct"], "faces_by_incidence": by}  # fmt: skip
    return out


def table(res: dict) -> str:
    head = "| object | pixels | holes all / silhouettes / faces % | " + " | ".join(
        f"faces {lo}-{hi}°" for lo, hi in BINS
    )
    lines = [head + " |", "| --- " * (3 + len(BINS)) + "|"]
    for name, r in res.items():
        cells = [("–" if v is None else f"{v:.1f} % ({n})") for v, n in r["faces_by_incidence"].values()]
        lines.append(
            f"| {name} | {r['pixels']} | {r['all']:.1f} / {r['edge']:.1f} / {r['flat']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--sample", default=None, help="the real sample (default: the kit's, data/ycbv_sample)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    res = hole_rates_by_object(args.run, args.sample)
    print(table(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
