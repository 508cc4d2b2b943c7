"""Tests of sim2real_kit.metrics: hand-checkable depth errors, residual Wasserstein against scipy,
hole rates on a hand-made frame, DisCo 3D metrics with exact geometric answers, stability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from sim2real_kit.camera import Camera, look_at
from sim2real_kit.disco import chamfer_fscore, disco_metrics, is_watertight, normalize_pair, sample_mesh_surface
from sim2real_kit.errors import ConfigError, DepthFormatError, PoseError, Sim2RealError
from sim2real_kit.metrics import (
    binned_residual_w1,
    depth_edges,
    depth_metrics,
    edge_distance,
    hole_rates,
    masked_edge_stats,
    matched_residual_w1,
    matched_residuals,
    residual_bins,
    residual_stats,
    residual_w1,
    residuals,
    stability_across_seeds,
    tail_share,
    value_bins,
    view_consistency,
    wasserstein_1d,
)


# ---------------------------------------------------------------------- helpers
def box_mesh(lo=(0.0, 0.0, 0.0), hi=(1.0, 1.0, 1.0)):
    """Watertight axis-aligned box: 8 shared vertices, 12 outward triangles."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    vertices = lo + corners * (hi - lo)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    triangles = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], np.int64)
    return vertices, triangles


def plane_grid(n: int, side: float):
    """n x n grid of points on the square [0, side]^2 at z = 0."""
    g = np.linspace(0.0, side, n)
    xx, yy = np.meshgrid(g, g)
    return np.stack([xx.ravel(), yy.ravel(), np.zeros(xx.size)], axis=1)


# ---------------------------------------------------------------------- depth metrics
def test_depth_metrics_hand_computed():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])
    pred = np.array([[1.0, 1.0], [5.0, 3.0]])  # last pixel: gt invalid -> ignored
    m = depth_metrics(pred, gt)
    assert m["n_valid"] == 3
    assert m["abs_rel"] == pytest.approx((0 + 0.5 + 0.25) / 3)
    assert m["sq_rel"] == pytest.approx((0 + 1 / 2 + 1 / 4) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt((math.log(2) ** 2 + math.log(1.25) ** 2) / 3))
    # ratios 1, 2, 1.25: 1.25 is not < 1.25 but is < 1.25^2; 2 is above 1.25^3 = 1.953
    assert (m["delta1"], m["delta2"], m["delta3"]) == pytest.approx((1 / 3, 2 / 3, 2 / 3))


def test_depth_metrics_mask_pred_holes_torch_and_frames():
    gt = np.array([[1.0, 2.0], [4.0, 2.0]])
    pred = np.array([[1.0, 0.0], [5.0, 2.0]])  # pred hole at (0, 1) is skipped
    mask = np.array([[True, True], [True, False]])
    m = depth_metrics(torch.tensor(pred), torch.tensor(gt), mask=torch.tensor(mask))
    assert m["n_valid"] == 2 and m["abs_rel"] == pytest.approx(0.125)
    batch_pred, batch_gt = np.stack([pred, pred * 0 + 2]), np.stack([gt, gt * 0 + 1])
    pooled = depth_metrics(batch_pred, batch_gt, reduction="pixels")
    per_frame = depth_metrics(batch_pred, batch_gt, reduction="frames")
    assert pooled["n_valid"] == 3 + 4
    assert pooled["abs_rel"] == pytest.approx((0 + 0.25 + 0 + 4 * 1.0) / 7)
    assert per_frame["abs_rel"] == pytest.approx(((0.25 / 3) + 1.0) / 2)


