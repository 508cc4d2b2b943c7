"""Sampling throughput of `Sim2RealPipeline` (DDIM, paper Sec. 3.5): img/s of whole pipeline calls (CAD
metres in -> simulated depth metres out, codec encode/decode included), eager vs optimised, in ONE process.

    .venv/bin/python benchmarks/bench_sample.py --preset tiny                      # CPU, DDIM-20, batch 16
    python3 benchmarks/bench_sample.py --preset sd21-random --device cuda --steps 50 --batch-size 8 --json out.json

Presets as in bench_train.py (sd21-random: SD 2.1's UNet architecture with random weights through the kit's
latent `from_config` path, plus a random-init SD-shaped `AutoencoderKL` as the `LatentCodec`, so the VAE
encode of the CAD and the decode of the result are inside the timed call).

Variants (`--variants`):
- eager-fp32:  the pipeline as the kit builds and loads it (fp32 weights, no autocast).
- eager-bf16:  `pipe.to(torch.bfloat16)` (weights, noise and DDIM arithmetic in bf16).
- compiled:    the same as optimized without the CUDA graph (compiled step launched eagerly);
- static:      (CPU test) the static-buffer DDIM loop, no compile, no graph: checks the DDIM arithmetic.
- optimized:   `GraphedSim2RealPipeline` below: bf16 weights in channels_last, the denoiser under
               `torch.compile` (default mode), and each DDIM step (ControlNet + UNet + the DDIM update)
               captured as ONE CUDA graph, replayed `steps` times; the latents stay fp32. The first
               call compiles and captures (reported as warm-up); later calls only replay.

`torch.compile(mode="reduce-overhead")` on the denoiser alone fails as-is: the ControlNet's outputs live in
cudagraph-owned memory that the next replay overwrites before the UNet reads them. Capturing the whole step
(and copying the x0 out of the graph's memory before returning) avoids it.

Every variant starts from the same noise (`generator` seeded alike); the optimised output is compared with
the eager ones (relative L2 of the residual, max |depth difference| in mm). CPU runs time eager-fp32 only.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import build_denoiser, environment, preset_config, random_sd_vae  # noqa: E402

from sim2real_kit.pipeline import Sim2RealPipeline  # noqa: E402

PRESETS = ("tiny", "small", "sd21-random")
DEFAULT_BATCH = {"tiny": 16, "small": 64, "sd21-random": 8}
DEFAULT_STEPS = {"tiny": 20, "small": 20, "sd21-random": 50}


class _StepGraph:
    """Static buffers of one DDIM step for one (denoiser, shape); with `capture`, the step as a CUDA graph."""

    def __init__(self, forward, latents: torch.Tensor, condition: torch.Tensor, dtype: torch.dtype, capture: bool):
        dev = latents.device
        mf = torch.channels_last
        self.x = torch.empty(latents.shape, device=dev, dtype=torch.float32).contiguous(memory_format=mf)
        self.x0 = torch.empty_like(self.x)
        self.cond = torch.empty(condition.shape, device=dev, dtype=dtype).contiguous(memory_format=mf)
        self.t = torch.zeros(latents.shape[0], device=dev, dtype=torch.long)
        self.coef = torch.zeros(2, device=dev, dtype=torch.float32)
        self.forward, self.dtype = forward, dtype
        self.graph = None
        if not capture:
            return
        self.x.normal_(), self.cond.normal_()
        self.t.fill_(500), self.coef.fill_(0.5)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # compile / autotune outside the capture
                self.body()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.body()

    def body(self) -> None:
        x0 = self.forward(self.x.to(self.dtype), self.t, self.cond).float()  # prediction_type "sample": x0
        self.x0.copy_(x0)
        self.x.copy_(self.coef[0] * self.x + self.coef[1] * x0)  # DDIM, eta 0

    def run(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.body()


class GraphedSim2RealPipeline(Sim2RealPipeline):
    """`Sim2RealPipeline` whose DDIM loop runs the compiled ControlNet + UNet and the DDIM update as one step on
    static buffers (fp32 latents, weights in the pipeline's dtype), replayed as one CUDA graph per step when
    `use_graph`. Falls back to the parent loop for eta > 0 or another prediction type. Numerically it is the
    update of diffusers' `DDIMScheduler.step` (eta 0, prediction_type "sample", set_alpha_to_one False):
    x_prev = sqrt(1-a_prev)/sqrt(1-a_t) x_t + (sqrt(a_prev) - sqrt(a_t) sqrt(1-a_prev)/sqrt(1-a_t)) x0."""

    use_compile: bool = True
    use_graph: bool = True
    fast: bool = True  # False: the parent's loop (eager variants of the benchmark)

    def _step_for(self, denoiser, latents, condition) -> _StepGraph:
        if not hasattr(self, "_steps"):
            self._steps, self._compiled = {}, {}
        capture = self.use_graph and latents.device.type == "cuda"
        key = (id(denoiser), tuple(latents.shape), tuple(condition.shape), self.dtype, capture)
        if key not in self._steps:
            ckey = (id(denoiser), self.use_compile)
            if ckey not in self._compiled:
                denoiser.to(memory_format=torch.channels_last)
                self._compiled[ckey] = torch.compile(denoiser) if self.use_compile else denoiser
            self._steps[key] = _StepGraph(self._compiled[ckey], latents, condition, self.dtype, capture)
        return self._steps[key]

    @staticmethod
    def ddim_coefficients(scheduler, steps: int, device) -> torch.Tensor:
        """[steps, 2] (c_x, c_x0) of the DDIM update at each of `scheduler.timesteps` (after set_timesteps)."""
        ac = scheduler.alphas_cumprod.double()
        ratio = scheduler.config.num_train_timesteps // steps
        rows = []
        for t in scheduler.timesteps.tolist():
            a_t = float(ac[t])
            prev = t - ratio
            a_prev = float(ac[prev]) if prev >= 0 else float(scheduler.final_alpha_cumprod)
            c_x = math.sqrt(1 - a_prev) / math.sqrt(1 - a_t)
            rows.append([c_x, math.sqrt(a_prev) - math.sqrt(a_t) * c_x])
        return torch.tensor(rows, dtype=torch.float32, device=device)

    def _denoise(self, denoiser, latents, condition, steps, eta, generator, show_progress_bar) -> torch.Tensor:
        scheduler = self.scheduler
        if not self.fast or eta != 0 or scheduler.config.prediction_type != "sample":
            return super()._denoise(denoiser, latents, condition, steps, eta, generator, show_progress_bar)
        scheduler.set_timesteps(steps, device=latents.device)
        coefs = self.ddim_coefficients(scheduler, steps, latents.device)
        g = self._step_for(denoiser, latents, condition)
        g.x.copy_(latents)
        g.cond.copy_(condition)
        for i in range(steps):
            g.t.copy_(scheduler.timesteps[i].expand(g.t.shape[0]))
            g.coef.copy_(coefs[i])
            g.run()
        return g.x0.clone()  # out of the static buffer: the next call overwrites it


def synthetic_cad(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """[B, S, S] CAD-like depth in metres: a tilted floor/wall plane with a few boxes in front, some 0 (no CAD)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(batch):
        d = 2.0 + 1.5 * yy * rng.uniform(0.5, 1.0) + 0.5 * xx * rng.uniform(-1, 1)
        for _ in range(3):
            x0, y0 = rng.integers(0, size * 3 // 4, 2)
            w, h = rng.integers(size // 8, size // 3, 2)
            d[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0.8, 1.8)
        d[: size // 16] = 0.0  # a strip without CAD geometry
        out.append(d)
    return np.stack(out).astype(np.float32)


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
    pipe = GraphedSim2RealPipeline.build(cfg, [denoiser], codec=codec)
    return pipe, cfg


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_calls(
    pipe, cad, steps: int, batch: int, repeats: int, seed: int, fast: bool
) -> tuple[list[float], object, float]:
    """(seconds per call, last output, warm-up seconds): one 2-step warm-up call first (cuDNN set-up; for the
    fast path also the compile and the graph capture, which do not depend on the step count)."""
    pipe.fast = fast
    t0 = time.perf_counter()
    pipe(cad, num_inference_steps=min(steps, 2), batch_size=batch, generator=torch.Generator().manual_seed(seed))
    sync(pipe.device)
    warm = time.perf_counter() - t0
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = pipe(cad, num_inference_steps=steps, batch_size=batch, generator=torch.Generator().manual_seed(seed))
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
    cad = synthetic_cad(args.batch_size * args.batches, size)
    frames = cad.shape[0]
    results, outputs = [], {}
    base = {"preset": preset, "steps": args.steps, "batch_size": args.batch_size, "frames": frames, "size_px": size}
    for variant in args.variants.split(","):
        try:
            if variant != "eager-fp32" and device.type == "cuda" and pipe.dtype != torch.bfloat16:
                pipe.to(dtype=torch.bfloat16)
            pipe.use_graph = variant == "optimized"
            pipe.use_compile = variant in ("compiled", "optimized") and not args.no_compile
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            fast = variant in ("compiled", "optimized", "static")
            times, out, warm = time_calls(pipe, cad, args.steps, args.batch_size, args.repeats, 0, fast)
            img_s = [frames / t for t in times]
            r = {**base, "variant": variant, "img_per_s": statistics.median(img_s), "img_per_s_all": img_s,
                 "s_per_call": statistics.median(times), "warmup_s": warm}  # fmt: skip
            if device.type == "cuda":
                r["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
            else:
                r["load_avg_1min"] = os.getloadavg()[0]
            outputs[variant] = out
            for ref in ("eager-fp32", "eager-bf16", "compiled"):
                if ref in outputs and ref != variant:
                    r[f"vs_{ref}"] = compare(out, outputs[ref])
        except Exception as e:  # noqa: BLE001 - a failed variant is reported, the others still run
            r = {**base, "variant": variant, "error": f"{type(e).__name__}: {e}"[:2000]}
        print(json.dumps(r), flush=True)
        results.append(r)
    del pipe
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def print_table(results: list[dict]) -> None:
    print(
        f"{'preset':12} {'variant':11} {'steps':>5} {'batch':>5} {'px':>4} {'img/s':>8} {'s/call':>7} {'warmup s':>8}"
    )
    by = {}
    for r in results:
        if "error" in r:
            print(f"{r['preset']:12} {r['variant']:11} FAILED {r['error'][:300]}")
            continue
        by[r["variant"]] = r
        print(
            f"{r['preset']:12} {r['variant']:11} {r['steps']:5d} {r['batch_size']:5d} {r['size_px']:4d} "
            f"{r['img_per_s']:8.2f} {r['s_per_call']:7.2f} {r['warmup_s']:8.1f}"
        )
    for ref in ("eager-fp32", "eager-bf16", "compiled"):
        if "optimized" in by and ref in by:
            print(f"optimized / {ref} = {by['optimized']['img_per_s'] / by[ref]['img_per_s']:.2f}x; "
                  f"difference {by['optimized'].get('vs_' + ref)}")  # fmt: skip


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=PRESETS, default="tiny")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--batches", type=int, default=1, help="frames per call = batch-size x batches")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: tiny/small 20, sd21-random 50)")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", default=None, help="comma list of eager-fp32, eager-bf16, optimized")
    p.add_argument("--prompt-tokens", type=int, default=77)
    p.add_argument("--no-compile", action="store_true", help="compiled/optimized variants without torch.compile")
    p.add_argument("--override", nargs="*", default=[], help="config overrides a.b=c (tests: shrink the model)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    args.batch_size = args.batch_size or DEFAULT_BATCH[args.preset]
    args.steps = args.steps or DEFAULT_STEPS[args.preset]
    args.variants = args.variants or (
        "eager-fp32,eager-bf16,compiled,optimized" if device.type == "cuda" else "eager-fp32"
    )
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
