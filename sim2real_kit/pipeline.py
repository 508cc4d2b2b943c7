"""Sim2RealPipeline: CAD depth in metres -> simulated captured depth in metres, by DDIM sampling of
a chain of 1..N residual depth diffusion stages (paper Sec. 3.5; stages of Sec. 3.2 and 3.4).

    pipe = Sim2RealPipeline.from_pretrained("runs/demo/stage2/pipeline")
    out = pipe(cad_depth, camera=cam, num_inference_steps=20, generator=torch.Generator().manual_seed(0))
    out.depth      # [B, h, w] metres at the model size (0 = hole), same kind as the input (numpy / torch)
    out.residual   # [B, h, w] normalised residual of the last stage
    out.validity   # [B, h, w] P(the sensor returns depth) of the last stage (`data.holes: model`; else None)
    out.cad        # [B, h, w] the CAD depth after the eval transform, metres
    out.camera     # the crop's Camera (when a camera was given)

Stage 1 is conditioned on codec(cad_n) (with a physics prior, config `prior`: on concat(codec(cad_n),
codec(prior)), a physical sensor model's output on the same CAD, `prior_depth`); stage k > 1 on
concat(codec(cad_n), codec(previous)), where "previous" is the previous stage's depth (the paper;
`condition="depth"`) or its residual (the release; `condition="residual"`), computed from the previous stage's
*postprocessed* output exactly as a Stage-II dataset computes it from the saved Stage-I PNG
(`depth.previous_stage_condition`); a physics prior is encoded the same way.
Each stage predicts the residual (or, for the "w/o residual" ablation, the depth itself); a stage trained
with `data.holes: model` also denoises a validity channel (its `hole_channels`), read as P(valid) = (x0 + 1) / 2
and thresholded at `sampling.validity_threshold` (0.5: x0 < 0): the depth is 0 wherever P(valid) is below it, so
later stages are conditioned on the holes of earlier ones. With a validity head instead (`model.validity: head`,
`holes.ValidityHead`, saved in `validity_head/`), P(valid) is the head's on the CAD and the holes are drawn, not
thresholded: a hole where a correlated uniform u > P(valid), u drawn after the diffusion noise from a fork of the
call's generator (`holes.fork_generator`: seeded from its state, which it leaves as it is), so every draw of the
diffusion and hence the depth where kept is the head-less pipeline's; every stage's output gets the same holes.

Like Marigold's pipeline it subclasses diffusers' `DiffusionPipeline`, registers its modules and
scalars with `register_modules` / `register_to_config`, and `__call__` reads as numbered sections.
Because the number of stages varies, `save_pretrained` / `from_pretrained` are a thin custom
layout (safetensors weights, JSON configs), written atomically:

    model_index.json  scheduler/scheduler_config.json  codec/ (+ vae/)  stage1/  stage2/ ...  (validity_head/)
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from sim2real_kit.camera import Camera
from sim2real_kit.depth import (
    cad_condition,
    check_depth,
    decode_residual,
    denormalize_depth,
    encode_residual,
    previous_stage_condition,
    valid_mask,
)
from sim2real_kit.errors import CheckpointError, ConfigError, DepthFormatError, Sim2RealError
from sim2real_kit.holes import HEAD_FOLDER, ValidityHead, correlated_uniform, fork_generator
from sim2real_kit.models.codec import DepthCodec, load_codec
from sim2real_kit.models.denoiser import ControlledDenoiser, atomic_dir, condition_input

PIPELINE_FORMAT = "sim2real_kit.Sim2RealPipeline"
PRECISIONS = ("auto", "fp32", "bf16")
MAX_DEPTH_M = 100.0  # CAD depth beyond this is not metres (millimetre counts?): refused


@dataclass
class Sim2RealOutput(BaseOutput):
    """What `Sim2RealPipeline.__call__` returns (numpy arrays or torch tensors, as the input).

    depth [B, h, w] metres at the model size (0 = hole / no CAD; with `native=True` every map is [B, H, W], the
    frame's own size); residual [B, h, w] normalised residual of the last stage; cad [B, h, w] CAD metres after
    the eval transform; camera: the crop's Camera (the one given with `native`; None when none was given);
    stages: per-stage depth [B, h, w] metres when `return_all_stages`; validity [B, h, w] in [0, 1] P(valid) of
    the last stage, (x0 + 1) / 2 of its validity channel (`data.holes: model`; 0 where the CAD has no depth; the
    depth is 0 where it is below `sampling.validity_threshold`, 0.5 by default), or a validity head's P(valid)
    (holes drawn from it, no threshold), else None."""

    depth: Any
    residual: Any
    cad: Any
    camera: Camera | None = None
    stages: list | None = None
    validity: Any = None


def sampling_options(cfg) -> dict:
    """A run's `sampling` section as the keyword arguments that `Sim2RealPipeline.__init__` and `set_sampling`
    both take: the one mapping from config to pipeline, so a knob reaches a built and a loaded pipeline alike."""
    s = cfg.sampling
    return {
        "num_inference_steps": s.steps,
        "batch_size": s.batch_size,
        "eta": s.eta,
        "precision": s.precision,
        "cuda_graph": s.cuda_graph,
        "compile": s.compile,
        "channels_last": s.channels_last,
        "validity_threshold": s.validity_threshold,
    }


class Sim2RealPipeline(DiffusionPipeline):
    """DDIM sampling of an N-stage residual depth diffusion chain (see the module docstring)."""

    def __init__(
        self,
        codec: DepthCodec,
        scheduler: DDIMScheduler,
        denoisers: list[ControlledDenoiser],
        size: int = 64,
        target: str = "residual",
        residual_scale: float = 0.5,
        condition: str = "depth",
        eval_crop: int = 0,
        num_inference_steps: int = 20,
        batch_size: int = 16,
        eta: float = 0.0,
        precision: str = "auto",
        cuda_graph: bool = True,
        compile: bool = False,
        prior: str = "",
        validity_threshold: float = 0.5,
        validity_head: ValidityHead | None = None,
        channels_last: bool = False,
        distilled_steps: int = 0,
    ):
        super().__init__()
        if precision not in PRECISIONS:
            raise ConfigError(f"sampling.precision = {precision!r}; allowed: {', '.join(PRECISIONS)}")
        if target not in ("residual", "direct"):
            raise ConfigError(f"model.target = {target!r}; allowed: residual, direct")
        if condition not in ("depth", "residual"):
            raise ConfigError(f"stage2.condition = {condition!r}; allowed: depth, residual")
        if size % codec.downscale:
            raise ConfigError(f"data.size = {size} is not divisible by the codec downscale {codec.downscale}")
        if not isinstance(scheduler, DDIMScheduler):  # e.g. the training DDPMScheduler: same betas, DDIM steps
            scheduler = DDIMScheduler.from_config({"set_alpha_to_one": False, **dict(scheduler.config)})
        self.register_modules(codec=codec, scheduler=scheduler)
        self.register_to_config(
            size=int(size),
            target=target,
            residual_scale=float(residual_scale),
            condition=condition,
            eval_crop=int(eval_crop),
            num_inference_steps=int(num_inference_steps),
            batch_size=int(batch_size),
            eta=float(eta),
            precision=precision,
            cuda_graph=bool(cuda_graph),
            compile=bool(compile),
            channels_last=bool(channels_last),
            prior=str(prior or ""),  # the physical model whose output is stage 1's second condition; "" none
            validity_threshold=float(validity_threshold),  # data.holes=model: a hole where P(valid) < this
            num_stages=0,
        )
        if distilled_steps:  # the last stage is a student distilled for this many DDIM steps (`distill`): other
            # counts refused. Absent otherwise, so the index of every other pipeline stays as it was saved
            self.register_to_config(distilled_steps=int(distilled_steps))
        self._fast_steps: dict = {}  # (stage, shapes, dtype, capture) -> _StepGraph
        self._compiled: dict = {}  # id(denoiser) -> compiled callable
        self.denoisers = nn.ModuleList()
        for denoiser in denoisers:
            self.add_stage(denoiser)
        self.validity_head = None
        if validity_head is not None:
            self.set_validity_head(validity_head)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls, cfg, denoisers: list[ControlledDenoiser], codec: DepthCodec | None = None, prior: str = ""
    ) -> Sim2RealPipeline:
        """A pipeline from a run's config: DDIM scheduler of `cfg.model`, scalars of `cfg.data/model/
        stage2/sampling`, the codec of `cfg.model.space` unless given; `prior`: see `__init__`'s config."""
        from sim2real_kit.models.codec import build_codec
        from sim2real_kit.models.denoiser import make_scheduler

        return cls(
            codec=codec if codec is not None else build_codec(cfg),
            scheduler=make_scheduler(cfg, "ddim"),
            denoisers=list(denoisers),
            size=cfg.data.size,
            target=cfg.model.target,
            residual_scale=cfg.model.residual_scale,
            condition=cfg.stage2.condition,
            eval_crop=cfg.data.eval_crop,
            prior=prior,
            **sampling_options(cfg),
        )

    def set_validity_head(self, head: ValidityHead | None) -> Sim2RealPipeline:
        """Draw holes from `head`'s P(valid) (`model.validity: head`; None: no head); returns self. Refused for
        a pipeline whose stages denoise a validity channel (one source of holes)."""
        if head is not None and any(d.hole_channels for d in self.denoisers):
            raise ConfigError("a validity head on a pipeline whose denoisers have a validity channel: one or the other")
        self.validity_head = None if head is None else head.to(self.device).eval()
        return self

    @staticmethod
    def hole_field(shape: tuple[int, int, int], generator: torch.Generator | None) -> torch.Tensor:
        """The uniform field u [F, H, W] in (0, 1) a validity head's holes are drawn with (a hole where
        u > P(valid)): `holes.correlated_uniform` (blobs of ~1 px), on the generator's device."""
        return correlated_uniform(shape, 1.0, generator)

    def add_stage(self, denoiser: ControlledDenoiser) -> None:
        """Append a stage: stage 1 takes 1 condition map (CAD; 2 with a physics prior), later stages 2 (CAD +
        previous)."""
        index = len(self.denoisers) + 1
        prior = self.config.get("prior", "")
        expected_maps = 2 if index > 1 or prior else 1
        if denoiser.channels != self.codec.channels:
            raise ConfigError(
                f"stage {index} denoises {denoiser.channels} channels but the codec gives {self.codec.channels}"
            )
        if denoiser.cond_maps != expected_maps:
            raise ConfigError(
                f"stage {index} takes {denoiser.cond_maps} condition maps, stage {index} needs {expected_maps} "
                f"({'CAD + physics prior' if index == 1 and prior else 'CAD' if index == 1 else 'CAD + previous stage'}); "
                "use expand_condition(2) for stage k > 1"
            )
        if getattr(self, "validity_head", None) is not None and denoiser.hole_channels:
            raise ConfigError(f"stage {index} has a validity channel but the pipeline has a validity head")
        if self.denoisers and denoiser.edge_channels != self.denoisers[0].edge_channels:
            raise ConfigError(
                f"stage {index} takes {denoiser.edge_channels} CAD edge channels, stage 1 "
                f"{self.denoisers[0].edge_channels}: every stage of a pipeline has model.cond_edges or none"
            )
        self.denoisers.append(denoiser.eval())
        self.register_to_config(num_stages=len(self.denoisers))
        self._fast_steps, self._compiled = {}, {}
        self._apply_memory_format()

    def set_sampling(
        self,
        precision: str | None = None,
        cuda_graph: bool | None = None,
        compile: bool | None = None,
        num_inference_steps: int | None = None,
        batch_size: int | None = None,
        eta: float | None = None,
        validity_threshold: float | None = None,
        channels_last: bool | None = None,
    ):
        """Change the sampling options (kept in the config, saved with the pipeline); None keeps one; returns self.

        num_inference_steps / batch_size / eta: the defaults of `__call__` (a run's `sampling` section:
        `simulate.load_pipeline` applies it, so a pipeline saved at training time samples as the run says now).

        precision: "auto" (bf16 autocast on CUDA, fp32 elsewhere) | "fp32" | "bf16" (autocast; weights,
        latents and the DDIM update stay fp32). cuda_graph: on CUDA, run each DDIM step (denoiser + update)
        as one captured CUDA graph on static buffers. compile: `torch.compile` the denoiser in that loop
        (pays its ~1.5 min compile back only over long sampling runs). channels_last: the denoisers' weights in
        the channels_last memory format (convolutions on tensor cores without layout transposes; CUDA; the
        outputs are the same up to the convolution algorithm). docs/performance.md has the figures.
        validity_threshold (`data.holes: model`): a pixel is a hole where the last DDIM step's P(valid) is below
        it (0.5: the validity channel's x0 < 0; 0 keeps every CAD pixel's depth). Not used by a validity head,
        whose holes are drawn at its P(valid)."""
        if precision is not None and precision not in PRECISIONS:
            raise ConfigError(f"sampling.precision = {precision!r}; allowed: {', '.join(PRECISIONS)}")
        if num_inference_steps is not None and int(num_inference_steps) <= 0:
            raise ConfigError(f"sampling.steps must be > 0, got {num_inference_steps!r}")
        if batch_size is not None and int(batch_size) <= 0:
            raise ConfigError(f"sampling.batch_size must be > 0, got {batch_size!r}")
        if eta is not None and not 0.0 <= float(eta) <= 1.0:
            raise ConfigError(f"sampling.eta must be in [0, 1], got {eta!r}")
        if validity_threshold is not None and not 0.0 <= float(validity_threshold) <= 1.0:
            raise ConfigError(f"sampling.validity_threshold must be in [0, 1], got {validity_threshold!r}")
        updates = {
            "precision": precision,
            "cuda_graph": None if cuda_graph is None else bool(cuda_graph),
            "compile": None if compile is None else bool(compile),
            "channels_last": None if channels_last is None else bool(channels_last),
            "num_inference_steps": None if num_inference_steps is None else int(num_inference_steps),
            "batch_size": None if batch_size is None else int(batch_size),
            "eta": None if eta is None else float(eta),
            "validity_threshold": None if validity_threshold is None else float(validity_threshold),
        }
        self.register_to_config(**{k: v for k, v in updates.items() if v is not None})
        self._fast_steps, self._compiled = {}, {}
        self._apply_memory_format(contiguous=channels_last is False)
        return self

    def _apply_memory_format(self, contiguous: bool = False) -> None:
        """With `sampling.channels_last`, the denoisers' 4-D weights in channels_last (in place: a pipeline built
        around a training model converts its weights); `contiguous` (channels_last set off by name): back to the
        default layout. Otherwise the layout the weights have is kept: validation builds a pipeline around the
        live model, whose weights `train.channels_last` may have made channels_last."""
        if self.config.get("channels_last", False):
            self.denoisers.to(memory_format=torch.channels_last)
        elif contiguous:
            self.denoisers.to(memory_format=torch.contiguous_format)

    @property
    def num_stages(self) -> int:
        return len(self.denoisers)

    @property
    def components(self) -> dict[str, Any]:
        parts = {"codec": self.codec, "scheduler": self.scheduler, "denoisers": list(self.denoisers)}
        return parts if self.validity_head is None else {**parts, "validity_head": self.validity_head}

    @property
    def device(self) -> torch.device:
        for p in self.denoisers.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for p in self.denoisers.parameters():
            return p.dtype
        return torch.float32

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Sim2RealPipeline:
        """Move the codec and every stage to `device` / `dtype` (in place; returns self)."""
        if isinstance(device, torch.dtype):  # pipe.to(torch.bfloat16)
            device, dtype = None, device
        self.codec.to(device=device, dtype=dtype)
        self.denoisers.to(device=device, dtype=dtype)
        if self.validity_head is not None:  # no dtype keyword unless one is given: diffusers warns on any
            self.validity_head.to(device=device, **({} if dtype is None else {"dtype": dtype}))
        self._fast_steps = {}  # static buffers live on the old device
        return self

    # ------------------------------------------------------------------ save / load
    def index_config(self, trained_from: str | None = None) -> dict:
        """What model_index.json holds, less its `save_id`: the pipeline's settings, its parts and, when given,
        `trained_from` (which checkpoint its last stage's weights come from: `stage1.save_chain`)."""
        index = {k: v for k, v in dict(self.config).items() if not k.startswith("_")}
        index.update(
            _class_name=type(self).__name__,
            format=PIPELINE_FORMAT,
            codec=[type(self.codec).__module__, type(self.codec).__name__],
            scheduler=["diffusers", type(self.scheduler).__name__],
            stages=[f"stage{k}" for k in range(1, self.num_stages + 1)],
        )
        if self.validity_head is not None:  # absent without one: older pipelines' index unchanged
            index["validity_head"] = HEAD_FOLDER
        if trained_from is not None:
            index["trained_from"] = trained_from
        return json.loads(json.dumps(index))  # as read back (lists, not tuples)

    @classmethod
    def saved_index_config(cls, directory: str | Path) -> dict | None:
        """`index_config` of the pipeline saved in `directory` (its model_index.json less the save_id); None when
        there is none or it cannot be read."""
        try:
            index = json.loads((Path(directory) / cls.config_name).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(index, dict):
            return None
        index.pop("save_id", None)
        return index

    def save_pretrained(self, save_directory: str | Path, trained_from: str | None = None, **_: Any) -> None:
        """Write the whole N-stage chain (atomically): model_index.json, scheduler/, codec/, stage<k>/."""
        with atomic_dir(save_directory) as tmp:
            self.scheduler.save_pretrained(tmp / "scheduler")
            self.codec.save_pretrained(tmp / "codec")
            for k, denoiser in enumerate(self.denoisers, start=1):
                denoiser.save_pretrained(tmp / f"stage{k}")
            if self.validity_head is not None:
                self.validity_head.save_pretrained(tmp / HEAD_FOLDER)
            # save_id: new at every save: samples name the pipeline that drew them (run.py)
            index = {**self.index_config(trained_from), "save_id": uuid.uuid4().hex}
            (tmp / self.config_name).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> Sim2RealPipeline:
        """Load what `save_pretrained` wrote (a local folder); `torch_dtype` is accepted."""
        torch_dtype = kwargs.pop("torch_dtype", None)
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
        root = Path(pretrained_model_name_or_path)
        index_path = root / cls.config_name
        if not index_path.is_file():
            raise CheckpointError(f"missing {cls.config_name} (not a saved Sim2RealPipeline)", root)
        try:
            index = json.loads(index_path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"cannot read: {e}", index_path) from None
        if index.get("format") != PIPELINE_FORMAT:
            raise CheckpointError(f"format is {index.get('format')!r}, expected {PIPELINE_FORMAT!r}", index_path)
        for sub in ("scheduler/scheduler_config.json", "codec/codec_config.json"):
            if not (root / sub).is_file():
                raise CheckpointError(f"missing {sub}", root)
        scheduler = DDIMScheduler.from_pretrained(root, subfolder="scheduler", local_files_only=True)
        codec = load_codec(root / "codec", torch_dtype=torch_dtype)
        stages = index.get("stages", [])
        if len(stages) != index.get("num_stages"):
            raise CheckpointError(f"lists {len(stages)} stages but num_stages = {index.get('num_stages')}", index_path)
        denoisers = []
        for name in stages:
            if not (root / name).is_dir():
                raise CheckpointError(f"missing {name}/ (listed in {cls.config_name})", root)
            denoisers.append(ControlledDenoiser.from_pretrained(root / name, torch_dtype=torch_dtype))
        scalars = ("size", "target", "residual_scale", "condition", "num_inference_steps", "batch_size")
        missing = [k for k in scalars if k not in index]
        if missing:
            raise CheckpointError(f"lacks {', '.join(missing)}", index_path)
        options = {
            k: index[k]
            for k in (
                "eta",
                "precision",
                "cuda_graph",
                "compile",
                "channels_last",
                "eval_crop",
                "prior",
                "distilled_steps",
            )
            if k in index
        }
        head = None
        if (root / HEAD_FOLDER).is_dir():  # model.validity: head (pipelines without the folder load as before)
            head = ValidityHead.from_pretrained(root / HEAD_FOLDER, torch_dtype=torch_dtype)
        elif index.get("validity_head"):
            raise CheckpointError(f"missing {HEAD_FOLDER}/ (listed in {cls.config_name})", root)
        return cls(
            codec=codec,
            scheduler=scheduler,
            denoisers=denoisers,
            **{k: index[k] for k in scalars},
            **options,
            validity_head=head,
        )

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(
        self,
        cad_depth: np.ndarray | torch.Tensor,
        camera: Camera | None = None,
        num_inference_steps: int | None = None,
        eta: float | None = None,
        generator: torch.Generator | None = None,
        stages: int | None = None,
        return_all_stages: bool = False,
        batch_size: int | None = None,
        show_progress_bar: bool = False,
        step_callback=None,
        prior_depth: np.ndarray | torch.Tensor | None = None,
        given_stages: Sequence[np.ndarray | torch.Tensor] | None = None,
        native: bool = False,
        hole_uniform=None,
    ) -> Sim2RealOutput:
        """Simulate captured depth for CAD depth in metres ([H, W] or [B, H, W], numpy or torch).

        num_inference_steps / batch_size / eta default to the pipeline config; `stages`: run the first
        k stages (default all); `eta`: DDIM eta (0 = deterministic given the initial noise).
        The initial noise of every frame and stage is drawn up front from `generator`, so with
        eta = 0 the output does not depend on `batch_size`. `step_callback(x, frames, i)`: called with the
        denoised map x [b, C, h, w] of the frames `frames` (a slice of the batch) before the first DDIM step
        (i = -1) and after every step i; it returns x (e.g. tiles of one frame averaged where they overlap,
        MultiDiffusion-style); in the CUDA-graph / compiled loop it runs eagerly between two replays.
        `prior_depth` (same shape as `cad_depth`, metres): the output of the physical model named by the
        config's `prior` on the same CAD, required by (and only by) a pipeline with a physics prior when it runs
        Stage-I. `given_stages`: the outputs of stages 1..j already drawn for these frames (the `stages` of an
        earlier call, each [B, S, S] metres at the model size); only stages j+1.. are sampled, conditioned on the
        given stage j, so a chain evaluated stage by stage uses one Stage-I draw per frame. The noise of every
        stage is still drawn from `generator`, so given the chain's own Stage-I output the result is the chain's.
        `native`: no eval transform: the denoisers run fully convolutionally on the whole [H, W] frame at its own
        pixel scale (as a tile of `tiling.simulate_tiled` is, without tiles, overlaps or blending), padded with
        no-CAD pixels to a multiple of `native_multiple` and cut back; the outputs are [B, H, W], the camera the
        one given, `prior_depth` / `given_stages` [B, H, W]. A model trained on `size`-px crops then sees a larger
        field (its attention layers attend over more positions): `experiments/full_frame.py` measures whether
        quality holds.
        With a validity head, `given_stages` bring their holes: the last given stage's holes are every later
        stage's (no new draw), as in a chain sampled in one call.
        `hole_uniform` (a pipeline with a validity head): `hole_uniform(g)` -> u [B, h, w] in (0, 1) at the model
        input's frames, drawn from `g` (a fork of `generator`: `holes.fork_generator`) in place of the pipeline's
        own `hole_field` (e.g. cut from one field per frame by `tiling.simulate_tiled`, so overlapping tiles share
        their holes)."""
        cfg = self.config
        steps = int(num_inference_steps or cfg.num_inference_steps)
        batch_size = int(batch_size or cfg.batch_size)
        eta = float(cfg.get("eta", 0.0) if eta is None else eta)
        validity_threshold = float(cfg.get("validity_threshold", 0.5))  # pipelines saved before it: 0.5
        num_run = self.num_stages if stages is None else int(stages)
        num_given = 0 if given_stages is None else len(given_stages)

        # 1. check inputs ---------------------------------------------------------------
        if self.num_stages == 0:
            raise Sim2RealError("the pipeline has no stage; add one with add_stage(denoiser)")
        if not 1 <= num_run <= self.num_stages:
            raise ConfigError(f"stages = {stages} but the pipeline has {self.num_stages} stage(s)")
        if not 0 <= num_given < num_run:
            raise ConfigError(
                f"given_stages holds {num_given} stage output(s) but the call runs {num_run} stage(s): "
                "at least one stage must be left to sample"
            )
        if steps <= 0 or batch_size <= 0 or not 0.0 <= eta <= 1.0:
            raise ConfigError(
                f"need num_inference_steps > 0, batch_size > 0, 0 <= eta <= 1; got {steps}, {batch_size}, {eta}"
            )
        distilled = int(cfg.get("distilled_steps", 0) or 0)
        if distilled and (steps != distilled or eta != 0.0):
            raise ConfigError(
                f"this pipeline's last stage was distilled for {distilled} DDIM steps at eta 0 (sim2real_kit.distill): "
                f"it learned that step grid only; got num_inference_steps = {steps}, eta = {eta}. Sample it with "
                f"{distilled} steps, or distill a student for {steps}"
            )
        is_numpy = not isinstance(cad_depth, torch.Tensor)
        out_device = None if is_numpy else cad_depth.device
        cad = _as_depth_batch(cad_depth)  # [B, H, W] float32 metres, CPU or input device
        height, width = cad.shape[-2:]
        if camera is not None and (camera.width, camera.height) != (width, height):
            raise DepthFormatError(
                f"camera is {camera.width}x{camera.height} but cad_depth frames are {width}x{height}", "camera"
            )
        prior_name = cfg.get("prior", "")
        if prior_name and not num_given and prior_depth is None:  # only a Stage-I that runs needs its prior
            raise ConfigError(
                f"this pipeline's Stage-I is conditioned on the {prior_name} sensor model's output: pass prior_depth"
            )
        if not prior_name and prior_depth is not None:
            raise ConfigError("prior_depth given but the pipeline has no physics prior (its Stage-I sees the CAD only)")
        prior = None if prior_depth is None else _as_depth_batch(prior_depth, "prior_depth")
        if prior is not None and prior.shape != cad.shape:
            raise DepthFormatError(f"prior_depth is {tuple(prior.shape)}, cad_depth {tuple(cad.shape)}", "prior_depth")

        # 2. preprocess: the eval transform (centre crop, nearest resize to the model size) --
        # or (native) the frame as it is, padded with no-CAD pixels to a size the UNet can halve
        if native:
            pad = self._native_padding(height, width)
            cad, crop_camera = pad(cad), camera  # [B, H', W'] metres
            prior = None if prior is None else pad(prior).to(self.device)
        else:
            cad, crop_camera = self.preprocess(cad, camera)  # [B, S, S] metres
            prior = None if prior is None else self.preprocess(prior)[0].to(self.device)  # [B, S, S] metres
        device, dtype = self.device, self.dtype
        cad = cad.to(device)
        given = [_as_depth_batch(g, "given_stages") for g in given_stages or ()]
        given = [(pad(g) if native and g.shape[-2:] == (height, width) else g).to(device) for g in given]
        for j, g in enumerate(given):
            if g.shape != cad.shape:
                where = "at their own size (native)" if native else "at the model size"
                raise DepthFormatError(
                    f"given_stages[{j}] is {tuple(g.shape)}; the frames {where} are {tuple(cad.shape)}",
                    "given_stages",
                )

        # 3. normalise and encode the condition (a function of the CAD alone) -------------
        cad_n = cad_condition(cad)[:, None]  # [B, 1, S, S] in [-1, 1], invalid -> 1
        cad_ok = valid_mask(cad)[:, None]  # [B, 1, S, S] where CAD has geometry in range
        num_frames = cad.shape[0]
        rows, cols = (self.codec.encoded_size(n) for n in cad.shape[-2:])  # the model size S, or native H', W'
        noise = [
            randn_tensor(
                (num_frames, self.codec.channels + self.denoisers[k].hole_channels, rows, cols),
                generator=generator,
                device=device,
                dtype=torch.float32,
            )
            for k in range(num_run)
        ]  # one [B, C + V, h, w] per stage, drawn up front (V: the stage's validity channels); fp32 whatever
        # the weights' dtype, so a bf16-weights pipeline starts from the fp32 pipeline's noise
        head_holes = None
        if self.validity_head is not None:  # P(valid) of the CAD alone; u drawn after the diffusion noise above
            head_prob = torch.where(cad_ok[:, 0], self.validity_head.p_valid(cad), 0.0)  # [B, S, S]
            if given:  # the holes drawn with the given stages (stage by stage: one draw per frame for the chain)
                head_holes = cad_ok[:, 0] & ~(given[-1] > 0)
            else:
                draw = (lambda g: self.hole_field(tuple(head_prob.shape), g)) if hole_uniform is None else hole_uniform
                u = torch.as_tensor(draw(fork_generator(generator))).to(device, torch.float32)  # [B, S, S]
                if u.shape != head_prob.shape:
                    raise DepthFormatError(f"hole_uniform gave {tuple(u.shape)}, frames {tuple(head_prob.shape)}")
                head_holes = u > head_prob  # True = hole: each pixel one with probability 1 - P(valid)

        depth_m = torch.zeros_like(cad)
        residual = torch.zeros_like(cad)
        has_holes = self.denoisers[num_run - 1].hole_channels > 0
        validity = torch.zeros_like(cad) if has_holes else None
        if head_holes is not None:
            validity = head_prob
        per_stage = [torch.zeros_like(cad) for _ in range(num_run)]
        # bf16 autocast on CUDA (precision "auto"): the codec and denoisers compute in bf16, the latents,
        # the DDIM update and the decoded depth stay fp32. No autocast cache: CUDA graphs capture the casts.
        amp = self._autocast_dtype(device, dtype)
        autocast = torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None, cache_enabled=False)
        with autocast:
            for start in range(0, num_frames, batch_size):
                chunk = slice(start, min(start + batch_size, num_frames))
                cad_chunk_f = cad_n[chunk]  # [b, 1, S, S] fp32: the decode adds the residual to this CAD
                cad_chunk_n = cad_chunk_f.to(dtype)  # the network's input (bf16 weights: up to 20 mm off at 4 m)
                cad_latent = condition_input(  # [b, C (+ E), h, w]: codec(CAD) (+ its edge map, cond_edges)
                    self.codec, [self.codec.encode(cad_chunk_n)], cad_chunk_f, self.denoisers[0].edge_channels
                )
                prev_m = None
                for k in range(num_run):
                    if k < num_given:  # this stage's output was drawn before: condition the next stage on it
                        prev_m = given[k][chunk][:, None]  # [b, 1, S, S] metres
                        per_stage[k][chunk] = prev_m[:, 0]
                        continue
                    # 4. DDIM denoising of stage k+1 ------------------------------------------
                    if k == 0 and prior is not None:  # the physics prior, encoded as a previous stage's output
                        prior_map = previous_stage_condition(
                            prior[chunk][:, None], cad_chunk_f, cfg.condition, cfg.residual_scale
                        )
                        condition = torch.cat([cad_latent, self.codec.encode(prior_map.to(dtype))], dim=1)
                    elif k == 0:
                        condition = cad_latent
                    else:
                        prev_map = previous_stage_condition(prev_m, cad_chunk_f, cfg.condition, cfg.residual_scale)
                        condition = torch.cat(
                            [cad_latent, self.codec.encode(prev_map.to(dtype))], dim=1
                        )  # [b, 2C, h, w]
                    hook = None if step_callback is None else (lambda x, i, c=chunk: step_callback(x, c, i))
                    latents = self._denoise(
                        k, noise[k][chunk], condition, steps, eta, generator, show_progress_bar, callback=hook
                    )

                    # 5. decode: residual target -> depth = residual / scale + cad_n ---------
                    decoded, stage_validity = self.codec.decode_target(latents)  # [b, 1, S, S], [b, V, S, S]
                    decoded = decoded.float()
                    if cfg.target == "residual":
                        stage_residual = decoded
                        stage_depth_n = decode_residual(decoded, cad_chunk_f, cfg.residual_scale)
                    else:
                        stage_depth_n = decoded
                        stage_residual = encode_residual(decoded, cad_chunk_f, cfg.residual_scale)

                    # 6. postprocess: metres, >= 4.9 m -> 0, no CAD -> 0, P(valid) < threshold -> 0 ----
                    keep = cad_ok[chunk]  # [b, 1, S, S]
                    if stage_validity.shape[1]:  # P(valid) = (x0 + 1) / 2 in [0, 1]; a hole below the threshold
                        stage_prob = ((stage_validity[:, :1].float() + 1) / 2).clamp(0.0, 1.0)  # [b, 1, S, S]
                        keep = keep & (stage_prob >= validity_threshold)
                    if head_holes is not None:  # the head's drawn holes, the same at every stage
                        keep = keep & ~head_holes[chunk][:, None]
                    prev_m = torch.where(keep, denormalize_depth(stage_depth_n), 0.0)  # [b, 1, S, S]
                    per_stage[k][chunk] = prev_m[:, 0]
                depth_m[chunk] = prev_m[:, 0]
                residual[chunk] = stage_residual[:, 0]
                if has_holes:  # P(valid) of the last stage (it always runs), 0 without CAD
                    validity[chunk] = torch.where(cad_ok[chunk, 0], stage_prob[:, 0], 0.0)

        def export(x: torch.Tensor):
            x = x[..., :height, :width] if native else x  # the native padding cut back
            return x.cpu().numpy().astype(np.float32) if is_numpy else x.to(out_device)

        return Sim2RealOutput(
            depth=export(depth_m),
            residual=export(residual),
            cad=export(cad),
            camera=crop_camera,
            stages=[export(s) for s in per_stage] if return_all_stages else None,
            validity=None if validity is None else export(validity),
        )

    def preprocess(self, cad: torch.Tensor, camera: Camera | None = None) -> tuple[torch.Tensor, Camera | None]:
        """The eval transform of `PairedDepthDataset` (train=False): CAD [B, H, W] metres -> the centre
        crop of side `eval_crop` (0 = min(H, W)), nearest-resized to the model size [B, S, S], and the
        crop's camera (None without a camera)."""
        height, width = cad.shape[-2:]
        crop = int(self.config.get("eval_crop", 0) or 0)
        side = min(height, width) if crop <= 0 else crop
        if side > min(height, width):
            raise DepthFormatError(f"eval_crop = {side} does not fit {width}x{height} frames", "cad_depth")
        top, left = (height - side) // 2, (width - side) // 2
        size = self.config.size
        cad = cad[:, top : top + side, left : left + side]
        cad = F.interpolate(cad[:, None], size=(size, size), mode="nearest-exact")[:, 0]  # [B, S, S]
        return cad, None if camera is None else camera.crop(left, top, side, side).resize(size)

    @property
    def native_multiple(self) -> int:
        """Frames sampled `native` are padded to a multiple of this many pixels: the codec's downscale times
        the largest UNet downsampling of the stages."""
        return int(self.codec.downscale) * max(int(d.downsample_factor) for d in self.denoisers)

    def _native_padding(self, height: int, width: int):
        """x [B, H, W] -> [B, H', W'] padded at the bottom / right with 0 (no CAD), H', W' multiples of
        `native_multiple`."""
        m = self.native_multiple
        ph, pw = -height % m, -width % m
        return lambda x: F.pad(x, (0, pw, 0, ph)) if ph or pw else x

    def _autocast_dtype(self, device: torch.device, dtype: torch.dtype) -> torch.dtype | None:
        """bf16 when autocast applies (CUDA and "auto", or "bf16" on any device with fp32 weights), else None."""
        precision = self.config.get("precision", "auto")
        if dtype != torch.float32 or precision == "fp32":
            return None
        if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
            return torch.bfloat16
        return None

    def _denoise(
        self, stage: int, latents, condition, steps, eta, generator, show_progress_bar, callback=None
    ) -> torch.Tensor:
        """DDIM loop of one stage; returns the last x0 prediction [b, C, h, w] (no guidance).

        Where it applies (eta 0, x0 prediction, and a CUDA graph on CUDA or `compile`), the static-buffer
        loop `_denoise_static` runs instead of diffusers' `DDIMScheduler.step`: the same update (tested to
        1e-5 on CPU), with no per-step host work; a `callback` runs between the steps (outside the graph)."""
        denoiser = self.denoisers[stage]
        capture = bool(self.config.get("cuda_graph", False)) and latents.device.type == "cuda"
        fast = capture or bool(self.config.get("compile", False))
        static = fast and eta == 0 and self.scheduler.config.prediction_type == "sample" and not show_progress_bar
        if static:
            return self._denoise_static(stage, latents, condition, steps, capture=capture, callback=callback)
        scheduler = self.scheduler
        scheduler.set_timesteps(steps, device=latents.device)
        if callback is not None:
            latents = callback(latents, -1)
        x0 = latents
        timesteps = scheduler.timesteps
        iterator = self.progress_bar(timesteps) if show_progress_bar else timesteps
        for i, t in enumerate(iterator):
            t_batch = t.expand(latents.shape[0])  # [b]
            model_output = denoiser(latents.to(condition.dtype), t_batch, condition).to(latents.dtype)
            step = scheduler.step(model_output, t, latents, eta=eta, generator=generator)
            latents, x0 = step.prev_sample, step.pred_original_sample
            if callback is not None:
                latents = callback(latents, i)
        # The last step's prev_sample sits at alphas_cumprod[0] < 1 (set_alpha_to_one False): it is
        # x0 slightly shrunk and re-noised. The clean estimate is the last x0 prediction.
        return x0

    def _denoise_static(
        self, stage: int, latents, condition, steps: int, capture: bool = False, callback=None
    ) -> torch.Tensor:
        """The DDIM loop (eta 0, x0 prediction) on static buffers: x and x0 fp32 [b, C, h, w]; with
        `capture`, each step (denoiser + update) is one CUDA graph replayed `steps` times. `callback(x, i)`
        (e.g. `tiling.TileSync`): x_t before the first step (i = -1) and after every step i is replaced by its
        result, eagerly between two replays, as in the diffusers loop of `_denoise`."""
        scheduler = self.scheduler
        scheduler.set_timesteps(steps, device=latents.device)
        coefs = ddim_coefficients(scheduler, steps).to(latents.device)  # [steps, 2]
        key = (
            stage,
            tuple(latents.shape),
            tuple(condition.shape),
            condition.dtype,
            torch.is_autocast_enabled(),
            capture,
        )
        step = self._fast_steps.get(key)
        if step is None:
            denoiser = self.denoisers[stage]
            if self.config.get("compile", False):
                if id(denoiser) not in self._compiled:
                    self._compiled[id(denoiser)] = torch.compile(denoiser)
                denoiser = self._compiled[id(denoiser)]
            step = self._fast_steps[key] = _StaticDDIMStep(denoiser, latents, condition, capture)
        step.x.copy_(latents if callback is None else callback(latents, -1))
        step.cond.copy_(condition)
        for i in range(steps):
            step.t.copy_(scheduler.timesteps[i].expand(step.t.shape[0]))
            step.coef.copy_(coefs[i])
            step.run()
            if callback is not None:
                step.x.copy_(callback(step.x, i))
        return step.x0.clone()  # out of the static buffer: the next call overwrites it


def ddim_coefficients(scheduler: DDIMScheduler, steps: int) -> torch.Tensor:
    """[steps, 2] fp32 (c_x, c_x0) of the DDIM update (eta 0, x0 prediction) at each of `scheduler.timesteps`
    (after `set_timesteps(steps)`), as in `DDIMScheduler.step`: with a = alphas_cumprod,
    x_prev = sqrt(1 - a_prev) / sqrt(1 - a_t) * x_t + (sqrt(a_prev) - sqrt(a_t) * c_x) * x0."""
    ac = scheduler.alphas_cumprod.double()
    ratio = scheduler.config.num_train_timesteps // steps
    rows = []
    for t in scheduler.timesteps.tolist():
        a_t = float(ac[t])
        a_prev = float(ac[t - ratio]) if t - ratio >= 0 else float(scheduler.final_alpha_cumprod)
        c_x = math.sqrt(1 - a_prev) / math.sqrt(1 - a_t)
        rows.append([c_x, math.sqrt(a_prev) - math.sqrt(a_t) * c_x])
    return torch.tensor(rows, dtype=torch.float32)


class _StaticDDIMStep:
    """One DDIM step (denoiser forward + update) on static buffers for one (stage, shape); with `capture`
    (CUDA) recorded once as a CUDA graph. Captured under the caller's autocast state. Why one graph for the
    whole step: `torch.compile(mode="reduce-overhead")` on the denoiser alone breaks, because the ControlNet's
    outputs live in graph-owned memory that the UNet's replay overwrites."""

    def __init__(self, forward, latents: torch.Tensor, condition: torch.Tensor, capture: bool):
        self.forward = forward
        self.x = torch.empty(latents.shape, device=latents.device, dtype=torch.float32)  # x_t [b, C, h, w]
        self.x0 = torch.empty_like(self.x)  # last x0 prediction
        self.cond = torch.empty_like(condition)
        self.t = torch.zeros(latents.shape[0], device=latents.device, dtype=torch.long)  # [b]
        self.coef = torch.zeros(2, device=latents.device, dtype=torch.float32)
        self.graph = None
        if capture:
            self.x.normal_(), self.cond.normal_(), self.t.fill_(500), self.coef.fill_(0.5)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up (cuDNN choice, compile) outside the capture
                    self.body()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.body()

    def body(self) -> None:
        x0 = self.forward(self.x.to(self.cond.dtype), self.t, self.cond).float()  # prediction_type "sample": x0
        self.x0.copy_(x0)
        self.x.copy_(self.coef[0] * self.x + self.coef[1] * x0)

    def run(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.body()


def _as_depth_batch(cad_depth, name: str = "cad_depth") -> torch.Tensor:
    """numpy / torch [H, W] or [B, H, W] metres -> float32 tensor [B, H, W]; DepthFormatError when not."""
    if isinstance(cad_depth, torch.Tensor):
        x = cad_depth.detach()
        if x.is_complex() or x.dtype == torch.bool:
            raise DepthFormatError(f"{name} must be real-valued metres, got dtype {x.dtype}")
        integer = not x.is_floating_point()
    else:
        try:
            arr = np.asarray(cad_depth)
        except (TypeError, ValueError) as e:
            raise DepthFormatError(f"{name} is not an array: {e}") from None
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise DepthFormatError(f"{name} must be real-valued metres, got dtype {arr.dtype}")
        integer = np.issubdtype(arr.dtype, np.integer)
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if integer:
        raise DepthFormatError(
            f"{name} has integer dtype {x.dtype}: pass float metres (read_depth_png returns metres, not millimetres)"
        )
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] == 0 or min(x.shape[-2:]) == 0:
        raise DepthFormatError(f"{name} must be [H, W] or [B, H, W] metres, got shape {tuple(x.shape)}")
    check_depth(x, name)
    if x.numel() and float(x.max()) > MAX_DEPTH_M:
        raise DepthFormatError(
            f"{name} reaches {float(x.max()):.1f}: more than {MAX_DEPTH_M:.0f} m, is it millimetres? Pass metres"
        )
    return x.float()