def test_depth_metrics_bad_inputs():
    with pytest.raises(DepthFormatError, match="pred"):
        depth_metrics(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(DepthFormatError, match="pred and gt"):
        depth_metrics(np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(DepthFormatError, match="gt contains NaN"):
        depth_metrics(np.ones((2, 2)), np.full((2, 2), np.nan))
    with pytest.raises(ConfigError, match="reduction"):
        depth_metrics(np.ones((2, 2)), np.ones((2, 2)), reduction="mean")


# ---------------------------------------------------------------------- residual distributions
def test_residual_w1_matches_scipy_and_gaussian_shift():
    rng = np.random.default_rng(0)
    cad = np.full((4, 64, 64), 2.0)
    sim = cad - rng.normal(0.01, 0.005, cad.shape)
    real = cad - rng.normal(0.03, 0.005, cad.shape)
    real[:, :8] = 0.0  # real holes are not residuals: they must be left out, not count as 2 m
    cad[:, :, :4] = 0.0  # no CAD geometry: left out on both sides
    w1 = residual_w1(cad, sim, real)
    valid_sim, valid_real = (cad > 0) & (sim > 0), (cad > 0) & (real > 0)
    expected = wasserstein_distance((cad - sim)[valid_sim], (cad - real)[valid_real])
    assert w1 == pytest.approx(expected, rel=1e-12)
    assert w1 == pytest.approx(0.02, abs=5e-4)  # |Δμ| of two equal-width Gaussians
    # a list of frames pools the same pixels as the batch, torch accepted
    assert residual_w1(list(cad), list(sim), [torch.tensor(r) for r in real]) == pytest.approx(w1, rel=1e-12)
    assert residual_w1(cad, sim, sim) == 0.0


def test_wasserstein_1d_matches_scipy():
    rng = np.random.default_rng(4)
    cases = [
        (rng.normal(0, 1, 1000), rng.normal(0.5, 2, 777)),
        (rng.integers(0, 5, 300).astype(float), rng.integers(0, 5, 200).astype(float)),  # ties
        (np.array([0.0]), np.array([3.0, 5.0])),
    ]
    for u, v in cases:
        assert wasserstein_1d(u, v) == pytest.approx(wasserstein_distance(u, v), rel=1e-12, abs=1e-15)
    assert wasserstein_1d(np.array([0.0]), np.array([3.0, 5.0])) == pytest.approx(4.0)
    with pytest.raises(Sim2RealError, match="empty"):
        wasserstein_1d(np.array([]), np.array([1.0]))


def test_residual_w1_bad_inputs():
    cad = np.ones((8, 8))
    with pytest.raises(DepthFormatError, match="sim"):
        residual_w1(cad, np.zeros((8, 8)), np.ones((8, 8)))
    with pytest.raises(DepthFormatError, match="real"):
        residual_w1(cad, np.ones((8, 8)), np.ones((4, 8)))
    with pytest.raises(DepthFormatError, match="real holds 1 frames"):
        residual_w1([cad, cad], [cad, cad], [cad])


def test_matched_w1_of_two_point_masses():
    cad = np.full((4, 5), 2.0)
    sim, real = cad - 0.01, cad - 0.03  # residuals: a point mass at +1 cm and one at +3 cm
    assert wasserstein_1d([0.01], [0.03]) == pytest.approx(0.02)
    assert matched_residual_w1(cad, sim, real) == pytest.approx(0.02)
    # pixels of one map only do not count: a sim hole, a real hole, a real mismatch >= 0.5 m, a CAD-less pixel
    sim[0, 0], real[0, 1], real[0, 2], cad[0, 3] = 0.0, 0.0, 2.6, 0.0
    res_sim, res_real = matched_residuals(cad, sim, real, 0.5)
    assert res_sim.size == res_real.size == 16 and np.allclose(res_sim, 0.01) and np.allclose(res_real, 0.03)
    assert matched_residual_w1(cad, sim, real, 0.5) == pytest.approx(0.02)
    # without the limit the 0.6 m mismatch is one more matched pixel (0.01 vs -0.6)
    assert matched_residual_w1(cad, sim, real, None) == pytest.approx((16 * 0.02 + 0.61) / 17)
    # the pooled W1 mixes the maps' own pixels: another pixel set per map
    assert residual_w1(cad, sim, real) != pytest.approx(0.02)
    with pytest.raises(DepthFormatError, match="residual W1 undefined"):
        matched_residual_w1(cad, np.zeros_like(cad), real)


def test_tail_share_hand_made():
    cad = np.full((2, 5), 2.0)
    depth = cad.copy()
    depth[0, :3] = 2.6  # 3 pixels 0.6 m off
    depth[0, 3] = 1.5  # exactly 0.5 m: counts (|residual| >= max diff)
    depth[0, 4] = 0.0  # a hole: not a valid pixel
    assert tail_share(cad, depth, 0.5) == pytest.approx(4 / 9)
    assert tail_share(cad, depth, 0.7) == 0.0
    assert math.isnan(tail_share(cad, np.zeros_like(cad)))


def test_bins_of_hand_made_pixels():
    cad = np.full((6, 12), 2.0)
    cad[:, 8:] = 3.0  # a step between columns 7 and 8: both are edge pixels (distance 0)
    assert edge_distance(cad)[0].tolist() == [7, 6, 5, 4, 3, 2, 1, 0, 0, 1, 2, 3]
    bins = residual_bins(cad)
    assert list(bins) == ["edge0_2", "edge2_5", "edge5"]  # no camera: no incidence bins
    row = {name: np.flatnonzero(m[0]).tolist() for name, m in bins.items()}
    # distances <= 2 | (2, 5] | > 5 (upper bounds included)
    assert row == {"edge0_2": [5, 6, 7, 8, 9, 10], "edge2_5": [2, 3, 4, 11], "edge5": [0, 1]}
    assert np.isinf(edge_distance(np.full((4, 4), 2.0))).all()  # no edge at all
    names = value_bins(np.array([0.0, 30.0, 30.5, 60.0, 89.0, np.nan]), (30, 60), "inc", top=90)
    assert {k: np.flatnonzero(v).tolist() for k, v in names.items()} == {
        "inc0_30": [0, 1],
        "inc30_60": [2, 3],
        "inc60_90": [4],
    }
    with pytest.raises(ConfigError, match="increasing"):
        value_bins(np.zeros(3), (5, 2), "x")


@pytest.mark.parametrize(("tilt_deg", "expected"), [(10, "inc0_30"), (45, "inc30_60"), (75, "inc60_90")])
def test_incidence_bins_of_tilted_planes(tilt_deg, expected):
    cam = Camera(200.0, 200.0, 8.0, 8.0, 16, 16)  # a narrow view: every ray within 3° of the axis
    normal = np.array([0.0, -np.sin(np.radians(tilt_deg)), -np.cos(np.radians(tilt_deg))])
    depth = (2 * np.cos(np.radians(tilt_deg)) / -(cam.pixel_rays() @ normal)).astype(np.float32)
    bins = residual_bins(depth, cam)
    assert bins[expected][2:-2, 2:-2].all()
    assert sum(int(m.sum()) for k, m in bins.items() if k.startswith("inc")) == 16 * 16
    holed = depth.copy()
    holed[:, :] = 0.0
    holed[5, 5] = 2.0  # a lone pixel: no neighbour, no normal, no incidence bin
    assert not any(m[5, 5] for k, m in residual_bins(holed, cam).items() if k.startswith("inc"))


def test_binned_residual_w1():
    cad = np.full((4, 16), 2.0)
    cad[:, 8:] = 3.0  # edge pixels: columns 7 and 8; distance of column c: 7 - c left, c - 8 right
    sim = cad - 0.01
    real = cad - np.where((np.arange(16) >= 9) & (np.arange(16) <= 11), 0.05, 0.01)  # distances 1, 2, 3 differ
    w1 = binned_residual_w1(cad, sim, real, residual_bins(cad))
    assert w1["edge0_2"] == pytest.approx(0.04 * 2 / 6)  # columns 5-10: 9 and 10 are 4 cm off
    assert w1["edge2_5"] == pytest.approx(0.04 * 1 / 6)  # columns 2-4 and 11-13: 11 is
    assert w1["edge5"] == pytest.approx(0.0)  # columns 0, 1, 14, 15
    w1 = binned_residual_w1(cad, sim, real, {"none": np.zeros(cad.shape, bool)})
    assert math.isnan(w1["none"])


def test_residuals_and_stats():
    cad = np.array([[1.0, 1.0, 1.0, 0.0]])
    depth = np.array([[0.9, 1.1, 0.0, 3.0]])
    np.testing.assert_allclose(residuals(cad, depth), [0.1, -0.1])
    np.testing.assert_allclose(residuals(cad, depth, max_abs_m=0.05), [])
    stats = residual_stats(cad, depth, quantiles=(0.5,))
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(0.0, abs=1e-12)
    assert stats["std"] == pytest.approx(0.1) and stats["mean_abs"] == pytest.approx(0.1)
    assert stats["q50"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(DepthFormatError, match="no valid pixel"):
        residual_stats(cad, np.zeros_like(cad))


# ---------------------------------------------------------------------- edges and holes
def step_frame():
    """10x10 CAD frame: columns 0-4 at 1 m, 5-9 at 2 m, row 9 without geometry (0)."""
    cad = np.ones((10, 10))
    cad[:, 5:] = 2.0
    cad[9] = 0.0
    return cad


def test_depth_edges_step_and_ramp():
    cad = step_frame()
    edges0 = depth_edges(cad, threshold_m=0.05, dilate=0)
    expected = np.zeros((10, 10), bool)
    expected[:, 4:6] = True  # both sides of the 1 m -> 2 m step
    expected[8:10, :] = True  # silhouette against the empty row
    np.testing.assert_array_equal(edges0, expected)
    edges1 = depth_edges(cad, dilate=1)
    assert edges1[:7, 3:7].all() and not edges1[:7, :3].any() and not edges1[:7, 7:].any()
    ramp = np.tile(np.linspace(1.0, 1.4, 10), (10, 1))  # 4.4 cm per pixel: below threshold
    assert not depth_edges(ramp).any()
    assert depth_edges(np.stack([cad, ramp]), dilate=1)[1].sum() == 0  # no growth across frames


def test_hole_rates_hand_made():
    cad = step_frame()
    depth = cad.copy()
    depth[0, 4] = depth[1, 5] = 0.0  # two holes at the step edge
    depth[0, 0] = 0.0  # one hole on the flat area
    depth[9, 0] = 0.0  # no CAD there: not counted
    rates = hole_rates(cad, depth, threshold_m=0.05, dilate=0)
    # CAD-valid: 90 px; edge: columns 4-5 of rows 0-8 (18 px) + row 8 (10 px) minus overlap (2) = 26
    assert (rates["n_all"], rates["n_edge"], rates["n_flat"]) == (90, 26, 64)
    assert rates["all"] == pytest.approx(3 / 90)
    assert rates["edge"] == pytest.approx(2 / 26)
    assert rates["flat"] == pytest.approx(1 / 64)
    explicit = hole_rates(cad, depth, edge_mask=np.zeros((10, 10), bool))
    assert explicit["n_edge"] == 0 and math.isnan(explicit["edge"]) and explicit["flat"] == pytest.approx(3 / 90)
    with pytest.raises(DepthFormatError, match="edge_mask"):
        hole_rates(cad, depth, edge_mask=np.zeros((3, 3), bool))


def test_masked_edge_stats():
    cad = step_frame()
    depth = cad + 0.01
    depth[:, 4:6] = cad[:, 4:6] - 0.05  # larger residual at the step
    depth[0, 4] = depth[9] = 0.0
    stats = masked_edge_stats(cad, depth, edge_mask=depth_edges(cad, dilate=0) & (np.arange(10) < 9)[:, None])
    assert stats["edge_mean_abs"] == pytest.approx((0.05 * 17 + 0.01 * 8) / 25)  # 26 edge px, 1 hole
    assert stats["flat_mean_abs"] == pytest.approx(0.01)
    assert stats["edge_hole_rate"] == pytest.approx(1 / 26) and stats["flat_hole_rate"] == 0.0


# ---------------------------------------------------------------------- stability
def test_stability_across_seeds():
    base = np.full((1, 4, 4), 2.0)
    samples = np.stack([base, base + 0.02, base - 0.02])  # [S=3, B=1, H, W]
    assert stability_across_seeds(samples) == pytest.approx(np.std([0.0, 0.02, -0.02]))
    samples[1, 0, 0, 0] = 0.0  # a hole in one seed removes that pixel
    samples[:, 0, 1, 1] += np.array([0.0, 1.0, 2.0])
    expected = (14 * np.std([0, 0.02, -0.02]) + np.std([0, 1.02, 1.98])) / 15
    assert stability_across_seeds(torch.tensor(samples)) == pytest.approx(expected)
    as_bf16 = torch.tensor(samples[:, :, None]).to(torch.bfloat16)  # [S, B, 1, H, W] half precision
    assert stability_across_seeds(as_bf16) == pytest.approx(expected, rel=0.05)
    with pytest.raises(DepthFormatError, match="S >= 2"):
        stability_across_seeds(base)


def test_view_consistency_on_a_wall():
    camera = Camera.from_fov(32, 24, 60)
    pose_a = look_at([0, 0, 0], [0, 0, 1], up=(0, -1, 0))
    pose_b = pose_a.copy()
    pose_b[0, 3] = 0.3  # 30 cm to the side, same orientation: a fronto-parallel wall stays at 2 m
    wall = np.full((24, 32), 2.0)
    assert view_consistency(wall, wall, camera, pose_a, pose_b) == pytest.approx(0.0, abs=1e-9)
    assert view_consistency(wall, wall + 0.01, camera, pose_a, pose_b) == pytest.approx(0.01)
    with pytest.raises(DepthFormatError, match="no valid overlapping"):
        view_consistency(wall, np.zeros_like(wall), camera, pose_a, pose_b)
    with pytest.raises(PoseError, match="pose_b"):
        view_consistency(wall, wall, camera, pose_a, np.eye(3))


def test_view_consistency_tilted_plane():
    """A slanted plane seen from two positions: frame a reprojected into b agrees with b's own
    render up to the nearest-pixel lookup (median |error| ~ slope / 4 for sub-pixel offsets
    uniform in [-0.5, 0.5] px); a wrong pose for b breaks the agreement."""
    camera = Camera.from_fov(48, 36, 60)
    normal = np.array([0.3, 0.0, -1.0]) / np.linalg.norm([0.3, 0.0, -1.0])
    offset = -2.0  # plane: normal . x = offset

    def render(pose):
        rays = camera.pixel_rays() @ pose[:3, :3].T  # world directions whose camera-frame z is 1
        return (offset - pose[:3, 3] @ normal) / (rays @ normal)  # ray parameter = z-depth

    pose_a = look_at([0, 0, 0], [0, 0, 1], up=(0, -1, 0))
    pose_b = look_at([0.2, 0.1, 0.0], [0.1, 0.0, 1.0], up=(0, -1, 0))
    da, db = render(pose_a), render(pose_b)
    assert (da > 0).all() and (db > 0).all()
    slope = np.median(np.hypot(np.diff(db, axis=1)[:-1], np.diff(db, axis=0)[:, :-1]))  # metres per pixel
    consistency = view_consistency(da, db, camera, pose_a, pose_b)
    assert consistency < 0.5 * slope
    assert view_consistency(da, db, camera, pose_a, pose_a) > 2 * slope


# ---------------------------------------------------------------------- DisCo normalisation and sampling
def test_normalize_pair_longest_side_of_reference():
    gt = np.array([[0.0, 0.0, 0.0], [4.0, 2.0, 1.0]])
    pred = np.array([[2.0, 1.0, 0.5], [6.0, 1.0, 0.5]])
    pred_n, gt_n = normalize_pair(pred, gt)
    np.testing.assert_allclose(gt_n, [[-1, -0.5, -0.25], [1, 0.5, 0.25]])
    np.testing.assert_allclose(pred_n, [[0, 0, 0], [2, 0, 0]])  # same transform, not its own
    pred_p, _ = normalize_pair(pred, gt, reference="pred")
    np.testing.assert_allclose(pred_p, [[-1, 0, 0], [1, 0, 0]])
    with pytest.raises(Sim2RealError, match="zero-size"):
        normalize_pair(pred, np.ones((5, 3)))
    with pytest.raises(ConfigError, match="reference"):
        normalize_pair(pred, gt, reference="mean")


def test_sample_mesh_surface_area_weighted_and_seeded():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 1], [5, 0, 1], [2, 2, 1]], float)
    triangles = np.array([[0, 1, 2], [3, 4, 5]])  # areas 0.5 and 3.0
    pts = sample_mesh_surface(vertices, triangles, 70_000, seed=3)
    on_big = pts[:, 2] > 0.5
    assert on_big.mean() == pytest.approx(3.0 / 3.5, abs=0.01)
    small = pts[~on_big]
    assert (small[:, 0] >= 0).all() and (small[:, 1] >= 0).all() and (small[:, :2].sum(1) <= 1 + 1e-12).all()
    assert small[:, 0].mean() == pytest.approx(1 / 3, abs=0.01)  # uniform: centroid of the triangle
    np.testing.assert_array_equal(pts, sample_mesh_surface(vertices, triangles, 70_000, seed=3))


