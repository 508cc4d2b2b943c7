"""Training throughput of the controlled denoiser (UNet + ControlNet, paper Sec. 3.2 / Sec. 4): img/s and
peak memory of the library's optimizer step, `Trainer.step`, for the eager and the optimised settings, in ONE
process.

    .venv/bin/python benchmarks/bench_train.py --preset tiny                       # CPU, batch 16, 64 px
    python3 benchmarks/bench_train.py --preset sd21-random --device cuda --json out.json
    python3 benchmarks/bench_train.py --preset small --device cuda --batch-size 64

(`sim2real_kit` must be importable: `pip install -e .`, or `PYTHONPATH=.` in a bare checkout.)

What is timed: `sim2real_kit.training.Trainer.step`, the step `Trainer.fit` takes, on Stage-I's model and
loss as `stage1.train_denoiser` builds them (`stage1.StageModel`, `stage1.denoising_loss`), with
the preset's `train` config except the batch size and the variant's settings: `diffusion_loss` under bf16
autocast on CUDA (fp32 on CPU) -> backward -> `clip_grad_norm_(train.grad_clip)` -> AdamW step -> LR scheduler
step -> `zero_grad(set_to_none=True)` (-> EMA update when `train.ema`). The batches already lie on the device
(no data loading); `train.grad_accum` micro-batches make one step. No host sync inside the timed loop; the
clock is read after `torch.cuda.synchronize()`.

Presets (benchlib.py): tiny, small: the preset's codec and `ControlledDenoiser` in pixel space (frame =
data.size). sd21-random: SD 2.1's UNet architecture with random weights through the kit's latent
`from_config` path; the VAE encode of target and condition is NOT in the timed step (the codec is
`PrecomputedLatents`: the batch holds latents); `--vae` times it separately (random SD-shaped `AutoencoderKL`,
bf16, eager); `--whole` puts it in: the codec is a `LatentCodec` of that VAE and the batch holds the 512 px maps,
so the step is training's whole step (the optimised variants also compile the VAE encoder:
`StageModel.compile_frozen`).

Variants (`--variants`), settings of the Trainer's own options:
- eager:      `train.compile/fused_adamw/channels_last = false`, `train.mixed_precision = auto`: fp32 master
              weights, bf16 autocast on CUDA (fp32 on CPU), NCHW, `torch.optim.AdamW` (foreach), PyTorch's
              default SDPA choice.
- bf16:       eager with `train.mixed_precision = bf16`: bf16 autocast on the CPU too (the tiny preset's
              `fast` takes it where the CPU computes bf16 natively):
              `.venv/bin/python benchmarks/bench_train.py --preset tiny --batch-size 8 --variants eager,bf16`
- compiled:   `train.compile` + `train.fused_adamw` (the Trainer compiles with inductor `conv_1x1_as_mm` and
              turns `cudnn.benchmark` on), NCHW model.
- optimized:  compiled + `train.channels_last` (the model; the inputs stay NCHW, as the data loader gives
              them): the sd21 preset's setting. Compile time (the first `--warmup` steps) is reported apart.
Before this script timed the library's step (commit ad6e622 and earlier) it timed its own copy of it, and its
compiled variants also restricted SDPA to flash attention and made the inputs channels_last: the GPU figures
in docs/figures/gpu_bench_train_*.json were measured that way.

Prints a table and, with `--json`, writes every number. CPU figures depend on the machine's load: the
1-minute load average is printed beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from benchlib import PRESETS, build_denoiser, environment, preset_config, random_sd_vae, sync

DEFAULT_BATCH = {"tiny": 16, "small": 64, "sd21-random": 16}
VARIANTS = ("eager", "bf16", "compiled", "optimized")


# ---------------------------------------------------------------------- model, loss, batches: the library's
def build_stage_model(preset: str, cfg, prompt_tokens: int, device, whole: bool = False):
    """(Stage-I model, DDPM scheduler) as `stage1.train_denoiser` builds them; sd21-random: the denoiser of
    `benchlib.build_denoiser` (random SD 2.1 UNet, codec `PrecomputedLatents`), the same wrapper; with `whole`,
    the codec is a `LatentCodec` of a random SD-shaped VAE, so the step encodes its maps as training does."""
    from sim2real_kit.models.codec import LatentCodec, build_codec
    from sim2real_kit.models.denoiser import ControlledDenoiser, make_scheduler
    from sim2real_kit.stage1 import StageModel

    if preset == "sd21-random":
        denoiser, codec = build_denoiser(preset, cfg, prompt_tokens, device)
        if whole:
            with torch.device(device):
                codec = LatentCodec(random_sd_vae())
    else:
        codec, denoiser = build_codec(cfg), ControlledDenoiser.from_config(cfg, cond_maps=1)
    return StageModel(codec, denoiser), make_scheduler(cfg, "ddpm")


def make_batch(preset: str, cfg, batch: int, device, generator: torch.Generator, whole: bool = False) -> dict:
    """Batch in the denoiser's input space: pixel presets (and sd21-random with `whole`: the maps the VAE
    encodes in the step) [B, 1, S, S] normalised maps in [-1, 1] (target = residual * 0.5, condition = CAD);
    sd21-random [B, 4, 64, 64] latent-like tensors."""
    size = int(cfg.data.size)
    if preset == "sd21-random" and not whole:
        shape = (batch, 4, size // 8, size // 8)
        return {
            "target": torch.randn(shape, generator=generator).to(device),
            "cad_n": torch.randn(shape, generator=generator).to(device),
            "mask": torch.ones(batch, 1, size // 8, size // 8, device=device),
        }
    cad_n = (torch.rand(batch, 1, size, size, generator=generator) * 1.6 - 0.8).to(device)
    residual = 0.01 * torch.randn(batch, 1, size, size, generator=generator).to(device)
    mask = (torch.rand(batch, 1, size, size, generator=generator) > 0.05).float().to(device)
    return {"target": residual, "cad_n": cad_n, "mask": mask}


def variant_train_config(train, variant: str, batch_size: int):
    """The preset's `train` config with the batch size and the variant's settings."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    optimized = variant in ("compiled", "optimized")
    return dataclasses.replace(
        train,
        batch_size=batch_size,
        compile=optimized,
        fused_adamw=optimized,
        channels_last=variant == "optimized",
        mixed_precision="bf16" if variant == "bf16" else ("auto" if variant == "eager" else train.mixed_precision),
    )


