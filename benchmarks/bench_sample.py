"""Sampling throughput of `Sim2RealPipeline` (DDIM, paper Sec. 3.5): img/s of whole pipeline calls (CAD
metres in -> simulated depth metres out, codec encode/decode included), eager vs optimised, in ONE process.

    .venv/bin/python benchmarks/bench_sample.py --preset tiny                      # CPU, DDIM-20, batch 16
    python3 benchmarks/bench_sample.py --preset sd21-random --device cuda --steps 50 --batch-size 8 --json out.json
    python3 benchmarks/bench_sample.py --preset small --device cuda --frame 480x640 --steps 10 --batch-size 8
        # whole 640x480 frames in one pass (no tiles): a camera's frames/s

Presets as in bench_train.py (benchlib.py; sd21-random: SD 2.1's UNet architecture with random weights through
the kit's latent `from_config` path, plus a random-init SD-shaped `AutoencoderKL` as the `LatentCodec`, so the
VAE encode of the CAD and the decode of the result are inside the timed call). `sim2real_kit` must be
importable (`pip install -e .`, or `PYTHONPATH=.` in a bare checkout).

Variants (`--variants`), each a setting of the pipeline's own sampling options (`Sim2RealPipeline.set_sampling`,
config section `sampling`), so the benchmark measures the library's code paths:
- eager-fp32:     precision fp32, no CUDA graph, no compile (the kit before these options; CPU default).
- autocast-bf16:  bf16 autocast (weights, latents and the DDIM update fp32), diffusers' DDIMScheduler loop.
- graph:          autocast-bf16 + each DDIM step (ControlNet + UNet + update) as one CUDA graph on static
                  buffers: the kit's default on CUDA (`sampling.precision: auto`, `sampling.cuda_graph: true`).
- compiled-graph: graph + `torch.compile` of the denoiser (`sampling.compile: true`).
- bf16-weights:   `pipe.to(torch.bfloat16)` (no autocast casts; latents of the static loop stay fp32) +
                  compile + graph, for pipelines used only for sampling.
- tuned-graph:    compiled-graph + `sampling.channels_last` + `torch.backends.cudnn.benchmark` (the fastest
                  convolution algorithm per shape, picked at the warm-up call).
- tuned-bf16-weights: bf16-weights + channels_last + cudnn.benchmark.
Every variant sets `cudnn.benchmark` (a process-wide flag) itself: off except the tuned ones.
The first call of each variant compiles / captures (reported as warm-up); later calls only replay.

Every variant starts from the same noise (`generator` seeded alike); the optimised output is compared with
the eager ones (relative L2 of the residual, max |depth difference| in mm). CPU runs time eager-fp32 only.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import PRESETS, build_denoiser, environment, preset_config, random_sd_vae, sync

from sim2real_kit.pipeline import Sim2RealPipeline

DEFAULT_BATCH = {"tiny": 16, "small": 64, "sd21-random": 8}
DEFAULT_STEPS = {"tiny": 20, "small": 20, "sd21-random": 50}
# variant: (sampling.precision, sampling.cuda_graph, sampling.compile, bf16 weights, sampling.channels_last,
#           torch.backends.cudnn.benchmark)
VARIANTS = {
    "eager-fp32": ("fp32", False, False, False, False, False),
    "autocast-bf16": ("auto", False, False, False, False, False),
    "graph": ("auto", True, False, False, False, False),
    "compiled-graph": ("auto", True, True, False, False, False),
    "bf16-weights": ("auto", True, True, True, False, False),
    "tuned-graph": ("auto", True, True, False, True, True),
    "tuned-bf16-weights": ("auto", True, True, True, True, True),
}


def set_variant(pipe, variant: str, no_compile: bool = False) -> None:
    """Put `pipe` on one of `VARIANTS`: weights dtype, `set_sampling` options, the cudnn.benchmark flag."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    precision, graph, compiled, bf16_weights, channels_last, cudnn_benchmark = VARIANTS[variant]
    pipe.to(dtype=torch.bfloat16 if bf16_weights else torch.float32)
    pipe.set_sampling(
        precision=precision, cuda_graph=graph, compile=compiled and not no_compile, channels_last=channels_last
    )
    torch.backends.cudnn.benchmark = cudnn_benchmark