def test_is_watertight():
    vertices, triangles = box_mesh()
    assert is_watertight(vertices, triangles)
    assert not is_watertight(vertices, triangles[:-1])
    # faces with their own copies of the corners (unshared vertices) are welded by position
    split = vertices[triangles].reshape(-1, 3), np.arange(36).reshape(12, 3)
    assert is_watertight(*split)
    assert not is_watertight(split[0], split[1][:-1])


# ---------------------------------------------------------------------- DisCo metrics
def test_identical_inputs_score_perfectly():
    rng = np.random.default_rng(1)
    cloud = rng.uniform(-1, 1, (5000, 3))
    m = disco_metrics(cloud, cloud.copy(), num_points=20_000)
    assert m == {"iou": 1.0, "cd_l2_x1000": 0.0, "fscore": 1.0}
    mesh = box_mesh()
    m = disco_metrics(mesh, mesh, num_points=20_000, occupancy="shell")  # same stream: identical samples
    assert m == {"iou": 1.0, "cd_l2_x1000": 0.0, "fscore": 1.0}


@pytest.mark.parametrize("shift_m, cd, fscore", [(0.02, 2 * 0.005**2 * 1000, 1.0), (0.08, 2 * 0.02**2 * 1000, 0.0)])
def test_plane_shifted_along_normal_gives_exact_chamfer(shift_m, cd, fscore):
    """A 4 m grid plane (spacing 2 cm) moved along its normal by `shift_m`: normalisation scales by
    2 / 4 and the Chamfer step by 0.5, so every NN distance is shift_m / 4 exactly (the point
    straight below is nearer than any other grid point), CD = 2 (shift/4)^2 x 1000."""
    gt = plane_grid(201, 4.0)
    pred = gt + [0.0, 0.0, shift_m]
    m = disco_metrics(pred, gt, num_points=100_000, occupancy="shell")
    assert m["cd_l2_x1000"] == pytest.approx(cd, rel=1e-9)
    assert m["fscore"] == fscore


