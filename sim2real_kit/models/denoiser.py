"""The controlled denoiser of Stage-I / Stage-II and its diffusion objective (paper Sec. 3.2, 3.4).

`ControlledDenoiser` = diffusers `UNet2DConditionModel` + `ControlNetModel`, as ControlNet does:
the control branch is a copy of the UNet encoder (`ControlNetModel.from_unet`), it sees the noisy
sample plus the condition, and its zero-initialised outputs are added to the UNet's skip
connections, so training starts from the plain UNet.

    condition [B, Cc, h, w] ─ conv 3x3 ─ SiLU ─ zero conv 3x3 ─┐
    noisy     [B, C,  h, w] ─ conv_in (copy of the UNet's) ────+─ encoder copy ─ zero convs ─┐
    noisy ─ UNet encoder ─ mid ─────────────────────────────────────────── + residuals ─ UNet decoder ─ x0

Paper/release choices:
- The condition enters at the denoiser's resolution: ControlNet's conditioning embedding (four
  stride-2 convs made for pixel-space hints) is configured with a single width, which leaves one
  3x3 conv (cond channels -> width), SiLU and a zero-initialised 3x3 conv into the control branch.
  Condition = codec(CAD) for Stage-I (4 latent / 1 pixel channels) and
  concat(codec(CAD), codec(previous stage)) for Stage-II (8 / 2 channels).
- The text prompt is empty: its embedding is computed once (from a local CLIP text encoder when
  one is given, else a fixed zero embedding) and stored as a buffer saved with the weights.
- x0 prediction ("sample"), scaled-linear betas 0.00085-0.012, 1000 steps (`make_scheduler`).
- The UNet encoder (conv_in, time embedding, down blocks, mid block) is frozen when pretrained SD
  weights are loaded (`model.freeze_encoder: auto`); the UNet decoder and the control branch train.
- Kit extension (`data.holes: model`): `hole_channels` validity channels are denoised beside the codec's
  channels, while the condition keeps C channels per map: validity is a target only. Pixel space: 1 channel
  (UNet in/out C + 1). Latent space: the validity map space-to-depth, s² = 64 channels at the latent's
  resolution (`codec.join_validity`), added to the pretrained UNet by `widen_unet` (zero weights in and out,
  so it starts as SD's UNet on the latent channels); the noisy validity enters through the control branch's
  trainable copy of conv_in, since the UNet's own conv_in stays frozen with the encoder.

`diffusion_loss` is the training objective: x0-MSE in codec space, weighted per pixel (Sec. 3.4).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sim2real_kit.config import validity_channel
from sim2real_kit.errors import CheckpointError, ConfigError

CONFIG_NAME = "denoiser_config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "sim2real_kit.ControlledDenoiser"
FORMAT_VERSION = 1


class ControlledDenoiser(nn.Module):
    """UNet + ControlNet control branch + empty-prompt embedding; predicts x0 in codec space.

    forward(noisy [B, C + V, h, w], timesteps [B], condition [B, cond_channels, h, w]) -> [B, C + V, h, w],
    with C the codec's channels and V = `hole_channels` (1 with `data.holes: model`, else 0)."""

    def __init__(
        self,
        unet,
        controlnet,
        prompt_embedding: torch.Tensor,
        cond_maps: int = 1,
        pretrained: bool = False,
        freeze_encoder: str | bool = "auto",
        hole_channels: int = 0,
        edge_channels: int = 0,
    ):
        super().__init__()
        if isinstance(freeze_encoder, bool):  # YAML reads an unquoted true/false as a bool
            freeze_encoder = "true" if freeze_encoder else "false"
        if freeze_encoder not in ("auto", "true", "false"):
            raise ConfigError(f"model.freeze_encoder = {freeze_encoder!r}; allowed: auto, true, false")
        self.unet = unet
        self.controlnet = controlnet
        self.register_buffer("prompt_embedding", prompt_embedding.detach().clone())  # [1, L, D]
        self.cond_maps = int(cond_maps)
        self.hole_channels = int(hole_channels)
        self.edge_channels = int(edge_channels)
        if not 0 <= self.hole_channels < self.sample_channels:
            raise ConfigError(
                f"hole_channels = {hole_channels} does not fit a denoiser of {self.sample_channels} channels"
            )
        self.pretrained = bool(pretrained)
        self.freeze_encoder = freeze_encoder
        if self.cond_channels != self.cond_maps * self.channels + self.edge_channels:
            raise ConfigError(
                f"control branch takes {self.cond_channels} condition channels, expected "
                f"{self.cond_maps} maps x {self.channels} channels + {self.edge_channels} edge channels"
            )
        self.apply_freeze()

    # ------------------------------------------------------------------ views
    @property
    def sample_channels(self) -> int:
        """Channels of the denoised map: codec channels + `hole_channels`."""
        return int(self.unet.config.in_channels)

    @property
    def channels(self) -> int:
        """Codec channels of the denoised map (4 latent, 1 pixel), the validity channel not counted."""
        return self.sample_channels - self.hole_channels

    @property
    def cond_channels(self) -> int:
        """Channels of the condition: cond_maps x codec channels (+ `edge_channels`, `model.cond_edges`)."""
        return int(self.controlnet.config.conditioning_channels)

    @property
    def downsample_factor(self) -> int:
        """The UNet halves its input this many times over: h must be divisible by it."""
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def encoder_frozen(self) -> bool:
        return self.freeze_encoder == "true" or (self.freeze_encoder == "auto" and self.pretrained)

    def encoder_modules(self) -> list[nn.Module]:
        """The UNet encoder: what `freeze_encoder` freezes (conv_in, time embedding, down and mid blocks)."""
        u = self.unet
        mods = [u.conv_in, u.time_proj, u.time_embedding, *u.down_blocks, u.mid_block]
        for name in ("class_embedding", "add_embedding", "encoder_hid_proj"):
            if getattr(u, name, None) is not None:
                mods.append(getattr(u, name))
        return [m for m in mods if m is not None]

    def apply_freeze(self) -> None:
        """Set requires_grad: UNet encoder frozen iff `encoder_frozen`; decoder + control branch train."""
        self.requires_grad_(True)
        self.prompt_embedding.requires_grad_(False)
        if self.encoder_frozen:
            for m in self.encoder_modules():
                m.requires_grad_(False)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ forward
    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """noisy [B, C, h, w], timesteps [B] (int), condition [B, Cc, h, w] -> model output [B, C, h, w].

        With prediction_type "sample" the output is the x0 prediction. No host syncs."""
        if condition.shape[1] != self.cond_channels or condition.shape[-2:] != noisy.shape[-2:]:
            raise ValueError(
                f"condition must be [B, {self.cond_channels}, {noisy.shape[-2]}, {noisy.shape[-1]}], "
                f"got {tuple(condition.shape)}"
            )
        batch = noisy.shape[0]
        context = self.prompt_embedding.to(noisy.dtype).expand(batch, -1, -1)  # [B, L, D]
        down_residuals, mid_residual = self.controlnet(
            noisy, timesteps, encoder_hidden_states=context, controlnet_cond=condition, return_dict=False
        )
        return self.unet(
            noisy,
            timesteps,
            encoder_hidden_states=context,
            down_block_additional_residuals=down_residuals,
            mid_block_additional_residual=mid_residual,
            return_dict=False,
        )[0]

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_config(cls, cfg, cond_maps: int = 1) -> ControlledDenoiser:
        """Build from `cfg.model`: random init for pixel presets (tiny, small), SD UNet from
        `cfg.model.sd_path/unet` for latent (sd21). `cond_maps`: 1 for Stage-I, 2 for Stage-II."""
        from diffusers import ControlNetModel

        from sim2real_kit.models.codec import codec_geometry

        channels, downscale = codec_geometry(cfg)
        m = cfg.model
        # one validity map, space-to-depth (none with model.validity=head: the holes come from a separate head)
        hole_channels = downscale**2 if validity_channel(cfg) else 0
        edge_channels = downscale**2 if getattr(m, "cond_edges", False) else 0  # the CAD's edge map, likewise
        if m.space == "latent":
            unet = _load_pretrained_unet(m.sd_path)
            pretrained = True
            if unet.config.in_channels != channels or unet.config.out_channels != channels:
                raise CheckpointError(
                    f"unet has {unet.config.in_channels} -> {unet.config.out_channels} channels but the VAE "
                    f"latent has {channels}",
                    Path(m.sd_path) / "unet",
                )
            if hole_channels:
                widen_unet(unet, hole_channels)
        else:
            unet = _build_unet(cfg, channels + hole_channels, downscale)
            pretrained = False
        levels = len(unet.config.block_out_channels)
        check_resolution(cfg.data.size, levels, downscale)
        # One conv width, no stride-2 blocks: the condition stays at the denoiser's resolution.
        hidden = int(getattr(m, "cond_embedding_channels", 0) or unet.config.block_out_channels[0])
        controlnet = ControlNetModel.from_unet(
            unet,
            conditioning_channels=cond_maps * channels + edge_channels,
            conditioning_embedding_out_channels=(hidden,),
        )
        prompt = empty_prompt_embedding(cfg, unet.config.cross_attention_dim)
        return cls(
            unet,
            controlnet,
            prompt,
            cond_maps=cond_maps,
            pretrained=pretrained,
            freeze_encoder=m.freeze_encoder,
            hole_channels=hole_channels,
            edge_channels=edge_channels,
        )

    def expand_condition(self, cond_maps: int = 2) -> ControlledDenoiser:
        """A copy with the condition conv widened to `cond_maps` maps (Stage-II init from Stage-I).

        The new input channels get zero weights, so the copy computes exactly what `self` does
        until training moves them; the first maps keep their meaning (codec(CAD))."""
        if cond_maps < self.cond_maps:
            raise ConfigError(f"cannot shrink the condition from {self.cond_maps} to {cond_maps} maps")
        new = copy.deepcopy(self)
        embed = new.controlnet.controlnet_cond_embedding
        old = embed.conv_in
        new_channels = cond_maps * self.channels + self.edge_channels  # [CAD, edges, previous stage, ...]
        conv = nn.Conv2d(new_channels, old.out_channels, old.kernel_size, old.stride, old.padding)
        conv = conv.to(device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[:, : old.in_channels].copy_(old.weight)
            conv.bias.copy_(old.bias)
        embed.conv_in = conv
        new.controlnet.register_to_config(conditioning_channels=new_channels)
        new.cond_maps = cond_maps
        new.apply_freeze()
        return new

    # ------------------------------------------------------------------ save / load
    def config_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "cond_maps": self.cond_maps,
            "hole_channels": self.hole_channels,
            "edge_channels": self.edge_channels,
            "pretrained": self.pretrained,
            "freeze_encoder": self.freeze_encoder,
            "prompt_embedding_shape": list(self.prompt_embedding.shape),
            "unet": _public_config(self.unet.config),
            "controlnet": _public_config(self.controlnet.config),
        }

    def save_pretrained(self, directory: str | Path) -> None:
        """Write `denoiser_config.json` + `model.safetensors` (all weights and the prompt embedding),
        atomically: the folder appears complete or not at all."""
        from safetensors.torch import save_file

        with atomic_dir(directory) as tmp:
            (tmp / CONFIG_NAME).write_text(json.dumps(self.config_dict(), indent=2, sort_keys=True) + "\n")
            state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": FORMAT})

    @classmethod
    def from_pretrained(cls, directory: str | Path, torch_dtype: torch.dtype | None = None) -> ControlledDenoiser:
        """Load what `save_pretrained` wrote; CheckpointError naming the file or parameter when not."""
        from diffusers import ControlNetModel, UNet2DConditionModel

        directory = Path(directory)
        if not directory.is_dir():
            raise CheckpointError("denoiser folder does not exist", directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise CheckpointError(f"missing {CONFIG_NAME} (not a ControlledDenoiser folder)", directory)
        try:
            d = json.loads(config_path.read_text())
            if d.get("format") != FORMAT:
                raise CheckpointError(f"format is {d.get('format')!r}, expected {FORMAT!r}", config_path)
            with torch.device("meta"):  # build without allocating: the weights come from the file
                unet = UNet2DConditionModel.from_config(d["unet"])
                controlnet = ControlNetModel.from_config(d["controlnet"])
                prompt = torch.zeros(d["prompt_embedding_shape"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"invalid denoiser config: {e!r}", config_path) from None
        model = cls(
            unet,
            controlnet,
            prompt,
            cond_maps=int(d["cond_maps"]),
            pretrained=bool(d["pretrained"]),
            freeze_encoder=d.get("freeze_encoder", "auto"),
            hole_channels=int(d.get("hole_channels", 0)),  # absent in folders written before data.holes: model
            edge_channels=int(d.get("edge_channels", 0)),  # absent in folders written before model.cond_edges
        )
        # Fresh storage, then copy (see codec.realign_storage): bit-identical to the saved model.
        model.to_empty(device="cpu")
        model.load_weights(directory)
        if torch_dtype is not None:
            model.to(torch_dtype)
        return model

    def load_weights(self, path: str | Path, assign: bool = False) -> None:
        """Load `model.safetensors` (a file, or a folder holding it) into this model, checking names
        and shapes first: a checkpoint of another preset / stage raises CheckpointError naming the
        mismatching parameter."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        file = path / WEIGHTS_NAME if path.is_dir() else path
        if not file.is_file():
            raise CheckpointError(f"missing {WEIGHTS_NAME}", path)
        try:
            state = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"cannot read weights (truncated or corrupt?): {e}", file) from None
        load_state_dict_checked(self, state, file, assign=assign)
        self.apply_freeze()


# ---------------------------------------------------------------------- helpers for the constructors
def check_resolution(size: int, levels: int, downscale: int) -> None:
    """data.size must be divisible by 2**(levels - 1) * codec downscale, or the UNet's skips misalign."""
    factor = 2 ** (levels - 1) * downscale
    if size % factor != 0:
        raise ConfigError(
            f"data.size = {size} is not divisible by {factor} (= 2**({levels} UNet levels - 1) x codec "
            f"downscale {downscale}); use a multiple of {factor}, e.g. {max(factor, round(size / factor) * factor)}"
        )


def _build_unet(cfg, channels: int, downscale: int):
    """Random-init UNet of a pixel preset from cfg.model."""
    from diffusers import UNet2DConditionModel

    m = cfg.model
    widths = tuple(int(c) for c in m.block_out_channels)
    attention = tuple(bool(a) for a in m.attention_levels)
    if len(attention) != len(widths):
        raise ConfigError(
            f"model.attention_levels has {len(attention)} entries, model.block_out_channels has {len(widths)}"
        )
    for w in widths:
        if w % m.norm_num_groups:
            raise ConfigError(f"model.block_out_channels entry {w} is not divisible by model.norm_num_groups")
        if w % m.attention_head_dim:
            raise ConfigError(f"model.block_out_channels entry {w} is not divisible by model.attention_head_dim")
    # diffusers' `attention_head_dim` is (for historical reasons) the number of heads per level;
    # cfg.model.attention_head_dim is channels per head, as in SD 2.1 (64 -> heads 5, 10, 20, 20).
    heads = tuple(w // m.attention_head_dim for w in widths)
    return UNet2DConditionModel(
        sample_size=cfg.data.size // downscale,
        in_channels=channels,
        out_channels=channels,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=widths,
        layers_per_block=int(m.layers_per_block),
        cross_attention_dim=int(m.cross_attention_dim),
        attention_head_dim=heads,
        norm_num_groups=int(m.norm_num_groups),
        use_linear_projection=True,  # as SD 2.x
    )


def widen_unet(unet, extra: int) -> None:
    """Add `extra` channels to a UNet's input and output (in place): conv_in gets zero weights for the new
    inputs, conv_out zero weights and biases for the new outputs, so the UNet computes exactly what it did on
    its first channels and predicts 0 on the new ones until training moves them (`data.holes: model` on
    pretrained SD weights: the validity channels)."""
    conv_in, conv_out = unet.conv_in, unet.conv_out
    new_in = nn.Conv2d(conv_in.in_channels + extra, conv_in.out_channels, conv_in.kernel_size, conv_in.stride,
                       conv_in.padding)  # fmt: skip
    new_out = nn.Conv2d(conv_out.in_channels, conv_out.out_channels + extra, conv_out.kernel_size,
                        conv_out.stride, conv_out.padding)  # fmt: skip
    new_in = new_in.to(device=conv_in.weight.device, dtype=conv_in.weight.dtype)
    new_out = new_out.to(device=conv_out.weight.device, dtype=conv_out.weight.dtype)
    with torch.no_grad():
        new_in.weight.zero_()
        new_in.weight[:, : conv_in.in_channels].copy_(conv_in.weight)
        new_in.bias.copy_(conv_in.bias)
        new_out.weight.zero_()
        new_out.bias.zero_()
        new_out.weight[: conv_out.out_channels].copy_(conv_out.weight)
        new_out.bias[: conv_out.out_channels].copy_(conv_out.bias)
    unet.conv_in, unet.conv_out = new_in, new_out
    unet.register_to_config(in_channels=new_in.in_channels, out_channels=new_out.out_channels)


def _load_pretrained_unet(sd_path: str):
    from diffusers import UNet2DConditionModel

    if not sd_path:
        raise ConfigError("model.space = 'latent' needs model.sd_path (a local Stable Diffusion 2.1 folder)")
    root = Path(sd_path)
    unet_dir = root / "unet"
    if not unet_dir.is_dir():
        raise CheckpointError("missing unet/ folder (expected unet/config.json)", root)
    if not (unet_dir / "config.json").is_file():
        raise CheckpointError("missing unet/config.json", root)
    if not any(
        (unet_dir / n).is_file() for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
    ):
        if not any(unet_dir.glob("diffusion_pytorch_model*.index.json")):
            raise CheckpointError("missing unet/diffusion_pytorch_model.safetensors (UNet weights)", root)
    try:
        unet = UNet2DConditionModel.from_pretrained(unet_dir, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot load the UNet: {e}", unet_dir) from None
    from sim2real_kit.models.codec import realign_storage

    return realign_storage(unet)


def empty_prompt_embedding(cfg, cross_attention_dim: int) -> torch.Tensor:
    """The empty-prompt context [1, L, D], computed once.

    From a local CLIP text encoder (`cfg.model.text_encoder_path`, else `sd_path/text_encoder`
    when present; tokenizer from the sibling `tokenizer/` folder or the same folder): the encoder's
    last hidden state for "" padded to 77 tokens, as SD pipelines do. Without one: zeros
    [1, 1, D]. With zero keys and values every attention position is identical, so one token gives
    the same output as 77 at a fraction of the cost."""
    m = cfg.model
    path = m.text_encoder_path
    if not path and m.sd_path and (Path(m.sd_path) / "text_encoder").is_dir():
        path = str(Path(m.sd_path) / "text_encoder")
    if not path:
        return torch.zeros(1, 1, cross_attention_dim)
    encoder_dir = Path(path)
    if not (encoder_dir / "config.json").is_file():
        raise CheckpointError("missing text encoder config.json (model.text_encoder_path)", encoder_dir)
    tokenizer_dir = next(
        (d for d in (encoder_dir.parent / "tokenizer", encoder_dir) if (d / "vocab.json").is_file()), None
    )
    if tokenizer_dir is None:
        raise CheckpointError(
            "missing tokenizer: expected tokenizer/vocab.json beside the text encoder folder", encoder_dir.parent
        )
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        encoder = CLIPTextModel.from_pretrained(encoder_dir, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"cannot load the CLIP text encoder / tokenizer: {e}", encoder_dir) from None
    # 77 tokens for SD's CLIP; a tokenizer saved without model_max_length reports a huge number
    length = min(int(tokenizer.model_max_length), int(encoder.config.max_position_embeddings))
    ids = tokenizer("", padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        embedding = encoder(ids)[0].float()  # [1, 77, D] last hidden state
    if embedding.shape[-1] != cross_attention_dim:
        raise CheckpointError(
            f"text encoder width {embedding.shape[-1]} != UNet cross_attention_dim {cross_attention_dim}", encoder_dir
        )
    return embedding


def load_state_dict_checked(module: nn.Module, state: dict, source: str | Path, assign: bool = False) -> None:
    """`module.load_state_dict(state)` after checking names and shapes; CheckpointError naming the
    first missing / unexpected / mismatching parameter and `source`."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    for name, tensor in state.items():
        if name in expected and tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"parameter {name}: checkpoint has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[name].shape)} (a checkpoint of another preset or stage?)",
                source,
            )
    if missing:
        raise CheckpointError(
            f"checkpoint lacks parameter {missing[0]} ({len(missing)} missing; a checkpoint of another preset?)", source
        )
    if unexpected:
        raise CheckpointError(
            f"checkpoint has unexpected parameter {unexpected[0]} ({len(unexpected)} unexpected; another preset?)",
            source,
        )
    module.load_state_dict(state, strict=True, assign=assign)


def _public_config(config) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(config).items() if not k.startswith("_")}


@contextlib.contextmanager
def atomic_dir(directory: str | Path):
    """Yield a temporary folder beside `directory`; on success it replaces `directory`.

    A folder cannot be renamed onto a non-empty one, so an existing target is first renamed
    aside and removed after the swap: readers see the old folder or the new one, never a mix."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        yield tmp
        old = None
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=directory.parent))
            os.rmdir(old)
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------- diffusion objective
def make_scheduler(cfg, kind: str = "ddpm"):
    """The noise schedule of the paper/release: scaled-linear betas 0.00085-0.012 over 1000 steps,
    x0 prediction, no clipping. `kind`: "ddpm" (training) or "ddim" (sampling, "trailing" spacing: the
    first step is t = 999, pure noise, whatever the step count; at 10 steps 999, 899, ..., 99. The
    release's "leading" spacing with steps_offset 1 gives 1, 21, ..., 981 at 50 steps but starts at
    t = 901 with 10 steps and 751 with 4, from noise the model never saw at that t: Lin et al. 2024,
    "Common diffusion noise schedules and sample steps are flawed"; Marigold samples with trailing.)"""
    from diffusers import DDIMScheduler, DDPMScheduler

    m = cfg.model
    common = dict(
        num_train_timesteps=int(m.num_train_timesteps),
        beta_start=float(m.beta_start),
        beta_end=float(m.beta_end),
        beta_schedule="scaled_linear",
        prediction_type=m.prediction_type,
        clip_sample=False,
        steps_offset=1,
        timestep_spacing="trailing",  # DDPM carries it too, so a pipeline made from it samples the same
    )
    if kind == "ddpm":
        return DDPMScheduler(**common)
    if kind == "ddim":
        return DDIMScheduler(**common, set_alpha_to_one=False)
    raise ConfigError(f"scheduler kind {kind!r}; allowed: ddpm, ddim")


def condition_input(codec, encoded_maps, cad_n: torch.Tensor, edge_channels: int = 0) -> torch.Tensor:
    """The denoiser's condition from the encoded condition maps [codec(CAD), codec(previous stage), ...]
    ([B, C, h, w] each): their concatenation, with `edge_channels` > 0 (`model.cond_edges`) the CAD's edge map
    (`depth.cad_edge_map` of cad_n [B, 1, H, W], space-to-depth) right after codec(CAD), so that Stage-II's
    `expand_condition` appends the previous stage after the channels Stage-I was trained on."""
    if not edge_channels:
        return torch.cat(list(encoded_maps), dim=1)
    from sim2real_kit.depth import cad_edge_map
    from sim2real_kit.models.codec import validity_to_channels

    edges = validity_to_channels(cad_edge_map(cad_n).to(encoded_maps[0].dtype), codec.downscale)
    if edges.shape[1] != edge_channels:
        raise ValueError(f"the edge map makes {edges.shape[1]} channels, the denoiser takes {edge_channels}")
    return torch.cat([encoded_maps[0], edges, *encoded_maps[1:]], dim=1)


def _edge_channels(model) -> int:
    """`edge_channels` of a ControlledDenoiser, or of the one a StageModel holds, under `torch.compile` / DDP
    (`training.unwrap_model`); 0 for anything else (a test's stub)."""
    from sim2real_kit.training import unwrap_model

    inner = unwrap_model(model)
    return int(getattr(unwrap_model(getattr(inner, "denoiser", inner)), "edge_channels", 0))


def diffusion_loss(
    denoiser: ControlledDenoiser,
    codec,
    scheduler,
    target_n: torch.Tensor,
    condition_maps: list[torch.Tensor],
    weight_map: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    validity_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One diffusion training loss (paper Eq. 4-6).

    target_n [B, 1 + V, H, W]: the normalised target (residual or depth), then V validity maps in {-1, +1}
    (`data.holes: model`: V = 1, the denoiser's `hole_channels`; else V = 0); condition_maps: list of
    normalised maps [B, 1, H, W] (Stage-I: [cad_n]; Stage-II: [cad_n, previous stage]);
    weight_map [B, 1, H, W], or [B, 2, H, W] with validity maps (the target's weights, then the validity's),
    or None: per-pixel weights (Stage-II: 1.5 on flagged patches, 0.5 elsewhere; 0 = ignored pixel).
    Returns (loss scalar, per-sample loss [B]).

    Recipe: encode target (`codec.encode_target`: validity maps appended unencoded) and conditions with the
    codec; draw t ~ U{0..T-1} [B] and then noise [B, C + V, h, w], both from `generator` in that order;
    noisy = add_noise(latents, noise, t); error = (denoiser(noisy, t, cond) - x0)^2 averaged over the C codec
    channels [B, h, w] (target = noise or velocity for the other prediction types); weights are resized
    (nearest) to h x w. With validity maps, the validity error gets its own weighted mean (its own weights;
    in latent space per pixel, the s² channels depth-to-space) and the loss is the mean of the two weighted
    means (1 : 1 in pixel and latent space alike), so the validity never moves the residual's pixels or scale;
    `validity_weight` w (`train.validity_weight`) makes it (residual + w * validity) / (1 + w) (w = 1: the mean).

    Why a weighted *mean* (sum(w * error) / sum(w)) rather than mean(w * error): the loss keeps the
    scale of a plain MSE whatever share of the frame is flagged or ignored, so the re-weighting
    only moves emphasis between regions (flagged : other = lambda : omega = 3 : 1) without changing
    the effective learning rate from batch to batch, and zero-weight pixels neither count nor
    dilute the mean. Per-sample values are normalised by each sample's own weight sum."""
    if not validity_weight > 0:
        raise ValueError(f"validity_weight must be > 0, got {validity_weight!r}")
    batch = target_n.shape[0]
    # one batched encode of target and condition maps (one VAE call per step instead of 1 + k)
    k = int(getattr(codec, "input_channels", 1))  # the map's channels (1; a stand-in codec's latents: 4)
    encoded = codec.encode(torch.cat([target_n[:, :k], *condition_maps], dim=0)).split(batch, dim=0)
    latents = codec.join_validity(encoded[0], target_n[:, k:])  # [B, C + V, h, w]
    edges = _edge_channels(denoiser)
    condition = condition_input(codec, encoded[1:], condition_maps[0], edges)  # [B, k*C (+ E), h, w]
    gen_device = generator.device if generator is not None else latents.device
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (batch,), generator=generator, device=gen_device
    ).to(latents.device)  # [B]
    noise = torch.randn(latents.shape, generator=generator, device=gen_device, dtype=latents.dtype).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    prediction = denoiser(noisy, timesteps, condition)  # [B, C + V, h, w]
    kind = scheduler.config.prediction_type
    if kind == "sample":
        target = latents
    elif kind == "epsilon":
        target = noise
    else:  # v_prediction
        target = scheduler.get_velocity(latents, noise, timesteps)
    squared = (prediction.float() - target.float()).pow(2)  # [B, C + V, h, w]
    return weighted_error(squared, weight_map, codec, validity_weight)


def weighted_error(
    squared: torch.Tensor, weight_map: torch.Tensor | None, codec, validity_weight: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, per-sample loss [B]) of a squared error [B, C + V, h, w] under `diffusion_loss`'s weighting: the mean
    over the C codec channels weighted by `weight_map` [B, 1 or 2, H, W] (None: plain mean), the V validity channels
    their own weighted mean, combined (residual + w * validity) / (1 + w). Shared by the distillation loss."""
    channels = codec.channels
    if weight_map is None:
        error = squared.mean(dim=1)  # [B, h, w]
        return error.mean(), error.flatten(1).mean(dim=1)
    weights = F.interpolate(weight_map.float(), size=squared.shape[-2:], mode="nearest-exact")  # [B, K, h, w]
    groups = [(squared[:, :channels].mean(dim=1), weights[:, 0])]  # (error [B, h, w], weights)
    if squared.shape[1] > channels:  # the validity channels: their own weights when given
        s = int(getattr(codec, "downscale", 1))
        if s > 1:  # back to one value per pixel (depth-to-space), weighed at the frame's resolution
            error = F.pixel_shuffle(squared[:, channels:], s).mean(dim=1)  # [B, H, W]
            groups.append((error, weight_map[:, -1].float()))
        else:
            groups.append((squared[:, channels:].mean(dim=1), weights[:, -1]))
    elif weights.shape[1] != 1:
        raise ValueError(f"weight_map has {weights.shape[1]} channels but the target has no validity channel")
    loss = per_sample = 0.0
    # the groups' weighted means, the validity's at `validity_weight` times the residual's (one group: its own)
    fracs = [1.0] if len(groups) == 1 else [1.0 / (1.0 + validity_weight), validity_weight / (1.0 + validity_weight)]
    for (error, w), frac in zip(groups, fracs):
        weighted = (w * error).flatten(1).sum(dim=1)  # [B]
        weight_sum = w.flatten(1).sum(dim=1)  # [B]
        per_sample = per_sample + frac * weighted / weight_sum.clamp_min(1e-8)
        loss = loss + frac * weighted.sum() / weight_sum.sum().clamp_min(1e-8)
    return loss, per_sample
