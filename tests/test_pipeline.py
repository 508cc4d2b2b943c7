"""Sim2RealPipeline: eval transform (crop + nearest resize + camera), units and zeros, the residual
decoding identity, determinism, save/load of the whole chain, N stages, numpy / torch, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL, write_tiny_sd

from sim2real_kit.camera import Camera
from sim2real_kit.config import load_config
from sim2real_kit.depth import DEPTH_MAX_M, decode_residual, denormalize_depth, normalize_depth
from sim2real_kit.depth import previous_stage_condition as previous_stage_map
from sim2real_kit.errors import CheckpointError, ConfigError, DepthFormatError
from sim2real_kit.models.denoiser import ControlledDenoiser
from sim2real_kit.pipeline import Sim2RealOutput, Sim2RealPipeline

SIZE = 16
TINY = [f"data.size={SIZE}", *TINY_MODEL, "sampling.steps=4"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(extra=()):
    return load_config("tiny", overrides=[*TINY, *extra])


def trained_like(denoiser: ControlledDenoiser, seed: int) -> ControlledDenoiser:
    """Small random values in the zero-initialised control outputs, so the condition matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in denoiser.controlnet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return denoiser


def make_pipeline(extra=(), stages=2) -> Sim2RealPipeline:
    cfg = tiny_cfg(extra)
    torch.manual_seed(0)
    stage1 = trained_like(ControlledDenoiser.from_config(cfg), 1)
    chain = [stage1] + [trained_like(stage1.expand_condition(2), k) for k in range(2, stages + 1)]
    return Sim2RealPipeline.build(cfg, chain)


@pytest.fixture(scope="module")
def pipe():
    return make_pipeline()


def cad_frames(batch=2, height=24, width=32) -> np.ndarray:
    """CAD depth in metres: a slanted plane (1 + 0.02 * column) with no geometry on the left columns."""
    u = np.arange(width, dtype=np.float32)
    cad = np.broadcast_to(1.0 + 0.02 * u, (batch, height, width)).copy()
    cad[:, :, :6] = 0.0
    cad[1:] *= 1.5
    return cad


def run(pipe, cad, seed=0, **kw) -> Sim2RealOutput:
    return pipe(cad, generator=torch.Generator().manual_seed(seed), **kw)


# ---------------------------------------------------------------------- transform, units, decoding
def test_eval_transform_units_and_zero_where_cad_is_zero(pipe):
    cad = cad_frames()
    camera = Camera(30.0, 30.0, 16.0, 12.0, 32, 24)
    out = run(pipe, cad, camera=camera)
    assert isinstance(out, Sim2RealOutput)
    for x in (out.depth, out.residual, out.cad):
        assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (2, SIZE, SIZE)
    # centre crop of side min(H, W) = 24 (columns 4..27), nearest resize 24 -> 16: i <- floor((i + .5) * 1.5)
    rows = np.floor((np.arange(SIZE) + 0.5) * 24 / SIZE).astype(int)
    np.testing.assert_array_equal(out.cad, cad[:, rows][:, :, 4 + rows])
    assert out.camera == camera.crop(4, 0, 24, 24).resize(SIZE)
    assert out.camera.width == SIZE and out.camera.fx == pytest.approx(30.0 * SIZE / 24)
    # metres: zero where CAD is zero, otherwise in (0, 4.9) or a hole
    assert np.all(out.depth[out.cad == 0] == 0)
    valid = out.depth[out.cad > 0]
    assert valid.size and np.all((valid == 0) | ((valid >= 0.05) & (valid < DEPTH_MAX_M)))
    assert (valid > 0).mean() > 0.5
    # depth = denormalise(residual / 0.5 + cad_n) where CAD is valid (residual target)
    expected = denormalize_depth(decode_residual(out.residual, normalize_depth(out.cad), 0.5))
    np.testing.assert_allclose(out.depth[out.cad > 0], expected[out.cad > 0], rtol=1e-5, atol=1e-6)


