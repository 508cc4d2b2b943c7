"""One `Trainer` for every trained piece of the kit: Stage-I / Stage-II / Stage-N denoisers (Sec. 3.2, 3.4),
the patch discriminator (Sec. 3.3) and the pix2pix / CycleGAN baselines (Sec. 5).

The Trainer knows nothing about depth or diffusion. The caller gives it a model, a loss function and a
dataset; the Trainer owns everything around them (implementation details of Sec. 4 and the release:
AdamW, constant learning rate, mixed precision):

- AdamW per parameter group (fused on CUDA when `cfg.fused_adamw`), a constant learning rate with an
  optional linear warm-up, gradient accumulation, gradient clipping, an optional EMA of the weights
  (diffusers' `EMAModel`), bf16 autocast on CUDA (`mixed_precision: auto`), fp32 on CPU.
- One code path for one process (CPU included) and data-parallel GPUs through `accelerate`: the model
  and optimizers go through `accelerator.prepare`, gradients through `accelerator.backward` /
  `accelerator.clip_grad_norm_`, logged values through `accelerator.gather`. The batch order is the
  Trainer's own: one permutation per epoch drawn from (seed, epoch), cut into global micro-batches of
  `batch_size x num_processes` samples, each process taking its slice. So a run resumes exactly.
- A `torch.Generator` per micro-batch seeded from (seed, step, micro-batch, process) is passed to the
  loss function: noise and timesteps are reproducible without the global RNG, also across a resume.
- Atomic safetensors checkpoints with optimizer / scheduler / RNG state and the position in the data
  stream (`sim2real_kit.checkpoints`); `resume=True` continues a run folder and gives the same losses as an
  uninterrupted run.
- `fit()` draws the micro-batches and calls `step(*micro_batches)` once per optimizer step, then logs,
  validates, samples and checkpoints; `step` alone is the optimizer step on batches the caller gives
  (benchmarks/bench_train.py times it).

Run folder of a stage (`run_dir`, e.g. `runs/x/stage1/`)::

    losses.csv                   step, epoch, loss, lr, img_per_s, then sorted extra columns
    val.csv                      step, then the sorted keys of val_fn's dict (when val_fn is given)
    samples/step-000100/         out_dir handed to sample_fn
    checkpoints/latest           text file: the name of the newest step folder, e.g. "step-000100"
    checkpoints/step-000100/     model.safetensors  ema.safetensors (cfg.ema)  optimizer.pt  trainer_state.json
    checkpoints/best/            the same files, for the best val_fn metric (trainer_state.json holds "metrics")

GAN pattern (pix2pix, CycleGAN, or a discriminator trained beside a generator): make `model` an
`nn.ModuleDict` (or any module holding both nets), pass
`param_groups={"G": model["G"], "D": {"params": model["D"], "lr": 2e-4, "betas": (0.5, 0.999)}}` and let
`loss_fn` return `({"G": loss_G, "D": loss_D}, logs)` from ONE forward pass. Each group's loss
back-propagates only into its own parameters (`backward(inputs=...)`), then every group's optimizer
steps: a simultaneous G/D update. Compute `loss_D` on `fake.detach()` to save the backward through G.

Several processes: `accelerate launch train.py` (GPUs; `--cpu` or `ACCELERATE_USE_CPU=1` for CPU processes).
`cfg.batch_size` is per process. One group: the model is DDP-wrapped, so `loss_fn` must run the trainable
forward through `model(...)`; a model with parameters unused in some steps needs an `accelerator=` built with
`DistributedDataParallelKwargs(find_unused_parameters=True)`. Several groups: no DDP, gradients are
all-reduced by hand after the backward passes. Validation, samples and files are the main process's job.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sim2real_kit import checkpoints as ckpt
from sim2real_kit import train_setup as setup
from sim2real_kit.checkpoints import (  # noqa: F401 - also re-exported, so existing imports keep working
    BEST,
    CHECKPOINTS,
    EMA_FILE,
    LATEST,
    MODEL_FILE,
    OPTIMIZER_FILE,
    STATE_FILE,
    STATE_FORMAT,
    checkpoint_dir,
    latest_checkpoint,
    load_weights,
)
from sim2real_kit.errors import CheckpointError, ConfigError, Sim2RealError
from sim2real_kit.train_log import CsvLog, LogWindow

LOSSES_CSV = "losses.csv"
VAL_CSV = "val.csv"
LOSS_COLUMNS = ("step", "epoch", "loss", "lr", "img_per_s")

LossFn = Callable[[nn.Module, Any, torch.Generator], Any]


class TrainingError(Sim2RealError):
    """Training cannot go on: the loss or the weights became NaN / inf, or the loss function misbehaves."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module under `torch.compile` / DDP wrappers (what `loss_fn` may use for frozen submodules)."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


