"""Issue 20: is the hole model's systematic under-generation a threshold effect that the *train* split can
calibrate (`simulate.calibrate_validity_threshold`, `sim2real sample --calibrate-holes`)? With an EMA (tiny preset
since `fdec12b`) the `data.holes=model` Stage-I under-generates holes at CAD edges in every seed (-19 to -30 %).
This script samples a trained run's train and val splits once (`simulate.sample_validity`; the val draw is the
one `sample_split` makes, seed `cfg.seed + 1000`, the train draw calibrate_validity_threshold's, + 1001), keeps
P(valid) per pixel, and reports the hole rates (all / CAD edges / flat, as the benchmark counts them) for
thresholds tau (`sampling.validity_threshold`: a pixel is a hole when P(valid) < tau). `calibrated`: the tau
whose overall hole rate on the *train* split matches the real train captures' (`simulate.match_hole_rate`),
applied to val: no val frame is used to choose it.

    python experiments/hole_threshold.py --run runs/he2_ema --json /tmp/ht2.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def rates_at(cad, real, depth, prob, tau: float) -> dict:
    from sim2real_kit.metrics import depth_edges, hole_rates

    edges = depth_edges(cad, 0.05, 1)
    sim = np.where(prob < tau, 0.0, depth)
    return hole_rates(cad, sim, edge_mask=edges), hole_rates(cad, real, edge_mask=edges)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a trained data.holes=model run (bench_holes.py --out)")
    ap.add_argument("--taus", type=float, nargs="+", default=[0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from sim2real_kit.metrics import matched_residual_w1
    from sim2real_kit.run import RunFolder
    from sim2real_kit.simulate import match_hole_rate, sample_validity

    run = RunFolder(args.run)
    cfg = run.load_config()
    if cfg.data.holes != "model":
        raise SystemExit(f"{args.run}: data.holes = {cfg.data.holes!r}, not 'model'")
    # val: sample_split's draw (seed + 1000); train: calibrate_validity_threshold's (seed + 1001)
    split_arrays = {s: sample_validity(run, cfg, s, cfg.seed + 1000 + (s == "train")) for s in ("val", "train")}
    rows = {}
    for split, arrays in split_arrays.items():
        rows[split] = []
        for tau in args.taus:
            sim, real = rates_at(*arrays, tau)
            rows[split].append(
                {
                    "tau": tau,
                    **{f"sim_{k}": 100 * sim[k] for k in ("all", "edge", "flat")},
                    **{f"real_{k}": 100 * real[k] for k in ("all", "edge", "flat")},
                }
            )
    train_cal = match_hole_rate(*split_arrays["train"])  # what calibrate_validity_threshold returns
    tau_cal, target = train_cal["threshold"], train_cal["real_rate"]
    sim, realr = rates_at(*split_arrays["val"], tau_cal)
    sim05, _ = rates_at(*split_arrays["val"], 0.5)
    vcad, vreal, vdepth, vprob = split_arrays["val"]
    w1 = {
        t: 1000 * matched_residual_w1(vcad, np.where(vprob < t, 0.0, vdepth), vreal, cfg.data.max_diff_m)
        for t in (0.5, tau_cal)
    }
    cal = {
        "tau": tau_cal,
        "train_real_all": 100 * target,
        **{f"val_sim_{k}": 100 * sim[k] for k in ("all", "edge", "flat")},
        **{f"val_sim05_{k}": 100 * sim05[k] for k in ("all", "edge", "flat")},
        **{f"val_real_{k}": 100 * realr[k] for k in ("all", "edge", "flat")},
        "val_w1_mm": w1[tau_cal],
        "val_w1_05_mm": w1[0.5],
    }
    for split in rows:
        print(f"\n{split}: tau | sim all / edge / flat % | real all / edge / flat %")
        for r in rows[split]:
            print(
                f"  {r['tau']:.2f} | {r['sim_all']:.1f} / {r['sim_edge']:.1f} / {r['sim_flat']:.1f} | "
                f"{r['real_all']:.1f} / {r['real_edge']:.1f} / {r['real_flat']:.1f}"
            )
    gap = {k: 100 * (cal[f"val_sim_{k}"] / cal[f"val_real_{k}"] - 1) for k in ("all", "edge")}
    print(
        f"\ncalibrated on train: tau {tau_cal:.2f}; val holes {cal['val_sim_all']:.1f} / {cal['val_sim_edge']:.1f}"
        f" / {cal['val_sim_flat']:.1f} % (at 0.5: {cal['val_sim05_all']:.1f} / {cal['val_sim05_edge']:.1f} / "
        f"{cal['val_sim05_flat']:.1f}); real {cal['val_real_all']:.1f} / {cal['val_real_edge']:.1f} / "
        f"{cal['val_real_flat']:.1f}; gap {gap['all']:+.0f} % overall, {gap['edge']:+.0f} % at edges; "
        f"W1 {w1[tau_cal]:.2f} mm (at 0.5: {w1[0.5]:.2f})"
    )
    if args.json:
        args.json.write_text(json.dumps({"run": str(args.run), "rows": rows, "calibrated": cal, "gap": gap}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