def test_same_seed_identical_other_seed_different_and_batch_size_free(pipe):
    cad = cad_frames()
    a, b, c = run(pipe, cad, 3), run(pipe, cad, 3), run(pipe, cad, 4)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert np.abs(a.residual - c.residual).max() > 1e-4
    one_by_one = run(pipe, cad, 3, batch_size=1)  # noise drawn up front: eta 0 ignores batching
    np.testing.assert_allclose(one_by_one.depth, a.depth, rtol=1e-4, atol=1e-4)  # float summation order only
    stochastic = [run(pipe, cad, 5, eta=1.0).depth for _ in range(2)]
    np.testing.assert_array_equal(*stochastic)  # eta > 0 draws from the same generator


def test_numpy_and_torch_inputs_single_and_batch(pipe):
    cad = cad_frames()
    from_numpy = run(pipe, cad)
    from_torch = run(pipe, torch.from_numpy(cad))
    assert isinstance(from_torch.depth, torch.Tensor) and from_torch.depth.shape == (2, SIZE, SIZE)
    np.testing.assert_allclose(from_torch.depth.numpy(), from_numpy.depth, rtol=1e-6, atol=1e-6)
    single = run(pipe, cad[0].astype(np.float64))
    assert single.depth.shape == (1, SIZE, SIZE) and single.camera is None
    out = run(pipe, cad, stages=1, return_all_stages=True)
    assert len(out.stages) == 1


def test_stages_are_chained_and_stage2_sees_stage1(pipe):
    cad = cad_frames()
    out = run(pipe, cad, return_all_stages=True)
    assert len(out.stages) == 2
    np.testing.assert_array_equal(out.stages[-1], out.depth)
    np.testing.assert_array_equal(out.stages[0], run(pipe, cad, stages=1).depth)  # same stage-1 noise
    assert np.abs(out.stages[0] - out.stages[1]).max() > 1e-4
    with pytest.raises(ConfigError, match="stages = 3"):
        run(pipe, cad, stages=3)


def test_given_stage1_output_continues_the_same_draw(pipe):
    """Stage-II on a stored Stage-I output (one Stage-I draw per frame everywhere): given the chain's own
    Stage-I output and the same generator, the pipeline returns the chain's Stage-II output; given another
    Stage-I map, Stage-II changes with it and the given map is returned as stage 1 unchanged."""
    cad = cad_frames()
    full = run(pipe, cad, 7, return_all_stages=True)
    given = run(pipe, cad, 7, given_stages=[full.stages[0]], return_all_stages=True)
    np.testing.assert_array_equal(given.stages[0], full.stages[0])
    np.testing.assert_allclose(given.depth, full.depth, rtol=1e-5, atol=1e-5)
    other = run(pipe, cad, 8, stages=1).depth  # another Stage-I draw
    moved = run(pipe, cad, 7, given_stages=[other], return_all_stages=True)
    np.testing.assert_array_equal(moved.stages[0], other)
    assert np.abs(moved.depth - full.depth).max() > 1e-4  # Stage-II is conditioned on what it is given
    with pytest.raises(ConfigError, match="given_stages"):
        run(pipe, cad, given_stages=[full.stages[0], full.stages[1]])  # nothing left to run
    with pytest.raises(DepthFormatError, match="given_stages"):
        run(pipe, cad, given_stages=[full.stages[0][:1]])


def test_previous_stage_map_depth_and_residual():
    prev_m = torch.tensor([[[[1.0, 0.0]]]])
    cad_n = normalize_depth(torch.tensor([[[[2.0, 0.0]]]]))
    depth_map = previous_stage_map(prev_m, cad_n, "depth", 0.5)
    torch.testing.assert_close(depth_map, normalize_depth(prev_m))
    assert depth_map[..., 1] == 1.0  # a hole is far (normalised 1)
    residual_map = previous_stage_map(prev_m, cad_n, "residual", 0.5)
    torch.testing.assert_close(residual_map, (normalize_depth(prev_m) - cad_n) * 0.5)
    with pytest.raises(ConfigError, match="stage2.condition"):
        previous_stage_map(prev_m, cad_n, "rgb", 0.5)