def make_trainer(model, scheduler, train, seed: int, batches: list[dict], run_dir: Path):
    """A `Trainer` of the model and Stage-I loss; its dataset (never iterated here) holds the first batch."""
    from sim2real_kit.stage1 import collate, denoising_loss
    from sim2real_kit.training import Trainer

    dataset = torch.utils.data.StackDataset(**{k: v.cpu() for k, v in batches[0].items()})
    loss_fn = denoising_loss(scheduler, use_prev=False, reweight=False)
    return Trainer(model, loss_fn, dataset, train, run_dir, seed=seed, collate_fn=collate, progress=False)


# ---------------------------------------------------------------------- timing
def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def time_steps(trainer, steps: list[list[dict]], args, device) -> tuple[float, list[float], float, torch.Tensor]:
    """(warm-up seconds, seconds of each repeat, total timed seconds, last loss) of `Trainer.step` calls
    rotating over `steps` (each a list of grad_accum micro-batches)."""
    t0 = time.perf_counter()
    loss = None
    for i in range(args.warmup):
        loss = trainer.step(*steps[i % len(steps)])
    sync(device)
    warmup_s = time.perf_counter() - t0
    times = []
    t_all = time.perf_counter()
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for i in range(args.steps):
            loss = trainer.step(*steps[i % len(steps)])
        sync(device)
        times.append(time.perf_counter() - t0)
    return warmup_s, times, time.perf_counter() - t_all, loss


def run_variant(preset: str, variant: str, args, device, run_dir: Path) -> dict:
    """Build, warm up and time one variant; returns its figures."""
    cfg = preset_config(preset, args.size, args.override)
    train = variant_train_config(cfg.train, variant, args.batch_size)
    torch.manual_seed(0)
    t_build = time.perf_counter()
    whole = bool(getattr(args, "whole", False)) and preset == "sd21-random"
    model, scheduler = build_stage_model(preset, cfg, args.prompt_tokens, device, whole)
    model.train()
    gen = torch.Generator().manual_seed(1)
    accum = int(train.grad_accum)
    batches = [make_batch(preset, cfg, args.batch_size, device, gen, whole) for _ in range(2 * accum)]  # 2 rotate
    steps = [batches[i * accum : (i + 1) * accum] for i in range(2)]
    trainer = make_trainer(model, scheduler, train, cfg.seed, batches, run_dir)
    build_s = time.perf_counter() - t_build

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    warmup_s, times, total_s, loss = time_steps(trainer, steps, args, device)
    images = args.steps * args.batch_size * accum
    img_s = [images / t for t in times]
    out = {
        "preset": preset,
        "variant": variant,
        "device": device.type,
        "batch_size": args.batch_size,
        "size_px": int(cfg.data.size),
        "params_m": model.denoiser.num_parameters() / 1e6,
        "trainable_params_m": model.denoiser.num_parameters(trainable_only=True) / 1e6,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps * args.repeats,
        "build_s": build_s,
        "warmup_s": warmup_s,
        "img_per_s": statistics.median(img_s),
        "img_per_s_all": img_s,
        "step_ms": 1000 * total_s / (args.steps * args.repeats),
        "loss_finite": bool(torch.isfinite(loss).item()),
        "loss": float(loss),
        "timed": "sim2real_kit.training.Trainer.step" + (" (VAE encode of the maps included)" if whole else ""),
        "whole_step": whole,
        "train_config": dataclasses.asdict(train),
    }
    if getattr(args, "profile", None):
        out["profile"] = profile_steps(trainer, steps, device, Path(args.profile) / f"{preset}_{variant}.txt")
    if device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        out["peak_rss_mib"] = peak_rss_mib()
        out["load_avg_1min"] = os.getloadavg()[0]
    del trainer, model, batches, steps
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch._dynamo.reset()
    return out


