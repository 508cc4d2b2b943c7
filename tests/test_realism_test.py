"""Tests of sim2real_kit.realism_test: the classifier two-sample test with a fresh 3D patch discriminator
(real vs the same law: AUC ~0.5; vs clean CAD: ~1; a case only the CAD relation reveals: >> 0.5; a scene on
both sides refused) and the per-effect reproduction measure (synthetic masks with known answers, and the
sensor-only procedural world)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim2real_kit.camera import Camera
from sim2real_kit.config import load_config
from sim2real_kit.data.layout import FrameRef
from sim2real_kit.errors import DepthFormatError, Sim2RealError
from sim2real_kit.metrics import residual_w1
from sim2real_kit.realism_test import effect_reproduction, sensor_effect_reproduction, two_sample_auc
from sim2real_kit.run import SampleSet

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, SCENES, PER_SCENE, TRAIN_SCENES = 32, 10, 4, 6
STEPS = 100


def _cfg(**disc):
    """The tiny preset with a small, fast discriminator (8 px patches: 16 per 32 px frame)."""
    cfg = load_config("tiny")
    small = dict(patch_size=8, stride=8, num_points=32, steps=STEPS, batch_size=32, hidden=(32, 64, 128))
    cfg.disc = dataclasses.replace(cfg.disc, **{**small, "head_hidden": (32,), "lr": 2e-3, **disc})
    return cfg


@pytest.fixture(scope="module")
def planes():
    """CAD depth [40, 32, 32] of planes 1.5-3 m away, 10 scenes x 4 frames; even frames face the camera
    (tilt 0-10 deg), odd ones are tilted (40-50 deg). Train: scenes 0-5, test: scenes 6-9."""
    g = np.random.default_rng(0)
    cam = Camera(SIZE * 1.1, SIZE * 1.1, SIZE / 2, SIZE / 2, SIZE, SIZE)
    rays = cam.pixel_rays(np.float32)
    F = SCENES * PER_SCENE
    tilt = np.radians(np.where(np.arange(F) % 2 == 0, g.uniform(0, 10, F), g.uniform(40, 50, F)))
    az = g.uniform(0, 2 * np.pi, F)
    normal = np.stack([np.sin(tilt) * np.cos(az), np.sin(tilt) * np.sin(az), -np.cos(tilt)], 1)
    cad = (-g.uniform(1.5, 3.0, F)[:, None, None] / np.einsum("hwc,fc->fhw", rays, normal)).astype(np.float32)
    refs = [FrameRef(f"s{i // PER_SCENE:04d}", f"{i % PER_SCENE:03d}") for i in range(F)]
    train = [i for i, r in enumerate(refs) if int(r.scene[1:]) < TRAIN_SCENES]
    test = [str(r) for r in refs if int(r.scene[1:]) >= TRAIN_SCENES]  # frames may be named too
    rng = np.random.default_rng(1)

    def noisy(sigma) -> np.ndarray:
        """CAD + white Gaussian noise of std `sigma` (metres; scalar or one per frame)."""
        return cad + (rng.standard_normal(cad.shape) * np.reshape(sigma, (-1, 1, 1))).astype(np.float32)

    def samples(real: np.ndarray) -> SampleSet:
        return SampleSet(refs, cad, real, {}, cam, np.tile(np.eye(4), (F, 1, 1)))

    return dict(cad=cad, tilt=tilt, refs=refs, train=train, test=test, noisy=noisy, samples=samples)


def test_real_vs_the_same_law_is_indistinguishable(planes):
    """Real = CAD + 5 mm noise, simulator = CAD + fresh 5 mm noise. Measured (5 data draws x 3 seeds, 100
    steps, ~240 test patches per side): AUC per seed 0.473-0.537, means 0.495-0.509."""
    real, sim = planes["noisy"](0.005), planes["noisy"](0.005)
    out = two_sample_auc(planes["samples"](real), sim, _cfg(), planes["train"], planes["test"])
    assert len(out["auc_per_seed"]) == 3 and out["seeds"] == [0, 1, 2] and out["steps"] == STEPS
    assert abs(out["auc"] - 0.5) < 0.06, out
    assert all(abs(a - 0.5) < 0.1 for a in out["auc_per_seed"]), out
    assert abs(out["balanced_accuracy"] - 0.5) < 0.1 and out["auc_std"] < 0.05, out
    assert out["train_groups"] == [f"s{i:04d}" for i in range(TRAIN_SCENES)]
    assert out["test_groups"] == [f"s{i:04d}" for i in range(TRAIN_SCENES, SCENES)]
    assert out["n_train_frames"] == 24 and out["n_test_frames"] == 16
    assert 200 < out["n_test_real"] <= 16 * 16 and out["n_test_sim"] == out["n_test_real"]


def test_real_vs_clean_cad_is_told_apart(planes):
    """Real = CAD + 5 mm noise, simulator = the clean CAD: AUC 1.000 (measured, 5 data draws)."""
    out = two_sample_auc(
        planes["samples"](planes["noisy"](0.005)),
        planes["cad"].copy(),
        _cfg(),
        planes["train"],
        planes["test"],
        seeds=(0,),
    )
    assert out["auc"] > 0.98 and out["balanced_accuracy"] > 0.9 and out["auc_std"] == 0.0, out


def test_noise_at_the_wrong_slopes_is_told_apart_through_the_cad(planes):
    """Real noise is 12 mm on tilted CAD planes and 3 mm on facing ones; the simulator puts the same two
    magnitudes on the wrong slopes (3 mm tilted, 12 mm facing): the pooled residual distributions match
    (W1 ~0.1 mm), only the relation to the CAD's slope differs. Measured (5 data draws, 3 seeds): CAD-guided
    AUC 0.980-0.999 (mean of seeds); unguided 0.72-0.76 (it sees the tilt in the noisy depth, less well)."""
    tilted = planes["tilt"] > np.radians(30)
    real = planes["noisy"](np.where(tilted, 0.012, 0.003))
    sim = planes["noisy"](np.where(tilted, 0.003, 0.012))
    assert residual_w1(planes["cad"], sim, real) < 0.0005  # the residual's law is the same
    samples = planes["samples"](real)
    guided = two_sample_auc(samples, sim, _cfg(), planes["train"], planes["test"])
    plain = two_sample_auc(samples, sim, _cfg(cad_guidance=False), planes["train"], planes["test"])
    assert guided["auc"] > 0.9 and min(guided["auc_per_seed"]) > 0.8, guided
    assert guided["auc"] - plain["auc"] > 0.1, (guided, plain)


def test_a_scene_on_both_sides_is_refused(planes):
    samples, sim = planes["samples"](planes["noisy"](0.005)), planes["cad"].copy()
    cfg = _cfg(steps=1)
    with pytest.raises(Sim2RealError, match="s0000.*both the train and the test side"):
        two_sample_auc(samples, sim, cfg, [0, 1, 4], [2, 8])  # frames 0-3 are scene s0000
    with pytest.raises(Sim2RealError, match="0 have frames on both"):  # groups replace the scenes
        two_sample_auc(samples, sim, cfg, [0, 4], [8], groups=[0] * len(sim))
    with pytest.raises(Sim2RealError, match="test_frames is empty"):
        two_sample_auc(samples, sim, cfg, [0], [])
    with pytest.raises(Sim2RealError, match="s0099/000 is not in the sample set"):
        two_sample_auc(samples, sim, cfg, [0], ["s0099/000"])
    with pytest.raises(DepthFormatError, match="shape"):
        two_sample_auc(samples, sim[:5], cfg, [0], [8])
    with pytest.raises(Sim2RealError, match="simulated depth: the pixels valid for both .* give 0 valid patch"):
        two_sample_auc(samples, np.zeros_like(sim), cfg, [0], [8])
    with pytest.raises(Sim2RealError, match="simulated depth: has 0 valid patch"):
        two_sample_auc(samples, np.zeros_like(sim), cfg, [0], [8], pixels="own")


def test_groups_replace_the_scenes(planes):
    """Frames of one scene may sit on both sides when the caller's groups say they are independent."""
    samples, sim = planes["samples"](planes["noisy"](0.005)), planes["cad"].copy()
    out = two_sample_auc(samples, sim, _cfg(steps=2), [0, 1], [2, 3], groups=list(range(len(sim))), seeds=(0,))
    assert out["train_groups"] == ["0", "1"] and out["test_groups"] == ["2", "3"]


