"""Checkpoint folders of a `Trainer` run (`sim2real_kit.training`): names, atomic writes, reading and checking.

Layout of a stage's `checkpoints/` folder::

    latest                 text file: the name of the newest step folder, e.g. "step-000100"
    step-000100/           model.safetensors  ema.safetensors (EMA on)  optimizer.pt  trainer_state.json
    best/                  the same files, for the best validation metric (trainer_state.json holds "metrics")
    .tmp-<name>/ .old-<name>/   leftovers of an interrupted write: never read, removed at the next start

A folder is written under `.tmp-<name>`, fsynced, then renamed into place (`publish`); `latest` moves only
after that, so a crash at any point leaves the previous checkpoint readable. Inference code reads weights with
`load_weights` / `checkpoint_dir`; everything else here is the Trainer's (`save_trainer` / `restore_trainer`
write and read its whole state).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import re
import shutil
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from sim2real_kit.errors import CheckpointError
from sim2real_kit.io import atomic_write_text

if TYPE_CHECKING:
    from sim2real_kit.training import Trainer

CHECKPOINTS = "checkpoints"
LATEST = "latest"
BEST = "best"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.json"
STATE_FORMAT = "sim2real_kit.trainer/1"
STEP_DIR = re.compile(r"^step-(\d+)$")


# ---------------------------------------------------------------------- finding and loading (inference too)
def checkpoint_dir(path: str | Path) -> Path:
    """Resolve a checkpoint folder: a folder holding `model.safetensors` as is, else the one `latest` names in
    `path/` or `path/checkpoints/` (a run's stage folder). Raises `CheckpointError` when there is none."""
    path = Path(path)
    if (path / MODEL_FILE).is_file():
        return path
    for root in (path / CHECKPOINTS, path):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise CheckpointError(f"no checkpoint here (no {MODEL_FILE}, no {CHECKPOINTS}/{LATEST})", path)


def latest_checkpoint(checkpoints: str | Path) -> Path | None:
    """The newest complete `step-N` folder of a `checkpoints/` folder: the one `latest` names when it exists,
    else the highest step (a crash between the rename and the pointer update); None when there is none.
    Leftover `.tmp-*` folders of an interrupted write are never considered."""
    checkpoints = Path(checkpoints)
    pointer = checkpoints / LATEST
    if pointer.is_file():
        name = pointer.read_text().strip()
        if STEP_DIR.match(name) and (checkpoints / name / STATE_FILE).is_file():
            return checkpoints / name
    steps = [d for d in step_dirs(checkpoints) if (d / STATE_FILE).is_file()]
    return steps[-1] if steps else None


def load_weights(model: nn.Module, ckpt_dir: str | Path, ema: bool = False, skip_mismatched: bool = False) -> list[str]:
    """Load a checkpoint's weights (or its EMA weights) into `model`; returns the model's state-dict keys that
    were not loaded (frozen parts saved elsewhere, e.g. a pretrained VAE; mismatched ones when skipped).

    `ckpt_dir`: a checkpoint folder (`checkpoints/step-N`, `checkpoints/best`), a `checkpoints/` folder or a
    stage folder (its `latest` is used). Raises `CheckpointError` naming the file when it is missing or
    truncated, and naming the first parameter whose shape differs (a checkpoint of another preset) unless
    `skip_mismatched` (e.g. Stage-II initialised from Stage-I, whose condition input has 4 channels, not 8)."""
    folder = checkpoint_dir(ckpt_dir)
    path = folder / (EMA_FILE if ema else MODEL_FILE)
    if ema and not path.is_file():
        raise CheckpointError("no EMA weights in this checkpoint (trained with train.ema = false)", path)
    state = read_safetensors(path)
    if skip_mismatched:
        expected = model.state_dict()
        state = {k: v for k, v in state.items() if k in expected and tuple(v.shape) == tuple(expected[k].shape)}
    else:
        check_state_dict(model, state, path)
    model.load_state_dict(state, strict=False)
    return [k for k in model.state_dict() if k not in state]


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file on the CPU; `CheckpointError` naming the file when missing or damaged."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError("weights file is missing", path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for truncated headers / data
        raise CheckpointError(
            f"cannot read weights ({type(e).__name__}: {e}); the file is truncated or corrupt", path
        ) from None


def check_state_dict(
    model: nn.Module, weights: Mapping[str, torch.Tensor], path: Path, required: Iterable[str] = ()
) -> None:
    """Names and shapes of a checkpoint against the model, in the model's order: the first mismatch is named."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key in weights and tuple(weights[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"parameter {key!r} has shape {tuple(weights[key].shape)} in the checkpoint but {tuple(tensor.shape)} "
                "in the model (a checkpoint of another preset / model size?)",
                path,
            )
    for key in weights:
        if key not in expected:
            raise CheckpointError(
                f"parameter {key!r} of the checkpoint does not exist in the model (another model?)", path
            )
    for key in required:
        if key not in weights:
            raise CheckpointError(f"parameter {key!r} of the model is missing from the checkpoint", path)


# ---------------------------------------------------------------------- the Trainer's files
def read_trainer_state(folder: Path, groups: list[str]) -> dict:
    """`trainer_state.json` of a checkpoint folder, checked: its format and its param groups."""
    state_path = folder / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"cannot read the trainer state ({e}); the file is truncated or corrupt", state_path
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"not a trainer state of format {STATE_FORMAT}", state_path)
    if state.get("groups") != groups:
        raise CheckpointError(f"checkpoint has param groups {state.get('groups')}, this Trainer {groups}", state_path)
    return state


def check_position(state: dict, folder: Path) -> None:
    """The position keys of a trainer state (step, epoch, sample_in_epoch) are integers."""
    for key in ("step", "epoch", "sample_in_epoch"):
        if not isinstance(state.get(key), int):
            raise CheckpointError(f"key {key!r} missing or not an integer", folder / STATE_FILE)


def read_optimizer_file(path: Path) -> dict:
    """The optimizer / scheduler / torch RNG blob of a checkpoint (`optimizer.pt`)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CheckpointError(f"cannot read optimizer state ({type(e).__name__}: {e})", path) from None


def saved_keys(model: nn.Module, trainable_names: list[str], save_frozen: bool) -> list[str]:
    """The state-dict keys a checkpoint holds: all, or the trainable parameters and the buffers."""
    keys = list(model.state_dict())
    if save_frozen:
        return keys
    keep = set(trainable_names) | {n for n, _ in model.named_buffers()}
    return [k for k in keys if k in keep]


def to_cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True).contiguous()  # copies: tied / shared tensors are saved separately


