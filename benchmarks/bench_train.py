"""Training throughput of the controlled denoiser (UNet + ControlNet, paper Sec. 3.2 / Sec. 4): img/s and
peak memory of one optimizer step, for the plain eager path and the optimised path, in ONE process.

    .venv/bin/python benchmarks/bench_train.py --preset tiny                       # CPU, batch 16, 64 px
    python3 benchmarks/bench_train.py --preset sd21-random --device cuda --json out.json
    python3 benchmarks/bench_train.py --preset small --device cuda --batch-size 64

What one step is (the Trainer's step, `sim2real_kit.training.Trainer._train_step`, without data loading:
the batch already lies on the device): `diffusion_loss` under bf16 autocast on CUDA (fp32 on CPU) ->
backward -> `clip_grad_norm_(1.0)` -> AdamW step -> `zero_grad(set_to_none=True)`. No host sync inside
the timed loop; the clock is read after `torch.cuda.synchronize()`.

Presets:
- tiny, small: `ControlledDenoiser.from_config(load_config(preset))` in pixel space (frame = data.size).
- sd21-random: the paper's Stable Diffusion 2.1 UNet *architecture* with random weights (no download):
  the kit's own `from_config` path for `model.space = latent`, with the two loaders it calls
  (`_load_pretrained_unet`, `codec_geometry`) replaced by the kit's random-init UNet builder at SD 2.1's
  config (block_out_channels 320/640/1280/1280, 5/10/20/20 heads of 64 channels, cross_attention_dim 1024,
  linear projections, 4 latent channels at 64 x 64 = 512 px). The encoder is frozen as with pretrained
  weights (control branch + UNet decoder train), the empty prompt is 77 zero tokens (SD's CLIP length).
  The VAE encode of target and condition is NOT in the timed step (latents are given); `--vae` times it
  separately (random SD-shaped `AutoencoderKL`, bf16, eager).

Variants (`--variants`):
- eager:      fp32 master weights, bf16 autocast, NCHW, `torch.optim.AdamW` (foreach), default SDPA choice.
- compiled:   eager + `torch.compile` (default mode, inductor `conv_1x1_as_mm`) + `AdamW(fused=True)` +
              flash SDPA only + `cudnn.benchmark`, NCHW (not measured yet: the ablation of channels_last).
- optimized:  compiled + channels_last (model and inputs): the variant measured in docs/performance.md.
  Compile time (the first `--warmup` steps) is reported apart from the steady-state figure.

Prints a table and, with `--json`, writes every number. CPU figures depend on the machine's load: the
1-minute load average is printed beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e` (the GPU machine)
    sys.path.insert(0, str(ROOT))

PRESETS = ("tiny", "small", "sd21-random")
DEFAULT_BATCH = {"tiny": 16, "small": 64, "sd21-random": 16}
VARIANTS = ("eager", "compiled", "optimized")


# ---------------------------------------------------------------------- model construction
def preset_config(preset: str, size: int | None = None, overrides=()):
    """The kit config of a benchmark preset (sd21-random: the sd21 preset; no weights are read)."""
    from sim2real_kit.config import load_config

    ov = [f"data.size={size}"] if size else []
    ov += list(overrides or ())
    if preset == "sd21-random":
        return load_config("sd21", overrides=["model.sd_path=<random-init>", *ov])
    return load_config(preset, overrides=ov)


class PrecomputedLatents(torch.nn.Module):
    """Codec stand-in for the timed latent step: the batch already holds VAE latents [B, 4, 64, 64]."""

    kind = "latent"

    def __init__(self, channels: int = 4, downscale: int = 8):
        super().__init__()
        self.channels, self.downscale = channels, downscale

    def encode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def encoded_size(self, size: int) -> int:
        return size // self.downscale


@contextlib.contextmanager
def random_sd_loaders(cfg):
    """Make the kit's latent path build SD 2.1's UNet with random weights instead of loading a folder."""
    from sim2real_kit.models import codec as codec_mod
    from sim2real_kit.models import denoiser as den

    saved = den._load_pretrained_unet, codec_mod.codec_geometry
    den._load_pretrained_unet = lambda sd_path: den._build_unet(cfg, 4, 8)
    codec_mod.codec_geometry = lambda c: (4, 8)
    try:
        yield
    finally:
        den._load_pretrained_unet, codec_mod.codec_geometry = saved


def build_denoiser(preset: str, cfg, prompt_tokens: int = 77, device="cpu"):
    """(ControlledDenoiser, codec) of a preset, its weights initialised directly on `device`;
    sd21-random through the kit's latent `from_config` path."""
    from sim2real_kit.models.codec import PixelCodec
    from sim2real_kit.models.denoiser import ControlledDenoiser

    with torch.device(device):
        if preset != "sd21-random":
            return ControlledDenoiser.from_config(cfg, cond_maps=1), PixelCodec()
        with random_sd_loaders(cfg):
            model = ControlledDenoiser.from_config(cfg, cond_maps=1)  # pretrained=True: encoder frozen
        model.prompt_embedding = torch.zeros(1, prompt_tokens, int(cfg.model.cross_attention_dim))
    return model, PrecomputedLatents()


