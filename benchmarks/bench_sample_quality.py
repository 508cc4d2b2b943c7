"""Sampling speed with quality held, on a *trained* run (issue 22, "Speed"): which of the pipeline's sampling
paths (`Sim2RealPipeline.set_sampling`, bf16 weights) and how few DDIM steps (trailing spacing) keep the
simulation as good as the fp32 path, and how many frames per second each gives, at the model size and at a
camera's resolution (overlapping tiles, `tiling.simulate_tiled`).

For each variant (`bench_sample.VARIANTS`: eager-fp32, autocast-bf16, graph, compiled-graph, bf16-weights) and
each step count, the val split's first `--frames` frames are sampled from the same initial noise and scored
against the real captures: residual W1 on matched pixels (`metrics.matched_residual_w1`, mm), pooled W1, hole
rates (all / CAD edges / flat), the residual's relative L2 distance to the reference path at the same steps,
and frames/s (a warm-up call first: compile / capture are reported apart). The reference path (`--reference`,
default eager-fp32) is also run with `--noise-seeds` other initial noises: the spread of its W1 over them is
the yardstick, "quality held" = |W1 - reference W1| <= 2 x that std. With `--auc-seeds`, the two-sample
ROC-AUC (`realism_test.two_sample_auc`: fresh patch discriminators, trained on half of the val scenes, tested
on the others) of every row at the steps in `--auc-steps`.

`--pipelines LABEL=DIR ...`: other saved pipelines (distilled students of `sim2real distill`) scored on the same
frames with the reference path at their own step count, "held" against the reference at `--compare-steps` (default
the largest of `--steps`: the teacher's), with their own noise spread and AUC.

`--native WxH`: frames/s of CAD-only simulation at that resolution (synthetic CAD of planes and boxes), tiles of
the model size overlapping by a quarter, MultiDiffusion-synced (`blend="sample"`) and independent
(`blend="after"`), `--tile-batch` tiles per call, with each listed variant.

    python benchmarks/bench_sample_quality.py --run runs/demo --frames 32 --steps 1 4 20 --variants eager-fp32
    python3 benchmarks/bench_sample_quality.py --run /tmp/run --device cuda --steps 1 2 4 10 20 \\
        --variants eager-fp32,autocast-bf16,graph,compiled-graph,bf16-weights --noise-seeds 1 2 \\
        --auc-seeds 0 1 --auc-steps 4 20 --native 640x480 --json $OUT/quality.json

Prints markdown tables; `--json` writes every row."""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_sample import VARIANTS, synthetic_cad  # noqa: E402
from bench_sample import set_variant as _set_variant  # noqa: E402
from benchlib import environment, sync  # noqa: E402


def set_variant(pipe, variant: str, no_compile: bool = False) -> None:
    """Put `pipe` on one of `bench_sample.VARIANTS` (weights dtype + `set_sampling`)."""
    try:
        _set_variant(pipe, variant, no_compile)
    except ValueError as e:
        raise SystemExit(str(e)) from None


def score(cad, depth, real, residual, reference=None) -> dict:
    """Realism of one output against the real captures (mm, %), and its distance to the reference output."""
    from sim2real_kit.metrics import hole_rates, matched_residual_w1, residual_w1

    holes = hole_rates(cad, depth)
    row = {
        "w1_mm": 1000 * matched_residual_w1(cad, depth, real),
        "w1_pooled_mm": 1000 * residual_w1(cad, depth, real),
        "holes_pct": 100 * holes["all"],
        "holes_edge_pct": 100 * holes["edge"],
        "holes_flat_pct": 100 * holes["flat"],
    }
    if reference is not None:
        r, ref = np.asarray(residual, np.float64), np.asarray(reference, np.float64)
        row["residual_rel_l2_vs_ref"] = float(np.linalg.norm(r - ref) / max(np.linalg.norm(ref), 1e-12))
    return row


def timed(pipe, cad, steps: int, seed: int, device) -> tuple[object, float]:
    sync(device)
    t0 = time.perf_counter()
    out = pipe(cad, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed))
    sync(device)
    return out, time.perf_counter() - t0