def test_chamfer_fscore_partial_match():
    gt = plane_grid(50, 1.0)
    pred = np.concatenate([gt, gt + [0.0, 0.0, 5.0]])  # half of pred is 5 units away
    m = chamfer_fscore(pred, gt, threshold=0.01)
    assert (m["precision"], m["recall"]) == (0.5, 1.0)
    assert m["fscore"] == pytest.approx(2 * 0.5 / 1.5)
    assert m["cd_l2_x1000"] == pytest.approx(1000 * 0.5 * 25.0)
    far = chamfer_fscore(gt + 1.0, gt, threshold=0.01)
    assert far["fscore"] == 0.0


def test_iou_solid_boxes_known_overlap():
    pytest.importorskip("open3d")
    gt = box_mesh()
    pred = box_mesh((0.25, 0.0, 0.0), (1.25, 1.0, 1.0))
    # normalised: gt = [-1, 1]^3, pred x in [-0.5, 1.5]; inside the query cube pred covers
    # x in [-0.5, 1] (6 of 8 units of volume), all of it inside gt: IoU = 6 / 8
    m = disco_metrics(pred, gt, num_points=100_000)
    assert m["iou"] == pytest.approx(0.75, abs=0.01)
    assert disco_metrics(gt, gt, num_points=100_000)["iou"] == 1.0
    m_torch = disco_metrics((torch.tensor(pred[0]), torch.tensor(pred[1])), gt, num_points=100_000)
    assert m_torch == m


