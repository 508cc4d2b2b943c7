"""No simulator trains on the benchmark split (paper Sec. 4.2, "Why not perform simulation on LASA synthetic
data": a simulator must not be evaluated on frames it trained on).

On a tiny layout with three splits, every trainer of the flow — Stage-I, the discriminator (flagging), Stage-II,
the pix2pix / CycleGAN baselines — is run for real (a few steps) while every frame the layout hands out is
recorded: none may belong to a benchmark scene, and the datasets they are built from must hold the train
split's frames and nothing else. The benchmark's downstream task must train on the benchmark split only (and
test on val). These tests fail as soon as a benchmark-split scene reaches any simulator's training data."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from conftest import TINY_MODEL, make_plane_layout

from sim2real_kit import flagging, stage1, stage2
from sim2real_kit.camera import Camera
from sim2real_kit.config import load_config
from sim2real_kit.data.dataset import PairedDepthDataset
from sim2real_kit.data.layout import DepthLayout, validate
from sim2real_kit.depth import write_depth_png
from sim2real_kit.errors import MissingArtifactError
from sim2real_kit.io import atomic_write_json
from sim2real_kit.run import SAMPLES_CAMERA, RunFolder, resolve_config

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 16
FAST = [
    f"data.size={SIZE}", *TINY_MODEL, "train.steps=2", "train.batch_size=2", "train.ckpt_every=2", "train.val_frames=2",
    "sampling.steps=2", "disc.steps=2", "disc.batch_size=8", "disc.hidden=[8,16]", "disc.head_hidden=[8]",
    "baselines.steps=1", "baselines.ngf=4", "baselines.ndf=4", "baselines.levels=2",
]  # fmt: skip


def three_split_layout(root) -> DepthLayout:
    """Plane layout of 5 scenes: train s00, s01; benchmark s02, s03; val s04."""
    lay = make_plane_layout(root, scenes=5)
    train = lay.frames("train")
    lay.write_split("train", [r for r in train if r.scene in ("s00", "s01")])
    lay.write_split("benchmark", [r for r in train if r.scene in ("s02", "s03")])
    assert validate(lay.root) == []
    return lay


@pytest.fixture
def leak_run(tmp_path):
    lay = three_split_layout(tmp_path / "ds")
    cfg = load_config("tiny", overrides=[f"data.root={lay.root}", *FAST])
    RunFolder(tmp_path / "run").save_config(cfg)
    return tmp_path / "run", lay


BENCH = {"s02", "s03"}
TRAIN = {"s00", "s01"}


def spy(monkeypatch, module, name: str, arg: int) -> list:
    """Patch `module.name` to record its positional argument `arg` at every call, then call through; returns
    the list the calls fill (the dataset a trainer was given, the samples a patch set was cut from)."""
    calls = []
    original = getattr(module, name)

    def wrapper(*a, **kw):
        calls.append(a[arg])
        return original(*a, **kw)

    monkeypatch.setattr(module, name, wrapper)
    return calls


@contextlib.contextmanager
def recording():
    """Record every frame any `DepthLayout` hands out (depth, frame, pose reads) and every split list read."""
    monkeypatch = pytest.MonkeyPatch()  # its own: undone on exit, the test's other patches stay
    seen = {"refs": [], "splits": []}
    for name in ("read_depth", "read_pose", "read_frame", "cad_instance"):
        original = getattr(DepthLayout, name)

        def wrapper(self, ref, *a, _original=original, **kw):
            seen["refs"].append(ref)
            return _original(self, ref, *a, **kw)

        monkeypatch.setattr(DepthLayout, name, wrapper)
    original_frames = DepthLayout.frames

    def frames(self, split):
        seen["splits"].append(split)
        return original_frames(self, split)

    monkeypatch.setattr(DepthLayout, "frames", frames)
    try:
        yield seen
    finally:
        monkeypatch.undo()


def benchmark_scenes_in(refs) -> set[str]:
    return {r.scene for r in refs} & BENCH


def write_samples(run_dir, cfg, layout, split, stage=1, offset=0.0):
    """What `simulate.sample_split` writes for one split: sim_k = real + offset."""
    ds = PairedDepthDataset.from_config(cfg, layout, split, train=False)
    run = RunFolder(run_dir)
    out = run.samples_dir(stage, split)
    Camera(*[float(v) for v in ds[0]["camera"]], SIZE, SIZE).save_json(out / SAMPLES_CAMERA)
    for item in ds:
        base = out / item["scene"] / item["frame"]
        real = item["real"][0].numpy()
        write_depth_png(f"{base}_gt.png", item["cad"][0].numpy())
        write_depth_png(f"{base}_scan.png", real)
        for k in range(1, stage + 1):
            write_depth_png(f"{base}_sim{k}.png", np.where(real > 0, real + offset, 0))
    atomic_write_json(out / "samples.json", {"split": split, "stage": stage, "frames": len(ds), "size": SIZE})


# ---------------------------------------------------------------------- the splits
def test_paired_dataset_of_the_train_split_holds_no_benchmark_scene(tmp_path, monkeypatch):
    lay = three_split_layout(tmp_path / "ds")
    with recording() as seen:
        ds = PairedDepthDataset(lay, "train", size=SIZE)
        for i in range(len(ds)):
            ds[i]
    assert {r.scene for r in ds.refs} == TRAIN and not benchmark_scenes_in(seen["refs"])
    assert seen["splits"] == ["train"]
    assert {r.scene for r in PairedDepthDataset(lay, "benchmark", size=SIZE).refs} == BENCH


def test_synthesized_splits_are_disjoint_and_cover_every_scene(tmp_path):
    from sim2real_kit.data.synth import scene_id, synthesize

    lay = synthesize(tmp_path / "ds", scenes=5, frames=1, width=32, height=24, progress=False)
    lists = {split: lay.scenes(split) for split in ("train", "val", "benchmark")}
    assert all(lists.values())
    scenes = [s for v in lists.values() for s in v]
    assert sorted(scenes) == [scene_id(i) for i in range(5)] and len(set(scenes)) == len(scenes)
    assert validate(lay.root) == []


# ---------------------------------------------------------------------- every trainer
def test_stage1_trains_on_the_train_split_only(leak_run, monkeypatch):
    run_dir, lay = leak_run
    cfg = resolve_config(run_dir, save=False)
    datasets = spy(monkeypatch, stage1, "train_denoiser", arg=1)
    with recording() as seen:
        stage1.train_stage1(run_dir, cfg, progress=False)  # 2 real steps, target scale, val monitoring
    assert (RunFolder(run_dir).pipeline_dir(1) / "model_index.json").is_file()
    assert len(datasets) == 1 and {r.scene for r in datasets[0].refs} == TRAIN
    assert seen["refs"] and not benchmark_scenes_in(seen["refs"]), "Stage-I read a benchmark frame"
    assert "benchmark" not in seen["splits"]


@pytest.mark.parametrize("kind", ["pix2pix", "cyclegan"])
def test_gan_baselines_train_on_the_train_split_only(leak_run, monkeypatch, kind):
    from sim2real_kit.benchmark import make_simulator
    from sim2real_kit.models import baselines

    run_dir, lay = leak_run
    cfg = resolve_config(run_dir, save=False)
    datasets = spy(monkeypatch, baselines, "train_baseline", arg=1)
    with recording() as seen:
        make_simulator(kind, run_dir, cfg, train_baselines=True, baseline_steps=1)
    assert (RunFolder(run_dir).baseline_dir(kind) / "baseline.json").is_file()
    assert len(datasets) == 1 and {r.scene for r in datasets[0].refs} == TRAIN
    assert seen["refs"] and not benchmark_scenes_in(seen["refs"]), f"{kind} read a benchmark frame"


def test_discriminator_and_stage2_train_on_train_samples_only(leak_run, monkeypatch):
    """Stage-I samples exist for every split, benchmark included (e.g. for the downstream task): the
    discriminator's patch sets, the flags Stage-II reads and Stage-II's dataset use the train split's only."""
    run_dir, lay = leak_run
    cfg = resolve_config(run_dir, save=False)
    stage1.train_stage1(run_dir, cfg, progress=False)
    for split, offset in (("train", 0.002), ("val", 0.002), ("benchmark", 0.3)):
        write_samples(run_dir, cfg, lay, split, offset=offset)
    patch_sets_of = spy(monkeypatch, flagging, "patch_sets", arg=0)
    with recording() as seen:
        flagging.train_and_flag(run_dir, cfg, stage=1, progress=False)
    assert (
        len(patch_sets_of) == 1 and {r.scene for r in patch_sets_of[0].refs} == TRAIN
    )  # what the discriminator learns
    assert not benchmark_scenes_in(seen["refs"]), "flagging read a benchmark frame"
    run = RunFolder(run_dir)
    assert not run.flags_path(1, "benchmark").exists()

    datasets = spy(monkeypatch, stage2, "train_denoiser", arg=1)
    with recording() as seen:
        stage2.train_stage_n(run_dir, cfg, 2, progress=False)  # 2 real steps
    (ds,) = datasets
    assert {r.scene for r in ds.base.refs} == TRAIN
    assert {k.split("/")[0] for k in ds.previous} == TRAIN  # Stage-I outputs of the train split only
    assert {k.split("/")[0] for k in ds.flags.frame_ids} == TRAIN
    assert not benchmark_scenes_in(seen["refs"]), "Stage-II read a benchmark frame"
    # what stage_n_dataset returns, item by item
    with recording() as seen:
        ds = stage2.stage_n_dataset(run, cfg, lay, 2)
        for i in range(len(ds)):
            assert ds[i]["scene"] in TRAIN
    assert not benchmark_scenes_in(seen["refs"])


