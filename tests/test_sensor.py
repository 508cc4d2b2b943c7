"""Sensor model: each component measured on scenes with known geometry; the generic baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim2real_kit.camera import Camera, look_at
from sim2real_kit.data.render import SceneRenderer
from sim2real_kit.data.sensor import (
    COMPONENTS,
    GenericSensor,
    SensorConfig,
    SensorError,
    SensorModel,
    depth_edges,
    edge_distance,
)
from sim2real_kit.data.shapes import MeshBuilder
from sim2real_kit.errors import Sim2RealError

CAM = Camera.lasa()
EYE = np.eye(4)  # camera at the origin looking along +z (x right, y down)


def _wall(z: float, size: float = 40.0):
    return MeshBuilder().box([0, 0, z + 0.05], [size, size, 0.1]).arrays()


def _box(center, size):
    return MeshBuilder().box(center, size).arrays()


def _render(parts: dict, materials=None, pose=EYE, camera=CAM):
    return SceneRenderer(parts, materials).render(camera, pose)


@pytest.fixture(scope="module")
def box_on_wall():
    """A 0.8 m box 1.5 m away in front of a wall at 3 m: two long depth edges."""
    return _render({1: _wall(3.0), 2: _box([0, 0, 1.5 + 0.2], [0.8, 0.8, 0.4])})


# ---------------------------------------------------------------------- noise
@pytest.mark.parametrize("z", [1.0, 3.0])
def test_noise_sigma_matches_configured_sigma_within_10_percent(z):
    model = SensorModel(enable=["noise"])
    res = _render({1: _wall(z)})
    cap = model.capture(res, CAM, np.random.default_rng(0))
    residual = cap.depth - res.depth
    centre = res.incidence < math.radians(12)
    measured = residual[centre].std()
    configured = float(model.noise_sigma(z, 0.0))
    assert measured == pytest.approx(configured, rel=0.10)
    # over the whole frame, residual / sigma(z, incidence) has unit std
    assert (residual / model.noise_sigma(res.depth, res.incidence)).std() == pytest.approx(1.0, rel=0.10)
    assert abs(residual.mean()) < 0.2 * configured


def test_noise_grows_with_range_and_incidence():
    model = SensorModel(enable=["noise"])
    near = model.capture(_render({1: _wall(1.0)}), CAM, 1)
    far = model.capture(_render({1: _wall(3.0)}), CAM, 1)
    assert far.deltas["noise"].std() > 3 * near.deltas["noise"].std()
    # a wall seen at about 75 degrees incidence is noisier than one facing the camera at the same depth
    a = math.radians(75)
    tilted = _render(
        {1: _wall(2.0)}, pose=look_at([-2 * math.sin(a), 0, 2 - 2 * math.cos(a)], [0, 0, 2.0], up=(0, -1, 0))
    )
    facing = _render({1: _wall(2.0)})
    mt = model.capture(tilted, CAM, 2).deltas["noise"]
    mf = model.capture(facing, CAM, 2).deltas["noise"]
    sel = (tilted.depth > 1.9) & (tilted.depth < 2.1)
    assert sel.sum() > 500 and np.degrees(tilted.incidence[sel]).mean() > 70
    assert mt[sel].std() > 1.5 * mf.std()


# ---------------------------------------------------------------------- edges
def test_flying_pixels_only_near_depth_edges_and_between_fg_and_bg(box_on_wall):
    cfg = SensorConfig(flying_prob=0.8, flying_band_px=2)
    cap = SensorModel(cfg, enable=["flying_pixels"]).capture(box_on_wall, CAM, np.random.default_rng(3))
    fly = cap.effects["flying_pixels"]
    dist = edge_distance(depth_edges(box_on_wall.depth))
    assert fly.sum() > 100
    assert dist[fly].max() <= 2
    assert (cap.depth[~fly] == box_on_wall.depth[~fly]).all()
    assert (cap.depth[fly] > 1.5 + 0.05 * 1.0).all() and (cap.depth[fly] < 3.0 - 0.05).all()


def test_edge_dropout_only_at_edges_at_the_configured_rate(box_on_wall):
    cfg = SensorConfig(edge_dropout_prob=0.35, edge_dropout_band_px=1)
    cap = SensorModel(cfg, enable=["edge_dropout"]).capture(box_on_wall, CAM, np.random.default_rng(4))
    holes = cap.depth == 0
    assert (holes == cap.effects["edge_dropout"]).all()
    dist = edge_distance(depth_edges(box_on_wall.depth))
    assert dist[holes].max() <= 1
    band = dist <= 1
    assert holes[band].mean() == pytest.approx(0.35, abs=0.1)
    assert holes[dist > 1].sum() == 0


def test_dropout_rate_rises_at_grazing_angles():
    # a floor 1.5 m below a camera looking almost horizontally: incidence from ~60 to ~89 degrees
    pose = look_at([0, 0, 1.5], [0, 10, 0.6])
    floor = {1: MeshBuilder().box([0, 0, -0.05], [60, 60, 0.1]).arrays()}
    res = _render(floor, pose=pose)
    cfg = SensorConfig(grazing_start_deg=65, grazing_full_deg=85, grazing_prob=0.7)
    cap = SensorModel(cfg, enable=["grazing_dropout"]).capture(res, CAM, np.random.default_rng(5))
    holes = cap.effects["grazing_dropout"]
    deg = np.degrees(res.incidence)
    rates = [holes[(deg >= lo) & (deg < lo + 5) & (res.depth > 0)].mean() for lo in (60, 70, 75, 80)]
    assert rates[0] == 0.0
    assert rates[0] < rates[1] < rates[2] < rates[3]
    assert rates[3] > 0.4
    assert (cap.depth[holes] == 0).all()


# ---------------------------------------------------------------------- geometry-level effects
def test_thin_structures_below_pixel_width_vanish():
    # at 1.5 m a pixel is 7 mm wide: a 1 cm square rod is ~1.7 px wide (with its side), a 20 cm post ~30 px
    parts = {1: _wall(2.0), 2: _box([-0.3, 0, 1.5], [0.01, 1.0, 0.01]), 3: _box([0.3, 0, 1.5], [0.2, 1.0, 0.05])}
    res = _render(parts)
    cap = SensorModel(enable=["thin_structures"]).capture(res, CAM, 0)
    rod, post = res.instance == 2, res.instance == 3
    assert rod.sum() > 50
    assert cap.effects["thin_structures"][rod].mean() > 0.95
    np.testing.assert_allclose(cap.depth[rod], 2.0, atol=0.01)  # replaced by the wall behind
    assert not cap.effects["thin_structures"][post].any()
    assert (cap.depth[post] == res.depth[post]).all()
    assert not cap.effects["thin_structures"][res.instance == 1].any()


def test_relief_is_flattened_with_range():
    def bump_height(z):
        # a 6 cm wide, 3 cm high bump on a wall at z
        res = _render({1: _wall(z), 2: _box([0, 0, z - 0.015], [0.06, 0.06, 0.03])})
        cap = SensorModel(enable=["relief"]).capture(res, CAM, 0)
        return float(z - cap.depth[res.instance == 2].min()), cap

    near, cap_near = bump_height(1.2)
    far, cap_far = bump_height(4.2)
    assert near == pytest.approx(0.03, abs=1e-4) and not cap_near.effects["relief"].any()
    assert far < 0.6 * 0.03
    assert cap_far.effects["relief"].any()


def test_material_holes_on_dark_surfaces_at_the_configured_rate():
    parts = {1: _wall(3.0), 2: _box([-0.45, 0, 1.5], [0.8, 1.0, 0.05]), 3: _box([0.45, 0, 1.5], [0.8, 1.0, 0.05])}
    res = _render(parts, materials={1: "matte", 2: "dark", 3: "wood"})
    cfg = SensorConfig(material_hole_rate={"dark": 0.3, "shiny": 0.2})
    rates = []
    for seed in range(4):
        cap = SensorModel(cfg, enable=["material_holes"]).capture(res, CAM, seed)
        rates.append(cap.effects["material_holes"][res.instance == 2].mean())
        assert not cap.effects["material_holes"][res.instance != 2].any()
        assert (cap.depth[cap.effects["material_holes"]] == 0).all()
    assert np.mean(rates) == pytest.approx(0.3, abs=0.06)


def test_lowres_capture_smooths_edges_and_keeps_flat_areas(box_on_wall):
    cap = SensorModel(SensorConfig(lowres_factor=2), enable=["lowres"]).capture(box_on_wall, CAM, 0)
    dist = edge_distance(depth_edges(box_on_wall.depth))
    change = np.abs(cap.depth - box_on_wall.depth)
    assert change[dist > 2].max() < 1e-3  # flat areas untouched
    assert cap.effects["lowres"].any() and dist[cap.effects["lowres"]].max() <= 2
    between = (cap.depth > 1.6) & (cap.depth < 2.9)  # edge ramps: values between box and wall
    assert between.sum() > 50


def test_bias_is_smooth_and_low_frequency():
    cfg = SensorConfig(bias_rel=0.01, bias_global_rel=0.0)
    res = _render({1: _wall(2.0)})
    cap = SensorModel(cfg, enable=["bias"]).capture(res, CAM, 7)
    delta = cap.deltas["bias"]
    assert 0.3 * 0.01 * 2.0 < delta.std() < 2.0 * 0.01 * 2.0
    grad = np.abs(np.diff(delta, axis=1)).mean() + np.abs(np.diff(delta, axis=0)).mean()
    assert grad < 0.05 * delta.std()  # varies over tens of pixels, not from pixel to pixel
    assert (cap.effects["bias"] == (np.abs(delta) > cfg.effect_threshold_m)).all()


def test_range_limit_and_quantisation():
    model = SensorModel(enable=["range_limit", "quantization"])
    far = model.capture(_render({1: _wall(5.5)}), CAM, 0)
    assert (far.depth == 0).all() and far.effects["range_limit"].all()
    ok = model.capture(_render({1: _wall(4.5)}), CAM, 0)
    assert (ok.depth > 0).all() and not ok.effects["range_limit"].any()
    tilted = model.capture(_render({1: _wall(2.0)}, pose=look_at([0, 0, 0], [0.5, 0.2, 1.0], up=(0, -1, 0))), CAM, 0)
    mm = tilted.depth * 1000
    assert len(np.unique(mm)) > 100
    assert np.abs(mm - np.round(mm)).max() < 0.01
    near = model.capture(_render({1: _wall(0.1)}), CAM, 0)
    assert (near.depth == 0).all()


# ---------------------------------------------------------------------- whole model
def test_full_model_is_deterministic_and_reports_every_component(box_on_wall):
    model = SensorModel()
    a = model.capture(box_on_wall, CAM, np.random.default_rng(42))
    b = model.capture(box_on_wall, CAM, np.random.default_rng(42))
    c = model.capture(box_on_wall, CAM, np.random.default_rng(43))
    np.testing.assert_array_equal(a.depth, b.depth)
    assert not np.array_equal(a.depth, c.depth)
    assert set(a.effects) == set(COMPONENTS) and model.components == COMPONENTS
    for mask in a.effects.values():
        assert mask.dtype == bool and mask.shape == (CAM.height, CAM.width)
    partial = SensorModel(disable=["noise", "bias"]).capture(box_on_wall, CAM, 1)
    assert not partial.effects["noise"].any() and not partial.effects["bias"].any()
    assert "noise" not in SensorModel(disable=["noise"]).enabled


def test_unknown_component_and_bad_parameters_are_clear_errors():
    with pytest.raises(SensorError, match="'speckle'.*valid: thin_structures"):
        SensorModel(enable=["speckle"])
    with pytest.raises(SensorError, match="'speckle'"):
        SensorConfig().without("speckle")
    with pytest.raises(SensorError, match="sensor.noise_sigma0_m"):
        SensorModel(SensorConfig(noise_sigma0_m=-0.001))
    with pytest.raises(SensorError, match="'velvet'"):
        SensorModel(SensorConfig(material_hole_rate={"velvet": 0.2}))
    with pytest.raises(SensorError, match="wobble"):
        SensorConfig.from_dict({"wobble": 1})
    with pytest.raises(SensorError, match="sensor.lowres_factor"):
        SensorModel(SensorConfig(lowres_factor=0))
    with pytest.raises(SensorError, match="full render"):
        SensorModel().capture(SceneRenderer({1: _wall(2.0)}).render(CAM, EYE, full=False), CAM, 0)
    assert issubclass(SensorError, Sim2RealError)
    assert SensorConfig.from_dict(SensorConfig().to_dict()) == SensorConfig()


# ---------------------------------------------------------------------- physical baseline
@pytest.mark.parametrize("z", [1.0, 3.0])
def test_generic_nguyen_noise_matches_its_published_sigma(z):
    res = _render({1: _wall(z)})
    out = GenericSensor("nguyen2012").capture(res.depth, res.incidence, CAM, np.random.default_rng(0))
    sigma = 0.0012 + 0.0019 * (z - 0.4) ** 2  # Nguyen et al. 2012, 10-60 degrees
    assert (out - res.depth).std() == pytest.approx(sigma, rel=0.10)
    # the physical baseline is not the ARKit-like model in disguise
    assert abs(sigma - float(SensorModel().noise_sigma(z, 0.0))) > 0.1 * sigma or z < 2


def test_generic_redwood_samples_at_half_resolution_and_drops_far_depth():
    """Choi et al. 2015 as ported in habitat-sim: each pixel reads the clean depth at its (shifted) position
    rounded down to even row and column (the sensor's half resolution), and 10 m or farther returns 0."""
    H, W = 6, 8
    ramp = np.tile(1.0 + 0.1 * np.arange(W, dtype=np.float32), (H, 1))  # 1.0 .. 1.7 m, one value per column
    out = GenericSensor("redwood", noise_multiplier=0.0).capture(ramp)
    np.testing.assert_array_equal(out[:, 1::2], out[:, 0::2])  # columns 2k and 2k+1 read column 2k
    quantised = 35.130 / (np.round(8 * 35.130 / ramp[:, 0::2]) / 8)
    np.testing.assert_allclose(out[:, 0::2], quantised, rtol=1e-6)
    rows = np.repeat(np.array([1.0, 1.3, 1.6], np.float32), 2)[:, None] + np.zeros((1, W), np.float32)
    rows[1] = 1.9  # an odd row: never read
    np.testing.assert_array_equal(
        GenericSensor("redwood", 0.0).capture(rows)[1], GenericSensor("redwood", 0.0).capture(rows)[0]
    )
    far = np.full((4, 4), 10.5, np.float32)
    assert not GenericSensor("redwood", 0.0).capture(far).any()  # beyond the sensor's range: no return


def test_generic_redwood_quantises_disparity():
    res = _render({1: _wall(2.0)}, pose=look_at([0, 0, 0], [0.6, 0.0, 1.0], up=(0, -1, 0)))
    out = GenericSensor("redwood").capture(res.depth, res.normals, CAM, 0)
    levels = np.unique(out[(out > 1.9) & (out < 2.1)])
    step = np.median(np.diff(levels))
    assert step == pytest.approx(2.0**2 / (35.130 * 8), rel=0.1)  # about z^2 / 281 m
    assert np.abs(out - res.depth).mean() < 0.03
    with pytest.raises(SensorError, match="'kinect3'.*nguyen2012, redwood"):
        GenericSensor("kinect3")
    with pytest.raises(SensorError, match="camera"):
        GenericSensor().capture(res.depth, res.normals)
