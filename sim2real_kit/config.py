"""Typed configuration: dataclasses <-> safe YAML, presets (tiny / small / sd21), `a.b=c`
overrides type-checked against the defaults, and the provenance record of a run folder.

A run folder always holds the resolved `config.yaml` and a `provenance.json` (`run.RunFolder`), so a run
can be reproduced from its folder alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import subprocess
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sim2real_kit.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PRESETS = ("tiny", "small", "sd21")
# data.holes: "mask" (paper: holes out of the loss, never generated) | "model" (kit extension: holes learned from the
# real captures, `model.validity`; docs/paper-to-code.md) | "generate" (kit extension: a hole as a far-depth residual;
# fails)
HOLE_MODES = ("mask", "model", "generate")
# model.validity (with data.holes: model): "head" (default since 2026-12-07: the denoiser as a mask one's, holes drawn
# from a separate small CNN's P(valid): sim2real_kit/holes.py) | "channel" (a validity channel denoised beside the
# residual: the default before; it costs the residual +30 to +146 % W1 on the GPU, docs/results.md)
VALIDITY_MODES = ("channel", "head")


@dataclass
class DataConfig:
    root: str = "generate"  # dataset root (lasa_depth + lasa_pose) or "generate" (procedural world)
    size: int = 64  # model frame side in pixels (tiny 64, small 128-256, sd21 512)
    eval_crop: int = 0  # square centre crop side (raw px) before resizing; 0 = min(H, W) (192 for LASA, the release)
    crop_scale: tuple[float, float] = (0.5, 2.0)  # Stage-I random resized crop zoom range
    holes: str = (
        "mask"  # "mask" (paper: holes out of the loss) | "model" (validity channel) | "generate" (far-depth residual)
    )
    max_diff_m: float = 0.5  # |real - cad| above this is masked out (release)
    num_workers: int = 0  # DataLoader workers
    # procedural world (used when root == "generate")
    synth_scenes: int = 24  # scenes to generate
    synth_frames: int = 12  # frames per scene
    synth_width: int = 256  # rendered frame width (ARKit lowres)
    synth_height: int = 192  # rendered frame height
    val_fraction: float = 0.25  # share of scenes in val.lst
    # share of scenes held out of all training (benchmark.lst): the simulators turn their CAD into depth for the
    # benchmark's downstream task and realism test; 0 = no benchmark split (the downstream task then does not run)
    benchmark_fraction: float = 0.25
    synth_workers: int = 1  # processes for synthesis (2 is fastest on 2 cores)
    world: str = "procedural"  # "procedural" (real geometry differs from CAD) | "sensor_only" (real geometry = CAD: residuals are sensor effects only)


@dataclass
class ModelConfig:
    space: str = "pixel"  # "pixel" (PixelCodec, 1 channel) | "latent" (SD VAE, 4 channels)
    sd_path: str = ""  # local Stable Diffusion 2.1 folder (vae/, unet/, ...) for the sd21 preset
    text_encoder_path: str = ""  # optional local CLIP text encoder folder for the empty prompt
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # UNet widths per level
    layers_per_block: int = 1  # ResNet blocks per UNet level
    attention_head_dim: int = 8  # channels per attention head
    cross_attention_dim: int = 32  # width of the (empty) prompt embedding
    attention_levels: tuple[bool, ...] = (False, True, True)  # which levels use cross-attention
    norm_num_groups: int = 8  # GroupNorm groups
    cond_embedding_channels: int = 0  # width of the condition conv into the control branch (0 = first UNet width)
    cond_edges: bool = False  # kit extension: the CAD's depth-edge map (depth.cad_edge_map) as a condition channel
    target: str = "residual"  # "residual" (paper) | "direct" (w/o res ablation: predict real depth)
    residual_scale: float = 0.5  # residual = (real_n - cad_n) * scale; release /2
    target_std: float = 0.0  # > 0: Stage-I sets residual_scale so the train target has this std (pixel presets)
    prediction_type: str = "sample"  # x0 prediction (release)
    freeze_encoder: str = "auto"  # "auto" (frozen iff pretrained weights loaded) | "true" | "false"
    num_train_timesteps: int = 1000  # diffusion training steps
    beta_start: float = 0.00085  # scaled-linear schedule (SD)
    beta_end: float = 0.012
    # data.holes=model: where the holes come from: "head" (the denoiser trains as a data.holes=mask one; a separate
    # CNN head, fit after it, gives P(valid) and holes are drawn from it at sampling: sim2real_kit/holes.py,
    # docs/paper-to-code.md) | "channel" (a validity channel denoised beside the residual). The head meets the
    # hole and residual goals on the CPU (4/4 seeds) and the GPU (3/3); the channel does not (docs/results.md)
    validity: str = "head"


@dataclass
class TrainConfig:
    steps: int = 300  # optimizer steps
    batch_size: int = 8  # per process
    lr: float = 3e-4  # AdamW learning rate (sd21 preset: 3e-5)
    weight_decay: float = 1e-2  # AdamW weight decay
    grad_accum: int = 1  # gradient accumulation steps
    grad_clip: float = 1.0  # max grad norm (0 = off)
    ema: bool = False  # keep an EMA copy of the weights
    ema_decay: float = 0.999
    mixed_precision: str = (
        "auto"  # "auto" (bf16 on CUDA, fp32 on CPU) | "fast" (also bf16 on a CPU with native bf16) | "no" | "bf16"
    )
    log_every: int = 10  # steps between losses.csv rows
    sample_every: int = 0  # steps between sample grids (0 = only at the end)
    ckpt_every: int = 100  # steps between checkpoints
    val_every: int = 0  # steps between validations (0 = only at the end)
    val_frames: int = 8  # validation frames sampled for W1
    compile: bool = False  # torch.compile the denoiser (CUDA)
    channels_last: bool = False  # channels_last memory format (CUDA)
    fused_adamw: bool = False  # fused AdamW kernel (CUDA)
    lr_warmup_steps: int = 0  # linear warm-up steps, then constant (release: constant lr)
    keep_checkpoints: int = 2  # step checkpoints kept besides best/
    # data.holes=model: the validity loss against the residual's, loss = (residual + w * validity) / (1 + w);
    # 1 = their 1 : 1 mean (default). Below 1 the residual gets more of the gradient (docs/results.md, holes)
    validity_weight: float = 1.0
    validity_head_steps: int = 1500  # model.validity=head: the head's BCE steps (batch 16) after the denoiser's


@dataclass
class SamplingConfig:
    steps: int = 20  # DDIM steps (release: 50)
    eta: float = 0.0  # DDIM eta
    batch_size: int = 16  # frames per sampling batch
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU) | "fp32" | "bf16"
    cuda_graph: bool = True  # CUDA: each DDIM step as one captured CUDA graph (static buffers)
    compile: bool = False  # torch.compile the denoiser for sampling (~1.5 min compile; long runs only)
    channels_last: bool = False  # the denoisers' weights channels_last for sampling (CUDA convolutions)
    # data.holes=model: a pixel is a hole where P(valid) < this; `sim2real sample --calibrate-holes` sets it.
    # Not with model.validity=head: its holes are drawn (u > P(valid)), there is no threshold
    validity_threshold: float = 0.5
    # the real sample's frames (larger than the model, at their own resolution): "tiles" (overlapping model-size
    # tiles sampled as one sample, tiling.simulate_tiled) | "full" (one window per frame around the scored pixels
    # in one fully convolutional pass, tiling.simulate_full; worse on tiny: docs/results.md "One window instead of
    # tiles"). `sim2real simulate --whole-frames` is the same choice for a saved pipeline.
    native_mode: str = "tiles"


@dataclass
class DiscConfig:
    patch_size: int = 8  # patch side in model-frame pixels (frame/8: 64 px at 512)
    stride: int = 8  # patch stride in model-frame pixels
    num_points: int = 128  # points per patch after resampling
    min_valid: int = 8  # patches with fewer valid pixels are skipped (counted)
    threshold: float = 0.5  # flag a patch when P(real) < threshold
    binary: bool = True  # False: continuous (1 - P(real)) as weight ("continuous" ablation)
    mode: str = "discriminator"  # flags from the 3D discriminator | "difference": mean |Stage-I - real| > diff_threshold_m (paper's "w/o bin")
    diff_threshold_m: float = 0.02  # "difference" mode: flag a patch whose mean |output - real| exceeds this (metres)
    cad_guidance: bool = True  # CAD points beside each point (paper; see guidance_input); False = ablation
    guidance_input: str = "offset"  # CAD-guided input per point: "offset" (p - c, c) | "concat" (p, c)
    hidden: tuple[int, ...] = (64, 128, 256)  # PointNet per-point MLP widths
    steps: int = 300  # training steps
    batch_size: int = 64  # patches per step
    lr: float = 1e-3
    weight_decay: float = 1e-4  # AdamW weight decay
    normalize: str = "cad"  # patch centring/scaling: "cad" (CAD centroid/radius for both) | "pair" | "none"
    head_hidden: tuple[int, ...] = (128,)  # MLP head widths after the max-pool
    norm: str = "batch"  # "batch" | "layer" normalisation in the per-point MLP
    dropout: float = 0.0  # head dropout
    val_fraction: float = 0.2  # share of train scenes held out for validation accuracy / ROC-AUC


@dataclass
class Stage2Config:
    condition: str = "depth"  # "depth" (paper: CAD + Stage-I depth) | "residual" (release)
    flagged_weight: float = 1.5  # lambda: loss weight on flagged patches
    other_weight: float = 0.5  # omega: loss weight elsewhere
    reweight: bool = True  # False: "w/o re-w" ablation
    init: str = "stage1"  # "stage1" | "base": where Stage-II weights start


@dataclass
class DistillConfig:
    # few-step sampling (kit extension, sim2real_kit/distill.py): a student trained to take in one DDIM step what the
    # teacher takes in teacher_steps / student_steps steps (progressive distillation, Salimans & Ho 2022)
    teacher_steps: int = 10  # the teacher's DDIM steps (trailing); must divide 1000
    student_steps: int = 5  # the student's; must divide teacher_steps
    steps: int = 300  # optimizer steps (batch size, EMA and precision: train.*)
    lr: float = 1e-4  # AdamW learning rate of the student


@dataclass
class PipelineConfig:
    stages: int = 2  # number of diffusion stages in the chain (3/4: ablation)


@dataclass
class BenchmarkConfig:
    voxel_m: float = 0.01  # TSDF voxel (release 1 cm)
    trunc_m: float = 0.04  # TSDF truncation (release 4 cm)
    depth_trunc_m: float = 4.8  # depth cut-off in fusion (release)
    num_points: int = 100_000  # points sampled for CD / F-score / IoU (DisCo)
    fscore_threshold: float = 0.01  # F-score distance threshold (after x0.5 scaling)
    iou_occupancy: str = "shell"  # "shell" (fused scans / clouds) | "solid" (watertight meshes) | "auto"
    shell_width: float = 1 / 32  # shell-IoU thickness in DisCo [-1, 1] units
    edge_threshold_m: float = 0.05  # CAD depth jump that counts as an edge (hole rates at edges)
    edge_dilate: int = 1  # pixels of dilation around edges
    seeds: int = 3  # seeds per stochastic simulator
    physical_model: str = "nguyen2012"  # GenericSensor of the physical baseline: "nguyen2012" | "redwood"
    downstream_steps: int = 300  # training steps per downstream network (quick: <= 30)
    downstream_tasks: tuple[str, ...] = ("classification", "reconstruction")  # downstream tasks to run
    downstream_few_shot_k: int = 0  # 0 = zero-shot; k > 0 adds k real objects per category
    downstream_min_points: int = 64  # objects with fewer points are skipped
    simulators: tuple[str, ...] = ("cad", "random", "physical", "stage1", "stage2")
    c2st_seeds: int = 3  # two-sample realism test: fresh discriminators per simulator (0 = off)
    c2st_steps: int = 0  # their training steps; 0 = disc.steps
    real_sample_steps: int = 0  # few-shot Stage-I steps on the real sample; 0 = train.steps
    real_sample_holdout: str = ""  # object held out of the real-sample Stage-I (class id or name); "" = the largest
    real_sample_seen: bool = True  # also score the real-sample Stage-I on the objects it trained on (quick: off)
    # data.holes=model: also a row at the validity threshold whose hole rate on the training objects' pixels
    # matches the real sensor's there (calibrated per run, never on a scored pixel; issue 20)
    real_sample_calibrate_holes: bool = False


@dataclass
class BaselineConfig:
    """Hyper-parameters of the GAN baselines (config section `baselines`; defaults of Isola / Zhu et al.)."""

    ngf: int = 32  # generator base width (channels of the first U-Net level; x2 per level, capped at x8)
    levels: int = 4  # U-Net stride-2 levels (the frame side must be divisible by 2**levels): 4 for 64 px
    ndf: int = 32  # discriminator base width
    disc_layers: int = 0  # PatchGAN stride-2 layers; 0 = sized to the frame (3 at >= 64 px: 70x70 receptive field)
    output: str = "direct"  # "direct" (Isola et al.: tanh image) | "residual" (input + tanh, clamped)
    gan_loss: str = "auto"  # "auto" (pix2pix: bce as Isola et al.; cyclegan: lsgan as Zhu et al.) | "bce" | "lsgan"
    l1_weight: float = 100.0  # pix2pix lambda_L1 (Isola et al.)
    cycle_weight: float = 10.0  # CycleGAN lambda_cyc (Zhu et al.)
    identity_weight: float = 0.5  # CycleGAN identity loss, as a fraction of cycle_weight (0 = off)
    dropout: float = 0.5  # dropout of the inner decoder blocks during training (Isola et al.); 0 = off
    lr: float = 2e-4  # Adam learning rate of both G and D
    beta1: float = 0.5  # Adam beta1 (GAN practice)
    steps: int = 0  # optimizer steps; 0 = train.steps
    batch_size: int = 0  # frames per step; 0 = train.batch_size (CycleGAN needs >= 2 to shuffle pairs)

    def check(self) -> BaselineConfig:
        for key in ("ngf", "ndf", "levels"):
            value = getattr(self, key)
            if not (isinstance(value, int) and value > 0):
                raise ConfigError(f"baselines.{key} must be a positive integer, got {value!r}")
        if self.levels < 2:
            raise ConfigError(f"baselines.levels must be >= 2, got {self.levels}")
        if not (isinstance(self.disc_layers, int) and 0 <= self.disc_layers <= 5):
            raise ConfigError(f"baselines.disc_layers must be an integer in [0, 5], got {self.disc_layers!r}")
        if self.output not in ("direct", "residual"):
            raise ConfigError(f"baselines.output must be 'direct' or 'residual', got {self.output!r}")
        if self.gan_loss not in ("auto", "bce", "lsgan"):
            raise ConfigError(f"baselines.gan_loss must be 'auto', 'bce' or 'lsgan', got {self.gan_loss!r}")
        for key in ("l1_weight", "cycle_weight", "identity_weight", "steps", "batch_size"):
            if getattr(self, key) < 0:
                raise ConfigError(f"baselines.{key} must be >= 0, got {getattr(self, key)!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"baselines.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.lr > 0 or not 0.0 <= self.beta1 < 1.0:
            raise ConfigError(f"baselines.lr must be > 0 and beta1 in [0, 1), got {self.lr!r}, {self.beta1!r}")
        return self

    def resolved_gan_loss(self, kind: str) -> str:
        if self.gan_loss != "auto":
            return self.gan_loss
        return "bce" if kind == "pix2pix" else "lsgan"

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "baselines") -> BaselineConfig:
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(names))}")
        return cls(**d).check()


@dataclass
class Config:
    preset: str = "tiny"  # which preset this config started from
    seed: int = 0  # one seed for numpy, torch and the procedural world
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    disc: DiscConfig = field(default_factory=DiscConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    distill: DistillConfig = field(default_factory=DistillConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        from sim2real_kit.report import plain

        return plain(dataclasses.asdict(self))

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            from sim2real_kit.io import atomic_write_text

            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> Config:
        cfg = cls()
        _merge(cfg, d or {}, prefix="", source=source)
        cfg.validate(source)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path, run_folder: bool = False) -> Config:
        """A YAML config file. `run_folder`: a run's saved config.yaml, read as the code that wrote it meant it: a
        run saved before `model.validity` existed with `data.holes: model` has a validity channel (the only hole
        model then), not today's default head."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError("config file does not exist", path)
        try:
            d = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"not valid YAML: {e}", path) from None
        if d is not None and not isinstance(d, dict):
            raise ConfigError(f"top level must be a mapping, got {type(d).__name__}", path)
        cfg = cls.from_dict(d or {}, source=str(path))
        if run_folder and cfg.data.holes == "model" and "validity" not in ((d or {}).get("model") or {}):
            cfg.model.validity = "channel"
        return cfg

    @classmethod
    def preset_config(cls, name: str) -> Config:
        """The config of a shipped preset (`configs/<name>.yaml`)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
        return cls.from_yaml(CONFIG_DIR / f"{name}.yaml")

    def override(self, overrides: list[str] | tuple[str, ...] | None) -> Config:
        """Apply `a.b=c` strings in place (values parsed as YAML, type-checked); returns self. A `model.validity`
        override without data.holes=model is refused: it would change nothing (the denoiser makes no holes)."""
        validity_set = None
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like key.sub=value")
            key, raw = item.split("=", 1)
            try:
                value = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError:
                value = raw
            nested: dict = {}
            cur = nested
            parts = key.strip().split(".")
            for p in parts[:-1]:
                cur = cur.setdefault(p, {})
            cur[parts[-1]] = value
            _merge(self, nested, prefix="", source=f"override {item!r}")
            if key.strip() == "model.validity":
                validity_set = item
        self.validate("overrides")
        if validity_set is not None and self.data.holes != "model":
            raise ConfigError(
                f"override {validity_set!r}: model.validity needs data.holes = 'model' (got data.holes = "
                f"{self.data.holes!r}): only data.holes=model makes holes, so the knob would change nothing"
            )
        return self

    def validate(self, source: str = "config") -> None:
        choices = {
            "data.holes": (self.data.holes, HOLE_MODES),
            "model.validity": (self.model.validity, VALIDITY_MODES),
            "data.world": (self.data.world, ("procedural", "sensor_only")),
            "model.space": (self.model.space, ("pixel", "latent")),
            "model.target": (self.model.target, ("residual", "direct")),
            "model.prediction_type": (self.model.prediction_type, ("sample", "epsilon", "v_prediction")),
            "model.freeze_encoder": (self.model.freeze_encoder, ("auto", "true", "false")),
            "train.mixed_precision": (self.train.mixed_precision, ("auto", "fast", "no", "bf16")),
            "sampling.precision": (self.sampling.precision, ("auto", "fp32", "bf16")),
            "sampling.native_mode": (self.sampling.native_mode, ("tiles", "full")),
            "stage2.condition": (self.stage2.condition, ("depth", "residual")),
            "stage2.init": (self.stage2.init, ("stage1", "base")),
            "disc.normalize": (self.disc.normalize, ("cad", "pair", "none")),
            "disc.guidance_input": (self.disc.guidance_input, ("offset", "concat")),
            "disc.mode": (self.disc.mode, ("discriminator", "difference")),
            "disc.norm": (self.disc.norm, ("batch", "layer")),
            "benchmark.iou_occupancy": (self.benchmark.iou_occupancy, ("shell", "solid", "auto")),
            "benchmark.physical_model": (self.benchmark.physical_model, ("nguyen2012", "redwood")),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{source}: {key} = {value!r}; allowed: {', '.join(allowed)}")
        positive = {
            "data.size": self.data.size,
            "data.synth_scenes": self.data.synth_scenes,
            "data.synth_frames": self.data.synth_frames,
            "data.synth_width": self.data.synth_width,
            "data.synth_height": self.data.synth_height,
            "train.steps": self.train.steps,
            "train.batch_size": self.train.batch_size,
            "train.grad_accum": self.train.grad_accum,
            "sampling.steps": self.sampling.steps,
            "sampling.batch_size": self.sampling.batch_size,
            "disc.patch_size": self.disc.patch_size,
            "disc.stride": self.disc.stride,
            "disc.num_points": self.disc.num_points,
            "pipeline.stages": self.pipeline.stages,
            "model.residual_scale": self.model.residual_scale,
            "train.lr": self.train.lr,
            "train.validity_weight": self.train.validity_weight,
            "train.validity_head_steps": self.train.validity_head_steps,
            "distill.teacher_steps": self.distill.teacher_steps,
            "distill.student_steps": self.distill.student_steps,
            "distill.steps": self.distill.steps,
            "distill.lr": self.distill.lr,
        }
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{source}: {key} must be > 0, got {value!r}")
        if (
            self.distill.teacher_steps % self.distill.student_steps
            or self.distill.student_steps >= self.distill.teacher_steps
        ):
            raise ConfigError(
                f"{source}: distill.student_steps = {self.distill.student_steps} must be smaller than and divide "
                f"distill.teacher_steps = {self.distill.teacher_steps}"
            )
        if not self.model.target_std >= 0:
            raise ConfigError(f"{source}: model.target_std must be >= 0 (0 = off), got {self.model.target_std!r}")
        if not 0.0 <= self.disc.threshold <= 1.0:
            raise ConfigError(f"{source}: disc.threshold must be in [0, 1], got {self.disc.threshold}")
        for key, value in (
            ("stage2.flagged_weight", self.stage2.flagged_weight),
            ("stage2.other_weight", self.stage2.other_weight),
        ):
            if value < 0:
                raise ConfigError(f"{source}: {key} must be >= 0, got {value}")
        try:
            self.baselines.check()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        lo, hi = self.data.crop_scale
        if not 0 < lo <= hi:
            raise ConfigError(f"{source}: data.crop_scale must be 0 < lo <= hi, got {self.data.crop_scale}")
        if not 0 < self.data.val_fraction < 1:
            raise ConfigError(f"{source}: data.val_fraction must be in (0, 1), got {self.data.val_fraction}")
        if not 0 <= self.data.benchmark_fraction < 1 or not self.data.val_fraction + self.data.benchmark_fraction < 1:
            raise ConfigError(
                f"{source}: data.benchmark_fraction must be in [0, 1) and data.val_fraction + "
                f"data.benchmark_fraction < 1 (train keeps the rest), got {self.data.benchmark_fraction} "
                f"(val_fraction {self.data.val_fraction})"
            )
        if len(self.model.attention_levels) != len(self.model.block_out_channels):
            raise ConfigError(
                f"{source}: model.attention_levels has {len(self.model.attention_levels)} entries but "
                f"model.block_out_channels has {len(self.model.block_out_channels)}"
            )


OVERLAYS = ("quick",)  # partial configs applied on top of any preset: configs/<name>.yaml


def validity_channel(cfg) -> bool:
    """Whether the denoiser has a validity channel (`data.holes: model` with `model.validity: channel`)."""
    return cfg.data.holes == "model" and getattr(cfg.model, "validity", "channel") == "channel"


def validity_head(cfg) -> bool:
    """Whether holes come from a separate validity head (`data.holes: model` with `model.validity: head`)."""
    return cfg.data.holes == "model" and getattr(cfg.model, "validity", "channel") == "head"


def denoiser_holes(cfg) -> str:
    """The `data.holes` mode the denoiser and its dataset follow: "mask" with a validity head (the denoiser
    trains exactly as a `data.holes: mask` one), else `data.holes`."""
    return "mask" if validity_head(cfg) else cfg.data.holes


def overlay(cfg: Config, name: str) -> Config:
    """Apply the partial config `configs/<name>.yaml` on top of `cfg` in place (e.g. "quick": the CI sizes,
    like Marigold's debug config); returns cfg."""
    if name not in OVERLAYS:
        raise ConfigError(f"unknown config overlay {name!r}; valid: {', '.join(OVERLAYS)}")
    path = CONFIG_DIR / f"{name}.yaml"
    d = yaml.safe_load(path.read_text()) or {}
    _merge(cfg, d, prefix="", source=str(path))
    cfg.validate(str(path))
    return cfg


def load_config(
    preset: str = "tiny", config_file: str | Path | None = None, overrides=None, quick: bool = False
) -> Config:
    """Preset, then an optional YAML file on top, the `quick` overlay (CI sizes), then `a.b=c` overrides."""
    cfg = Config.preset_config(preset)
    if config_file:
        _merge(cfg, Config.from_yaml(config_file).to_dict(), prefix="", source=str(config_file))
    if quick:
        overlay(cfg, "quick")
    cfg.override(list(overrides or []))
    return cfg


# ---------------------------------------------------------------------- provenance
def dataset_fingerprint(root: str | Path) -> str:
    """sha256 over the split lists and dataset.yaml of a layout (cheap, changes with the frame set)."""
    root = Path(root)
    h = hashlib.sha256()
    for name in (
        "lasa_depth/train.lst",
        "lasa_depth/val.lst",
        "lasa_depth/benchmark.lst",
        "dataset.yaml",
        "intrinsics.json",
    ):
        p = root / name
        if p.is_file():
            h.update(name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def provenance(dataset_root: str | Path | None = None, command: list[str] | None = None) -> dict:
    """What produced a run: git commit, package versions, device, dataset fingerprint, command line."""
    versions = {}
    for pkg in ("torch", "diffusers", "numpy", "open3d", "transformers", "accelerate"):
        mod = sys.modules.get(pkg)
        if mod is not None:
            versions[pkg] = getattr(mod, "__version__", "?")
        else:
            try:
                from importlib.metadata import version

                versions[pkg] = version(pkg)
            except Exception:
                versions[pkg] = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    device = "cpu"
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            device = torch.cuda.get_device_name(0)
    from sim2real_kit import __version__

    out = {
        "sim2real_kit": __version__,
        "git_commit": commit,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": device,
        "command": command if command is not None else sys.argv,
        "cpu_count": os.cpu_count(),
    }
    if dataset_root is not None and Path(dataset_root).exists():
        out["dataset_root"] = str(dataset_root)
        out["dataset_fingerprint"] = dataset_fingerprint(dataset_root)
    return out


# ---------------------------------------------------------------------- internals
def _merge(target, d: dict, prefix: str, source: str) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(target)}
    hints = typing.get_type_hints(type(target))
    for key, value in d.items():
        full = f"{prefix}{key}"
        if key not in fields:
            valid = ", ".join(f"{prefix}{k}" for k in fields)
            raise ConfigError(f"{source}: unknown config key {full!r}; valid keys: {valid}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, prefix=f"{full}.", source=source)
        else:
            setattr(target, key, _coerce(value, hints[key], full, source))


def _coerce(value, hint, key: str, source: str):
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key, source) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{source}: {key} must have {len(args)} entries, got {len(value)}")
        return tuple(_coerce(v, a, key, source) for v, a in zip(value, args))
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(hint):
            try:
                return _coerce(value, a, key, source)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: {key} = {value!r} has the wrong type ({hint})")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key} must be true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: {key} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):  # YAML reads `false` as a bool: model.freeze_encoder=false
            return "true" if value else "false"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
    return value
