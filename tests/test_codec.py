"""Depth codecs: the pixel identity, the SD VAE codec loaded from a local folder (a tiny random
AutoencoderKL saved with save_pretrained, through the same loading code as real SD 2.1 weights),
and the CheckpointErrors of missing / partial folders."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import tiny_vae as conftest_tiny_vae
from diffusers import AutoencoderKL

from sim2real_kit.config import load_config
from sim2real_kit.errors import CheckpointError, ConfigError, DepthFormatError
from sim2real_kit.models.codec import (
    LatentCodec,
    PixelCodec,
    build_codec,
    codec_geometry,
    load_codec,
    resolve_vae_dir,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_vae() -> AutoencoderKL:
    """Two levels (downscale 2), 4 latent channels, 3-channel images: SD's VAE in miniature."""
    return conftest_tiny_vae(in_channels=3, out_channels=3, scaling_factor=0.5)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd21")
    vae = tiny_vae()
    vae.save_pretrained(root / "vae")
    return root, vae


def depth_batch(batch=2, size=16):
    g = torch.Generator().manual_seed(1)
    return torch.rand(batch, 1, size, size, generator=g) * 2 - 1  # [B, 1, H, W] in [-1, 1]


def test_pixel_codec_is_identity():
    codec = PixelCodec()
    x = depth_batch()
    assert codec.channels == 1 and codec.downscale == 1 and codec.encoded_size(64) == 64
    assert torch.equal(codec.encode(x), x)
    assert torch.equal(codec.decode(codec.encode(x)), x)
    with pytest.raises(DepthFormatError, match=r"\[B, 1, H, W\]"):
        codec.encode(torch.zeros(2, 3, 8, 8))


def test_latent_codec_matches_the_vae_by_hand(sd_folder):
    root, vae = sd_folder
    codec = LatentCodec.from_pretrained(root)
    assert codec.channels == 4 and codec.downscale == 2 and codec.scaling_factor == 0.5
    assert not any(p.requires_grad for p in codec.parameters())
    x = depth_batch()
    latents = codec.encode(x)
    assert latents.shape == (2, 4, 8, 8)
    with torch.no_grad():
        expected = vae.encode(x.repeat(1, 3, 1, 1)).latent_dist.mean * 0.5  # 3 channels, mean, scaled
        torch.testing.assert_close(latents, expected, atol=1e-5, rtol=1e-5)
        assert torch.equal(codec.encode(x), latents)  # deterministic: the mean, not a sample
        decoded = codec.decode(latents)
        assert decoded.shape == (2, 1, 16, 16)
        torch.testing.assert_close(decoded, vae.decode(latents / 0.5).sample.mean(dim=1, keepdim=True))


def test_compiled_encoder_gives_the_vae_latents_and_leaves_the_weights_alone(sd_folder):
    """`compile_encoder` (what the Trainer calls with train.compile): the same latents as the VAE's own encode
    (the mean: the first half of the moments), and nothing compiled enters the state dict or the saved codec."""
    from sim2real_kit.stage1 import StageModel

    root, _ = sd_folder
    codec = LatentCodec.from_pretrained(root)
    x = depth_batch()
    with torch.no_grad():
        reference = codec.encode(x)
        keys = set(codec.state_dict())
        model = StageModel(codec, torch.nn.Linear(1, 1))
        torch._dynamo.reset()
        codec.compile_encoder(backend="eager")  # dynamo's trace without inductor: fast on the CPU
        compiled = codec.encode(x)
        assert codec.__dict__["_compiled_moments"] is not None and set(codec.state_dict()) == keys
        torch.testing.assert_close(compiled, reference, atol=1e-6, rtol=1e-6)
        assert not torch.equal(compiled[:, :2], compiled[:, 2:])  # the mean, not the log-variance half too
    calls = []
    codec.compile_encoder = lambda **kw: calls.append(kw)  # StageModel.compile_frozen reaches the codec
    model.compile_frozen()
    assert calls == [{}]


def test_latent_codec_loads_a_vae_folder_and_via_config(sd_folder):
    root, _ = sd_folder
    direct = LatentCodec.from_pretrained(root / "vae")
    cfg = load_config("sd21", overrides=[f"model.sd_path={root}"])
    via_cfg = build_codec(cfg)
    assert isinstance(via_cfg, LatentCodec)
    assert codec_geometry(cfg) == (4, 2)
    x = depth_batch(1)
    with torch.no_grad():
        assert torch.equal(direct.encode(x), via_cfg.encode(x))
    assert codec_geometry(load_config("tiny")) == (1, 1)


def test_codec_save_load_round_trip(sd_folder, tmp_path):
    root, _ = sd_folder
    codec = LatentCodec.from_pretrained(root)
    codec.save_pretrained(tmp_path / "latent")
    again = load_codec(tmp_path / "latent")
    x = depth_batch(1)
    with torch.no_grad():
        assert torch.equal(codec.encode(x), again.encode(x))
    PixelCodec().save_pretrained(tmp_path / "pixel")
    assert isinstance(load_codec(tmp_path / "pixel"), PixelCodec)
    with pytest.raises(CheckpointError, match="codec_config.json"):
        load_codec(tmp_path / "nothing_here")


def test_missing_or_partial_sd_folder_names_what_is_missing(sd_folder, tmp_path):
    root, _ = sd_folder
    with pytest.raises(CheckpointError, match="does not exist"):
        LatentCodec.from_pretrained(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="vae/"):
        LatentCodec.from_pretrained(tmp_path / "empty")
    partial = tmp_path / "no_config"
    shutil.copytree(root, partial)
    (partial / "vae" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="vae/config.json"):
        LatentCodec.from_pretrained(partial)
    no_weights = tmp_path / "no_weights"
    shutil.copytree(root, no_weights)
    for f in (no_weights / "vae").glob("diffusion_pytorch_model*"):
        f.unlink()
    with pytest.raises(CheckpointError, match="vae/diffusion_pytorch_model.safetensors"):
        resolve_vae_dir(no_weights)
    with pytest.raises(ConfigError, match="model.sd_path"):
        build_codec(load_config("sd21"))  # sd_path empty in the preset