def write_checkpoint(
    folder: Path,
    weights: dict[str, torch.Tensor],
    meta: dict[str, str],
    ema: dict[str, torch.Tensor] | None,
    ema_meta: dict[str, str],
    blob: dict,
    state: dict,
) -> None:
    """The files of a checkpoint folder, fsynced: weights (and EMA weights) as safetensors, the optimizer /
    scheduler / torch RNG blob (`optimizer.pt`) and the trainer state (`trainer_state.json`)."""
    from safetensors.torch import save_file

    save_file(weights, str(folder / MODEL_FILE), metadata=meta)
    if ema is not None:
        save_file(ema, str(folder / EMA_FILE), metadata=ema_meta)
    torch.save(blob, folder / OPTIMIZER_FILE)
    (folder / STATE_FILE).write_text(json.dumps(state, indent=1, default=str))
    for f in folder.iterdir():
        with open(f, "rb+") as fh:
            os.fsync(fh.fileno())


# ---------------------------------------------------------------------- RNG state (torch in the blob, the rest in JSON)
def rng_blob() -> dict:
    """The torch (and CUDA) RNG states, saved in `optimizer.pt`."""
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }


def rng_json() -> dict:
    """The numpy and Python RNG states as JSON lists, saved in `trainer_state.json`."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "numpy_rng": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
    }


def rng_from_checkpoint(state: dict, blob: dict, folder: Path) -> dict:
    """The RNG states saved by `rng_blob` + `rng_json`, ready for `set_rng_state`."""
    try:
        np_state = state["numpy_rng"]
        py_state = state["python_rng"]
        return {
            "torch": blob["torch_rng"],
            "cuda": blob.get("cuda_rng"),
            "numpy": (np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]),
            "python": (py_state[0], tuple(py_state[1]), py_state[2]),
        }
    except (KeyError, IndexError, TypeError) as e:
        raise CheckpointError(f"RNG state missing or malformed ({e})", folder / STATE_FILE) from None


def set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


# ---------------------------------------------------------------------- folders: atomic publish, latest, pruning
def step_dirs(root: Path) -> list[Path]:
    """The `step-N` folders of `root` in step order."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), d) for d in root.iterdir() if d.is_dir() and (m := STEP_DIR.match(d.name))]
    return [d for _, d in sorted(found)]


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_dir(root: Path, name: str) -> Path:
    """A fresh, empty `root/.tmp-<name>/` to write a checkpoint into before `publish`."""
    tmp = root / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, final: Path) -> None:
    """Rename a written `tmp` folder onto `final`; an existing `final` is moved aside first and deleted only
    once the new folder is in place."""
    fsync_dir(tmp)
    if final.exists():
        old = final.parent / f".old-{final.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(final.parent)