def test_iou_shell_occupancy_of_point_clouds():
    """Shell occupancy of a dense plane is a slab of half-width w = 1/32; two slabs offset by w
    along the normal overlap (2w - w) / (2w + w) = 1/3 (up to the rounded rims of the square)."""
    gt = plane_grid(201, 2.0)  # normalised: [-1, 1]^2 at z = 0, spacing 0.01
    assert disco_metrics(gt, gt, num_points=50_000)["iou"] == 1.0
    slab = disco_metrics(gt + [0.0, 0.0, 1 / 32], gt, num_points=100_000)
    assert slab["iou"] == pytest.approx(1 / 3, abs=0.03)
    assert disco_metrics(gt + [0.0, 0.0, 0.5], gt, num_points=50_000)["iou"] == 0.0
    with pytest.raises(Sim2RealError, match="pred is a point cloud"):
        disco_metrics(gt, box_mesh(), num_points=1000, occupancy="solid")


def test_disco_empty_inputs_named():
    cloud = np.random.default_rng(0).uniform(size=(100, 3))
    with pytest.raises(Sim2RealError, match="pred is empty"):
        disco_metrics(np.zeros((0, 3)), cloud)
    with pytest.raises(Sim2RealError, match="gt is empty"):
        disco_metrics(cloud, np.zeros((0, 3)))
    with pytest.raises(Sim2RealError, match="gt mesh has vertices but no triangles"):
        disco_metrics(cloud, (cloud, np.zeros((0, 3), np.int64)))
    with pytest.raises(Sim2RealError, match=r"pred points must have shape \[N, 3\]"):
        disco_metrics(np.ones((10, 2)), cloud)
    with pytest.raises(ConfigError, match="occupancy"):
        disco_metrics(cloud, cloud, occupancy="sdf")


