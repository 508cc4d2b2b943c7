"""CAD-only simulation of a folder of depth PNGs: the PNGs' unit is the user's to say, and CAD the model
cannot have been trained on (a wrong unit) is refused with an error that names the unit and the range,
before any sampling — never an all-zero simulation; the output has the camera's resolution, from overlapping
model-size tiles blended during sampling, with no tile border showing (issue 23)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL

from sim2real_kit.camera import Camera
from sim2real_kit.cli import main
from sim2real_kit.config import load_config
from sim2real_kit.data.layout import FrameRef
from sim2real_kit.depth import read_depth_png, write_depth_png
from sim2real_kit.errors import ConfigError, DepthFormatError, Sim2RealError
from sim2real_kit.simulate import check_cad_range, parse_depth_unit, simulate_folder, simulate_frames

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def pipe_dir(tmp_path):
    from sim2real_kit.models.denoiser import ControlledDenoiser
    from sim2real_kit.pipeline import Sim2RealPipeline

    cfg = load_config("tiny", overrides=["data.size=16", *TINY_MODEL, "sampling.steps=2"])
    torch.manual_seed(0)
    Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)]).save_pretrained(tmp_path / "pipe")
    return tmp_path / "pipe"


def _cad_folder(root, unit_m, depth_m=0.8):
    """Two 32x24 CAD frames (a plane at `depth_m` with a box 0.2 m nearer) as uint16 PNGs in `unit_m`."""
    root.mkdir(parents=True)
    cam = Camera(25.0, 25.0, 16.0, 12.0, 32, 24)
    cam.save_json(root / "intrinsics.json")
    for i in range(2):
        cad = np.full((24, 32), depth_m + 0.05 * i, np.float32)
        cad[8:16, 10:20] -= 0.2
        write_depth_png(root / f"{i:03d}_gt.png", cad, unit_m)
    return root


def test_depth_unit_names_and_numbers():
    assert parse_depth_unit("mm") == 0.001 and parse_depth_unit("0.1mm") == 0.0001 and parse_depth_unit("m") == 1.0
    assert parse_depth_unit("0.00025") == 0.00025 and parse_depth_unit(0.001) == 0.001
    for bad in ("furlong", "-1", "0", "nan"):
        with pytest.raises(ConfigError, match="depth unit"):
            parse_depth_unit(bad)


def test_ycb_style_png_read_as_mm_is_refused_naming_unit_and_range(tmp_path, pipe_dir, capsys):
    """YCB-Video stores 0.1 mm: read as mm a 0.8 m scene is 8 m, outside 0.05-4.9 m. The error says so, and
    which unit would fit; nothing is written."""
    cad_dir = _cad_folder(tmp_path / "cad", unit_m=0.0001)
    with pytest.raises(DepthFormatError) as err:
        simulate_folder(pipe_dir, cad_dir, tmp_path / "sim", progress=False)
    msg = str(err.value)
    assert str(cad_dir) in msg and "0.001 m per count" in msg and "0.05-4.9 m" in msg and "0.1mm" in msg
    assert "median of 8.000 m" in msg  # the 0.8 m plane read 10x too far
    assert not (tmp_path / "sim").exists()
    # the CLI: the same message, exit code 2 (the kit's code for refused input)
    assert main(["simulate", "--pipeline", str(pipe_dir), "--cad", str(cad_dir), "--out", str(tmp_path / "s2")]) == 2
    assert "--depth-unit 0.1mm" in capsys.readouterr().err


def test_the_right_unit_simulates_at_the_right_depth(tmp_path, pipe_dir):
    cad_dir = _cad_folder(tmp_path / "cad", unit_m=0.0001)
    out = tmp_path / "sim"
    args = ["simulate", "--pipeline", str(pipe_dir), "--cad", str(cad_dir), "--out", str(out), "--depth-unit", "0.1mm"]
    assert main(args) == 0
    gt = read_depth_png(out / "lasa_depth" / "cad" / "000_gt.png")
    assert gt.shape == (24, 32) and np.median(gt[gt > 0]) == pytest.approx(0.8, abs=0.01)  # metres, not 8


def test_all_empty_cad_is_refused(tmp_path):
    with pytest.raises(DepthFormatError, match="every CAD pixel is 0"):
        check_cad_range([np.zeros((4, 4), np.float32)], "x")
    check_cad_range([np.full((4, 4), 1.5, np.float32)], "x")  # in range: no error


def test_an_empty_simulation_is_an_error_not_a_file(tmp_path):
    """A pipeline that returns only holes (e.g. trained on another depth range): a clear error, no layout."""

    class Holes:
        num_stages = 1
        config = SimpleNamespace(size=8)

        def __call__(self, cad, **kw):
            return SimpleNamespace(depth=np.zeros_like(cad))

    cam = Camera(8.0, 8.0, 4.0, 4.0, 8, 8)
    with pytest.raises(Sim2RealError, match="came back empty"):
        simulate_frames(
            Holes(),
            [np.ones((8, 8), np.float32)],
            cam,
            [FrameRef("a", "0")],
            [np.eye(4)],
            tmp_path / "o",
            progress=False,
        )
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------- the camera's resolution (issue 23)
def test_simulation_has_the_layouts_frame_shape(tmp_path, pipe_dir):
    from conftest import make_plane_layout

    from sim2real_kit.data.layout import DepthLayout, validate

    lay = make_plane_layout(tmp_path / "ds", scenes=2, frames=2, width=40, height=28)  # not a multiple of 16
    out = simulate_folder(pipe_dir, lay.root, tmp_path / "sim", progress=False)
    assert validate(out.root) == [] and (out.camera.width, out.camera.height) == (40, 28)
    for ref in out.frames("train") + out.frames("val"):
        frame = out.read_frame(ref)
        assert frame["real"].shape == lay.read_depth(ref).shape == (28, 40)
        assert (frame["real"] > 0).mean() > 0.5 and np.array_equal(frame["cad"], lay.read_depth(ref))  # untrained
    assert len(list((tmp_path / "sim" / "points").rglob("*.ply"))) == 4 and list(
        out.root.glob("meshes/*/simulated.ply")
    )
    # the model-size output stays available
    assert main(["simulate", "--pipeline", str(pipe_dir), "--cad", str(lay.root), "--out", str(tmp_path / "m"),
                 "--model-size"]) == 0  # fmt: skip
    assert DepthLayout(tmp_path / "m").read_depth(FrameRef("s00", "000"), "scan").shape == (16, 16)


class _SmoothToyPipe:
    """A stand-in diffusion pipeline with smooth samples: x starts as the generator's noise, every step replaces x
    by a 5x5 box blur of itself (what a denoiser keeps of its input: the low frequencies), rescaled to unit std,
    and calls `step_callback` as `Sim2RealPipeline` does; depth = CAD + 50 mm x. Independent tiles then differ by
    a smooth field each."""

    num_stages = 1

    def __init__(self, size: int, steps: int = 4):
        self.config, self.steps = SimpleNamespace(size=size), steps

    def __call__(self, cad, num_inference_steps=None, eta=0.0, generator=None, batch_size=None, step_callback=None,
                 **kw):  # fmt: skip
        cad = torch.as_tensor(np.asarray(cad))[:, None]  # [N, 1, S, S]
        x = torch.randn(cad.shape, generator=generator)
        frames = slice(0, len(x))
        x = step_callback(x, frames, -1) if step_callback else x
        for i in range(self.steps):
            x = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
            x = x / x.std()  # unit spread again (one number for all the tiles: no tile-wise scale)
            x = step_callback(x, frames, i) if step_callback else x
        return SimpleNamespace(depth=torch.where(cad > 0, cad + 0.05 * x, 0.0)[:, 0].numpy())


def test_native_tiles_show_no_seams_where_naive_tiles_do(tmp_path):
    from sim2real_kit.data.layout import DepthLayout
    from sim2real_kit.tiling import seam_ratio, tile_boxes

    H, W, size = 40, 56, 16
    yy, xx = np.mgrid[0:H, 0:W]
    cads = [(1.2 + 0.004 * xx + 0.002 * yy + 0.05 * i).astype(np.float32) for i in range(2)]  # smooth tilted planes
    refs, cam = [FrameRef("a", f"{i}") for i in range(2)], Camera(40.0, 40.0, W / 2, H / 2, W, H)
    ratios = {}
    for name, overlap in (("blended", None), ("naive", 0)):
        out = simulate_frames(_SmoothToyPipe(size), cads, cam, refs, [np.eye(4)] * 2, tmp_path / name, fuse=False,
                              progress=False, overlap=overlap)  # fmt: skip
        sims = np.stack([DepthLayout(out.root).read_depth(r, "scan") for r in refs])
        assert sims.shape == (2, H, W) and (sims > 0).all()
        step = size - (size // 4 if overlap is None else overlap)
        boxes = [(f, x, y) for f in range(2) for x, y in tile_boxes(np.ones((H, W), bool), size, step)]
        ratios[name] = seam_ratio(sims - np.stack(cads), boxes, size)
    # measured (seeds 0-3 of the toy): blended 1.26-1.47 (the blur's edge effect inside a tile reaches into the 4-px
    # overlap; 1.22-1.30 at 8 px), tiles blended only after sampling 1.50-1.56, naive grid 5.4-7.2
    assert ratios["blended"] < 2.0 < ratios["naive"], ratios


def test_grouped_frames_stay_seamless_and_the_cli_knob_reaches_the_tiler(tmp_path, pipe_dir, monkeypatch):
    """`tile_batch` (`sim2real simulate --tile-batch`): the tiles of several frames in one pipeline call, each
    frame still one MultiDiffusion sample (no seams), and the CLI's value is the one the tiler gets."""
    from sim2real_kit import tiling
    from sim2real_kit.data.layout import DepthLayout
    from sim2real_kit.tiling import seam_ratio, tile_boxes

    H, W, size = 40, 56, 16
    yy, xx = np.mgrid[0:H, 0:W]
    cads = [(1.2 + 0.004 * xx + 0.002 * yy + 0.05 * i).astype(np.float32) for i in range(3)]
    refs, cam = [FrameRef("a", f"{i}") for i in range(3)], Camera(40.0, 40.0, W / 2, H / 2, W, H)
    calls = []

    class Counting(_SmoothToyPipe):
        def __call__(self, cad, **kw):
            calls.append(len(cad))
            return super().__call__(cad, **kw)

    per_frame = len(tile_boxes(np.ones((H, W), bool), size, size - size // 4))
    out = simulate_frames(Counting(size), cads, cam, refs, [np.eye(4)] * 3, tmp_path / "g", fuse=False,
                          progress=False, tile_batch=2 * per_frame)  # fmt: skip
    assert calls == [2 * per_frame, per_frame]
    sims = np.stack([DepthLayout(out.root).read_depth(r, "scan") for r in refs])
    boxes = [(f, x, y) for f in range(3) for x, y in tile_boxes(np.ones((H, W), bool), size, size - size // 4)]
    assert (sims > 0).all() and seam_ratio(sims - np.stack(cads), boxes, size) < 2.0
    seen = []
    real = tiling.simulate_tiled
    monkeypatch.setattr(tiling, "simulate_tiled", lambda *a, **kw: seen.append(kw.get("tile_batch")) or real(*a, **kw))
    cad_dir = _cad_folder(tmp_path / "cad", 0.001)
    assert main(["simulate", "--pipeline", str(pipe_dir), "--cad", str(cad_dir), "--out", str(tmp_path / "s"),
                 "--tile-batch", "7"]) == 0  # fmt: skip
    assert seen == [7]  # both frames in one chunk of the grouped path


def test_whole_frames_reach_the_simulated_layout(tmp_path, pipe_dir, monkeypatch, capsys):
    """`sim2real simulate --whole-frames`: each frame in one pass (`tiling.simulate_full`), no tile call; the
    layout keeps the camera's size and says how it was made; with --model-size it is refused."""
    from sim2real_kit import tiling
    from sim2real_kit.data.layout import DepthLayout

    seen = {"full": 0, "tiles": 0}
    full, tiled = tiling.simulate_full, tiling.simulate_tiled
    monkeypatch.setattr(tiling, "simulate_full", lambda *a, **k: seen.update(full=seen["full"] + 1) or full(*a, **k))
    monkeypatch.setattr(
        tiling, "simulate_tiled", lambda *a, **k: seen.update(tiles=seen["tiles"] + 1) or tiled(*a, **k)
    )
    cad_dir = _cad_folder(tmp_path / "cad", 0.001)
    out = tmp_path / "w"
    assert (
        main(["simulate", "--pipeline", str(pipe_dir), "--cad", str(cad_dir), "--out", str(out), "--whole-frames"]) == 0
    )
    assert seen == {"full": 2, "tiles": 0}  # two frames, one call each (one frame per chunk on the CPU)
    lay = DepthLayout(out)
    assert "whole frames" in lay.meta["resolution"]
    scan = lay.read_depth(lay.frames("train")[0], "scan")
    assert scan.shape == (24, 32) and (scan > 0).mean() > 0.5
    args = ["simulate", "--pipeline", str(pipe_dir), "--cad", str(cad_dir), "--out", str(tmp_path / "x")]
    assert main([*args, "--whole-frames", "--model-size"]) == 2
    assert "--whole-frames" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_fast_sampling_is_the_cuda_default_of_simulate_and_reaches_the_pipeline(tmp_path, pipe_dir, monkeypatch):
    """`sim2real simulate --fast auto|on|off` (default auto): the fastest quality-held sampling path
    (`simulate.FAST_SAMPLING`, a compiled denoiser) on CUDA only unless asked; it reaches the loaded pipeline's
    sampling config, and the CLI's choice reaches the loader."""
    from sim2real_kit import simulate

    assert simulate.fast_sampling("auto", "cpu") == {} and simulate.fast_sampling("off", "cuda") == {}
    assert simulate.fast_sampling("auto", "cuda") == simulate.FAST_SAMPLING == {"compile": True}
    assert simulate.fast_sampling("on", "cpu") == {"compile": True}
    with pytest.raises(Sim2RealError, match="fast sampling = 'max'"):
        simulate.fast_sampling("max", "cpu")
    assert simulate.load_any_pipeline(pipe_dir, "on").config.compile is True  # not sampled: compiling takes minutes
    assert simulate.load_any_pipeline(pipe_dir).config.compile is False  # the saved pipeline's own setting
    seen, real = [], simulate.load_any_pipeline
    monkeypatch.setattr(simulate, "load_any_pipeline", lambda p, fast="off": seen.append(fast) or real(p, "off"))
    cad_dir = _cad_folder(tmp_path / "cad", 0.001)
    for k, extra in enumerate(([], ["--fast", "off"])):
        args = ["simulate", "--pipeline", str(pipe_dir), "--cad", str(cad_dir), "--out", str(tmp_path / f"s{k}")]
        assert main([*args, *extra]) == 0
    assert seen == ["auto", "off"]