def test_residual_condition_and_direct_target_variants(pipe):
    cad = cad_frames()
    base = run(pipe, cad)
    residual_cond = make_pipeline(["stage2.condition=residual"])
    assert residual_cond.config.condition == "residual"
    out = run(residual_cond, cad, return_all_stages=True)
    np.testing.assert_array_equal(out.stages[0], run(pipe, cad, stages=1).depth)  # same stage 1
    assert np.abs(out.depth - base.depth).max() > 1e-4  # stage 2 sees a different map
    direct = make_pipeline(["model.target=direct"], stages=1)
    d = run(direct, cad)
    np.testing.assert_allclose(  # direct: the prediction is the depth; residual = (depth_n - cad_n) / 2
        d.depth[d.cad > 0],
        denormalize_depth(d.residual / 0.5 + normalize_depth(d.cad))[d.cad > 0],
        rtol=1e-5,
        atol=1e-6,
    )


# ---------------------------------------------------------------------- N stages, save / load
def test_three_stage_chain_and_add_stage(pipe):
    cad = cad_frames(1)
    chain = make_pipeline(stages=1)
    assert chain.num_stages == 1
    for k in (2, 3):
        chain.add_stage(trained_like(chain.denoisers[0].expand_condition(2), k))
    assert chain.num_stages == 3 and chain.config.num_stages == 3
    out = run(chain, cad, return_all_stages=True)
    assert len(out.stages) == 3 and out.depth.shape == (1, SIZE, SIZE)
    with pytest.raises(ConfigError, match="condition maps"):
        chain.add_stage(chain.denoisers[0])  # a 1-map (stage-1) denoiser cannot be stage 4


def test_save_load_whole_chain_gives_identical_output(pipe, tmp_path):
    cad = cad_frames()
    pipe.save_pretrained(tmp_path / "pipeline")
    names = sorted(p.name for p in (tmp_path / "pipeline").iterdir())
    assert names == ["codec", "model_index.json", "scheduler", "stage1", "stage2"]
    index = json.loads((tmp_path / "pipeline" / "model_index.json").read_text())
    assert index["num_stages"] == 2 and index["size"] == SIZE and index["target"] == "residual"
    loaded = Sim2RealPipeline.from_pretrained(tmp_path / "pipeline")
    public = lambda config: {k: v for k, v in dict(config).items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(pipe.config)
    kw = dict(num_inference_steps=3, eta=0.5, return_all_stages=True)
    a, b = run(pipe, cad, 11, **kw), run(loaded, cad, 11, **kw)
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.stages[0], b.stages[0])
    # a missing stage folder is named
    import shutil

    shutil.rmtree(tmp_path / "pipeline" / "stage2")
    with pytest.raises(CheckpointError, match="stage2/"):
        Sim2RealPipeline.from_pretrained(tmp_path / "pipeline")
    with pytest.raises(CheckpointError, match="model_index.json"):
        Sim2RealPipeline.from_pretrained(tmp_path)


def test_latent_pipeline_with_a_tiny_sd_folder(tmp_path):
    """The sd21 path end to end: LatentCodec + pretrained UNet from a tiny SD-like folder, saved and reloaded."""
    write_tiny_sd(tmp_path / "sd")
    cfg = load_config("sd21", overrides=[f"model.sd_path={tmp_path / 'sd'}", "data.size=16", "sampling.steps=3"])
    stage1 = ControlledDenoiser.from_config(cfg)
    latent_pipe = Sim2RealPipeline.build(cfg, [stage1, stage1.expand_condition(2)])
    cad = cad_frames(1)
    out = run(latent_pipe, cad)
    assert out.depth.shape == (1, 16, 16) and np.all(out.depth[out.cad == 0] == 0)
    wide = cad_frames(1, 18, 34)  # native through the VAE: padded to the codec x UNet multiple, cut back
    assert latent_pipe.native_multiple == latent_pipe.codec.downscale * stage1.downsample_factor > 1
    native = run(latent_pipe, wide, native=True)
    assert native.depth.shape == (1, 18, 34) and np.all(native.depth[wide == 0] == 0) and (native.depth > 0).any()
    latent_pipe.save_pretrained(tmp_path / "pipeline")
    assert (tmp_path / "pipeline" / "codec" / "vae" / "config.json").is_file()
    np.testing.assert_array_equal(run(Sim2RealPipeline.from_pretrained(tmp_path / "pipeline"), cad).depth, out.depth)


