"""ControlledDenoiser and the diffusion objective: shapes, the zero-initialised control path,
Stage-II widening, the sd21 code path on a tiny random SD-like folder (frozen encoder, CLIP empty
prompt), save/load, bad configs / checkpoints, and the weighted x0 loss (by hand + overfitting)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_MODEL, write_tiny_sd

from sim2real_kit.config import load_config
from sim2real_kit.errors import CheckpointError, ConfigError
from sim2real_kit.models.codec import LatentCodec, PixelCodec
from sim2real_kit.models.denoiser import ControlledDenoiser, diffusion_loss, make_scheduler

TINY = TINY_MODEL


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(size: int = 16, extra=()):
    return load_config("tiny", overrides=[f"data.size={size}", *TINY, *extra])


def make_denoiser(size: int = 16, cond_maps: int = 1, seed: int = 0, extra=()) -> ControlledDenoiser:
    torch.manual_seed(seed)
    return ControlledDenoiser.from_config(tiny_cfg(size, extra), cond_maps=cond_maps)


def randomize_control(denoiser: ControlledDenoiser, seed: int = 1) -> None:
    """Give the zero-initialised control outputs values, as training would, so the condition matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in denoiser.controlnet.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def inputs(batch=2, channels=1, cond_channels=1, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    noisy = torch.randn(batch, channels, size, size, generator=g)
    timesteps = torch.randint(0, 1000, (batch,), generator=g)
    condition = torch.rand(batch, cond_channels, size, size, generator=g) * 2 - 1
    return noisy, timesteps, condition


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    """A tiny random SD 2.1-like folder: vae/ (downscale 2, 4 latent ch), unet/, text_encoder/, tokenizer/."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("sd21")
    unet = write_tiny_sd(root)
    tok_dir = root / "tokenizer"
    tok_dir.mkdir()
    (tok_dir / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2, "a</w>": 3}))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), pad_token="!").save_pretrained(tok_dir)
    text_cfg = CLIPTextConfig(
        vocab_size=4,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    CLIPTextModel(text_cfg).save_pretrained(root / "text_encoder")
    return root, unet


def sd_cfg(root, extra=()):
    return load_config("sd21", overrides=[f"model.sd_path={root}", "data.size=16", *extra])


# ---------------------------------------------------------------------- forward and wiring
def test_output_shape_and_tiny_preset_parameter_count():
    denoiser = make_denoiser()
    noisy, t, cond = inputs()
    assert denoiser(noisy, t, cond).shape == (2, 1, 16, 16)
    assert denoiser.prompt_embedding.shape == (1, 1, 8) and not denoiser.prompt_embedding.any()
    assert not denoiser.encoder_frozen  # random init trains the whole UNet
    assert all(p.requires_grad for p in denoiser.parameters())
    with pytest.raises(ValueError, match="condition must be"):
        denoiser(noisy, t, torch.zeros(2, 2, 16, 16))
    n = ControlledDenoiser.from_config(load_config("tiny")).num_parameters()
    assert 1_000_000 <= n <= 3_000_000, n  # tiny preset: ~1-3 M parameters (UNet + control branch)


def test_zero_initialised_control_equals_the_plain_unet_then_the_condition_takes_effect():
    denoiser = make_denoiser()
    noisy, t, cond = inputs()
    context = denoiser.prompt_embedding.expand(2, -1, -1)
    with torch.no_grad():
        plain = denoiser.unet(noisy, t, encoder_hidden_states=context).sample
        torch.testing.assert_close(denoiser(noisy, t, cond), plain, rtol=0, atol=0)
        torch.testing.assert_close(denoiser(noisy, t, -cond), plain, rtol=0, atol=0)
    # a few optimizer steps on the loss open the control path: the condition now changes the output
    codec, scheduler = PixelCodec(), make_scheduler(tiny_cfg())
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        loss, _ = diffusion_loss(denoiser, codec, scheduler, cond * 0.5, [cond], generator=g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert (denoiser(noisy, t, cond) - denoiser(noisy, t, -cond)).abs().max() > 1e-4


def test_expand_condition_starts_as_stage1():
    stage1 = make_denoiser()
    randomize_control(stage1)
    stage2 = stage1.expand_condition(2)
    assert stage2.cond_maps == 2 and stage2.cond_channels == 2
    assert stage2.controlnet.controlnet_cond_embedding.conv_in.weight.shape[1] == 2
    assert stage1.cond_channels == 1  # the original is untouched
    noisy, t, cond = inputs()
    with torch.no_grad():
        reference = stage1(noisy, t, cond)
        assert (reference - stage1(noisy, t, -cond)).abs().max() > 1e-4  # the condition matters
        for previous in (torch.zeros_like(cond), torch.randn_like(cond)):
            torch.testing.assert_close(stage2(noisy, t, torch.cat([cond, previous], 1)), reference)
    with pytest.raises(ConfigError, match="shrink"):
        stage2.expand_condition(1)


def test_resolution_not_divisible_names_data_size():
    with pytest.raises(ConfigError, match="data.size = 18"):
        ControlledDenoiser.from_config(
            load_config(
                "tiny",
                overrides=[
                    "data.size=18",
                    "model.block_out_channels=[8,16,16]",
                    "model.attention_levels=[false,true,true]",
                    "model.cross_attention_dim=8",
                    "model.norm_num_groups=4",
                ],
            )
        )


# ---------------------------------------------------------------------- sd21 code path
def test_sd21_path_loads_the_unet_and_freezes_its_encoder(sd_folder):
    root, saved_unet = sd_folder
    denoiser = ControlledDenoiser.from_config(sd_cfg(root))
    assert denoiser.pretrained and denoiser.encoder_frozen
    assert denoiser.channels == 4 and denoiser.cond_channels == 4
    torch.testing.assert_close(denoiser.unet.state_dict(), saved_unet.state_dict())  # loaded, not random
    u = denoiser.unet
    for frozen in (u.conv_in, u.time_embedding, u.down_blocks, u.mid_block):
        assert not any(p.requires_grad for p in frozen.parameters())
    for trained in (u.up_blocks, u.conv_out, denoiser.controlnet):
        assert all(p.requires_grad for p in trained.parameters())
    noisy, t, cond = inputs(channels=4, cond_channels=4, size=8)
    assert denoiser(noisy, t, cond).shape == (2, 4, 8, 8)
    # the control branch is a copy of the UNet encoder
    torch.testing.assert_close(denoiser.controlnet.down_blocks.state_dict(), u.down_blocks.state_dict())
    unfrozen = ControlledDenoiser.from_config(sd_cfg(root, ["model.freeze_encoder='false'"]))
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_sd21_empty_prompt_from_the_local_clip_text_encoder(sd_folder):
    from transformers import CLIPTextModel, CLIPTokenizer

    root, _ = sd_folder
    denoiser = ControlledDenoiser.from_config(sd_cfg(root))
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
    ids = tokenizer("", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids[0, :3].tolist() == [0, 1, 2]  # <start> <end> pad ...
    with torch.no_grad():
        expected = CLIPTextModel.from_pretrained(root / "text_encoder")(ids)[0]
    assert denoiser.prompt_embedding.shape == (1, 77, 8)
    torch.testing.assert_close(denoiser.prompt_embedding, expected)
    missing = load_config("tiny", overrides=[f"model.text_encoder_path={root / 'nope'}", "data.size=16", *TINY])
    with pytest.raises(CheckpointError, match="text encoder config.json"):
        ControlledDenoiser.from_config(missing)


def test_sd21_missing_unet_is_a_checkpoint_error(sd_folder, tmp_path):
    import shutil

    root, _ = sd_folder
    shutil.copytree(root / "vae", tmp_path / "vae")
    with pytest.raises(CheckpointError, match="unet/"):
        ControlledDenoiser.from_config(sd_cfg(tmp_path))
    (tmp_path / "unet").mkdir()
    with pytest.raises(CheckpointError, match="unet/config.json"):
        ControlledDenoiser.from_config(sd_cfg(tmp_path))


# ---------------------------------------------------------------------- save / load
def test_save_load_round_trip_keeps_output_freeze_and_stage2_width(sd_folder, tmp_path):
    root, _ = sd_folder
    denoiser = ControlledDenoiser.from_config(sd_cfg(root)).expand_condition(2)
    randomize_control(denoiser)
    denoiser.save_pretrained(tmp_path / "stage2")
    again = ControlledDenoiser.from_pretrained(tmp_path / "stage2")
    assert again.cond_maps == 2 and again.encoder_frozen
    assert not any(p.requires_grad for p in again.unet.down_blocks.parameters())
    noisy, t, cond = inputs(channels=4, cond_channels=8, size=8)
    with torch.no_grad():
        torch.testing.assert_close(again(noisy, t, cond), denoiser(noisy, t, cond), rtol=0, atol=0)
    denoiser.save_pretrained(tmp_path / "stage2")  # overwrite in place (atomic swap)
    assert sorted(p.name for p in (tmp_path / "stage2").iterdir()) == ["denoiser_config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_checkpoint_of_another_preset_names_the_parameter(tmp_path):
    small = make_denoiser()
    small.save_pretrained(tmp_path / "a")
    other = make_denoiser(extra=["model.block_out_channels=[16,32]"])
    with pytest.raises(CheckpointError, match=r"parameter \S+: checkpoint has shape") as info:
        other.load_weights(tmp_path / "a")
    assert "model.safetensors" in str(info.value)
    with pytest.raises(CheckpointError, match="denoiser_config.json"):
        ControlledDenoiser.from_pretrained(tmp_path)
    # a config of one preset beside the weights of another
    other.save_pretrained(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").write_bytes((tmp_path / "a" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="parameter"):
        ControlledDenoiser.from_pretrained(tmp_path / "b")
    data = (tmp_path / "a" / "model.safetensors").read_bytes()
    (tmp_path / "a" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        ControlledDenoiser.from_pretrained(tmp_path / "a")


# ---------------------------------------------------------------------- scheduler and loss
def test_schedulers_follow_the_release():
    cfg = tiny_cfg()
    ddpm, ddim = make_scheduler(cfg, "ddpm"), make_scheduler(cfg, "ddim")
    for s in (ddpm, ddim):
        assert s.config.prediction_type == "sample" and s.config.clip_sample is False
        assert s.config.num_train_timesteps == 1000
        torch.testing.assert_close(s.betas[[0, -1]], torch.tensor([0.00085, 0.012]))
    assert ddim.config.set_alpha_to_one is False
    with pytest.raises(ConfigError, match="ddpm, ddim"):
        make_scheduler(cfg, "euler")


@pytest.mark.parametrize("steps", [1, 4, 10, 20, 50])
def test_ddim_sampling_starts_from_pure_noise_at_any_step_count(steps):
    """Trailing spacing: the first DDIM step is at t = 999 (the noise the sampler starts from), the steps are
    1000 / steps apart and end at 1000 / steps - 1. The release's leading spacing started at t = 901 with 10
    steps and 751 with 4: a denoiser asked to clean noise it never saw at that t."""
    ddim = make_scheduler(tiny_cfg(), "ddim")
    ddim.set_timesteps(steps)
    ts = ddim.timesteps.tolist()
    ratio = 1000 // steps
    assert ts[0] == 999 and ts[-1] == ratio - 1 and len(ts) == steps
    assert all(a - b == ratio for a, b in zip(ts, ts[1:]))


def test_diffusion_loss_equals_a_hand_computation_and_ignores_zero_weights():
    denoiser, codec, scheduler = make_denoiser(), PixelCodec(), make_scheduler(tiny_cfg())
    randomize_control(denoiser)
    _, _, cad_n = inputs(batch=3, seed=1)
    target_n = 0.3 * cad_n + 0.05
    weight_map = torch.ones(3, 1, 16, 16)
    weight_map[..., :8] = 0.0  # left half ignored
    weight_map[1, :, :4, 8:] = 3.0  # some pixels count more
    for weights in (None, weight_map):
        loss, per_sample = diffusion_loss(
            denoiser, codec, scheduler, target_n, [cad_n], weights, generator=torch.Generator().manual_seed(7)
        )
        # by hand, drawing t then noise from the same seed
        g = torch.Generator().manual_seed(7)
        t = torch.randint(0, 1000, (3,), generator=g)
        noise = torch.randn(3, 1, 16, 16, generator=g)
        with torch.no_grad():
            prediction = denoiser(scheduler.add_noise(target_n, noise, t), t, cad_n)
        error = (prediction - target_n)[:, 0] ** 2  # [B, H, W]
        if weights is None:
            expected, expected_per = error.mean(), error.flatten(1).mean(1)
        else:
            w = weights[:, 0]
            expected = (w * error).sum() / w.sum()
            expected_per = (w * error).flatten(1).sum(1) / w.flatten(1).sum(1)
            right_half = error[..., 8:]
            torch.testing.assert_close(per_sample[0], right_half[0].mean())  # weight 1 on the right only
        torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(per_sample.detach(), expected_per, rtol=1e-5, atol=1e-7)
    assert loss.requires_grad


def test_diffusion_loss_with_latent_codec_resizes_the_weight_map(sd_folder):
    root, _ = sd_folder
    cfg = sd_cfg(root)
    codec = LatentCodec.from_pretrained(root)
    denoiser = ControlledDenoiser.from_config(cfg, cond_maps=2)
    _, _, maps = inputs(batch=2, cond_channels=1, size=16)
    weights = torch.ones(2, 1, 16, 16)
    weights[..., 8:] = 0.0
    loss, per_sample = diffusion_loss(
        denoiser, codec, make_scheduler(cfg), maps * 0.2, [maps, -maps], weights, torch.Generator().manual_seed(0)
    )
    assert per_sample.shape == (2,) and torch.isfinite(loss)
    loss.backward()
    assert denoiser.unet.up_blocks[0].resnets[0].conv1.weight.grad is not None
    assert denoiser.unet.down_blocks[0].resnets[0].conv1.weight.grad is None  # frozen encoder


def test_overfitting_a_fixed_batch_drops_the_loss_5x():
    denoiser, codec, scheduler = make_denoiser(seed=3), PixelCodec(), make_scheduler(tiny_cfg())
    _, _, cad_n = inputs(batch=4, seed=2)
    target_n = 0.5 * cad_n  # a residual that is a function of the condition: learnable at every t

    def eval_loss():
        with torch.no_grad():
            return (
                sum(
                    diffusion_loss(
                        denoiser, codec, scheduler, target_n, [cad_n], generator=torch.Generator().manual_seed(s)
                    )[0]
                    for s in range(4)
                )
                / 4
            )

    before = eval_loss()
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        loss, _ = diffusion_loss(denoiser, codec, scheduler, target_n, [cad_n], generator=g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = eval_loss()
    print(f"overfit loss {float(before):.4f} -> {float(after):.4f}")
    assert after < before / 5, (float(before), float(after))


def test_benchmark_latent_stand_in_runs_the_library_loss(sd_folder):
    """benchmarks/benchlib.py's `PrecomputedLatents` (the timed sd21 step: the batch holds latents) is a
    `DepthCodec`: `diffusion_loss` calls `join_validity` on it (it had no such method, so the GPU benchmark of the
    sd21 step stopped with an AttributeError)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from benchlib import PrecomputedLatents
    finally:
        sys.path.pop(0)
    root, _ = sd_folder
    cfg = sd_cfg(root)
    denoiser = ControlledDenoiser.from_config(cfg)
    codec = PrecomputedLatents(channels=4, downscale=2)
    g = torch.Generator().manual_seed(0)
    latents, cond = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    loss, per_sample = diffusion_loss(denoiser, codec, make_scheduler(cfg), latents, [cond], generator=g)
    assert torch.isfinite(loss) and per_sample.shape == (2,)