# ---------------------------------------------------------------------- the downstream task
@pytest.fixture(scope="module")
def synth_layout(tmp_path_factory):
    from sim2real_kit.data.synth import synthesize

    root = tmp_path_factory.mktemp("leaks") / "ds"
    return synthesize(root, scenes=4, frames=2, width=96, height=72, progress=False)


def test_downstream_trains_on_the_benchmark_split_and_tests_on_val(synth_layout, tmp_path, monkeypatch):
    from sim2real_kit import downstream
    from sim2real_kit.benchmark import Simulator, evaluate_run

    lay = synth_layout
    bench, val, train = (set(lay.scenes(s)) for s in ("benchmark", "val", "train"))
    assert bench and val and train
    cfg = load_config("tiny", overrides=["data.size=32", f"data.root={lay.root}", "benchmark.c2st_seeds=0"])
    run_dir = tmp_path / "run"
    RunFolder(run_dir).save_config(cfg)
    for split in ("val", "train", "benchmark"):
        write_samples_at(run_dir, cfg, lay, split)
    seen = {}

    def fake_run_downstream(train_sets, test, seeds, few_shot_k=0, *, real_train_objects=None, **kw):
        seen.update(train=dict(train_sets), test=test, real=real_train_objects)
        return [{"simulator": n, "task": "classification", "setting": "zero-shot", "seed": 0, "accuracy": 0.5}
                for n in [*train_sets, "real"]]  # fmt: skip

    given = []

    def blur_layout(layout, refs, size, crop, seed):  # a from_layout simulator: records the frames it is given
        given.extend(refs)
        from sim2real_kit.benchmark.simulators import _layout_cad

        return _layout_cad(layout, refs, size, crop)[0]

    custom = Simulator("custom", run=lambda s, seed: s.cad.copy(), stochastic=False, from_layout=blur_layout)
    monkeypatch.setattr(downstream, "run_downstream", fake_run_downstream)
    res = evaluate_run(
        run_dir, cfg, fuse=False, downstream=True, seeds=1, progress=False,
        simulators=["cad", "random", "physical", "stage1", custom, "real"],
    )  # fmt: skip
    assert sorted(seen["train"]) == ["cad", "custom", "physical", "random", "stage1"]
    for name, objects in seen["train"].items():
        assert set(objects.scenes) <= bench, name  # simulated from the benchmark split's CAD only
        assert objects.meta["split"] == "benchmark" and objects.meta["instances"] == "cad", name  # CAD masks
    assert set(seen["real"].scenes) <= bench and seen["real"].meta["instances"] == "real"  # the upper bound
    assert set(seen["test"].scenes) <= val and seen["test"].meta["instances"] == "real"
    assert {r.scene for r in given} == bench
    note = res.summary["downstream"]["note"]
    assert "benchmark split" in note and "tested on real captures of val" in note