def set_latest(root: Path, name: str) -> None:
    atomic_write_text(root / LATEST, name + "\n")


def prune_step_dirs(root: Path, keep: int) -> None:
    """Delete the oldest `step-N` folders so that `keep` remain, the one `latest` names among them."""
    latest = (root / LATEST).read_text().strip()
    steps = [d for d in step_dirs(root) if d.name != latest]
    for d in steps[: max(0, len(steps) - (keep - 1))]:
        shutil.rmtree(d, ignore_errors=True)


def clean_interrupted(root: Path) -> None:
    """Remove the `.tmp-*` / `.old-*` leftovers of an interrupted checkpoint write."""
    if not root.is_dir():
        return
    for d in root.iterdir():
        if d.name.startswith(".tmp-") or d.name.startswith(".old-"):
            shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------- a Trainer's state <-> a checkpoint folder
def save_trainer(trainer: Trainer, folder: Path, metrics: Mapping[str, float] | None) -> None:
    """Write `trainer`'s checkpoint into the (empty) `folder`: the saved weights (and EMA weights), optimizers,
    schedulers and RNG states, and `trainer_state.json` (position in the data stream, settings, log window,
    best metric, `metrics` of a best checkpoint, config)."""
    full = trainer.model.state_dict()
    weights = {k: to_cpu(full[k]) for k in trainer._saved_keys}
    meta = {"format": "pt", "step": str(trainer.global_step), "trainer": STATE_FORMAT}
    ema = None
    if trainer.ema is not None:
        ema = dict(weights)
        for name, shadow in zip(trainer.trainable_names, trainer.ema.shadow_params):
            if name in ema:
                ema[name] = to_cpu(shadow)
    blob = {
        "optimizers": {n: o.state_dict() for n, o in trainer.optimizers.items()},
        "schedulers": {n: s.state_dict() for n, s in trainer.schedulers.items()},
        **rng_blob(),
    }
    state = {
        "format": STATE_FORMAT,
        "step": trainer.global_step,
        "epoch": trainer.epoch,
        "sample_in_epoch": trainer.sample_in_epoch,
        "seed": trainer.seed,
        "num_processes": trainer.num_processes,
        "batch_size": trainer.micro_batch,
        "grad_accum": int(trainer.cfg.grad_accum),
        "groups": list(trainer.groups),
        "saved_keys": "all" if trainer.save_frozen else "trainable+buffers",
        "ema_step": None if trainer.ema is None else int(trainer.ema.optimization_step),
        "last_loss": trainer.last_loss,
        "last_lr": trainer._last_lr,
        "window": trainer._window.state(),
        "best": trainer.best,
        "metrics": dict(metrics) if metrics is not None else None,
        **rng_json(),
        "config": _config_dict(trainer.cfg),
    }
    ema_meta = {**meta, "ema_decay": str(trainer.cfg.ema_decay)}
    write_checkpoint(folder, weights, meta, ema, ema_meta, blob, state)