def test_disco_metrics_do_not_depend_on_the_mesh_order():
    """A mesher may list the same surface in another order (open3d's parallel TSDF extraction does): the seeded
    3D metrics must not move (they did: CD-L2 0.242 / 0.244 / 0.247 for three extractions of one volume)."""
    from sim2real_kit.disco import disco_metrics

    rng = np.random.default_rng(0)
    u, v = np.meshgrid(np.linspace(0, 1, 12), np.linspace(0, 1, 12))
    verts = np.stack([u.ravel(), v.ravel(), 0.1 * np.sin(3 * u.ravel()) * v.ravel()], 1)
    idx = np.arange(144).reshape(12, 12)
    tris = np.concatenate(
        [np.stack([idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel()], 1),
         np.stack([idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()], 1)]
    )  # fmt: skip
    perm = rng.permutation(len(verts))
    inverse = np.argsort(perm)
    shuffled_tris = np.roll(inverse[tris][rng.permutation(len(tris))], 1, axis=1)  # same triangles, other order
    ref = (verts + 0.01, tris)
    a = disco_metrics((verts, tris), ref, num_points=2000, seed=0, occupancy="shell")
    b = disco_metrics((verts[perm], shuffled_tris), ref, num_points=2000, seed=0, occupancy="shell")
    assert a == b