def write_samples_at(run_dir, cfg, layout, split):
    """`write_samples` at the config's size (sim1 = real)."""
    ds = PairedDepthDataset.from_config(cfg, layout, split, train=False)
    out = RunFolder(run_dir).samples_dir(1, split)
    Camera(*[float(v) for v in ds[0]["camera"]], cfg.data.size, cfg.data.size).save_json(out / SAMPLES_CAMERA)
    for item in ds:
        base = out / item["scene"] / item["frame"]
        write_depth_png(f"{base}_gt.png", item["cad"][0].numpy())
        write_depth_png(f"{base}_scan.png", item["real"][0].numpy())
        write_depth_png(f"{base}_sim1.png", item["real"][0].numpy())
    atomic_write_json(out / "samples.json", {"split": split, "stage": 1, "frames": len(ds), "size": cfg.data.size})


def test_downstream_without_a_benchmark_split_is_not_run(synth_layout, tmp_path):
    """An old dataset (train / val only): the task says so instead of training on the train split."""
    import shutil

    from sim2real_kit.benchmark import evaluate_run

    root = tmp_path / "old"
    shutil.copytree(synth_layout.root, root)
    DepthLayout(root).remove_split("benchmark")
    assert validate(root) == []
    cfg = load_config("tiny", overrides=["data.size=32", f"data.root={root}"])
    RunFolder(tmp_path / "run").save_config(cfg)
    res = evaluate_run(tmp_path / "run", cfg, fuse=False, downstream=True, seeds=1, simulators=["cad"], progress=False)
    note = res.summary["downstream"]["note"]
    assert note.startswith("not run: the dataset has no benchmark split")
    assert "ds_cls_acc_pct" not in res.row("cad")