def restore_trainer(trainer: Trainer, folder: Path) -> None:
    """Load a checkpoint folder into `trainer` (weights, EMA, optimizers, schedulers, position, log window, best);
    the RNG states are kept in `trainer._rng_to_restore` for `fit` to set. `CheckpointError` names the file that
    is missing, damaged or does not fit."""
    state = read_trainer_state(folder, list(trainer.groups))
    weights_path = folder / MODEL_FILE
    weights = read_safetensors(weights_path)
    check_state_dict(trainer.model, weights, weights_path, required=trainer._saved_keys)
    trainer.model.load_state_dict(weights, strict=False)
    if trainer.ema is not None:
        _restore_ema(trainer, folder, state)
    blob = _restore_optimizers(trainer, folder / OPTIMIZER_FILE)
    check_position(state, folder)
    _restore_position(trainer, state, folder)
    trainer._rng_to_restore = rng_from_checkpoint(state, blob, folder)


def _restore_ema(trainer: Trainer, folder: Path, state: dict) -> None:
    ema_path = folder / EMA_FILE
    if ema_path.is_file():
        ema = read_safetensors(ema_path)
        check_state_dict(trainer.model, ema, ema_path, required=trainer.trainable_names)
        with torch.no_grad():
            for name, shadow in zip(trainer.trainable_names, trainer.ema.shadow_params):
                shadow.copy_(ema[name])
        trainer.ema.optimization_step = int(state.get("ema_step") or state["step"])
    else:  # a run that turned EMA on when resuming: the average starts from the loaded weights
        warnings.warn(f"{folder}: no {EMA_FILE}; EMA restarts from the loaded weights", stacklevel=4)
        with torch.no_grad():
            for p, shadow in zip(trainer.trainable, trainer.ema.shadow_params):
                shadow.copy_(p)


def _restore_optimizers(trainer: Trainer, opt_path: Path) -> dict:
    blob = read_optimizer_file(opt_path)
    try:
        for name, opt in trainer.optimizers.items():
            opt.load_state_dict(blob["optimizers"][name])
            trainer.schedulers[name].load_state_dict(blob["schedulers"][name])
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"optimizer state does not fit this model ({type(e).__name__}: {e})", opt_path) from None
    return blob


def _restore_position(trainer: Trainer, state: dict, folder: Path) -> None:
    """Position in the data stream, log window, best metric; warns when the run's settings changed."""
    trainer.global_step, trainer.epoch = state["step"], state["epoch"]
    trainer.sample_in_epoch = state["sample_in_epoch"]  # in samples: another process count rounds up a batch
    now = {
        "num_processes": trainer.num_processes,
        "batch_size": trainer.micro_batch,
        "grad_accum": int(trainer.cfg.grad_accum),
        "seed": trainer.seed,
    }
    changed = {k: (state.get(k), v) for k, v in now.items() if state.get(k) != v}
    if changed:
        warnings.warn(
            f"{folder}: resuming with changed {changed}; the run continues but is not the same run", stacklevel=4
        )
    trainer.last_loss = state.get("last_loss")
    if state.get("last_lr") is not None:
        trainer._last_lr = state["last_lr"]
    trainer._window.load_state(state.get("window") or {})
    best = state.get("best") or {}
    if best.get("metric") == trainer.best["metric"] and best.get("mode") == trainer.best["mode"]:
        trainer.best.update(value=best.get("value"), step=best.get("step"))


def _config_dict(cfg) -> dict:
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return {k: v for k, v in vars(cfg).items() if not k.startswith("_")} if hasattr(cfg, "__dict__") else {}
