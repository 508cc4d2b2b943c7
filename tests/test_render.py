"""Ray-cast rendering against analytic answers, and the procedural rooms and camera paths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim2real_kit.camera import Camera, look_at
from sim2real_kit.data.render import RenderResult, SceneRenderer, incidence_from_normals, render
from sim2real_kit.data.scenes import (
    CEILING_ID,
    CLASS_NAMES,
    FLOOR_ID,
    ROOM_ID_MIN,
    WALL_IDS,
    SceneConfig,
    _rect_corners,
    _rects_overlap,
    make_scene,
)
from sim2real_kit.data.shapes import MATERIALS, MeshBuilder
from sim2real_kit.errors import ConfigError, Sim2RealError


def _yaw_pose(center, yaw):
    pose = np.eye(4)
    pose[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
    pose[:3, 3] = center
    return pose


def _analytic_box_depth(camera, cam_pose, box_pose, half):
    """z-depth of the first hit of each pixel ray with an oriented box (slab method), 0 on a miss."""
    rays = camera.pixel_rays().reshape(-1, 3) @ cam_pose[:3, :3].T  # world directions with camera z = 1
    inv = np.linalg.inv(box_pose)
    o = inv[:3, :3] @ cam_pose[:3, 3] + inv[:3, 3]
    d = rays @ inv[:3, :3].T
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - o) / d, (half - o) / d
    tmin = np.nanmax(np.minimum(t1, t2), axis=1)
    tmax = np.nanmin(np.maximum(t1, t2), axis=1)
    hit = (tmax >= tmin) & (tmin > 0)
    return np.where(hit, tmin, 0.0).reshape(camera.height, camera.width)


def test_box_depth_equals_analytic_depth_within_1mm():
    camera = Camera.lasa()
    half = np.array([0.5, 0.35, 0.6])
    box_pose = _yaw_pose([0.2, 3.0, 0.6], math.radians(30))
    verts, tris = MeshBuilder().box([0, 0, 0], 2 * half).arrays()
    verts = verts @ box_pose[:3, :3].T + box_pose[:3, 3]
    cam_pose = look_at([0.4, 0.0, 1.4], [0.1, 3.0, 0.5])
    result = render({7: (verts, tris)}, camera, cam_pose)
    expected = _analytic_box_depth(camera, cam_pose, box_pose, half)
    both = (result.depth > 0) & (expected > 0)
    assert both.sum() > 3000  # the box fills a good part of the frame
    assert np.abs(result.depth[both] - expected[both]).max() < 1e-3
    # hit masks agree except possibly on silhouette pixels
    assert ((result.depth > 0) != (expected > 0)).sum() < 0.02 * both.sum()
    assert set(np.unique(result.instance)) == {0, 7}
    assert (result.instance[result.depth == 0] == 0).all()


def test_fronto_parallel_wall_normals_and_incidence():
    camera = Camera(100.0, 100.0, 32.0, 24.0, 64, 48)
    wall = MeshBuilder().box([0, 0, 2.5 + 0.05], [10, 10, 0.1]).arrays()  # face at z = 2.5 in the camera frame
    renderer = SceneRenderer({3: wall}, materials={3: "dark"})
    res = renderer.render(camera, np.eye(4))
    assert isinstance(res, RenderResult)
    np.testing.assert_allclose(res.depth, 2.5, atol=1e-5)
    np.testing.assert_allclose(res.normals, np.broadcast_to([0, 0, -1.0], res.normals.shape), atol=1e-5)
    rays = camera.pixel_rays()
    expected_inc = np.arccos(1 / np.linalg.norm(rays, axis=-1))
    np.testing.assert_allclose(res.incidence, expected_inc, atol=1e-3)
    np.testing.assert_allclose(incidence_from_normals(res.normals, camera), expected_inc, atol=1e-3)
    assert (res.material == MATERIALS.index("dark")).all()
    # the renderer is reused: a second pose 1 m closer
    pose = np.eye(4)
    pose[2, 3] = 1.0
    np.testing.assert_allclose(renderer.render(camera, pose).depth, 1.5, atol=1e-5)
    # depth + instance only
    fast = renderer.render(camera, pose, full=False)
    assert fast.normals is None and fast.incidence is None and (fast.instance == 3).all()


def test_renderer_rejects_bad_ids_and_materials():
    wall = MeshBuilder().box([0, 0, 2], [1, 1, 0.1]).arrays()
    with pytest.raises(Sim2RealError, match="instance id"):
        SceneRenderer({0: wall})
    with pytest.raises(Sim2RealError, match="'velvet'"):
        SceneRenderer({1: wall}, materials={1: "velvet"})


# ---------------------------------------------------------------------- scenes
@pytest.fixture(scope="module")
def scene():
    return make_scene(11, 8, Camera.lasa().resize(128, 96))


def test_scene_has_non_intersecting_furniture_inside_the_room(scene):
    room = scene.room
    assert 3 <= len(scene.objects) <= 8
    rects = []
    for obj, pose in zip(scene.objects, scene.object_poses):
        hx, hy = obj.footprint
        yaw = math.atan2(pose[1, 0], pose[0, 0])
        r = _rect_corners(pose[0, 3], pose[1, 3], hx, hy, yaw)
        assert r[:, 0].min() >= 0 and r[:, 0].max() <= room["width"]
        assert r[:, 1].min() >= 0 and r[:, 1].max() <= room["depth"]
        rects.append(r)
    for i in range(len(rects)):
        for j in range(i + 1, len(rects)):
            assert not _rects_overlap(rects[i], rects[j])
    # instance table: furniture 1..N, room surfaces 100+
    ids = sorted(scene.instances)
    assert ids[: len(scene.objects)] == list(range(1, len(scene.objects) + 1))
    assert FLOOR_ID in ids and all(w in ids for w in WALL_IDS)
    assert (CEILING_ID in ids) == room["ceiling"]
    assert all(info["material"] in MATERIALS for info in scene.instances.values())


def test_camera_path_sees_furniture_at_arkit_range(scene):
    assert scene.poses.shape == (8, 4, 4)
    furniture_share, depths = [], []
    for f in range(scene.n_frames):
        eye = scene.poses[f, :3, 3]
        assert 1.2 < eye[2] < 1.8  # human height
        res = scene.render(f, "cad")
        furn = (res.instance > 0) & (res.instance < ROOM_ID_MIN)
        furniture_share.append(furn.mean())
        depths.append(res.depth[res.depth > 0])
    d = np.concatenate(depths)
    assert np.mean(furniture_share) > 0.15 and min(furniture_share) > 0.03
    assert np.mean((d > 0.5) & (d < 4.5)) > 0.9
    cats = scene.category_map(res.instance)
    assert cats.max() < len(CLASS_NAMES) and (cats[res.instance == FLOOR_ID] == CLASS_NAMES.index("floor")).all()


def test_scene_is_deterministic_and_real_differs_from_cad():
    cam = Camera.lasa().resize(64, 48)
    a, b = make_scene(5, 3, cam), make_scene(5, 3, cam)
    np.testing.assert_array_equal(a.poses, b.poses)
    ra, rb = a.render(1, "real"), b.render(1, "real")
    np.testing.assert_array_equal(ra.depth, rb.depth)
    ca = a.render(1, "cad")
    both = (ra.depth > 0) & (ca.depth > 0)
    assert np.abs(ra.depth - ca.depth)[both].max() > 0.02  # the real geometry is not the CAD
    assert not np.array_equal(make_scene(6, 3, cam).poses, a.poses)


def test_cad_without_room_has_background_zero():
    cam = Camera.lasa().resize(64, 48)
    sc = make_scene(2, 2, cam, SceneConfig(cad_includes_room=False))
    assert all(i < ROOM_ID_MIN for i in sc.cad_parts) and FLOOR_ID in sc.real_parts
    cad = sc.render(0, "cad")
    assert (cad.depth == 0).mean() > 0.2 and ((cad.depth == 0) == (cad.instance == 0)).all()
    assert (sc.render(0, "real").depth > 0).all()  # the real room is closed


def test_scene_meshes_carry_instance_ids_in_vertex_colour(scene):
    mesh = scene.mesh("cad")
    ids = np.unique(np.rint(np.asarray(mesh.vertex_colors)[:, 0] * 255).astype(int))
    assert set(ids) == set(scene.cad_parts)
    assert len(scene.mesh("real").triangles) > len(mesh.triangles)


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"n_objects": (0, 3)}, "n_objects"),
        ({"n_objects": (5, 3)}, "n_objects"),
        ({"room_width_m": (-1.0, 3.0)}, "room_width_m"),
        ({"category_weights": {"stool": 1.0}}, "stool"),
        ({"ceiling_prob": 2.0}, "ceiling_prob"),
    ],
)
def test_bad_scene_parameters_name_the_key(kw, key):
    with pytest.raises(ConfigError, match=key):
        make_scene(0, 2, cfg=SceneConfig(**kw))


@pytest.mark.parametrize("n_frames", [0, -3])
def test_bad_frame_count(n_frames):
    with pytest.raises(ConfigError, match="n_frames"):
        make_scene(0, n_frames)
    with pytest.raises(ConfigError, match="n_objects"):
        make_scene(0, 2, n_objects=0)