def random_sd_vae():
    """A random-init `AutoencoderKL` with Stable Diffusion's VAE config (83 M parameters)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=0.18215,
    )


def make_batch(preset: str, cfg, batch: int, device, generator: torch.Generator) -> dict:
    """Batch in the denoiser's input space: pixel presets [B, 1, S, S] normalised maps in [-1, 1]
    (target = residual * 0.5, condition = CAD); sd21-random [B, 4, 64, 64] latent-like tensors."""
    size = int(cfg.data.size)
    if preset == "sd21-random":
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


# ---------------------------------------------------------------------- the timed step
def make_step(model, codec, scheduler, optimizer, params, device, compiled=None):
    """One Trainer-like optimizer step on a device-resident batch; returns the loss tensor (no sync)."""
    from sim2real_kit.models.denoiser import diffusion_loss

    forward = compiled if compiled is not None else model
    use_amp = device.type == "cuda"

    def step(batch: dict) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss, _ = diffusion_loss(forward, codec, scheduler, batch["target"], [batch["cad_n"]], batch["mask"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_variant(preset: str, variant: str, args, device) -> dict:
    """Build, warm up and time one variant; returns its figures."""
    from sim2real_kit.models.denoiser import make_scheduler

    cfg = preset_config(preset, args.size, args.override)
    torch.manual_seed(0)
    t_build = time.perf_counter()
    model, codec = build_denoiser(preset, cfg, args.prompt_tokens, device)
    model.train().to(device)
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    optimized = variant != "eager"  # compile + fused AdamW + flash SDPA (+ channels_last for "optimized")
    channels_last = variant == "optimized" and device.type == "cuda"
    if optimized and device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = model.trainable_parameters()
    fused = optimized and device.type == "cuda"
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=0.0, fused=fused or None)
    compiled = None
    if optimized:
        import torch._inductor.config as inductor_config

        inductor_config.conv_1x1_as_mm = True
        compiled = torch.compile(model)
    scheduler = make_scheduler(cfg, "ddpm")
    step = make_step(model, codec, scheduler, optimizer, params, device, compiled)
    gen = torch.Generator().manual_seed(1)
    batches = [make_batch(preset, cfg, args.batch_size, device, gen) for _ in range(2)]  # rotate 2 batches
    if channels_last:
        batches = [{k: v.contiguous(memory_format=torch.channels_last) for k, v in b.items()} for b in batches]
    build_s = time.perf_counter() - t_build

    sdpa = contextlib.nullcontext()
    if optimized and device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        sdpa = sdpa_kernel([SDPBackend.FLASH_ATTENTION])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with sdpa:
        t0 = time.perf_counter()
        for i in range(args.warmup):
            loss = step(batches[i % 2])
        sync(device)
        warmup_s = time.perf_counter() - t0
        times = []
        t_all = time.perf_counter()
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for i in range(args.steps):
                loss = step(batches[i % 2])
            sync(device)
            times.append(time.perf_counter() - t0)
        total_s = time.perf_counter() - t_all
    finite = bool(torch.isfinite(loss).item())
    img_s = [args.steps * args.batch_size / t for t in times]
    out = {
        "preset": preset,
        "variant": variant,
        "device": device.type,
        "batch_size": args.batch_size,
        "size_px": int(cfg.data.size),
        "params_m": model.num_parameters() / 1e6,
        "trainable_params_m": model.num_parameters(trainable_only=True) / 1e6,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps * args.repeats,
        "build_s": build_s,
        "warmup_s": warmup_s,
        "img_per_s": statistics.median(img_s),
        "img_per_s_all": img_s,
        "step_ms": 1000 * total_s / (args.steps * args.repeats),
        "loss_finite": finite,
        "loss": float(loss),
    }
    if device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        out["peak_rss_mib"] = peak_rss_mib()
        out["load_avg_1min"] = os.getloadavg()[0]
    del model, optimizer, compiled, step, batches, params
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch._dynamo.reset()
    return out


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


def environment(device) -> dict:
    import diffusers

    env = {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    else:
        env["load_avg"] = os.getloadavg()
    return env


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
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    p.add_argument("--override", nargs="*", default=[], help="config overrides a.b=c (tests: shrink the model)")
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
    for variant in variants:
        try:
            r = run_variant(args.preset, variant, args, device)
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
