"""The rows the evaluation protocol trains beside Stage-I / Stage-II (issue 19): the paper's "w/o res"
(`stage2.train_direct`) and the Stage-I control sampled where the benchmark needs it. Each lands where the
benchmark's simulator reads it, with the config it names, so the row is measured, not missing."""

from __future__ import annotations

import pytest
from conftest import TINY_MODEL, make_plane_layout

from sim2real_kit import stage1, stage2
from sim2real_kit.benchmark.simulators import available_simulators
from sim2real_kit.config import Config, load_config
from sim2real_kit.run import RunFolder
from sim2real_kit.stage2 import sample_split

pytestmark = pytest.mark.usefixtures("one_thread")
MICRO = [
    "data.size=16", *TINY_MODEL, "train.steps=2", "train.batch_size=2", "train.val_frames=1", "sampling.steps=2",
]  # fmt: skip


@pytest.fixture
def run(tmp_path):
    layout = make_plane_layout(tmp_path / "ds", scenes=3, frames=2, benchmark_scenes=1)
    cfg = load_config("tiny", overrides=[f"data.root={layout.root}", *MICRO])
    folder = RunFolder(tmp_path / "run")
    folder.save_config(cfg)
    return folder, cfg


def test_direct_row_is_trained_with_the_direct_target_and_sampled_for_the_benchmark(run):
    folder, cfg = run
    assert available_simulators(folder)["direct"] is not None  # before: the row says why it is missing
    direct = stage2.train_direct(folder, cfg, progress=False)
    assert direct.root == folder.direct_dir
    assert Config.from_yaml(direct.stage_config_path(1)).model.target == "direct"
    assert cfg.model.target == "residual" and folder.load_config().model.target == "residual"  # the run is untouched
    assert direct.has_samples(1, "val") and direct.has_samples(1, "benchmark")
    assert available_simulators(folder)["direct"] is None
    mtime = (direct.pipeline_dir(1) / "model_index.json").stat().st_mtime_ns
    stage2.train_direct(folder, cfg, progress=False)  # finished: reused, not retrained
    assert (direct.pipeline_dir(1) / "model_index.json").stat().st_mtime_ns == mtime


def test_stage1_control_samples_the_benchmark_split_when_asked(run):
    folder, cfg = run
    stage1.train_stage1(folder, cfg, progress=False)
    control = stage2.stage1_control(folder, cfg, progress=False, splits=("val", "benchmark"))
    assert Config.from_yaml(control.stage_config_path(1)).train.steps == 2 * cfg.train.steps
    assert control.has_samples(1, "val") and control.has_samples(1, "benchmark")


