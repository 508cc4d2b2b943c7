"""What a `Trainer` (`sim2real_kit.training`) resolves from its arguments before training: argument checks,
parameter groups, the autocast precision, the LR warm-up factor, and the derived seeds of its data order and
per-micro-batch generators."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from sim2real_kit.errors import ConfigError, Sim2RealError

ADAMW_KEYS = ("lr", "betas", "eps", "weight_decay")


def check_args(cfg, seed: int, best_metric, best_mode, val_fn) -> None:
    """The Trainer's arguments and `TrainConfig` values that would fail later (or silently)."""
    if best_mode not in ("min", "max"):
        raise ConfigError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
    if best_metric is not None and val_fn is None:
        raise ConfigError(f"best_metric={best_metric!r} needs a val_fn")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    for key in ("steps", "batch_size", "grad_accum"):
        value = getattr(cfg, key)
        if not (isinstance(value, int) and value > 0):
            raise ConfigError(f"train.{key} must be a positive integer, got {value!r}")
    if not cfg.lr > 0:
        raise ConfigError(f"train.lr must be > 0, got {cfg.lr!r}")
    if cfg.ema and not 0.0 < cfg.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in (0, 1), got {cfg.ema_decay!r}")


class Warmup:
    """LR factor: linear warm-up over `steps` optimizer steps, then constant (the release uses a constant LR)."""

    def __init__(self, steps: int):
        self.steps = steps

    def __call__(self, step: int) -> float:
        return 1.0 if self.steps <= 0 else min(1.0, (step + 1) / self.steps)


def dataset_size(dataset) -> int:
    try:
        n = len(dataset)
    except TypeError:
        raise Sim2RealError("train_dataset must be a map-style dataset with __len__") from None
    if n == 0:
        raise Sim2RealError("train_dataset is empty: no training frames (check the split list of the dataset)")
    return n


def resolve_groups(model: nn.Module, param_groups) -> dict[str, tuple[list[nn.Parameter], dict]]:
    in_model = {id(p) for p in model.parameters()}
    if param_groups is None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("the model has no trainable parameters (all requires_grad = False)")
        return {"model": (params, {})}
    if not isinstance(param_groups, Mapping) or not param_groups:
        raise ConfigError("param_groups must be a non-empty dict {name: module | parameters | {'params': ...}}")
    groups: dict[str, tuple[list[nn.Parameter], dict]] = {}
    owner: dict[int, str] = {}
    for name, spec in param_groups.items():
        opts = {}
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"params", *ADAMW_KEYS}
            if unknown or "params" not in spec:
                raise ConfigError(f"param_groups[{name!r}]: needs 'params' and only {ADAMW_KEYS}, got {sorted(spec)}")
            opts = {k: v for k, v in spec.items() if k != "params"}
            spec = spec["params"]
        params = spec.parameters() if isinstance(spec, nn.Module) else spec
        params = [p for p in params if p.requires_grad]
        if not params:
            raise ConfigError(f"param_groups[{name!r}] holds no trainable parameters")
        for p in params:
            if id(p) not in in_model:
                raise ConfigError(f"param_groups[{name!r}] holds parameters that are not in the model")
            if id(p) in owner:
                raise ConfigError(f"param_groups {owner[id(p)]!r} and {name!r} share parameters")
            owner[id(p)] = name
        groups[str(name)] = (params, opts)
    return groups


def inner_optimizer(opt):
    return getattr(opt, "optimizer", opt)  # AcceleratedOptimizer -> torch optimizer


def cpu_has_native_bf16() -> bool:
    """True on a CPU whose instructions compute bf16 (AVX512-BF16 or AMX), where oneDNN's bf16 convolutions are
    faster than fp32; elsewhere bf16 is emulated and slower."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training (None = fp32): "auto" bf16 on CUDA only; "fast" also bf16 on a CPU with
    native bf16 (the tiny preset: 1.18-1.47x the fp32 step on this project's 2-core EPYC, benchmarks/bench_train.py
    --variants eager,bf16); "bf16" always; "no" never."""
    if mode == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if mode == "fast":
        return torch.bfloat16 if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()) else None
    if mode == "bf16":
        return torch.bfloat16
    if mode in ("no", "fp32"):
        return None
    raise ConfigError(f"train.mixed_precision = {mode!r}; allowed: auto, fast, no, bf16")


def derive_seed(*ints: int) -> int:
    """A 63-bit seed from integers (seed, purpose, ...), independent across any of them."""
    return int(np.random.SeedSequence([int(i) for i in ints]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def seeded_generator(*ints: int) -> torch.Generator:
    """A CPU `torch.Generator` seeded from `derive_seed(*ints)`."""
    g = torch.Generator()
    g.manual_seed(derive_seed(*ints))
    return g