def test_prepared_reference_gives_the_same_numbers_and_refuses_other_settings():
    """`prepare_reference` computes gt's side of DisCo once for many predictions (the benchmark scores every
    simulator against the same real meshes): every number equals the unprepared call's, for meshes (auto ->
    solid), point clouds with a third reference geometry, and shell occupancy; other settings are refused."""
    from sim2real_kit.disco import prepare_reference

    pytest.importorskip("open3d")
    gt = box_mesh()
    preds = [box_mesh((0.25, 0.0, 0.0), (1.25, 1.0, 1.0)), box_mesh((0.0, 0.1, 0.0), (1.0, 0.9, 1.2))]
    ref = prepare_reference(gt, 20_000, seed=3)
    for pred in preds:
        assert disco_metrics(pred, ref, num_points=20_000, seed=3) == disco_metrics(pred, gt, 20_000, seed=3)
        shell = disco_metrics(pred, ref, num_points=20_000, seed=3, occupancy="shell")
        assert shell == disco_metrics(pred, gt, num_points=20_000, seed=3, occupancy="shell")
    rng = np.random.default_rng(0)
    real, cad = rng.normal(size=(3000, 3)), rng.uniform(-2, 2, size=(500, 3))
    ref_cloud = prepare_reference(real, 5000, reference=cad)
    for shift in (0.0, 0.05, 0.3):
        pred = real + [shift, 0.0, 0.0]
        assert disco_metrics(pred, ref_cloud, num_points=5000) == disco_metrics(pred, real, 5000, reference=cad)
    assert disco_metrics(real, ref_cloud, num_points=5000)["iou"] == 1.0
    with pytest.raises(ConfigError, match="prepared"):
        disco_metrics(pred, ref_cloud, num_points=4000)
    with pytest.raises(ConfigError, match="prepared"):
        disco_metrics(pred, ref_cloud, num_points=5000, reference=cad)
    with pytest.raises(ConfigError, match="depends on the prediction"):
        prepare_reference(real, 5000, reference="both")
