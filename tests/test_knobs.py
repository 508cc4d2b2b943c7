"""Every knob a notebook or a grid exposes reaches the artifact it names.

For each variant of `configs/ablations/paper.yaml`, the flow of notebooks 02-04 runs through the same
library calls with the notebooks' own parameter defaults (at a few pixels and steps), and the artifacts
must record the variant's value: the flag file's threshold and binarisation, the discriminator's CAD
guidance, the Stage-II config's re-weighting, the number of stages of the final pipeline, the target kind.
(The threshold knob used to be a no-op: notebook 03's `threshold = 0.5` was appended after the overrides.)"""

from __future__ import annotations

import ast
import json

import pytest
import yaml
from conftest import TINY_MODEL, make_plane_layout

from sim2real_kit import flagging, notebook, runner, simulate, stage1, stage2
from sim2real_kit.config import CONFIG_DIR, Config, load_config
from sim2real_kit.run import RunFolder

pytestmark = pytest.mark.usefixtures("one_thread")
GRID = runner.load_grid(CONFIG_DIR / "ablations" / "paper.yaml")
MICRO = [
    "data.size=16", *TINY_MODEL, "train.steps=2", "train.batch_size=2", "train.val_frames=1", "sampling.steps=2",
    "disc.patch_size=8", "disc.stride=8", "disc.num_points=16", "disc.steps=3", "disc.batch_size=8", "disc.min_valid=4",
]  # fmt: skip


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return make_plane_layout(tmp_path_factory.mktemp("knobs") / "ds", scenes=3, frames=4)


def _default(notebook: str, name: str):
    """The default value of a notebook parameter, as papermill would leave it."""
    return ast.literal_eval(runner.notebook_parameters(runner.NOTEBOOK_DIR / f"{notebook}.ipynb")[name])


@pytest.mark.parametrize("variant", sorted(GRID.variants))
def test_every_paper_variant_reaches_its_artifacts(variant, layout, tmp_path):
    params = GRID.variant_parameters(variant, seed=0)
    run = tmp_path / variant
    RunFolder(run).save_config(load_config(GRID.base["preset"], overrides=[f"data.root={layout.root}", *MICRO]))
    # notebooks 02-04, each: notebook.setup(run_dir, preset, quick, seed, overrides, knobs), then its library calls
    args = (run, params["preset"], False, 0, params["overrides"])
    folder, cfg = notebook.setup(*args)
    stage1.train_stage1(folder, cfg, progress=False)
    for split in ("val", "train"):
        simulate.sample_split(folder, cfg, split, stage=1, progress=False)
    folder, cfg = notebook.setup(*args, knobs={"disc.threshold": _default("03_discriminator", "threshold")})
    flagging.train_and_flag(folder, cfg, stage=1, progress=False)
    folder, expected = notebook.setup(*args)
    stage2.train_chain(folder, expected, expected.pipeline.stages, progress=False)

    assert Config.from_yaml(run / "config.yaml") == expected  # no notebook default rewrote a knob
    flags = json.loads((run / "disc" / "flags" / "val" / "flags.json").read_text())
    disc = json.loads((run / "disc" / "metrics.json").read_text())
    assert disc["mode"] == expected.disc.mode
    assert json.loads((run / "disc" / "model.json").read_text())["cad_guidance"] == expected.disc.cad_guidance
    if expected.disc.mode == "difference":  # the paper's w/o bin: flags from |Stage-I - real| > tau, not from D
        assert disc["diff_threshold_m"] == expected.disc.diff_threshold_m and (run / "disc" / "flags" / "val").is_dir()
        assert flags["threshold"] == 0.5 and flags["binary"] is True
        assert (run / "disc" / "flags" / "val" / "differences.npz").is_file()
    else:
        assert flags["threshold"] == expected.disc.threshold and flags["binary"] == expected.disc.binary
        assert not (run / "disc" / "flags" / "val" / "differences.npz").exists()
    last = expected.pipeline.stages
    index = json.loads((run / f"stage{last}" / "pipeline" / "model_index.json").read_text())
    assert index["num_stages"] == last and index["target"] == expected.model.target
    for k in range(2, last + 1):
        trained = yaml.safe_load((run / f"stage{k}" / "config.yaml").read_text())
        assert trained["stage2"]["reweight"] == expected.stage2.reweight
        assert trained["disc"]["threshold"] == expected.disc.threshold
    assert not (run / f"stage{last + 1}").exists()
    # the variant's own overrides, read back from the artifacts' config
    for item in params["overrides"]:
        key, raw = item.split("=", 1)
        section, name = key.split(".")
        assert getattr(getattr(expected, section), name) == yaml.safe_load(raw), item


def test_ablation_axis_reads_the_values_the_runs_used():
    rows = [{"variant": v, "m.mean": 0.0} for v in GRID.variants]
    axis = runner.ablation_axis(CONFIG_DIR / "ablations" / "paper.yaml", rows, "disc.threshold")
    assert [r["disc.threshold"] for r in axis] == sorted(r["disc.threshold"] for r in axis)
    assert {r["variant"]: r["disc.threshold"] for r in axis if r["variant"].startswith("thr_")} == {
        "thr_0.3": 0.3, "thr_0.5": 0.5, "thr_0.7": 0.7,
    }  # fmt: skip