def synthetic_cad(batch: int, size: int, seed: int = 0, width: int | None = None) -> np.ndarray:
    """[B, S, W] (W = `width`, default S) CAD-like depth in metres: a tilted floor/wall plane with a few boxes in
    front, some 0 (no CAD)."""
    rng = np.random.default_rng(seed)
    width = width or size
    yy, xx = np.mgrid[0:size, 0:width] / max(size, width)
    out = []
    for _ in range(batch):
        d = 2.0 + 1.5 * yy * rng.uniform(0.5, 1.0) + 0.5 * xx * rng.uniform(-1, 1)
        for _ in range(3):
            x0, y0 = rng.integers(0, width * 3 // 4), rng.integers(0, size * 3 // 4)
            w, h = rng.integers(width // 8, width // 3), rng.integers(size // 8, size // 3)
            d[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0.8, 1.8)
        d[: size // 16] = 0.0  # a strip without CAD geometry
        out.append(d)
    return np.stack(out).astype(np.float32)


def _frame(text: str) -> tuple[int, int]:
    """Parse "480x640" -> (480, 640): a frame's height and width in pixels."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frame: expected HxW in pixels (e.g. 480x640), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"--frame: height and width must be positive, got {text!r}")
    return h, w


def build_pipeline(preset: str, args):
    from sim2real_kit.models.codec import LatentCodec, PixelCodec

    cfg = preset_config(preset, args.size, args.override)
    torch.manual_seed(0)
    denoiser, _ = build_denoiser(preset, cfg, args.prompt_tokens, args.device)
    with torch.device(args.device):
        codec = LatentCodec(random_sd_vae()) if preset == "sd21-random" else PixelCodec()
    # random weights give ~0 control (zero convs); nudge them so the condition path is exercised
    with torch.no_grad():
        for p in denoiser.controlnet.parameters():
            if p.abs().sum() == 0:
                p.normal_(0.0, 1e-3)
    pipe = Sim2RealPipeline.build(cfg, [denoiser], codec=codec)
    return pipe, cfg


def time_calls(
    pipe, cad, steps: int, batch: int, repeats: int, seed: int, native: bool = False
) -> tuple[list[float], object, float]:
    """(seconds per call, last output, warm-up seconds): one 2-step warm-up call first (cuDNN set-up, the
    compile and the graph capture, which do not depend on the step count). `native`: the frames at their own
    size (`Sim2RealPipeline(native=True)`), not the default centre crop resized to the model's size."""
    kw = {"native": True} if native else {}
    t0 = time.perf_counter()
    pipe(cad, num_inference_steps=min(steps, 2), batch_size=batch, generator=torch.Generator().manual_seed(seed), **kw)
    sync(pipe.device)
    warm = time.perf_counter() - t0
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = pipe(
            cad, num_inference_steps=steps, batch_size=batch, generator=torch.Generator().manual_seed(seed), **kw
        )
        sync(pipe.device)
        times.append(time.perf_counter() - t0)
    return times, out, warm


def compare(a, b) -> dict:
    ra, rb = np.asarray(a.residual, np.float64), np.asarray(b.residual, np.float64)
    da, db = np.asarray(a.depth, np.float64), np.asarray(b.depth, np.float64)
    return {
        "residual_rel_l2": float(np.linalg.norm(ra - rb) / max(np.linalg.norm(rb), 1e-12)),
        "depth_max_abs_mm": float(1000 * np.abs(da - db).max()),
        "depth_mean_abs_mm": float(1000 * np.abs(da - db).mean()),
        "finite": bool(np.isfinite(da).all()),
    }


def run(preset: str, args, device) -> list[dict]:
    pipe, cfg = build_pipeline(preset, args)
    pipe.to(device)
    size = int(cfg.data.size)
    if args.frame:  # whole frames of H x W in one pass (the model is fully convolutional), not the training size
        cad = synthetic_cad(args.batch_size * args.batches, args.frame[0], width=args.frame[1])
    else:
        cad = synthetic_cad(args.batch_size * args.batches, size)
    frames = cad.shape[0]
    results, outputs = [], {}
    base = {"preset": preset, "batch_size": args.batch_size, "frames": frames, "size_px": size}
    if args.frame:
        base["frame_hw"] = list(args.frame)
    for variant in args.variants.split(","):
        try:
            set_variant(pipe, variant, args.no_compile)
        except Exception as e:  # noqa: BLE001 - a failed variant is reported, the others still run
            r = {**base, "variant": variant, "error": f"{type(e).__name__}: {e}"[:2000]}
            print(json.dumps(r), flush=True)
            results.append(r)
            continue
        for steps in args.steps:  # one compile / capture per variant: the step count is only the loop's length
            try:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                times, out, warm = time_calls(pipe, cad, steps, args.batch_size, args.repeats, 0, bool(args.frame))
                img_s = [frames / t for t in times]
                r = {
                    **base,
                    "steps": steps,
                    "variant": variant,
                    "img_per_s": statistics.median(img_s),
                    "img_per_s_all": img_s,
                    "s_per_call": statistics.median(times),
                    "warmup_s": warm,
                    "out_hw": list(np.asarray(out.depth).shape[-2:]),  # the frame's with --frame, else the model's
                }
                if device.type == "cuda":
                    r["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
                else:
                    r["load_avg_1min"] = os.getloadavg()[0]
                outputs[variant, steps] = out
                for ref in ("eager-fp32", "autocast-bf16"):
                    if (ref, steps) in outputs and ref != variant:
                        r[f"vs_{ref}"] = compare(out, outputs[ref, steps])
            except Exception as e:  # noqa: BLE001 - a failed variant is reported, the others still run
                r = {**base, "steps": steps, "variant": variant, "error": f"{type(e).__name__}: {e}"[:2000]}
            print(json.dumps(r), flush=True)
            results.append(r)
    del pipe
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def _px(row: dict) -> str:
    """The timed frames' size: "HxW" for --frame runs, else the square side."""
    return "x".join(map(str, row["frame_hw"])) if row.get("frame_hw") else str(row["size_px"])


def print_table(results: list[dict]) -> None:
    print(
        f"{'preset':12} {'variant':11} {'steps':>5} {'batch':>5} {'px':>7} {'img/s':>8} {'s/call':>7} {'warmup s':>8}"
    )
    by = {}
    for r in results:
        if "error" in r:
            print(f"{r['preset']:12} {r['variant']:11} FAILED {r['error'][:300]}")
            continue
        by[r["variant"], r["steps"]] = r
        print(
            f"{r['preset']:12} {r['variant']:11} {r['steps']:5d} {r['batch_size']:5d} {_px(r):>7} "
            f"{r['img_per_s']:8.2f} {r['s_per_call']:7.2f} {r['warmup_s']:8.1f}"
        )
    for ref in ("eager-fp32", "autocast-bf16"):
        for (name, steps), r in by.items():
            if (ref, steps) in by and name != ref:
                ratio = r["img_per_s"] / by[ref, steps]["img_per_s"]
                print(f"{name} / {ref} at {steps} steps = {ratio:.2f}x; difference {r.get('vs_' + ref)}")


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=PRESETS, default="tiny")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--batches", type=int, default=1, help="frames per call = batch-size x batches")
    p.add_argument("--steps", type=int, nargs="+", default=None,
                   help="DDIM steps, one or more (default: tiny/small 20, sd21-random 50)")  # fmt: skip
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--frame", type=_frame, default=None,
                   help="HxW, e.g. 480x640: time whole frames of that size in one pass (default: size x size)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", default=None, help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--prompt-tokens", type=int, default=77)
    p.add_argument("--no-compile", action="store_true", help="the compiled variants without torch.compile")
    p.add_argument("--override", nargs="*", default=[], help="config overrides a.b=c (tests: shrink the model)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    args.batch_size = args.batch_size or DEFAULT_BATCH[args.preset]
    args.steps = args.steps or [DEFAULT_STEPS[args.preset]]
    args.variants = args.variants or (",".join(VARIANTS) if device.type == "cuda" else "eager-fp32")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the kit's default fp32 path
    env = environment(device)
    print(json.dumps(env), flush=True)
    results = run(args.preset, args, device)
    print_table(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"environment": env, "args": vars(args), "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