def profile_steps(trainer, steps: list[list[dict]], device, path: Path, n: int = 3) -> str:
    """torch.profiler over `n` more steps: the kernel table (top 30 by device time; CPU time on the CPU)
    written to `path`; returns the path."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for i in range(n):
            trainer.step(*steps[i % len(steps)])
        sync(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=90))
    return str(path)


def time_vae_encode(args, device) -> dict:
    """Eager bf16 encode of the two maps of a step (target, condition) by a random SD-shaped VAE."""
    from sim2real_kit.models.codec import LatentCodec

    with torch.device(device):
        codec = LatentCodec(random_sd_vae()).to(dtype=torch.bfloat16)
    size = args.size or 512
    maps = torch.rand(args.batch_size, 1, size, size, device=device) * 2 - 1
    with torch.no_grad():
        for _ in range(2):
            codec.encode(maps)
        sync(device)
        t0 = time.perf_counter()
        n = 5
        for _ in range(n):
            codec.encode(maps), codec.encode(maps)
        sync(device)
    ms = 1000 * (time.perf_counter() - t0) / n
    del codec
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"variant": "vae_encode_2maps", "batch_size": args.batch_size, "size_px": size, "ms_per_step": ms}


def print_table(results: list[dict]) -> None:
    rows = [r for r in results if "img_per_s" in r]
    print(
        f"{'preset':12} {'variant':10} {'batch':>5} {'px':>4} {'img/s':>9} {'step ms':>8} {'warmup s':>9} {'peak':>10}"
    )
    for r in rows:
        peak = f"{r['peak_mem_gib']:.1f} GiB" if "peak_mem_gib" in r else f"{r['peak_rss_mib']:.0f} MiB"
        print(
            f"{r['preset']:12} {r['variant']:10} {r['batch_size']:5d} {r['size_px']:4d} {r['img_per_s']:9.2f} "
            f"{r['step_ms']:8.1f} {r['warmup_s']:9.1f} {peak:>10}"
        )
    by = {(r["preset"], r["variant"]): r for r in rows}
    for preset in {r["preset"] for r in rows}:
        for variant in VARIANTS[1:]:
            if (preset, "eager") in by and (preset, variant) in by:
                ratio = by[(preset, variant)]["img_per_s"] / by[(preset, "eager")]["img_per_s"]
                print(f"{preset}: {variant} / eager = {ratio:.2f}x")
    for r in results:
        if r.get("variant") == "vae_encode_2maps":
            print(f"VAE encode of 2 maps, batch {r['batch_size']} at {r['size_px']} px: {r['ms_per_step']:.1f} ms/step")
        if "error" in r:
            print(f"{r.get('preset')} {r.get('variant')}: FAILED {r['error']}")


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=PRESETS, default="tiny")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="frame side in px (default: the preset's)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats (median img/s reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile happens here)")
    p.add_argument(
        "--variants", default=None, help="comma list of eager, compiled, optimized (default: eager,optimized on CUDA)"
    )
    p.add_argument("--prompt-tokens", type=int, default=77, help="sd21-random: empty-prompt tokens")
    p.add_argument("--vae", action="store_true", help="sd21-random: also time the VAE encode of a step")
    p.add_argument(
        "--whole", action="store_true", help="sd21-random: the step with its VAE encode (a random SD VAE's LatentCodec)"
    )
    p.add_argument("--override", nargs="*", default=[], help="config overrides a.b=c (tests: shrink the model)")
    p.add_argument("--profile", default=None, help="a folder: torch.profiler kernel tables of 3 more steps per variant")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    args.batch_size = args.batch_size or DEFAULT_BATCH[args.preset]
    variants = (args.variants or ("eager,optimized" if device.type == "cuda" else "eager")).split(",")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    env = environment(device)
    print(json.dumps(env), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:  # the Trainers' run folders (nothing written)
        for variant in variants:
            try:
                r = run_variant(args.preset, variant, args, device, Path(tmp) / variant)
            except Exception as e:  # noqa: BLE001 - a failed variant is reported, the others still run
                r = {"preset": args.preset, "variant": variant, "error": f"{type(e).__name__}: {e}"[:2000]}
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            print(json.dumps(r), flush=True)
            results.append(r)
    if args.vae and args.preset == "sd21-random":
        try:
            results.append(time_vae_encode(args, device))
        except Exception as e:  # noqa: BLE001
            results.append({"variant": "vae_encode_2maps", "error": f"{type(e).__name__}: {e}"[:2000]})
    print_table(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"environment": env, "args": vars(args), "results": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
