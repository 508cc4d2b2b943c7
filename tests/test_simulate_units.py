"""CAD-only simulation of a folder of depth PNGs: the PNGs' unit is the user's to say, and CAD the model
cannot have been trained on (a wrong unit) is refused with an error that names the unit and the range,
before any sampling — never an all-zero simulation (issue 23)."""

from __future__ import annotations

import numpy as np
import pytest
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
    torch_seed = 0
    import torch

    torch.manual_seed(torch_seed)
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
    assert gt.shape == (16, 16) and np.median(gt[gt > 0]) == pytest.approx(0.8, abs=0.01)  # metres, not 8


def test_all_empty_cad_is_refused(tmp_path):
    with pytest.raises(DepthFormatError, match="every CAD pixel is 0"):
        check_cad_range([np.zeros((4, 4), np.float32)], "x")
    check_cad_range([np.full((4, 4), 1.5, np.float32)], "x")  # in range: no error


def test_an_empty_simulation_is_an_error_not_a_file(tmp_path):
    """A pipeline that returns only holes (e.g. trained on another depth range): a clear error, no layout."""

    class Holes:
        num_stages = 1

        def __call__(self, cad, camera=None, stages=None, generator=None):
            from types import SimpleNamespace

            return SimpleNamespace(
                depth=np.zeros((1, 8, 8), np.float32), cad=np.ones((1, 8, 8), np.float32), camera=camera
            )

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