def test_holes_count_with_own_pixels_only(planes):
    """Real = CAD + 5 mm noise with 4 px block holes (30 % of the blocks). A simulator of the same law (fresh
    holes) is indistinguishable with shared and with own pixels; a simulator without holes is
    indistinguishable on shared pixels but told apart on its own. Measured (3 data draws x 2 seeds, 100
    steps): same law 0.495-0.508 both ways; no holes: shared 0.490-0.507, own 0.73-0.78."""
    rng = np.random.default_rng(7)
    cad = planes["cad"]

    def holed(p: float) -> np.ndarray:
        blocks = np.repeat(np.repeat(rng.random((len(cad), SIZE // 4, SIZE // 4)) < p, 4, 1), 4, 2)
        return np.where(blocks, 0, planes["noisy"](0.005)).astype(np.float32)

    samples, same, dense = planes["samples"](holed(0.3)), holed(0.3), holed(0.0)
    run = dict(cfg=_cfg(), train_frames=planes["train"], test_frames=planes["test"], seeds=(0, 1))
    for pixels in ("shared", "own"):
        out = two_sample_auc(samples, same, pixels=pixels, **run)
        assert abs(out["auc"] - 0.5) < 0.06 and out["pixels"] == pixels, out
    shared = two_sample_auc(samples, dense, pixels="shared", **run)
    own = two_sample_auc(samples, dense, pixels="own", **run)
    assert abs(shared["auc"] - 0.5) < 0.06 and own["auc"] > 0.65, (shared, own)
    assert shared["n_test_real"] == shared["n_test_sim"] < own["n_test_sim"]  # own: the dense side keeps every patch
    with pytest.raises(Sim2RealError, match="pixels must be one of shared, own"):
        two_sample_auc(samples, dense, pixels="mine", **run)


# ---------------------------------------------------------------------- effect reproduction
def test_effect_reproduction_on_masks_with_known_answers():
    H, W = 10, 10
    cad = np.full((H, W), 2.0, np.float32)
    cad[9, 9] = 0  # no CAD: never counted
    real, sim = cad.copy(), cad.copy()
    flat = np.zeros(H * W, bool)

    def mask(idx) -> np.ndarray:
        m = flat.copy()
        m[list(idx)] = True
        return m.reshape(H, W)

    # hole effect: pixels 0-19 (+ the CAD-less 99); the simulator makes holes on 5 of them and on 4 others
    hole = mask([*range(20), 99])
    real[hole] = 0
    sim.reshape(-1)[[0, 1, 2, 3, 4, 30, 31, 32, 33]] = 0
    # displacement effect: pixels 40-49 moved +0.2 m in the real (48, 49: only 3 mm: not counted)
    disp = mask(range(40, 50))
    r, s = real.reshape(-1), sim.reshape(-1)
    r[40:48] += 0.2
    r[48:50] += 0.003
    s[40:44] += 0.15  # >= half the move, same way: reproduced
    s[44:46] += 0.05  # too little
    s[46] -= 0.2  # the wrong way
    s[47] = 0  # a hole instead
    # noise effect: pixels 60-79, real residual +-10 mm, simulated +-5 mm
    noise = mask(range(60, 80))
    r[60:80] += np.tile([0.01, -0.01], 10)
    s[60:80] += np.tile([0.005, -0.005], 10)
    out = effect_reproduction(sim, cad, real, {"edge_dropout": hole, "flying_pixels": disp, "noise": noise})
    e = out["effects"]
    assert e["edge_dropout"] == {"kind": "hole", "n_pixels": 20, "reproduced": 0.25, "real": 1.0}
    assert e["flying_pixels"] == {"kind": "displacement", "n_pixels": 8, "reproduced": 0.5, "holes": 0.125}
    assert e["noise"]["kind"] == "noise" and e["noise"]["n_pixels"] == 20
    assert e["noise"]["std_ratio"] == pytest.approx(0.5, rel=1e-4) and e["noise"]["w1_m"] == pytest.approx(
        0.005, rel=1e-3
    )
    assert e["noise"]["real_std_m"] == pytest.approx(0.01, rel=1e-3) and e["noise"]["sim_std_m"] == pytest.approx(
        0.005, rel=1e-3
    )
    # outside the hole mask: 79 CAD-valid pixels, the simulator's holes at 30-33 and 47
    assert out["holes_elsewhere"] == {"n_pixels": 79, "sim": pytest.approx(5 / 79), "real": 0.0}
    # the real itself reproduces everything; the clean CAD nothing
    same = effect_reproduction(real, cad, real, {"edge_dropout": hole, "flying_pixels": disp, "noise": noise})
    assert same["effects"]["edge_dropout"]["reproduced"] == same["effects"]["flying_pixels"]["reproduced"] == 1.0
    assert same["effects"]["noise"]["std_ratio"] == 1.0 and same["effects"]["noise"]["w1_m"] == 0.0
    clean = effect_reproduction(cad, cad, real, {"edge_dropout": hole, "flying_pixels": disp, "noise": noise})
    assert clean["effects"]["edge_dropout"]["reproduced"] == clean["effects"]["flying_pixels"]["reproduced"] == 0.0
    assert clean["effects"]["noise"]["std_ratio"] == 0.0
    # frames stack, unknown names are refused (or given a kind), empty effects are NaN
    two = effect_reproduction(
        np.stack([sim, sim]), np.stack([cad, cad]), np.stack([real, real]), {"noise": [noise] * 2}
    )
    assert two["effects"]["noise"]["n_pixels"] == 40
    with pytest.raises(Sim2RealError, match="unknown sensor effect 'speckle'"):
        effect_reproduction(sim, cad, real, {"speckle": noise})
    odd = effect_reproduction(
        sim, cad, real, {"speckle": noise, "range_limit": flat.reshape(H, W)}, kinds={"speckle": "noise"}
    )
    assert odd["effects"]["speckle"]["std_ratio"] == pytest.approx(0.5, rel=1e-4)
    assert odd["effects"]["range_limit"]["n_pixels"] == 0 and np.isnan(odd["effects"]["range_limit"]["reproduced"])
    with pytest.raises(DepthFormatError, match="shape"):
        effect_reproduction(sim[:5], cad, real, {})


def test_sensor_effect_reproduction_in_the_sensor_only_world(tmp_path):
    """On a procedural dataset: the real scan reproduces its own effects (hole share = the real's, std ratio 1,
    W1 0); the clean CAD reproduces none (no holes, std ratio 0)."""
    from sim2real_kit.data.dataset import crop_resize, eval_box
    from sim2real_kit.data.layout import DepthLayout
    from sim2real_kit.data.synth import synthesize

    lay = synthesize(
        tmp_path / "so", scenes=2, frames=2, seed=0, width=64, height=48, progress=False, world="sensor_only"
    )
    cfg = load_config("tiny")
    refs = lay.frames("train") + lay.frames("val")
    box, size = eval_box(lay.camera, 0), 48
    frames = [lay.read_frame(r) for r in refs]
    cad = np.stack([crop_resize(f["cad"], box, size) for f in frames])
    real = np.stack([crop_resize(f["real"], box, size) for f in frames])
    samples = SampleSet(refs, cad, real, {}, lay.camera.crop(*box), np.stack([f["pose"] for f in frames]))
    own = sensor_effect_reproduction(DepthLayout(lay.root), samples, real, cfg)["effects"]
    assert own["edge_dropout"]["n_pixels"] > 0 and own["noise"]["n_pixels"] > 0
    for name, m in own.items():
        if m["n_pixels"] == 0:
            continue
        if m["kind"] == "hole":
            assert m["reproduced"] == m["real"] == 1.0, name
        elif m["kind"] == "displacement":
            assert m["reproduced"] == 1.0, name
        else:
            assert m["std_ratio"] == pytest.approx(1.0) and m["w1_m"] == 0.0, name
    clean = sensor_effect_reproduction(DepthLayout(lay.root), samples, cad, cfg)["effects"]
    assert clean["edge_dropout"]["reproduced"] == 0.0 and clean["noise"]["std_ratio"] == 0.0


def test_effects_table_shows_each_effect_per_simulator_pooled_over_seeds():
    """The benchmark's "Sensor effects reproduced" table: one row per ground-truth effect (hole / displacement:
    the share reproduced; noise: the std ratio) and one for false holes, a column per simulator, mean ± std
    over seeds. (It printed two rows, "effects" and "holes_elsewhere", of dashes: the nesting of
    `effect_reproduction`'s output was read one level too high.)"""
    from sim2real_kit.benchmark.two_sample import effects_markdown

    cad = np.full((2, 8, 8), 2.0, np.float32)
    real = cad + np.tile([0.01, -0.01], 32).reshape(1, 8, 8).astype(np.float32)
    real[:, :2] = 0
    hole, noise = np.zeros(cad.shape, bool), np.zeros(cad.shape, bool)
    hole[:, :2], noise[:, 2:] = True, True
    effects = {"edge_dropout": hole, "noise": noise}
    half = cad + (real - cad) * 0.5
    half[:, :1] = 0  # half the hole effect's pixels
    one = {n: effect_reproduction(d, cad, real, effects) for n, d in (("cad", cad), ("stage1", half), ("real", real))}
    md = effects_markdown(one, {"stage1": "Stage-I"})
    lines = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert lines["effect"] == "| effect | cad | Stage-I | real |"
    assert lines["edge_dropout (hole)"] == "| edge_dropout (hole) | 0.00 | 0.50 | 1.00 |"
    assert lines["noise (noise)"] == "| noise (noise) | 0.00 | 0.50 | 1.00 |"
    assert lines["false holes (outside hole effects)"].endswith("| 0.00 | 0.00 | 0.00 |")
    # two seeds: mean ± std; a simulator that failed in a seed is left out of that seed only
    other = {**one, "stage1": effect_reproduction(cad, cad, real, effects)}
    md2 = effects_markdown([one, {**other, "cad": {"error": "no output"}}], {})
    row = next(line for line in md2.splitlines() if line.startswith("| edge_dropout"))
    assert row == "| edge_dropout (hole) | 0.00 | 0.25 ± 0.35 | 1.00 ± 0.00 |"
    assert "mean ± std over 2 seeds" in md2
    assert effects_markdown({}, {}) == "" and effects_markdown({"cad": {"error": "x"}}, {}) == ""


def test_effects_table_names_the_effects_with_no_pixel_instead_of_a_row_of_dashes():
    """An effect whose mask is empty in the data (the procedural sensor's 1 mm quantisation moves depth by less
    than the effect threshold; nothing lies beyond the range limit) has no value for any simulator, the real
    capture included: the table named it as a row of dashes, which reads like a failed measurement. It is now
    left out of the rows and named under the table; a row empty for some simulators only keeps its dashes."""
    from sim2real_kit.benchmark.two_sample import effects_markdown

    cad = np.full((1, 8, 8), 2.0, np.float32)
    real = cad + np.tile([0.01, -0.01], 32).reshape(1, 8, 8).astype(np.float32)
    noise, empty = np.zeros(cad.shape, bool), np.zeros(cad.shape, bool)
    noise[:, 2:] = True
    effects = {"noise": noise, "quantization": empty, "range_limit": empty}
    one = {n: effect_reproduction(d, cad, real, effects) for n, d in (("cad", cad), ("real", real))}
    one["stage1"] = {"error": "no output"}
    one["holes"] = effect_reproduction(np.zeros_like(cad), cad, real, effects)  # all holes: no noise value
    md = effects_markdown(one, {})
    rows = [line.split(" | ")[0].lstrip("| ") for line in md.splitlines() if line.startswith("| ")]
    assert rows == ["effect", "noise (noise)", "false holes (outside hole effects)"]
    assert "| noise (noise) | 0.00 | 1.00 | — |" in md  # empty for one simulator only: the row stays
    assert "no pixel of these effects in the data: quantization, range_limit" in md


def test_effects_heatmap_writes_each_cell_and_colours_around_the_real_value(tmp_path):
    """The heatmap of notebook 05: a cell per effect x simulator with its value written on it, the colour white
    at 1 (the real sensor's own value), blue below, red above; the false-hole row uncoloured; None without
    sensor ground truth."""
    from sim2real_kit.benchmark import effects_heatmap

    cad = np.full((2, 8, 8), 2.0, np.float32)
    real = cad + np.tile([0.01, -0.01], 32).reshape(1, 8, 8).astype(np.float32)
    real[:, :2] = 0
    hole, noise = np.zeros(cad.shape, bool), np.zeros(cad.shape, bool)
    hole[:, :2], noise[:, 2:] = True, True
    loud = cad + (real - cad) * 1.5
    loud[:, :2] = 0
    effects = {
        n: effect_reproduction(d, cad, real, {"edge_dropout": hole, "noise": noise})
        for n, d in (("cad", cad), ("loud", loud), ("real", real))
    }
    fig = effects_heatmap(effects, {"loud": "1.5x noise"}, path=tmp_path / "fx.png")
    assert (tmp_path / "fx.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cad", "1.5x noise", "real"]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "edge_dropout (hole)", "noise (noise)", "false holes (outside hole effects)"
    ]  # fmt: skip
    assert [t.get_text() for t in ax.texts] == ["0.00", "1.00", "1.00", "0.00", "1.50", "1.00", "0.00", "0.00", "0.00"]
    image = ax.images[0]
    rgba = image.cmap(image.norm(image.get_array()))
    white, blue, red = rgba[1, 2], rgba[1, 0], rgba[1, 1]  # noise row: real 1.0, CAD 0.0, 1.5x 1.5
    assert min(white[:3]) > 0.8 and blue[2] > blue[0] + 0.3 and red[0] > red[2] + 0.2
    assert np.ma.getmaskarray(image.get_array())[2].all()  # false holes: not coloured
    assert effects_heatmap({}, {}) is None


def test_mean_std_over_seeds_drops_non_finite_values_and_is_shared_with_the_benchmark():
    """One public helper for "mean ± std over seeds" (the offline two-sample script and the Stage-II controls
    benchmark both use it): a seed whose metric failed (NaN, ±inf) is left out rather than poisoning the mean,
    one value has std 0, none gives NaN."""
    import math

    from sim2real_kit.realism_test import mean_std

    m, s = mean_std([1.0, 3.0, math.nan, math.inf, -math.inf])
    assert m == 2.0 and abs(s - math.sqrt(2.0)) < 1e-12
    assert mean_std([5.0]) == (5.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([math.nan, math.inf]))

    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_stage2_controls.py"
    spec = importlib.util.spec_from_file_location("bench_s2c_mean_std", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.mean_std is mean_std