def test_pipeline_simulators_run_on_the_benchmark_split(synth_layout, tmp_path):
    """A stage's `from_layout`: its saved benchmark-split samples when there are; never another split's."""
    from sim2real_kit.benchmark import make_simulator

    lay = synth_layout
    cfg = load_config("tiny", overrides=["data.size=32", f"data.root={lay.root}"])
    run_dir = tmp_path / "run"
    RunFolder(run_dir).save_config(cfg)
    write_samples_at(run_dir, cfg, lay, "val")
    write_samples_at(run_dir, cfg, lay, "train")
    sim = make_simulator("stage1", run_dir, cfg)
    refs = lay.frames("benchmark")
    with pytest.raises(
        MissingArtifactError, match="--split benchmark"
    ):  # train samples are never taken for benchmark frames
        sim.from_layout(lay, refs, 32, 0, 0)
    write_samples_at(run_dir, cfg, lay, "benchmark")
    out = make_simulator("stage1", run_dir, cfg).from_layout(lay, refs, 32, 0, 0)
    expected = np.stack([PairedDepthDataset.from_config(cfg, lay, "benchmark", train=False)[i]["real"][0].numpy()
                         for i in range(len(refs))])  # fmt: skip
    np.testing.assert_allclose(out, expected, atol=6e-4)


def test_a_stage_samples_the_benchmark_split_once_per_seed(synth_layout, tmp_path, monkeypatch):
    """A stage without saved benchmark samples runs its pipeline for the two-sample test and again for the
    downstream task on the same frames and seed (2 x 9 s per simulator in the demo): the second call returns the
    first's output; another seed samples anew."""
    import torch

    from sim2real_kit.benchmark import make_simulator
    from sim2real_kit.models.denoiser import ControlledDenoiser
    from sim2real_kit.pipeline import Sim2RealPipeline

    lay = synth_layout
    cfg = load_config("tiny", overrides=["data.size=32", f"data.root={lay.root}", *TINY_MODEL, "sampling.steps=2"])
    run = RunFolder(tmp_path / "run")
    run.save_config(cfg)
    torch.manual_seed(0)
    Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)]).save_pretrained(run.pipeline_dir(1))
    write_samples_at(run.root, cfg, lay, "val")  # the table's frames: saved; the benchmark split's: not
    calls = []
    original = Sim2RealPipeline.__call__

    def counting(self, *a, **kw):
        calls.append(1)
        return original(self, *a, **kw)

    monkeypatch.setattr(Sim2RealPipeline, "__call__", counting)
    sim = make_simulator("stage1", run, cfg)
    refs = lay.frames("benchmark")
    first = sim.from_layout(lay, refs, 32, 0, 0)
    again = sim.from_layout(lay, refs, 32, 0, 0)
    assert len(calls) == 1 and np.array_equal(first, again)
    again[:] = -1.0  # a caller's edit does not reach the cache
    assert np.array_equal(sim.from_layout(lay, refs, 32, 0, 0), first)
    other = sim.from_layout(lay, refs, 32, 0, 1)
    assert len(calls) == 2 and other.shape == first.shape and not np.array_equal(other, first)