def test_training_scheduler_becomes_ddim_and_dtype_moves(pipe):
    from sim2real_kit.models.denoiser import make_scheduler

    cfg = tiny_cfg()
    converted = Sim2RealPipeline(pipe.codec, make_scheduler(cfg, "ddpm"), list(pipe.denoisers), size=SIZE)
    assert type(converted.scheduler).__name__ == "DDIMScheduler"
    assert converted.scheduler.config.set_alpha_to_one is False
    cad = cad_frames(1)
    reference = run(pipe, cad, 2).depth
    np.testing.assert_array_equal(run(converted, cad, 2, num_inference_steps=4).depth, reference)
    converted.to(torch.float64)
    assert converted.dtype == torch.float64
    in_float64 = run(converted, cad, 2, num_inference_steps=4)  # float64 noise differs from float32 noise
    assert in_float64.depth.dtype == np.float32 and np.all(in_float64.depth[in_float64.cad == 0] == 0)
    converted.to(torch.float32)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.full((24, 32), np.nan, np.float32), "NaN"),
        (-cad_frames(), "negative"),
        (cad_frames().astype(np.uint16), "integer dtype"),
        (cad_frames() * 1000.0, "millimetres"),
        (np.zeros((1, 1, 24, 32), np.float32), r"\[H, W\] or \[B, H, W\]"),
        (torch.full((2, 24, 32), float("nan")), "NaN"),
    ],
)
def test_bad_cad_depth_raises_depth_format_error(pipe, bad, match):
    with pytest.raises(DepthFormatError, match=match) as info:
        pipe(bad)
    assert "cad_depth" in str(info.value)


def test_camera_of_another_size_is_refused(pipe):
    with pytest.raises(DepthFormatError, match="camera is 256x192"):
        pipe(cad_frames(), camera=Camera.lasa())


# ---------------------------------------------------------------------- sampling speed options
def test_static_ddim_loop_equals_diffusers_step(pipe):
    """The static-buffer loop behind the CUDA graph / compile options is DDIMScheduler.step (eta 0, x0)."""
    g = torch.Generator().manual_seed(3)
    cad_n = normalize_depth(torch.from_numpy(cad_frames(2, SIZE, SIZE)))[:, None]
    condition = pipe.codec.encode(cad_n)
    for stage, steps in ((0, 4), (0, 7), (1, 5)):
        if stage == 1:
            condition = torch.cat([condition[:, :1], condition[:, :1] * 0.5], dim=1)
        latents = torch.randn(2, 1, SIZE, SIZE, generator=g)
        reference = pipe._denoise(stage, latents, condition, steps, 0.0, None, False)  # diffusers' loop on CPU
        static = pipe._denoise_static(stage, latents, condition, steps)
        assert static.shape == reference.shape and not torch.equal(static, latents)
        torch.testing.assert_close(static, reference, rtol=1e-5, atol=1e-5)


def test_bf16_precision_is_autocast_with_fp32_output(pipe):
    cad = cad_frames()
    fp32 = run(pipe, cad, 5)
    try:
        pipe.set_sampling(precision="bf16")
        assert pipe.config.precision == "bf16" and pipe.dtype == torch.float32  # weights stay fp32
        bf16 = run(pipe, cad, 5)
    finally:
        pipe.set_sampling(precision="auto")
    assert bf16.depth.dtype == np.float32 and np.all(bf16.depth[bf16.cad == 0] == 0)
    diff = np.linalg.norm(bf16.residual - fp32.residual) / np.linalg.norm(fp32.residual)
    assert 0 < diff < 0.1  # autocast really ran (not bit-identical), and stays close to fp32
    np.testing.assert_array_equal(run(pipe, cad, 5).depth, fp32.depth)  # "auto" on CPU = fp32 again
    with pytest.raises(ConfigError, match="sampling.precision"):
        pipe.set_sampling(precision="fp16")