# ---------------------------------------------------------------------- the Trainer
class Trainer:
    """Train `model` by minimising `loss_fn` over `train_dataset`, writing the stage folder `run_dir`.

    model: the module to train; its trainable parameters are those with `requires_grad` (or `param_groups`).
    loss_fn(model, batch, generator) -> loss | (loss, logs): `model` is the prepared module (DDP / compiled
        wrapper when those are on: run the trainable forward through `model(...)`; `unwrap_model(model)` reaches
        frozen submodules), `batch` the collated dict already on the device, `generator` a `torch.Generator` on the
        device seeded from (seed, step, micro-batch, process) for noise / timesteps. `loss` a scalar tensor, or
        with `param_groups` a dict {group: scalar tensor}; `logs` a dict of scalars (floats or tensors, same keys
        every step) averaged over `cfg.log_every` steps into losses.csv. Per-pixel weight maps are loss_fn's job.
    train_dataset: map-style dataset of dicts; `set_epoch(epoch)` is called at each epoch start when it exists.
    cfg: a `TrainConfig` (steps, batch_size per process, lr, weight_decay, grad_accum, grad_clip, ema, ema_decay,
        mixed_precision, log_every, sample_every, ckpt_every, val_every, compile, channels_last, fused_adamw;
        optional lr_warmup_steps, keep_checkpoints).
    val_fn(model) -> {metric: float}: called on the main process (EMA weights swapped in, eval mode, no grad) every
        `cfg.val_every` steps and at the end; `best_metric` / `best_mode` keep `checkpoints/best/`.
    sample_fn(model, step, out_dir): writes sample grids into `run_dir/samples/step-N/` (main process, EMA weights).
    param_groups: {name: module | parameters | {"params": ..., "lr"/"betas"/"eps"/"weight_decay": ...}}, one AdamW
        each; `loss_fn` then returns {name: loss}. None: one group "model" of all trainable parameters.
    resume: continue from `checkpoints/latest` when there is one (else start fresh). Without it, a run folder that
        already holds checkpoints is refused unless `overwrite=True` (which deletes them and losses.csv first).
    save_frozen: also save parameters without requires_grad (default: trainable parameters + buffers only).

    `global_step` counts the optimizer steps done, `epoch` / `sample_in_epoch` the position in the data stream.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train_dataset,
        cfg,
        run_dir: str | Path,
        *,
        seed: int = 0,
        collate_fn: Callable | None = None,
        val_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
        best_metric: str | None = None,
        best_mode: str = "min",
        sample_fn: Callable[[nn.Module, int, Path], Any] | None = None,
        param_groups: Mapping[str, Any] | None = None,
        resume: bool = False,
        overwrite: bool = False,
        num_workers: int = 0,
        save_frozen: bool = False,
        progress: bool = True,
        accelerator=None,
    ):
        self.cfg = cfg
        self.loss_fn = loss_fn
        self.dataset = train_dataset
        self.collate_fn = collate_fn
        self.run_dir = Path(run_dir)
        self.ckpt_root = self.run_dir / CHECKPOINTS
        self.seed = int(seed)
        self.val_fn, self.sample_fn = val_fn, sample_fn
        self.num_workers = int(num_workers)
        self.save_frozen = bool(save_frozen)
        self.progress = progress
        setup.check_args(cfg, self.seed, best_metric, best_mode, val_fn)
        self.best = {"metric": best_metric, "mode": best_mode, "value": None, "step": None}
        self.num_samples = setup.dataset_size(train_dataset)  # fail before anything heavy happens
        self._setup_accelerator(accelerator)
        self._setup_batches()
        self._setup_model(model, param_groups)
        self._setup_optimizers()
        self._setup_compile()
        self.ema = None
        if cfg.ema:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self.trainable, decay=cfg.ema_decay, foreach=True)
        self._setup_run_folder(resume, overwrite)

    # ------------------------------------------------------------------ set-up, in the order __init__ runs it
    def _setup_accelerator(self, accelerator) -> None:
        """One process (CPU or GPU) or data parallel; mixed precision is ours (autocast in `step`), so several
        Trainers with different settings can live in one notebook process."""
        from accelerate import Accelerator

        self.accelerator = accelerator if accelerator is not None else Accelerator()
        if getattr(self.accelerator, "gradient_accumulation_steps", 1) != 1:
            raise ConfigError("pass an Accelerator without gradient_accumulation_steps; use train.grad_accum")
        self.device = self.accelerator.device
        self.num_processes = self.accelerator.num_processes
        self.process_index = self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        self.autocast_dtype = setup.resolve_precision(self.cfg.mixed_precision, self.device)
        self.precision_name = "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32"

    def _setup_batches(self) -> None:
        """Micro-batch geometry of the data stream (`_micro_batches`)."""
        self.micro_batch = int(self.cfg.batch_size)
        self.global_micro_batch = self.micro_batch * self.num_processes
        if self.num_samples < self.global_micro_batch:
            raise Sim2RealError(
                f"train_dataset has {self.num_samples} samples, fewer than one batch of "
                f"train.batch_size x processes = {self.micro_batch} x {self.num_processes}"
            )
        self.batches_per_epoch = self.num_samples // self.global_micro_batch  # the last partial batch is dropped

    def _setup_model(self, model: nn.Module, param_groups) -> None:
        """The model on the device, its parameter groups and the names of what a checkpoint holds."""
        self.model = model  # the user's module; self.forward_model is what loss_fn gets
        model.to(self.device)
        if self.cfg.channels_last and self.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        self.groups = setup.resolve_groups(model, param_groups)
        self.trainable = [p for params, _ in self.groups.values() for p in params]
        names = {id(p): n for n, p in model.named_parameters()}
        self.trainable_names = [names[id(p)] for p in self.trainable]
        self._saved_keys = ckpt.saved_keys(model, self.trainable_names, self.save_frozen)

    def _setup_optimizers(self) -> None:
        """One AdamW and one LR scheduler per group; the model and optimizers through `accelerator.prepare`."""
        cfg = self.cfg
        optimizers = []
        for params, opts in self.groups.values():
            kw = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, **opts}
            if cfg.fused_adamw and self.device.type == "cuda":
                kw["fused"] = True
            optimizers.append(torch.optim.AdamW(params, **kw))
        # DDP needs one backward per forward through the wrapped module: single-group training uses it; several
        # groups (GAN) use several backward passes, so their gradients are all-reduced by hand (_sync_grads).
        self._use_ddp = len(self.groups) == 1
        if self._use_ddp:
            self.forward_model, *optimizers = self.accelerator.prepare(self.model, *optimizers)
        else:
            optimizers = list(self.accelerator.prepare(*optimizers))
            self.forward_model = self.model
        self.optimizers = dict(zip(self.groups, optimizers))
        warmup = int(cfg.lr_warmup_steps)
        self.schedulers = {
            name: torch.optim.lr_scheduler.LambdaLR(setup.inner_optimizer(opt), setup.Warmup(warmup))
            for name, opt in self.optimizers.items()
        }
        self._last_lr = self.schedulers[next(iter(self.groups))].get_last_lr()[0]

    def _setup_compile(self) -> None:
        """`torch.compile` of the forward model on CUDA when `cfg.compile`, and of what the model's own
        `compile_frozen()` compiles (parts the loss calls outside `forward`, e.g. a frozen VAE encoder)."""
        if not (self.cfg.compile and self.device.type == "cuda"):
            return
        import torch._inductor.config as inductor_config

        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest convolution once
        # inductor's caches (FX graphs, Triton kernels, autotuning) in the run folder unless the user set
        # one: a resumed run on the same torch + GPU reuses them instead of compiling again (~170 s)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.run_dir / "compile_cache"))
        inductor_config.conv_1x1_as_mm = True  # 1x1 convolutions (attention projections) as matmuls
        self.forward_model = torch.compile(self.forward_model)
        compile_frozen = getattr(self.model, "compile_frozen", None)  # e.g. a frozen encoder the loss calls
        if callable(compile_frozen):
            compile_frozen()

    def _setup_run_folder(self, resume: bool, overwrite: bool) -> None:
        """Clean interrupted writes, then resume from `checkpoints/latest` or start (over)."""
        self.global_step = 0  # optimizer steps done
        self.epoch = 0  # data epoch of the next micro-batch
        self.sample_in_epoch = 0  # samples of this epoch already consumed (all processes together)
        self.last_loss: float | None = None
        self.resumed_from: Path | None = None
        self._window = LogWindow()
        self._rng_to_restore = None
        self._losses = CsvLog(self.run_dir / LOSSES_CSV, LOSS_COLUMNS) if self.is_main else None
        self._val_log = CsvLog(self.run_dir / VAL_CSV, ("step",)) if self.is_main else None
        if self.is_main:
            ckpt.clean_interrupted(self.ckpt_root)
        self.accelerator.wait_for_everyone()
        found = latest_checkpoint(self.ckpt_root)
        if found is not None and not resume:
            if not overwrite:
                raise CheckpointError(
                    f"run folder already holds checkpoints (latest {found.name}); pass resume=True to continue it "
                    "or overwrite=True to start over",
                    self.ckpt_root,
                )
            found = None
            if self.is_main:
                shutil.rmtree(self.ckpt_root, ignore_errors=True)
                shutil.rmtree(self.run_dir / "samples", ignore_errors=True)
        if found is not None:
            ckpt.restore_trainer(self, found)
            self.resumed_from = found
        if self.is_main:  # drop rows written after the checkpoint we continue from (or all, when fresh)
            self._losses.truncate(self.global_step)
            self._val_log.truncate(self.global_step)
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ public API
    @property
    def unwrapped_model(self) -> nn.Module:
        return self.model

    @contextlib.contextmanager
    def ema_weights(self):
        """Swap the EMA weights into the model for sampling / validation (no-op without EMA); yields the model."""
        if self.ema is None:
            yield self.model
            return
        self.ema.store(self.trainable)
        self.ema.copy_to(self.trainable)
        try:
            yield self.model
        finally:
            self.ema.restore(self.trainable)

    def fit(self, until: int | None = None) -> dict:
        """Train to `cfg.steps` (or stop at `until`, checkpointing there). Returns
        {"loss": last logged loss, "steps": steps done, "seconds": wall time of this call, "img_per_s",
        "start_step", "best": best metric value or None, "best_step"}. A finished run returns at once."""
        total = int(self.cfg.steps)
        stop = total if until is None else min(int(until), total)
        start, t0 = self.global_step, time.perf_counter()
        if self.global_step >= stop:
            return self._summary(start, 0.0, 0)
        self._seed_global_rng()

        from tqdm.auto import tqdm

        accum = int(self.cfg.grad_accum)
        stream = self._micro_batches()
        pbar = tqdm(
            total=total,
            initial=self.global_step,
            desc=self.run_dir.name or "train",
            disable=not (self.progress and self.is_main),
            dynamic_ncols=True,
        )
        self._window.restart_clock()
        try:
            while self.global_step < stop:
                self.step(*[next(stream) for _ in range(accum)])
                pbar.update(1)
                self._periodic(total, stop, pbar)
        finally:
            pbar.close()
            stream.close()
        seconds = time.perf_counter() - t0
        return self._summary(start, seconds, (self.global_step - start) * self.global_micro_batch * accum)

    def step(self, *micro_batches) -> torch.Tensor:
        """One optimizer step, the one `fit` takes: `cfg.grad_accum` micro-batches (collated, on the device; one
        `batch` when grad_accum is 1), each through `loss_fn` under autocast with its generator seeded from
        (seed, global_step, micro-batch, process), its loss / grad_accum back-propagated; then per group gradient
        clipping, AdamW, LR scheduler and `zero_grad`, then the EMA update. Advances `global_step` and the window
        of logged values; logging, validation, samples and checkpoints are `fit`'s. The global RNG is the
        caller's (`fit` seeds it once per run). Returns the loss (summed over groups, averaged over the
        micro-batches) as a 0-dim float32 tensor on the device: no host sync, `float()` it to read it."""
        accum = int(self.cfg.grad_accum)
        if len(micro_batches) != accum:
            raise TrainingError(f"step() takes train.grad_accum = {accum} micro-batches, got {len(micro_batches)}")
        losses = [self._forward_backward(batch, micro, accum) for micro, batch in enumerate(micro_batches)]
        self._apply_gradients()
        self.global_step += 1
        self._window.steps += 1
        self._window.images += self.global_micro_batch * accum
        return losses[0] if accum == 1 else torch.stack(losses).mean()

    def save_checkpoint(self, name: str | None = None, metrics: Mapping[str, float] | None = None) -> Path:
        """Write `checkpoints/<name>/` atomically (default `step-N`, which also moves `latest` and prunes)."""
        name = name or f"step-{self.global_step:06d}"
        self._check_finite_weights(name)
        final = self.ckpt_root / name
        self.accelerator.wait_for_everyone()
        if self.is_main:
            tmp = ckpt.temp_dir(self.ckpt_root, name)
            ckpt.save_trainer(self, tmp, metrics)
            ckpt.publish(tmp, final)
            if ckpt.STEP_DIR.match(name):
                ckpt.set_latest(self.ckpt_root, name)
                ckpt.prune_step_dirs(self.ckpt_root, int(getattr(self.cfg, "keep_checkpoints", 2) or 2))
        self.accelerator.wait_for_everyone()
        return final

    # ------------------------------------------------------------------ inside one optimizer step
    def _forward_backward(self, batch, micro: int, accum: int) -> torch.Tensor:
        """Loss and backward of one micro-batch (gradients accumulate); returns its total loss, detached."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(setup.derive_seed(self.seed, 1, self.global_step, micro, self.process_index))
        last = micro == accum - 1
        sync = contextlib.nullcontext() if (last or not self._use_ddp) else self.accelerator.no_sync(self.forward_model)
        with sync:
            with torch.autocast(
                self.device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None
            ):
                out = self.loss_fn(self.forward_model, batch, generator)
            losses, logs = self._split_output(out)
            names = list(losses)
            for i, name in enumerate(names):
                kw = {} if self._use_ddp else {"inputs": self.groups[name][0], "retain_graph": i < len(names) - 1}
                self.accelerator.backward(losses[name] / accum, **kw)
        total_loss = sum(loss.detach().float() for loss in losses.values())
        self._window.add("loss", total_loss)
        if len(losses) > 1:
            for name, loss in losses.items():
                self._window.add(f"loss_{name}", loss.detach().float())
        for key, value in logs.items():
            self._window.add(key, value)
        return total_loss

    def _apply_gradients(self) -> None:
        """All-reduce (several groups, several processes), clip, AdamW + scheduler step per group, then EMA."""
        if not self._use_ddp and self.num_processes > 1:
            self._sync_grads()
        self._last_lr = self.schedulers[next(iter(self.groups))].get_last_lr()[0]  # the LR this step uses
        for name, opt in self.optimizers.items():
            params = self.groups[name][0]
            if self.cfg.grad_clip and self.cfg.grad_clip > 0:
                norm = self.accelerator.clip_grad_norm_(params, self.cfg.grad_clip)
                if norm is not None:
                    key = "grad_norm" if len(self.groups) == 1 else f"grad_norm_{name}"
                    self._window.add(key, norm.detach().float())
            opt.step()
            self.schedulers[name].step()
            opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(self.trainable)

    def _split_output(self, out) -> tuple[dict[str, torch.Tensor], dict]:
        if isinstance(out, tuple):
            if len(out) != 2:
                raise TrainingError(f"loss_fn must return loss or (loss, logs), got a tuple of {len(out)}")
            loss, logs = out
        else:
            loss, logs = out, {}
        logs = dict(logs or {})
        if isinstance(loss, Mapping):
            if set(loss) != set(self.groups):
                raise TrainingError(
                    f"loss_fn returned losses for {sorted(loss)}, the param_groups are {list(self.groups)}"
                )
            losses = {name: loss[name] for name in self.groups}
        elif len(self.groups) == 1:
            losses = {next(iter(self.groups)): loss}
        else:
            raise TrainingError(f"with param_groups {list(self.groups)}, loss_fn must return a dict of losses")
        for name, value in losses.items():
            if not (isinstance(value, torch.Tensor) and value.ndim == 0):
                raise TrainingError(f"loss_fn: loss {name!r} must be a scalar tensor, got {type(value).__name__}")
        return losses, logs

    def _sync_grads(self) -> None:
        """All-reduce (mean) the gradients by hand when the model is not DDP-wrapped (several param groups)."""
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.trainable]
        flat = self.accelerator.reduce(_flatten_dense_tensors(grads), reduction="mean")
        for p, g in zip(self.trainable, _unflatten_dense_tensors(flat, grads)):
            p.grad = g

    # ------------------------------------------------------------------ data stream
    def _seed_global_rng(self) -> None:
        """Before a run's first step: the global RNG states of the checkpoint resumed from, or `set_seed`."""
        if self._rng_to_restore is not None:
            ckpt.set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
        elif self.global_step == 0:
            from accelerate.utils import set_seed

            set_seed(self.seed, device_specific=True)

    def _micro_batches(self) -> Iterator:
        """This process's micro-batches from the current (epoch, sample_in_epoch) on, forever; the position is
        advanced as batches are consumed so a checkpoint records exactly what was used."""
        from accelerate.utils import send_to_device
        from torch.utils.data import DataLoader

        gb, b, r = self.global_micro_batch, self.micro_batch, self.process_index
        while True:
            first = -(-self.sample_in_epoch // gb)  # a resume with another process count rounds up
            if first >= self.batches_per_epoch:
                self.epoch, self.sample_in_epoch = self.epoch + 1, 0
                continue
            order = torch.randperm(
                self.num_samples, generator=setup.seeded_generator(self.seed, 2, self.epoch)
            ).tolist()
            batches = [order[j * gb + r * b : j * gb + (r + 1) * b] for j in range(first, self.batches_per_epoch)]
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.epoch)
            loader = DataLoader(
                self.dataset,
                batch_sampler=batches,
                collate_fn=self.collate_fn,
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                generator=setup.seeded_generator(self.seed, 3, self.epoch),  # keeps the global RNG untouched
            )
            for j, batch in enumerate(loader, start=first):
                self.sample_in_epoch = (j + 1) * gb
                yield send_to_device(batch, self.device, non_blocking=True)
            self.epoch, self.sample_in_epoch = self.epoch + 1, 0

    # ------------------------------------------------------------------ logging, validation, samples, checkpoints
    def _periodic(self, total: int, stop: int, pbar) -> None:
        s, cfg = self.global_step, self.cfg

        def due(every) -> bool:
            return bool(every) and every > 0 and s % every == 0

        if due(cfg.log_every) or s == total:  # not at an early `until` stop: the window is checkpointed instead
            self._log(pbar)
        if self.val_fn is not None and (due(cfg.val_every) or s == total):
            self._validate()
        if self.sample_fn is not None and (due(cfg.sample_every) or s == total):
            self._sample()
        if due(cfg.ckpt_every) or s == stop:
            self.save_checkpoint()

    def _log(self, pbar) -> None:
        values = self._window.means(self.device)  # one device -> host copy, gathered over processes
        if values is None:
            return
        keys, vec = values
        vec = self.accelerator.gather(vec.unsqueeze(0)).float().mean(0).tolist()
        row = dict(zip(keys, vec))
        elapsed = self._window.elapsed()
        row.update(
            step=self.global_step,
            epoch=self.epoch,
            lr=self._last_lr,
            img_per_s=self._window.images / max(elapsed, 1e-9),
        )
        self.last_loss = row["loss"]
        if not math.isfinite(row["loss"]):
            raise TrainingError(
                f"loss is {row['loss']} at step {self.global_step}: training diverged; checkpoints were left as "
                f"they were (latest: {latest_checkpoint(self.ckpt_root)})",
                self.run_dir,
            )
        if self.is_main:
            self._losses.append(row)
            pbar.set_postfix(loss=f"{row['loss']:.4g}", img_s=f"{row['img_per_s']:.1f}", refresh=False)
        self._window.reset()

    def _validate(self) -> None:
        metrics = None
        if self.is_main:
            with self._eval_mode() as model:
                metrics = {k: float(v) for k, v in dict(self.val_fn(model)).items()}
            self._val_log.append({"step": self.global_step, **metrics})
            self._update_best(metrics)
        flag = [self.best["step"] == self.global_step and metrics is not None]
        if self.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            flag = broadcast_object_list(flag)
        if flag[0]:
            self.save_checkpoint(BEST, metrics)
        self.accelerator.wait_for_everyone()

    def _update_best(self, metrics: dict[str, float]) -> None:
        key = self.best["metric"]
        if key is None:
            return
        if key not in metrics:
            raise Sim2RealError(f"val_fn returned {sorted(metrics)}, no best_metric {key!r}")
        value, best = metrics[key], self.best["value"]
        better = math.isfinite(value) and (
            best is None or (value < best if self.best["mode"] == "min" else value > best)
        )
        if better:
            self.best.update(value=value, step=self.global_step)

    def _sample(self) -> None:
        if self.is_main:
            out_dir = self.run_dir / "samples" / f"step-{self.global_step:06d}"
            out_dir.mkdir(parents=True, exist_ok=True)
            with self._eval_mode() as model:
                self.sample_fn(model, self.global_step, out_dir)
        self.accelerator.wait_for_everyone()

    @contextlib.contextmanager
    def _eval_mode(self):
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self.ema_weights() as model:
                yield model
        finally:
            self.model.train(was_training)

    def _summary(self, start: int, seconds: float, images: int) -> dict:
        return {
            "loss": self.last_loss,
            "steps": self.global_step,
            "start_step": start,
            "seconds": seconds,
            "img_per_s": images / seconds if seconds > 0 else 0.0,
            "precision": self.precision_name,  # what train.mixed_precision chose
            "threads": torch.get_num_threads(),  # CPU threads of this process (another count: other float sums)
            "best": self.best["value"],
            "best_step": self.best["step"],
        }

    def _check_finite_weights(self, name: str) -> None:
        if not self.trainable:
            return
        finite = torch.stack([torch.isfinite(p.detach()).all() for p in self.trainable]).all()
        if not bool(finite):
            bad = next(n for n, p in zip(self.trainable_names, self.trainable) if not torch.isfinite(p).all())
            raise TrainingError(
                f"weight {bad!r} is NaN/inf at step {self.global_step}; checkpoint {name!r} not written, the "
                f"previous ones are kept (latest: {latest_checkpoint(self.ckpt_root)})",
                self.run_dir,
            )
