"""Procedural furniture: CAD vs real geometry of the six categories, determinism, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim2real_kit.data.shapes import (
    CATEGORIES,
    MATERIALS,
    MeshBuilder,
    ShapeConfig,
    ShapeError,
    make_object,
)
from sim2real_kit.errors import ConfigError, Sim2RealError


def _arrays(mesh):
    return np.asarray(mesh.vertices), np.asarray(mesh.triangles)


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_builds_cad_and_detailed_real(category):
    for seed in range(6):
        obj = make_object(category, seed)
        cv, ct = _arrays(obj.cad)
        rv, rt = _arrays(obj.real)
        assert obj.category == category and obj.material in MATERIALS
        assert len(ct) > 0 and len(rt) > 0
        # CAD is simplified: far fewer triangles than the real object
        assert len(rt) > 2 * len(ct), (category, seed, len(ct), len(rt))
        # both stand on the floor (z = 0) and have furniture size
        assert abs(cv[:, 2].min()) < 1e-6 and rv[:, 2].min() > -1e-3
        assert 0.3 < cv[:, 2].max() < 2.2 and 0.3 < rv[:, 2].max() < 2.4
        # the real object is where the CAD is, up to a few centimetres and details
        lo = np.maximum(cv.min(0), rv.min(0))
        hi = np.minimum(cv.max(0), rv.max(0))
        inter = np.prod(np.clip(hi - lo, 0, None))
        union = np.prod(cv.max(0) - cv.min(0)) + np.prod(rv.max(0) - rv.min(0)) - inter
        assert inter / union > 0.5, (category, seed, inter / union)
        hx, hy = obj.footprint
        assert hx >= np.abs(cv[:, 0]).max() - 1e-9 and hy >= np.abs(rv[:, 1]).max() - 1e-9


def test_make_object_is_deterministic_for_a_seed():
    for category in CATEGORIES:
        a, b = make_object(category, 7), make_object(category, 7)
        np.testing.assert_array_equal(_arrays(a.real)[0], _arrays(b.real)[0])
        np.testing.assert_array_equal(_arrays(a.cad)[1], _arrays(b.cad)[1])
        assert a.params == b.params and a.material == b.material
        c = make_object(category, 8)
        assert c.params != a.params


def test_real_pose_offset_within_configured_bounds():
    cfg = ShapeConfig(real_offset_m=0.05, real_rot_deg=4.0)
    offsets, yaws = [], []
    for seed in range(40):
        p = make_object(CATEGORIES[seed % 6], seed, cfg).params
        offsets.append(math.hypot(*p["real_offset_m"]))
        yaws.append(abs(p["real_yaw_deg"]))
    assert max(offsets) <= 0.05 + 1e-6 and max(yaws) <= 4.0 + 1e-6
    assert np.mean(offsets) > 0.015 and np.mean(yaws) > 1.0  # it really moves
    still = make_object("table", 3, ShapeConfig(real_offset_m=0.0, real_rot_deg=0.0)).params
    assert still["real_offset_m"] == [0.0, 0.0] and still["real_yaw_deg"] == 0.0


def test_part_mismatch_gives_parts_only_one_geometry_has():
    cfg = ShapeConfig(part_mismatch_prob=1.0)
    mismatched = 0
    for seed in range(20):
        p = make_object("chair", seed, cfg).params
        mismatched += p["arms_cad"] != p["arms_real"]
    assert mismatched == 20
    cfg0 = ShapeConfig(part_mismatch_prob=0.0)
    for seed in range(20):
        p = make_object("shelf", seed, cfg0).params
        assert p["back_panel_cad"] == p["back_panel_real"]


def test_clutter_only_in_real_geometry():
    # tables with clutter carry extra small objects above the top, absent from the CAD
    with_clutter = make_object("table", 1, ShapeConfig(clutter_prob=1.0))
    without = make_object("table", 1, ShapeConfig(clutter_prob=0.0))
    top = with_clutter.params["height"]
    assert _arrays(with_clutter.real)[0][:, 2].max() > top + 0.01
    assert _arrays(without.real)[0][:, 2].max() < top + 0.005
    assert _arrays(with_clutter.cad)[0][:, 2].max() <= top + 1e-4


def test_primitives_are_closed_and_outward():
    b = MeshBuilder().rounded_box([0, 0, 0], [1.0, 2.0, 3.0], 0.2, 5)
    m = b.to_open3d()
    assert m.is_watertight()
    # polygonal rounding: between the box minus exact round edges and the full box
    exact_rounded = 0.6 * 1.6 * 2.6 + 0.4 * (0.96 + 1.56 + 4.16) + math.pi * 0.04 * 5.2 + 4 / 3 * math.pi * 0.008
    assert exact_rounded * 0.97 < m.get_volume() < 6.0
    box = MeshBuilder().box([1, 2, 3], [1, 2, 3]).to_open3d()
    assert box.is_watertight() and box.get_volume() == pytest.approx(6.0)
    cyl = MeshBuilder().cylinder([0, 0, 0], 0.5, 2.0, segments=64).to_open3d()
    assert cyl.get_volume() == pytest.approx(math.pi * 0.25 * 2.0, rel=0.01)
    rod = MeshBuilder().rod([0, 0, 0], [1, 1, 1], 0.1, segments=32).to_open3d()
    v = np.asarray(rod.vertices)
    assert rod.get_volume() == pytest.approx(math.pi * 0.01 * math.sqrt(3), rel=0.02)
    assert np.allclose(v.max(0), 1.0 + 0.1, atol=0.02)


def test_unknown_category_is_a_clear_error():
    with pytest.raises(ShapeError, match="'stool'.*chair, table, sofa, bed, cabinet, shelf"):
        make_object("stool", 0)
    assert issubclass(ShapeError, Sim2RealError)


@pytest.mark.parametrize(
    "field, value",
    [("real_offset_m", -0.1), ("part_mismatch_prob", 1.5), ("bevel_segments", 4), ("size_scale", 0.0)],
)
def test_bad_shape_parameters_name_the_key(field, value):
    with pytest.raises(ConfigError, match=f"shapes.{field}"):
        make_object("chair", 0, ShapeConfig(**{field: value}))