def test_bf16_weights_round_the_network_not_the_cad_or_the_noise():
    """`pipe.to(torch.bfloat16)` (sampling-only use) rounds the network's arithmetic, not the output: a denoiser
    that predicts a zero residual returns the CAD to 0.05 mm (the log-normalised CAD in bf16 is off by up to
    20 mm at 4 m), and the initial noise is the fp32 pipeline's for the same generator, so a bf16-weights row
    and the fp32 row differ by precision alone."""
    pipe = make_pipeline(stages=1)
    with torch.no_grad():  # x0 prediction 0 at every step: residual 0, depth = CAD
        pipe.denoisers[0].unet.conv_out.weight.zero_()
        pipe.denoisers[0].unet.conv_out.bias.zero_()
    cad = np.broadcast_to(np.linspace(2.0, 4.0, SIZE, dtype=np.float32), (2, SIZE, SIZE)).copy()  # metres
    starts = {}

    def first_noise(x, frames, i):
        if i == -1:
            starts[pipe.dtype] = x.detach().float().clone()
        return x

    fp32 = run(pipe, cad, 4, step_callback=first_noise)
    pipe.to(torch.bfloat16)
    try:
        bf16 = run(pipe, cad, 4, step_callback=first_noise)
    finally:
        pipe.to(torch.float32)
    assert np.abs(fp32.depth - cad).max() < 5e-5  # metres
    assert bf16.depth.dtype == np.float32 and np.abs(bf16.depth - cad).max() < 5e-5
    assert torch.equal(starts[torch.bfloat16], starts[torch.float32])


def test_bf16_weights_edge_map_comes_from_the_fp32_cad():
    """With `model.cond_edges` the CAD's edge map (tanh of depth jumps / 5 cm) is computed from the fp32 CAD, not
    from its bf16 copy, whose rounding (up to ~10 mm at 2 m) reads as edges on a smooth 2.0-2.3 m ramp."""
    pipe = make_pipeline(["model.cond_edges=true"], stages=1)
    conditions = {}

    def keep_condition(module, args):  # the first call of each dtype: [B, 1 + 1 edge map, S, S]
        conditions.setdefault(pipe.dtype, args[2].detach().float().clone())

    hook = pipe.denoisers[0].register_forward_pre_hook(keep_condition)
    cad = np.broadcast_to(np.linspace(2.0, 2.3, SIZE, dtype=np.float32), (2, SIZE, SIZE)).copy()  # metres
    try:
        run(pipe, cad, 1)
        pipe.to(torch.bfloat16)
        run(pipe, cad, 1)
    finally:
        pipe.to(torch.float32)
        hook.remove()
    edges32, edges16 = conditions[torch.float32][:, 1:2], conditions[torch.bfloat16][:, 1:2]  # [B, 1, S, S]
    assert edges32.max() > 0.2  # the ramp's 20 mm per pixel is a weak edge
    torch.testing.assert_close(edges16, edges32, rtol=0.01, atol=0.005)  # bf16 rounding of the map only