def auc_halves(val) -> tuple[list[int], list[int]]:
    """Frame indices of the first and second half of the val scenes (the two-sample test's train / test)."""
    scenes = sorted({r.scene for r in val.refs})
    first = set(scenes[: max(1, len(scenes) // 2)])
    tr = [i for i, r in enumerate(val.refs) if r.scene in first]
    te = [i for i, r in enumerate(val.refs) if r.scene not in first]
    return tr, te


def native_fps(pipe, args, device) -> list[dict]:
    """Frames/s of CAD-only simulation at the camera resolution `args.native` (W x H), per variant and blend."""
    from sim2real_kit.tiling import simulate_tiled

    width, height = (int(v) for v in args.native.lower().split("x"))
    cad = synthetic_cad(args.native_frames, max(width, height), seed=1)[:, :height, :width]
    rows = []
    for variant in (args.native_variants or args.variants).split(","):
        set_variant(pipe, variant, args.no_compile)
        for blend in ("sample", "after"):
            for steps in args.native_steps:
                kw = dict(steps=steps, blend=blend, tile_batch=args.tile_batch)
                simulate_tiled(pipe, cad[:1], generator=torch.Generator().manual_seed(0), **kw)  # warm-up
                sync(device)
                t0 = time.perf_counter()
                out = simulate_tiled(pipe, cad, generator=torch.Generator().manual_seed(0), **kw)
                sync(device)
                seconds = time.perf_counter() - t0
                row = {
                    "variant": variant,
                    "blend": blend,
                    "steps": steps,
                    "width": width,
                    "height": height,
                    "frames": len(cad),
                    "tile_batch": args.tile_batch,
                    "frames_per_s": len(cad) / seconds,
                    "valid_pct": 100 * float((out > 0).mean()),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a trained run folder")
    ap.add_argument("--stage", type=int, default=1, help="sample with stages 1..N")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--variants", default="eager-fp32", help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--reference", default=None, help="the quality reference variant (default: the first)")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 10, 20])
    ap.add_argument("--frames", type=int, default=224, help="val frames (first N)")
    ap.add_argument("--batch-size", type=int, default=None, help="frames per pipeline call (default: the run's)")
    ap.add_argument("--noise-seeds", type=int, nargs="*", default=[], help="more initial noises for the reference")
    ap.add_argument("--auc-seeds", type=int, nargs="*", default=[], help="two-sample test discriminator seeds")
    ap.add_argument("--auc-steps", type=int, nargs="*", default=None, help="steps whose rows get the AUC")
    ap.add_argument("--disc-steps", type=int, default=None, help="two-sample discriminator steps")
    ap.add_argument("--native", default=None, help="WxH: frames/s at a camera's resolution, e.g. 640x480")
    ap.add_argument("--native-frames", type=int, default=8)
    ap.add_argument("--native-variants", default=None, help="variants timed at --native (default: --variants)")
    ap.add_argument("--native-steps", type=int, nargs="+", default=[4, 20])
    ap.add_argument("--tile-batch", type=int, default=None, help="tiles per call at --native (whole frames)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument(
        "--pipelines",
        nargs="*",
        default=[],
        help="LABEL=DIR saved pipelines (e.g. distilled students) scored on the same frames at their own step count",
    )
    ap.add_argument("--compare-steps", type=int, default=None, help="the reference's steps they compare with")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from sim2real_kit import simulate
    from sim2real_kit.pipeline import Sim2RealPipeline
    from sim2real_kit.realism_test import two_sample_auc
    from sim2real_kit.run import RunFolder

    device = torch.device(args.device)
    run = RunFolder(args.run)
    cfg = run.load_config()
    if not run.has_samples(args.stage, "val"):
        simulate.sample_split(run, cfg, "val", stage=args.stage)
    val = run.load_samples(args.stage, "val", run.layout(cfg))
    n = min(args.frames, len(val.refs))
    cad, real = val.cad[:n], val.real[:n]
    pipe = simulate.load_pipeline(run, args.stage, cfg).to(device)
    if args.batch_size:
        pipe.set_sampling(batch_size=args.batch_size)
    variants = args.variants.split(",")
    reference = args.reference or variants[0]
    order = [reference] + [v for v in variants if v != reference]
    auc_steps = set(args.steps if args.auc_steps is None else args.auc_steps)
    subset = dataclasses.replace(val, cad=cad, real=real, refs=val.refs[:n], sims={}, poses=val.poses[:n])
    tr, te = auc_halves(subset)
    if args.auc_seeds and (not tr or not te):
        raise SystemExit(f"the first {n} val frames hold one scene: no scene left for the two-sample test")

    def measure(p, label: str, steps: int, warm: float, spread: bool, ref=None) -> dict:
        """One row: `p` at `steps` from initial noise 0, scored; with `spread`, the W1 of `--noise-seeds` too."""
        out, seconds = timed(p, cad, steps, 0, device)
        depth = np.asarray(out.depth)
        row = {
            "variant": label,
            "steps": steps,
            "frames": n,
            "frames_per_s": n / seconds,
            "warmup_s": warm,
            **score(cad, depth, real, out.residual, ref),
            "residual": np.asarray(out.residual),
        }
        seeds = args.noise_seeds if spread else []
        others = [1000 * _w1(cad, np.asarray(timed(p, cad, steps, s, device)[0].depth), real) for s in seeds]
        if others:
            row["noise_w1_mm"] = [row["w1_mm"], *others]
            row["noise_w1_std_mm"] = statistics.stdev(row["noise_w1_mm"])
        if args.auc_seeds and (steps in auc_steps or label not in variants):
            auc = two_sample_auc(subset, depth, cfg, tr, te, seeds=args.auc_seeds, steps=args.disc_steps)
            row["auc"], row["auc_std"] = auc["auc"], auc["auc_std"]
        print(json.dumps({k: v for k, v in row.items() if k != "residual"}), flush=True)
        return row

    def warm_up(p, steps: int) -> float:
        t0 = time.perf_counter()
        p(cad[: p.config.batch_size], num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
        sync(device)
        return time.perf_counter() - t0

    rows, ref_out = [], {}
    for variant in order:
        set_variant(pipe, variant, args.no_compile)
        warm = warm_up(pipe, 2)
        for steps in args.steps:
            row = measure(pipe, variant, steps, warm, variant == reference, ref_out.get(steps))
            if variant == reference:
                ref_out[steps] = row["residual"]
            rows.append(row)
    # other saved pipelines (e.g. distilled students, `sim2real distill`): the reference path at their own step
    # count, compared with the reference at --compare-steps (the teacher's)
    compare = args.compare_steps or max(args.steps)
    if args.pipelines and compare not in ref_out:
        raise SystemExit(f"--compare-steps {compare} is not among --steps {args.steps}")
    for item in args.pipelines:
        label, _, folder = item.partition("=")
        if not folder:
            raise SystemExit(f"--pipelines takes LABEL=DIR, got {item!r}")
        other = Sim2RealPipeline.from_pretrained(folder).to(device)
        other.set_sampling(batch_size=pipe.config.batch_size)
        set_variant(other, reference, args.no_compile)
        steps = int(other.config.get("distilled_steps", 0) or other.config.num_inference_steps)
        row = measure(other, label, steps, warm_up(other, steps), True, ref_out[compare])
        row.update(compare_steps=compare, pipeline=folder)
        rows.append(row)

    ref_rows = {r["steps"]: r for r in rows if r["variant"] == reference}
    for r in rows:
        ref = ref_rows[r.get("compare_steps", r["steps"])]
        if "noise_w1_std_mm" in ref:
            r["quality_held"] = bool(abs(r["w1_mm"] - ref["w1_mm"]) <= 2 * ref["noise_w1_std_mm"])
        r["speedup_vs_ref"] = r["frames_per_s"] / ref["frames_per_s"]
        r.pop("residual")
    w1_cad = 1000 * _w1(cad, cad, real)
    lines = [
        f"run {args.run}, stage {args.stage}, {n} val frames, {device}; clean CAD W1 {w1_cad:.1f} mm; "
        f"reference {reference}; quality held: |W1 - ref| <= 2 x the reference's std over {1 + len(args.noise_seeds)} "
        "initial noises",
        "",
        "| variant | steps | W1 matched [mm] | W1 pooled [mm] | holes all / edges / flat [%] | rel. L2 vs ref "
        "| AUC | frames/s | vs ref | held |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        spread = f" ± {r['noise_w1_std_mm']:.1f}" if "noise_w1_std_mm" in r else ""
        auc = f"{r['auc']:.3f} ± {r['auc_std']:.3f}" if "auc" in r else ""
        lines.append(
            f"| {r['variant']} | {r['steps']} | {r['w1_mm']:.1f}{spread} | {r['w1_pooled_mm']:.1f} | "
            f"{r['holes_pct']:.1f} / {r['holes_edge_pct']:.1f} / {r['holes_flat_pct']:.1f} | "
            f"{r.get('residual_rel_l2_vs_ref', 0):.3f} | {auc} | {r['frames_per_s']:.1f} | "
            f"{r['speedup_vs_ref']:.2f}x | {'' if 'quality_held' not in r else ('yes' if r['quality_held'] else 'no')} |"
        )
    native = native_fps(pipe, args, device) if args.native else []
    if native:
        lines += ["", "| variant | blend | steps | WxH | frames/s |", "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| {r['variant']} | {r['blend']} | {r['steps']} | {r['width']}x{r['height']} | {r['frames_per_s']:.2f} |"
            for r in native
        ]
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"run": str(args.run), "stage": args.stage, "reference": reference, "w1_cad_mm": w1_cad}
        record.update(rows=rows, native=native, environment=environment(device))
        args.json.write_text(json.dumps(record, indent=1))
    return 0


def _w1(cad, depth, real) -> float:
    from sim2real_kit.metrics import matched_residual_w1

    return matched_residual_w1(cad, depth, real)


if __name__ == "__main__":
    raise SystemExit(main())