def _bench_s2c():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_stage2_controls.py"
    spec = importlib.util.spec_from_file_location("bench_s2c", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_stage2_steps_reach_stage2_and_the_control_not_stage1(tmp_path):
    """bench_stage2_controls.py --stage2-steps (issue 22: Stage-I to convergence, then a shorter Stage-II): the
    knob sets Stage-II's steps and the control's extra steps, and leaves Stage-I's as `train.steps` says."""
    bench = _bench_s2c()
    layout = make_plane_layout(tmp_path / "ds", scenes=3, frames=2)
    result = bench.run_seed(
        tmp_path / "out", 0, "tiny", False, None, False, [f"data.root={layout.root}", *MICRO],
        skip=("stage2_norew", "stage2_other"), stage2_steps=3,
    )  # fmt: skip
    base = RunFolder(tmp_path / "out" / "seed0")
    assert Config.from_yaml(base.stage_config_path(1)).train.steps == 2
    assert Config.from_yaml(base.stage_config_path(2)).train.steps == 3
    control = base.control("stage1_long")
    assert Config.from_yaml(control.stage_config_path(1)).train.steps == 2 + 3
    assert (result["steps"], result["stage2_steps"]) == (2, 3)
    assert set(result["rows"]) == {"cad", "stage1", "stage1_long", "stage2"}


def test_a_campaign_stopped_before_its_control_keeps_the_rows_it_measured(tmp_path, monkeypatch, capsys):
    """bench_stage2_controls.py on the GPU runs as calls with a time limit (issue 22): a call stopped inside the
    control (2026-12-06: three calls, 1 763 s of device time, the control at 1 050 / 900 / 1 010 of 1 350 steps)
    must leave the rows already sampled (Stage-I, Stage-II) on disk, and `--merge` must table them with the
    control marked missing. Before: rows were scored only after every control, so that run left no number."""
    from sim2real_kit import stage2 as s2

    bench = _bench_s2c()
    layout = make_plane_layout(tmp_path / "ds", scenes=3, frames=2)

    def stopped(*a, **k):
        raise KeyboardInterrupt("the call's time limit")

    monkeypatch.setattr(s2, "stage1_control", stopped)
    with pytest.raises(KeyboardInterrupt):
        bench.run_seed(
            tmp_path / "out", 0, "tiny", False, None, False, [f"data.root={layout.root}", *MICRO],
            skip=("stage2_norew", "stage2_other"),
        )  # fmt: skip
    partial = bench.read_partial(tmp_path / "out" / "seed0")
    assert set(partial["rows"]) == {"cad", "stage1", "stage2"}
    assert partial["rows"]["stage1"]["w1_mm"] > 0 and partial["rows"]["stage2"]["w1_mm"] > 0
    log = capsys.readouterr().err
    assert "seed 0: Stage-I trained" in log and "seed 0: Stage-II trained" in log  # a line per phase
    assert bench.main(["--out", str(tmp_path / "merged"), "--merge", str(tmp_path / "out")]) == 0
    table = (tmp_path / "merged" / "results.md").read_text()
    assert "Stage-II (condition" in table and "partial" in table
    assert "control) | not measured" in table
    assert "Stage-II − control" not in table  # no seed has both
    full = bench.summarize([{**partial, "rows": {**partial["rows"], "stage1_long": partial["rows"]["stage1"]}}])[0]
    assert full["stage2_vs_control"]["w1_mm"][0] == pytest.approx(
        partial["rows"]["stage2"]["w1_mm"] - partial["rows"]["stage1"]["w1_mm"]
    )


def test_the_control_started_beside_stage2_is_the_control(run, monkeypatch):
    """`stage2.start_stage1_control` (notebook 04 trains Stage-II meanwhile): the control of `stage1_control`,
    trained in a spawned process when there are 2 cores, with its steps and samples."""
    from sim2real_kit import jobs
    from sim2real_kit.jobs import usable_cores

    monkeypatch.setattr(jobs, "busy_cores", lambda *a, **k: 0.0)  # as on a quiet machine
    folder, cfg = run
    stage1.train_stage1(folder, cfg, progress=False)
    job = stage2.start_stage1_control(folder, cfg)
    assert job.background == (usable_cores() >= 2)
    control = job.result()
    assert control.root == folder.control("stage1_long").root
    assert Config.from_yaml(control.stage_config_path(1)).train.steps == 2 * cfg.train.steps
    assert control.has_samples(1, "val")
    again = stage2.start_stage1_control(folder, cfg, background=False)
    assert not again.background and again.result().root == control.root  # finished: reused here


def test_a_control_stopped_before_its_samples_never_reports_stage1s_samples(run, monkeypatch):
    """A control stopped after its training but before its own samples (a device call's time limit; issue 22's
    GPU run) must sample when called again. Before: the copy of Stage-I's stage1/ brought Stage-I's samples
    along, the stage config already said the control's steps, so the second call took Stage-I's samples as the
    control's and the control row equalled Stage-I to the last digit."""
    import numpy as np

    folder, cfg = run
    stage1.train_stage1(folder, cfg, progress=False)
    stage2.sample_split(folder, cfg, "val", stage=1, progress=False)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("the device call's time limit")

    monkeypatch.setattr(stage2, "sample_split", killed)
    with pytest.raises(KeyboardInterrupt):
        stage2.stage1_control(folder, cfg, progress=False)
    monkeypatch.undo()
    control = folder.control("stage1_long")
    assert not control.has_samples(1, "val")  # what the control holds is not Stage-I's samples under its name
    calls = []
    monkeypatch.setattr(stage2, "sample_split", lambda *a, **k: calls.append(a[2]) or sample_split(*a, **k))
    control = stage2.stage1_control(folder, cfg, progress=False)
    assert calls == ["val"] and control.has_samples(1, "val")
    layout = folder.layout(cfg)
    ours, theirs = control.load_samples(1, "val", layout), folder.load_samples(1, "val", layout)
    assert not np.array_equal(ours.sims[1], theirs.sims[1])  # the control's own model sampled them


def test_a_splits_samples_do_not_depend_on_the_sampling_batch(run):
    """`sampling.batch_size` is a speed / memory knob, not a draw: one noise stream per split, drawn frame after
    frame, so the maps agree whatever the batch (issue 22's GPU script samples at 56 where it sampled at 112,
    because 112 ran out of memory on an H100 beside two trainings; its rows stay comparable)."""
    import numpy as np

    folder, cfg = run
    stage1.train_stage1(folder, cfg, progress=False)
    maps = []
    for bs in (1, 2):
        cfg.sampling.batch_size = bs
        stage2.sample_split(folder, cfg, "val", stage=1, progress=False)
        maps.append(folder.load_samples(1, "val", folder.layout(cfg)).sims[1])
    assert len(maps[0]) == 2  # one batch of two frames vs two batches of one
    np.testing.assert_allclose(maps[0], maps[1], atol=2e-3)  # stored in 1 mm PNG steps: at most one step apart
    assert np.mean(maps[0] != maps[1]) < 0.01


def test_sampling_stopped_midway_leaves_no_finished_mark(run, monkeypatch):
    """Sampling a split again (a retrained model) and being stopped after the first batch must not leave the
    previous sampling's `samples.json`: a folder of half-new, half-old maps is not "sampled" (before: it was,
    and every reader took the mix as the new model's)."""
    folder, cfg = run
    cfg.sampling.batch_size = 1
    stage1.train_stage1(folder, cfg, progress=False)
    stage2.sample_split(folder, cfg, "val", stage=1, progress=False)
    assert folder.has_samples(1, "val")
    real_write, writes = folder.write_samples, []

    def stopped_after_one_batch(*args, **kwargs):
        if writes:
            raise KeyboardInterrupt("stopped")
        writes.append(1)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(folder, "write_samples", stopped_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        stage2.sample_split(folder, cfg, "val", stage=1, progress=False)
    assert writes == [1] and not folder.has_samples(1, "val")


def test_samples_of_a_retrained_stage_are_stale_until_sampled_again(run):
    """Samples stand for the pipeline that drew them: Stage-I trained on after its samples (sim2real train
    with more steps) makes them stale, so Stage-II's training and the benchmark sample anew instead of
    reading the old model's maps; a copy of the run keeps them valid, also one that does not keep file times
    (`cp -r`, `scp -r` from a GPU machine)."""
    import shutil

    from sim2real_kit.errors import MissingArtifactError

    folder, cfg = run
    stage1.train_stage1(folder, cfg, progress=False)
    stage2.sample_split(folder, cfg, "val", stage=1, progress=False)
    assert folder.has_samples(1, "val")
    copy = RunFolder(folder.root.parent / "copy")
    shutil.copytree(folder.root, copy.root, symlinks=True, copy_function=shutil.copy)  # new mtimes
    assert copy.has_samples(1, "val")
    cfg.train.steps = 2 * cfg.train.steps
    stage1.train_stage1(folder, cfg, progress=False)  # resumes and saves a new pipeline
    assert not folder.has_samples(1, "val")
    with pytest.raises(MissingArtifactError, match="older than"):
        folder.load_samples(1, "val", folder.layout(cfg))
    stage2.sample_split(folder, cfg, "val", stage=1, progress=False)
    assert folder.has_samples(1, "val") and copy.has_samples(1, "val")


def test_a_broken_samples_mark_names_its_file(run):
    """samples.json is written atomically, so only a hand edit or a bad copy breaks it: the error names the file
    and says how to recover, not a bare JSONDecodeError."""
    from sim2real_kit.errors import MissingArtifactError

    folder, cfg = run
    stage1.train_stage1(folder, cfg, progress=False)
    stage2.sample_split(folder, cfg, "val", stage=1, progress=False)
    meta = folder.samples_dir(1, "val") / "samples.json"
    meta.write_text('{"frames": 4, "pipe')
    with pytest.raises(MissingArtifactError, match=r"samples\.json.*not valid JSON.*sample the split again"):
        folder.has_samples(1, "val")
    meta.write_text("[4]")  # JSON, but not the mark's object
    with pytest.raises(MissingArtifactError, match=r"samples\.json: not a JSON object \(list\)"):
        folder.has_samples(1, "val")
    stage2.sample_split(folder, cfg, "val", stage=1, progress=False)  # sampling again repairs it
    assert folder.has_samples(1, "val")
