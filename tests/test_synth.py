"""Dataset synthesis: layout validity, determinism, resume, refusal to mix, spatially variant residuals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from sim2real_kit.data.dataset import PairedDepthDataset
from sim2real_kit.data.layout import DepthLayout, FrameRef, validate
from sim2real_kit.data.scenes import SceneConfig
from sim2real_kit.data.sensor import SensorConfig, SensorError, depth_edges, edge_distance
from sim2real_kit.data.synth import frame_ids, reproduce_frame, scene_id, split_scenes, synth_camera, synthesize
from sim2real_kit.errors import ConfigError, LayoutError

SMALL = dict(width=64, height=48, progress=False)


def _files(root):
    return {p.relative_to(root): p for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ds"
    synthesize(root, scenes=3, frames=3, seed=5, **SMALL)
    return root


def test_synthesized_dataset_validates_and_loads(small_ds):
    assert validate(small_ds) == []
    lay = DepthLayout(small_ds)
    assert lay.camera == synth_camera(64, 48) and lay.depth_unit_m == 0.001
    train, val = lay.frames("train"), lay.frames("val")
    assert len(train) + len(val) + len(lay.frames("benchmark")) == 9 and len(val) == 3  # by scene: one each
    assert not {r.scene for r in train} & {r.scene for r in val}
    frame = lay.read_frame(val[0], rgb=True, instance=True)
    assert frame["cad"].shape == (48, 64) and frame["rgb"].shape == (48, 64, 3)
    assert (frame["cad"] > 0).mean() > 0.95  # CAD covers the room too (cad_includes_room)
    assert frame["instance"].max() >= 100 and ((frame["instance"] > 0) & (frame["instance"] < 100)).any()
    ds = PairedDepthDataset(small_ds, "train", size=32)
    item = ds[0]
    assert item["cad"].shape == (1, 32, 32) and float(item["mask"].mean()) > 0.5
    # meshes, scene tables and every parameter recorded
    for s in ("s0000", "s0001", "s0002"):
        assert lay.mesh_path(s, "cad").stat().st_size > 0 and lay.mesh_path(s, "real").stat().st_size > 0
        info = json.loads(lay.scene_info_path(s).read_text())
        assert info["frames"] == ["000", "001", "002"]
        assert {v["category"] for v in info["instances"].values()} >= {"floor", "wall"}
    meta = yaml.safe_load((small_ds / "dataset.yaml").read_text())
    assert meta["seed"] == 5 and meta["source"] == "procedural"
    assert meta["generator"]["cad_includes_room"] is True and "real_offset_m" in meta["generator"]["shapes"]
    assert meta["sensor"]["noise_sigma0_m"] == SensorConfig().noise_sigma0_m and meta["sensor"]["noise"] is True


def test_same_seed_gives_identical_bytes(small_ds, tmp_path):
    again = tmp_path / "again"
    synthesize(again, scenes=3, frames=3, seed=5, **SMALL)
    a, b = _files(small_ds), _files(again)
    assert a.keys() == b.keys()
    for rel in a:
        assert a[rel].read_bytes() == b[rel].read_bytes(), rel
    other = tmp_path / "other"
    synthesize(other, scenes=2, frames=3, seed=6, **SMALL)
    rel = next(k for k in a if k.name == "000_scan.png")
    assert (other / rel).read_bytes() != a[rel].read_bytes()


def test_resume_after_interruption_matches_uninterrupted_run(small_ds, tmp_path):
    root = tmp_path / "ds"

    def stop_after_first(sid):
        if sid == "s0000":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthesize(root, scenes=3, frames=3, seed=5, on_scene_done=stop_after_first, **SMALL)
    lay = DepthLayout(root)
    assert lay.scene_done("s0000") and not lay.scene_done("s0001")
    assert validate(root)  # no lists yet: not a finished dataset
    first = {p: p.stat().st_mtime_ns for p in lay.scene_dir("s0000").iterdir()}
    # a second interrupted run asking for fewer scenes, then the full run
    synthesize(root, scenes=2, frames=3, seed=5, **SMALL)
    synthesize(root, scenes=3, frames=3, seed=5, **SMALL)
    assert {p: p.stat().st_mtime_ns for p in lay.scene_dir("s0000").iterdir()} == first  # not rewritten
    a, b = _files(small_ds), _files(root)
    assert a.keys() == b.keys()
    for rel in a:
        assert a[rel].read_bytes() == b[rel].read_bytes(), rel
    assert validate(root) == []


def test_refuses_to_mix_with_a_different_dataset(small_ds):
    before = _files(small_ds)
    with pytest.raises(LayoutError, match="dataset.yaml.*different dataset.*seed"):
        synthesize(small_ds, scenes=3, frames=3, seed=6, **SMALL)
    with pytest.raises(LayoutError, match="differs in: .*sensor"):
        synthesize(small_ds, scenes=3, frames=3, seed=5, sensor=SensorConfig(noise_sigma2=0.002), **SMALL)
    assert _files(small_ds).keys() == before.keys()


@pytest.mark.parametrize(
    "kw, err, key",
    [
        ({"scenes": 0}, ConfigError, "scenes"),
        ({"scenes": -2}, ConfigError, "scenes"),
        ({"frames": 0}, ConfigError, "frames"),
        ({"width": 0}, ConfigError, "width"),
        ({"height": -48}, ConfigError, "height"),
        ({"seed": -1}, ConfigError, "seed"),
        ({"val_fraction": 1.0}, ConfigError, "val_fraction"),
        ({"generator": SceneConfig(category_weights={"stool": 1.0})}, ConfigError, "stool"),
        ({"generator": SceneConfig(n_objects=(0, 2))}, ConfigError, "n_objects"),
        ({"sensor": {"speckle": False}}, SensorError, "speckle"),
        ({"generator": {"room_size": 3}}, ConfigError, "room_size"),
        ({"world": "mars"}, ConfigError, "world"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(tmp_path, kw, err, key):
    root = tmp_path / "out"
    args = dict(scenes=2, frames=2, seed=0, **SMALL)
    with pytest.raises(err, match=key):
        args.update(kw)
        synthesize(root, **args)
    assert not root.exists()


def test_split_and_ids_are_stable():
    train, val = split_scenes(8, seed=3, val_fraction=0.25)
    assert len(val) == 2 and len(train) == 6 and not set(train) & set(val)
    assert split_scenes(8, 3, 0.25) == (train, val)
    assert frame_ids(3) == ["000", "001", "002"] and frame_ids(1200)[-1] == "1199"
    assert scene_id(12) == "s0012" and FrameRef("s0012", "003").scene == "s0012"


def test_residual_is_spatially_variant(tmp_path):
    """|real - CAD| and holes concentrate at CAD depth edges (misplacement, mixing, dropout)."""
    root = tmp_path / "full"
    synthesize(root, scenes=2, frames=4, seed=1, progress=False)
    lay = DepthLayout(root)
    res_edge, res_flat, hole_edge, hole_flat = [], [], [], []
    for ref in lay.frames("train") + lay.frames("val"):
        f = lay.read_frame(ref)
        cad, real = f["cad"], f["real"]
        dist = edge_distance(depth_edges(cad))
        edge, flat = (dist <= 2) & (cad > 0), (dist >= 8) & (cad > 0)
        both = (cad > 0) & (real > 0)
        res = np.abs(real - cad)
        res_edge.append(res[edge & both])
        res_flat.append(res[flat & both])
        hole_edge.append((real[edge] == 0).mean())
        hole_flat.append((real[flat] == 0).mean())
    med_edge = np.median(np.concatenate(res_edge))
    med_flat = np.median(np.concatenate(res_flat))
    assert med_edge > 2 * med_flat, (med_edge, med_flat)
    assert np.mean(hole_edge) > 3 * np.mean(hole_flat), (np.mean(hole_edge), np.mean(hole_flat))


def test_parallel_workers_write_the_same_files(small_ds, tmp_path):
    root = tmp_path / "par"
    synthesize(root, scenes=3, frames=3, seed=5, workers=2, **SMALL)
    a, b = _files(small_ds), _files(root)
    assert a.keys() == b.keys()
    for rel in a:
        assert a[rel].read_bytes() == b[rel].read_bytes(), rel


def test_reproduce_frame_regenerates_the_sensor_ground_truth(small_ds):
    lay = DepthLayout(small_ds)
    ref = lay.frames("val")[1]
    truth = reproduce_frame(small_ds, ref)
    frame = lay.read_frame(ref, instance=True)
    np.testing.assert_allclose(truth.capture.depth, frame["real"], atol=6e-4)  # up to the PNG's 1 mm
    np.testing.assert_allclose(truth.cad.depth, frame["cad"], atol=6e-4)
    np.testing.assert_array_equal(truth.real.instance, frame["instance"])
    np.testing.assert_allclose(truth.scene.poses[truth.frame], frame["pose"], atol=1e-8)
    holes = frame["real"] == 0
    dropped = np.zeros_like(holes)
    for name in ("edge_dropout", "grazing_dropout", "material_holes", "range_limit"):
        dropped |= truth.capture.effects[name]
    assert (holes == (dropped | (truth.real.depth == 0))).all()
    with pytest.raises(ConfigError, match="frame"):
        reproduce_frame(small_ds, "s0000/007")


# ---------------------------------------------------------------------- the sensor-only world
DISCRETE = ("thin_structures", "flying_pixels", "edge_dropout", "grazing_dropout", "material_holes", "range_limit")


def test_default_world_is_unchanged_by_the_world_option(small_ds, tmp_path):
    """world="procedural" is the default: the same bytes, and dataset.yaml has no `world` key (as before)."""
    root = tmp_path / "explicit"
    synthesize(root, scenes=3, frames=3, seed=5, world="procedural", **SMALL)
    a, b = _files(small_ds), _files(root)
    assert a.keys() == b.keys()
    for rel in a:
        assert a[rel].read_bytes() == b[rel].read_bytes(), rel
    assert "world" not in yaml.safe_load((root / "dataset.yaml").read_text())
    assert "world" not in json.loads(DepthLayout(root).scene_info_path("s0000").read_text())


def test_sensor_only_world_without_sensor_effects_is_the_cad(tmp_path):
    """Real geometry = CAD geometry: with every sensor component off, the scan equals the CAD depth on
    every pixel (holes included)."""
    root = tmp_path / "so"
    synthesize(root, scenes=2, frames=2, seed=0, world="sensor_only", sensor=SensorConfig().only(), **SMALL)
    lay = DepthLayout(root)
    assert lay.meta["world"] == "sensor_only"
    assert json.loads(lay.scene_info_path("s0000").read_text())["world"] == "sensor_only"
    for ref in lay.frames("train") + lay.frames("val"):
        f = lay.read_frame(ref)
        assert (f["cad"] > 0).mean() > 0.95
        np.testing.assert_array_equal(f["real"], f["cad"])


def test_sensor_only_world_residual_is_the_sensor_effects(small_ds, tmp_path):
    """With the discrete sensor components only, real == CAD outside their ground-truth effect masks
    (exactly: both go through the same 1 mm PNG) and the hole effects are holes; with the default
    sensor, the scan is `SensorModel.capture` of the CAD geometry's rendering, and the CAD depth and poses
    are those of the procedural world of the same seed."""
    from sim2real_kit.data.scenes import make_scene
    from sim2real_kit.data.sensor import SensorModel
    from sim2real_kit.data.synth import _frame_rng, scene_seed

    root = tmp_path / "discrete"
    synthesize(root, scenes=2, frames=2, seed=0, world="sensor_only", sensor=SensorConfig().only(*DISCRETE), **SMALL)
    lay = DepthLayout(root)
    touched = 0.0
    for ref in lay.frames("train") + lay.frames("val"):
        f = lay.read_frame(ref)
        effects = reproduce_frame(root, ref).capture.effects
        any_effect = np.zeros_like(f["cad"], dtype=bool)
        for name in DISCRETE:
            any_effect |= effects[name]
        np.testing.assert_array_equal(f["real"][~any_effect], f["cad"][~any_effect])
        for name in ("edge_dropout", "grazing_dropout", "material_holes", "range_limit"):
            assert (f["real"][effects[name]] == 0).all(), name
        touched += any_effect.mean()
    assert touched > 0  # the effects did act

    full = tmp_path / "full"
    synthesize(full, scenes=3, frames=3, seed=5, world="sensor_only", **SMALL)
    lay, proc = DepthLayout(full), DepthLayout(small_ds)
    sensor = SensorModel(SensorConfig())
    for ref in lay.frames("val") + lay.frames("train")[:2]:
        f, g = lay.read_frame(ref), proc.read_frame(ref)
        np.testing.assert_array_equal(f["cad"], g["cad"])
        np.testing.assert_array_equal(f["pose"], g["pose"])
        index, frame = int(ref.scene[1:]), int(ref.frame)
        scene = make_scene(scene_seed(5, index), 3, lay.camera, SceneConfig())  # the procedural scene's CAD
        capture = sensor.capture(scene.render(frame, "cad", full=True), lay.camera, _frame_rng(5, index, frame))
        np.testing.assert_allclose(f["real"], capture.depth, atol=6e-4)  # up to the PNG's 1 mm
        assert not np.array_equal(f["real"], g["real"])  # the procedural world's real geometry differs


def test_sensor_only_world_is_not_mixed_with_the_procedural_one(small_ds):
    with pytest.raises(LayoutError, match="differs in: .*world"):
        synthesize(small_ds, scenes=3, frames=3, seed=5, world="sensor_only", **SMALL)


def test_config_key_data_world_is_validated():
    from sim2real_kit.config import load_config

    assert load_config("tiny").data.world == "procedural"
    assert load_config("tiny", overrides=["data.world=sensor_only"]).data.world == "sensor_only"
    with pytest.raises(ConfigError, match="data.world.*allowed: procedural, sensor_only"):
        load_config("tiny", overrides=["data.world=mars"])


# ---------------------------------------------------------------------- the benchmark split
def test_three_splits_are_disjoint_and_cover_every_scene():
    from sim2real_kit.data.synth import scene_splits

    for n, seed in ((3, 0), (6, 1), (16, 0), (40, 7)):
        splits = scene_splits(n, seed, 0.25, 0.25)
        assert set(splits) == {"train", "val", "benchmark"}
        scenes = [s for v in splits.values() for s in v]
        assert sorted(scenes) == [scene_id(i) for i in range(n)] and len(set(scenes)) == n  # disjoint, complete
        assert all(splits.values())
        # val is the two-split val: old datasets keep their val scenes; benchmark comes out of train
        assert splits["val"] == split_scenes(n, seed, 0.25)[1]
        assert set(splits["benchmark"]) <= set(split_scenes(n, seed, 0.25)[0])
    assert scene_splits(2, 0, 0.25, 0.25)["benchmark"] == []  # no room: train keeps a scene
    assert scene_splits(8, 3, 0.25, 0.0)["benchmark"] == []


def test_synthesized_dataset_has_a_benchmark_split(small_ds, tmp_path):
    lay = DepthLayout(small_ds)  # 3 scenes: one each
    lists = {split: lay.scenes(split) for split in ("train", "val", "benchmark")}
    assert sorted(s for v in lists.values() for s in v) == ["s0000", "s0001", "s0002"]
    assert all(len(v) == 1 for v in lists.values()) and validate(small_ds) == []
    assert len(lay.frames("benchmark")) == 3 and len(PairedDepthDataset(small_ds, "benchmark", size=16)) == 3
    # benchmark_fraction=0: the old two lists (a stale benchmark.lst of an earlier run is removed)
    root = tmp_path / "two"
    synthesize(root, scenes=3, frames=1, seed=5, benchmark_fraction=0.0, **SMALL)
    assert not DepthLayout(root).has_split("benchmark") and validate(root) == []
    with pytest.warns(UserWarning, match="too few for a benchmark split"):
        synthesize(tmp_path / "two_scenes", scenes=2, frames=1, seed=5, **SMALL)
    with pytest.raises(ConfigError, match="benchmark_fraction"):
        synthesize(tmp_path / "bad", scenes=3, frames=1, benchmark_fraction=0.8, **SMALL)
    assert not (tmp_path / "bad").exists()


def test_cad_instance_ids_are_the_cad_rendering(small_ds):
    """The CAD side's object masks: the CAD mesh ray-cast at the frame's pose, as the CAD depth was."""
    lay = DepthLayout(small_ds)
    ref = lay.frames("benchmark")[0]
    truth = reproduce_frame(small_ds, ref)
    assert lay.has_cad_instance(ref)
    np.testing.assert_array_equal(lay.cad_instance(ref), truth.cad.instance)
    assert (lay.cad_instance(ref) != lay.read_frame(ref, instance=True)["instance"]).any()  # not the real ids