def test_channels_last_reaches_the_weights_keeps_the_output_and_survives_save_load(tmp_path):
    """`sampling.channels_last` (config -> `build` -> `set_sampling` -> saved index): the denoisers' 4-D weights
    in channels_last, for stages added later too; same depth as the contiguous pipeline to fp32 rounding."""
    cad = cad_frames(1)
    plain = make_pipeline(stages=1)
    reference = run(plain, cad, 6).depth
    pipe = make_pipeline(["sampling.channels_last=true"], stages=1)
    pipe.add_stage(trained_like(pipe.denoisers[0].expand_condition(2), 2))

    def layouts(p):
        kernels = [
            w for w in p.denoisers.parameters() if w.ndim == 4 and min(w.shape[1], w.shape[-1]) > 1
        ]  # else either layout
        return {w.is_contiguous(memory_format=torch.channels_last) for w in kernels}

    assert pipe.config.channels_last is True and layouts(pipe) == {True}
    np.testing.assert_allclose(run(pipe, cad, 6, stages=1).depth, reference, atol=5e-5)  # 0.05 mm
    pipe.save_pretrained(tmp_path / "p")
    loaded = Sim2RealPipeline.from_pretrained(tmp_path / "p")
    assert loaded.config.channels_last is True and layouts(loaded) == {True}
    assert layouts(loaded.set_sampling(channels_last=False)) == {False}
    assert layouts(plain) == {False}
    from sim2real_kit.run import RunFolder
    from sim2real_kit.simulate import load_pipeline

    folder = RunFolder(tmp_path / "run")  # a run's config, not the saved pipeline's, says how to sample
    plain.save_pretrained(folder.pipeline_dir(1))
    from_run = load_pipeline(folder, 1, tiny_cfg(["sampling.channels_last=true"]))
    assert from_run.config.channels_last is True and layouts(from_run) == {True}


def test_building_a_pipeline_leaves_a_training_models_memory_format_alone():
    """Validation builds a pipeline around the live training denoiser (`stage1`'s val_fn): with
    `train.channels_last` its weights are channels_last, and a pipeline whose `sampling.channels_last` is off must
    not convert them back (it did: every validation undid the training flag in place)."""
    cfg = tiny_cfg()
    torch.manual_seed(0)
    denoiser = ControlledDenoiser.from_config(cfg).to(memory_format=torch.channels_last)
    conv = denoiser.unet.down_blocks[0].resnets[0].conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    pipe = Sim2RealPipeline.build(cfg, [denoiser])
    assert pipe.config.channels_last is False
    conv = denoiser.unet.down_blocks[0].resnets[0].conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    pipe.set_sampling(num_inference_steps=2)  # another option: the layout stays
    assert not denoiser.unet.down_blocks[0].resnets[0].conv1.weight.is_contiguous()
    pipe.set_sampling(channels_last=False)  # asked for by name: contiguous
    assert denoiser.unet.down_blocks[0].resnets[0].conv1.weight.is_contiguous()


def test_sampling_options_come_from_config_and_survive_save_load(tmp_path):
    pipe = make_pipeline(["sampling.precision=fp32", "sampling.cuda_graph=false", "sampling.compile=true"], stages=1)
    assert (pipe.config.precision, pipe.config.cuda_graph, pipe.config.compile) == ("fp32", False, True)
    pipe.save_pretrained(tmp_path / "p")
    loaded = Sim2RealPipeline.from_pretrained(tmp_path / "p")
    assert (loaded.config.precision, loaded.config.cuda_graph, loaded.config.compile) == ("fp32", False, True)
    # a pipeline saved before these options existed loads with the defaults
    index_path = tmp_path / "p" / "model_index.json"
    index = json.loads(index_path.read_text())
    for key in ("precision", "cuda_graph", "compile"):
        del index[key]
    index_path.write_text(json.dumps(index))
    old = Sim2RealPipeline.from_pretrained(tmp_path / "p")
    assert (old.config.precision, old.config.cuda_graph, old.config.compile) == ("auto", True, False)
    with pytest.raises(ConfigError, match="sampling.precision"):
        tiny_cfg(["sampling.precision=half"])


# ---------------------------------------------------------------------- native: whole frames, no tiles (issue 22)
def test_native_on_model_size_frames_is_the_default_path(pipe):
    """On S x S frames the eval transform is the identity, so `native=True` must give the default path's output:
    the same noise draw, the same denoisers, stage by stage."""
    cad = cad_frames(2, SIZE, SIZE)
    a = run(pipe, cad, 3, return_all_stages=True)
    b = run(pipe, cad, 3, return_all_stages=True, native=True)
    for x, y in zip((a.depth, a.residual, a.cad, *a.stages), (b.depth, b.residual, b.cad, *b.stages)):
        np.testing.assert_array_equal(x, y)


