"""Depth codecs: the space the diffusion runs in (paper Sec. 3.2).

The paper runs Stable Diffusion's denoiser in the latent space of its VAE: a normalised depth map
in [-1, 1] (see `depth.normalize_depth`) is replicated to 3 channels, encoded to a 4-channel latent
at 1/8 resolution and scaled by the VAE's `scaling_factor`; decoding averages the 3 decoded
channels back to one (release). The tiny / small presets run in pixel space instead, where the
codec is the identity on the 1-channel map.

    codec = build_codec(cfg)             # PixelCodec or LatentCodec(local SD 2.1 folder)
    latents = codec.encode(depth_n)      # [B, 1, H, W] in [-1, 1] -> [B, C, H / s, W / s]
    depth_n = codec.decode(latents)      # -> [B, 1, H, W]

A target with hole channels (`data.holes: model`: residual + validity in {-1, +1}) is encoded with
`encode_target`: the first map through the codec, the validity maps appended without the VAE, so the
denoised sample has C + V·s² channels while a condition keeps C per map. Pixel codec (s = 1): the V maps as
they are. Latent codec (s = 8 for SD): each map space-to-depth (`pixel_unshuffle`) into s² channels at the
latent's resolution, which keeps every pixel's validity exactly (a 1-pixel hole at a silhouette survives; an
averaged 1-channel map at 1/8 resolution loses thin holes: `benchmarks/bench_holes.py --representation`).

Nothing is downloaded: `LatentCodec.from_pretrained` takes a local folder (an SD checkout holding
`vae/`, or the `vae/` folder itself) and a missing file is a `CheckpointError` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sim2real_kit.errors import CheckpointError, ConfigError, DepthFormatError
from sim2real_kit.io import read_json_object

CODEC_CONFIG = "codec_config.json"  # what `save_codec` writes beside the VAE copy
VAE_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def validity_to_channels(validity: torch.Tensor, s: int) -> torch.Tensor:
    """Validity maps [B, V, H, W] -> [B, V·s², H/s, W/s], space-to-depth (`F.pixel_unshuffle`): every pixel keeps
    its own value at 1/s of the resolution (s = 1: the identity)."""
    return F.pixel_unshuffle(validity, s) if s > 1 else validity


def validity_from_channels(extra: torch.Tensor, s: int) -> torch.Tensor:
    """Inverse of `validity_to_channels`: [B, V·s², h, w] -> [B, V, h·s, w·s]."""
    if extra.shape[1] % (s * s):
        raise DepthFormatError(f"{extra.shape[1]} validity channels are not a multiple of {s}² (space-to-depth)")
    return F.pixel_shuffle(extra, s) if s > 1 else extra


class DepthCodec(nn.Module):
    """Maps normalised depth [B, 1, H, W] in [-1, 1] to the denoiser's space and back.

    `channels`: channels of the encoded map; `downscale`: H / h of the encoded map (8 or 1)."""

    kind: str = "base"
    channels: int = 1
    downscale: int = 1
    input_channels: int = 1  # channels of the map `encode` takes (a depth map: 1)

    def encode(self, depth_n: torch.Tensor) -> torch.Tensor:  # [B, 1, H, W] -> [B, C, h, w]
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:  # [B, C, h, w] -> [B, 1, H, W]
        raise NotImplementedError

    def validity_channels(self, maps: int = 1) -> int:
        """Channels that `maps` validity maps take in the encoded sample: maps · downscale² (space-to-depth)."""
        return int(maps) * self.downscale**2

    def join_validity(self, latents: torch.Tensor, validity: torch.Tensor) -> torch.Tensor:
        """Append validity maps [B, V, H, W] (V >= 0) to encoded maps [B, C, h, w] -> [B, C + V·s², h, w].

        The validity is a target channel beside the codec's, not encoded: space-to-depth by s = `downscale`
        (`F.pixel_unshuffle`; the identity in pixel space), so every pixel keeps its own value."""
        if validity.shape[1] == 0:
            return latents
        s = self.downscale
        if (validity.shape[-2] // s, validity.shape[-1] // s) != tuple(latents.shape[-2:]) or (
            validity.shape[-2] % s or validity.shape[-1] % s
        ):
            raise DepthFormatError(
                f"validity maps of {tuple(validity.shape[-2:])} px do not match encoded maps of "
                f"{tuple(latents.shape[-2:])} at 1/{s} of the frame"
            )
        return torch.cat([latents, validity_to_channels(validity.to(latents.dtype), s)], dim=1)

    def encode_target(self, target_n: torch.Tensor) -> torch.Tensor:
        """[B, 1 + V, H, W] (normalised map, then V validity maps) -> [B, C + V·s², h, w]."""
        k = self.input_channels
        return self.join_validity(self.encode(target_n[:, :k]), target_n[:, k:])

    def decode_target(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse of `encode_target`: [B, C + V·s², h, w] -> (map [B, 1, H, W], validity [B, V, H, W])."""
        return self.decode(latents[:, : self.channels]), validity_from_channels(
            latents[:, self.channels :], self.downscale
        )

    def encoded_size(self, size: int) -> int:
        """Side of the encoded map for a square frame of `size` pixels."""
        return size // self.downscale

    def save_pretrained(self, directory: str | Path) -> None:
        """Write what `load_codec(directory)` needs (a `codec_config.json`, plus `vae/` for latents)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        from sim2real_kit.io import atomic_write_json

        atomic_write_json(directory / CODEC_CONFIG, {"kind": self.kind})


class PixelCodec(DepthCodec):
    """Identity codec of the pixel-space presets (tiny, small): 1 channel, full resolution."""

    kind = "pixel"
    channels = 1
    downscale = 1

    def encode(self, depth_n: torch.Tensor) -> torch.Tensor:
        _check_map(depth_n, 1, "depth_n")
        return depth_n

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        _check_map(latents, 1, "latents")
        return latents


class LatentCodec(DepthCodec):
    """Stable Diffusion's `AutoencoderKL` (frozen, eval mode) as a depth codec.

    encode: depth_n [B, 1, H, W] -> replicated to the VAE's input channels (3) in [-1, 1] ->
    mean of the latent distribution (deterministic) -> (z - shift) * scaling_factor [B, 4, H/8, W/8].
    decode: latents / scaling_factor + shift -> VAE decoder -> mean over the 3 channels [B, 1, H, W]."""

    kind = "latent"

    def __init__(self, vae):
        super().__init__()
        self.vae = realign_storage(vae)
        self.vae.requires_grad_(False)
        self.vae.eval()
        cfg = vae.config
        self.channels = int(cfg.latent_channels)
        self.downscale = 2 ** (len(cfg.block_out_channels) - 1)
        self.scaling_factor = float(cfg.scaling_factor)
        shift = getattr(cfg, "shift_factor", None)
        self.shift_factor = 0.0 if shift is None else float(shift)
        self.image_channels = int(cfg.in_channels)

    @classmethod
    def from_pretrained(cls, path: str | Path, torch_dtype: torch.dtype | None = None) -> LatentCodec:
        """Load the VAE from a local SD folder (`path/vae/`) or from a VAE folder itself."""
        from diffusers import AutoencoderKL

        vae_dir = resolve_vae_dir(path)
        try:
            vae = AutoencoderKL.from_pretrained(vae_dir, local_files_only=True, torch_dtype=torch_dtype)
        except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot load the VAE (AutoencoderKL): {e}", vae_dir) from None
        return cls(vae)

    def train(self, mode: bool = True) -> LatentCodec:
        super().train(mode)
        self.vae.eval()  # the VAE is frozen: keep it in eval mode whatever the trainer asks
        return self

    def compile_encoder(self, **compile_kwargs) -> LatentCodec:
        """`torch.compile` the VAE's encoder (+ quant_conv): in latent-space training it runs on the target and
        the condition maps of every step, at the frame's resolution (512 px: ~1/2 of an eager sd21 step,
        docs/performance.md). The weights are untouched (nothing compiled enters the state dict, so checkpoints
        and `save_pretrained` are as before); `encode` then gives the same latents up to the compiler's rounding.
        Called by the Trainer with `train.compile` (`stage1.StageModel.compile_frozen`). Returns self."""

        def moments(image: torch.Tensor) -> torch.Tensor:  # AutoencoderKL._encode without tiling / slicing
            h = self.vae.encoder(image)
            return self.vae.quant_conv(h) if self.vae.quant_conv is not None else h

        self.__dict__["_compiled_moments"] = torch.compile(moments, **compile_kwargs)  # not a submodule
        return self

    def encode(self, depth_n: torch.Tensor) -> torch.Tensor:
        _check_map(depth_n, 1, "depth_n")
        image = depth_n.to(self.vae.dtype).expand(-1, self.image_channels, -1, -1)  # [B, 3, H, W]
        compiled = self.__dict__.get("_compiled_moments")
        if compiled is not None:  # the mean of the diagonal Gaussian: the first half of the moments
            latents = compiled(image)[:, : self.channels]  # [B, 4, H/8, W/8]
        else:
            latents = self.vae.encode(image).latent_dist.mean  # [B, 4, H/8, W/8]
        return ((latents - self.shift_factor) * self.scaling_factor).to(depth_n.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        _check_map(latents, self.channels, "latents")
        z = latents.to(self.vae.dtype) / self.scaling_factor + self.shift_factor
        image = self.vae.decode(z).sample  # [B, 3, H, W]
        return image.mean(dim=1, keepdim=True).to(latents.dtype)  # release: average the 3 channels

    def save_pretrained(self, directory: str | Path) -> None:
        super().save_pretrained(directory)
        self.vae.save_pretrained(Path(directory) / "vae", safe_serialization=True)


# ---------------------------------------------------------------------- factories
def build_codec(cfg, torch_dtype: torch.dtype | None = None) -> DepthCodec:
    """The codec of `cfg.model.space`: "pixel" -> PixelCodec, "latent" -> LatentCodec(cfg.model.sd_path)."""
    space = cfg.model.space
    if space == "pixel":
        return PixelCodec()
    if space == "latent":
        if not cfg.model.sd_path:
            raise ConfigError("model.space = 'latent' needs model.sd_path (a local Stable Diffusion 2.1 folder)")
        return LatentCodec.from_pretrained(cfg.model.sd_path, torch_dtype=torch_dtype)
    raise ConfigError(f"model.space = {space!r}; allowed: pixel, latent")


def codec_geometry(cfg) -> tuple[int, int]:
    """(channels, downscale) of the codec `cfg` asks for, read without loading any weights."""
    if cfg.model.space == "pixel":
        return PixelCodec.channels, PixelCodec.downscale
    if not cfg.model.sd_path:
        raise ConfigError("model.space = 'latent' needs model.sd_path (a local Stable Diffusion 2.1 folder)")
    vae_cfg = read_json_object(resolve_vae_dir(cfg.model.sd_path) / "config.json", CheckpointError)
    try:
        return int(vae_cfg["latent_channels"]), 2 ** (len(vae_cfg["block_out_channels"]) - 1)
    except (KeyError, TypeError):
        raise CheckpointError(
            "VAE config lacks latent_channels / block_out_channels", resolve_vae_dir(cfg.model.sd_path)
        ) from None


def load_codec(directory: str | Path, torch_dtype: torch.dtype | None = None) -> DepthCodec:
    """Inverse of `DepthCodec.save_pretrained` (used by `Sim2RealPipeline.from_pretrained`)."""
    directory = Path(directory)
    kind = read_json_object(directory / CODEC_CONFIG, CheckpointError).get("kind")
    if kind == "pixel":
        return PixelCodec()
    if kind == "latent":
        return LatentCodec.from_pretrained(directory, torch_dtype=torch_dtype)
    raise CheckpointError(f"unknown codec kind {kind!r} (expected pixel or latent)", directory / CODEC_CONFIG)


def resolve_vae_dir(path: str | Path) -> Path:
    """The VAE folder of a local SD checkout (`path/vae/`) or `path` itself when it is a VAE folder.

    Raises CheckpointError naming the missing folder or file (e.g. "vae/config.json")."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError("Stable Diffusion folder does not exist (expected vae/config.json inside)", path)
    if (path / "vae").is_dir():
        vae_dir, prefix = path / "vae", "vae/"
    elif (path / "config.json").is_file() and "latent_channels" in read_json_object(
        path / "config.json", CheckpointError
    ):
        vae_dir, prefix = path, ""
    else:
        raise CheckpointError(
            "missing vae/ folder (expected vae/config.json and vae/" + VAE_WEIGHT_FILES[0] + ")", path
        )
    if not (vae_dir / "config.json").is_file():
        raise CheckpointError(f"missing {prefix}config.json", path)
    if not any((vae_dir / name).is_file() for name in VAE_WEIGHT_FILES):
        raise CheckpointError(f"missing {prefix}{VAE_WEIGHT_FILES[0]} (VAE weights)", path)
    return vae_dir


def realign_storage(module: nn.Module) -> nn.Module:
    """Copy every parameter and buffer into freshly allocated storage (in place; returns `module`).

    Weights loaded straight from a memory-mapped safetensors file can sit at addresses that SIMD
    kernels treat differently from normally allocated tensors, so the same weights give last-bit
    different outputs; after this a model and its save/load copy compute bit-identical results."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)
    return module


# ---------------------------------------------------------------------- internals


def _check_map(x: torch.Tensor, channels: int, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise DepthFormatError(f"{name} must be [B, {channels}, H, W], got shape {tuple(x.shape)}")