def test_native_frames_keep_their_size_camera_and_padding_is_no_cad(pipe):
    """A 30 x 45 frame (not a multiple of the UNet's downsampling) comes back 30 x 45 with its camera, simulated
    over the whole frame (not the centre crop), zero where the CAD is; the padding is exactly a no-CAD border:
    the frame padded by hand gives the same output, and Stage-II continues a given native Stage-I draw."""
    H, W = 30, 45
    m = pipe.native_multiple
    assert m == 2 ** (len(pipe.denoisers[0].unet.config.block_out_channels) - 1) and (H % m or W % m)
    cad = cad_frames(2, H, W)
    camera = Camera(40.0, 40.0, W / 2, H / 2, W, H)
    out = run(pipe, cad, 5, camera=camera, native=True, return_all_stages=True)
    for x in (out.depth, out.residual, out.cad, *out.stages):
        assert x.shape == (2, H, W) and x.dtype == np.float32
    assert out.camera == camera
    np.testing.assert_array_equal(out.cad, cad)
    assert np.all(out.depth[cad == 0] == 0)
    right = out.depth[:, :, -6:]  # outside a centre crop of side 30 (columns 7..36)
    assert (right > 0).mean() > 0.5  # (a random denoiser: depth anywhere in range, holes only above 4.9 m)
    padded = np.pad(cad, ((0, 0), (0, -H % m), (0, -W % m)))
    by_hand = run(pipe, padded, 5, native=True)
    np.testing.assert_array_equal(by_hand.depth[:, :H, :W], out.depth)
    given = run(pipe, cad, 5, native=True, given_stages=[out.stages[0]])
    np.testing.assert_allclose(given.depth, out.depth, rtol=1e-5, atol=1e-5)
    with pytest.raises(DepthFormatError, match="native"):
        run(pipe, cad, native=True, given_stages=[out.stages[0][:, :16, :16]])


def test_simulate_full_is_the_native_pipeline_on_a_window_around_the_region(pipe):
    from sim2real_kit.real_sample.fewshot import simulate_tiles
    from sim2real_kit.tiling import simulate_full, window_box

    cad = cad_frames(2, 28, 40)
    full = simulate_full(pipe, cad, None, torch.Generator().manual_seed(2), steps=3)  # the whole frames, one by one
    gen = torch.Generator().manual_seed(2)
    for f in range(2):
        np.testing.assert_array_equal(full[f], pipe(cad[f], num_inference_steps=3, generator=gen, native=True).depth[0])
    # a region: one window per frame, its bounding box + margin, at least the model size; 0 elsewhere
    region = np.zeros(cad.shape, bool)
    region[0, 10:13, 20:22] = True  # frame 1: no region pixel
    assert window_box(region[0], SIZE, 2) == (4, 20, 13, 29)  # rows 8..14 with the margin, grown to 16 (centred)
    assert window_box(region[0], SIZE, 10) == (0, 23, 10, 32)  # clipped at the top border
    assert window_box(np.ones((28, 40), bool), SIZE, 4) == (0, 28, 0, 40) and window_box(region[1], SIZE, 2) is None
    part = simulate_full(pipe, cad, region, torch.Generator().manual_seed(2), steps=3, margin=2)
    assert not part[1].any() and not part[0, :4].any() and not part[0, :, 29:].any()
    inside = part[0, 4:20, 13:29]
    np.testing.assert_array_equal(
        inside, run(pipe, cad[:1, 4:20, 13:29], 2, num_inference_steps=3, native=True).depth[0]
    )
    frames = type("Frames", (), {"cad": cad})()
    np.testing.assert_array_equal(simulate_tiles(pipe, frames, region, 2, 3, blend="full"), simulate_full(
        pipe, cad, region, torch.Generator().manual_seed(2), steps=3))  # fmt: skip
    resized = make_pipeline(["data.eval_crop=24"], stages=1)
    with pytest.raises(ConfigError, match="eval_crop"):
        simulate_full(resized, cad)
    with pytest.raises(ConfigError, match="region"):
        simulate_full(pipe, cad, region[:1])
