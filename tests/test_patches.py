"""Tests of sim2real_kit.patches: the patch grid, patch -> 3D points, flags <-> masks <-> weight
maps, the release's diff_id/position files and the per-split flag file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from sim2real_kit.camera import Camera
from sim2real_kit.errors import ConfigError, MissingArtifactError, Sim2RealError
from sim2real_kit.patches import (
    RELEASE_FRAME,
    batch_has_flags,
    boxes_to_flags,
    extract_patch_points,
    flags_from_scores,
    flags_to_mask,
    load_flag_file,
    mask_to_flags,
    patch_grid,
    read_release_flags,
    save_flag_file,
    scale_boxes,
    weight_map,
    write_release_flags,
)

CAM16 = Camera(20.0, 20.0, 8.0, 8.0, 16, 16)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tilted_plane(camera: Camera, batch: int = 2) -> torch.Tensor:
    """Depth [B, H, W] of planes z = 2 + 0.2 x + 0.1 y (+0.3 m per frame), metres."""
    rays = torch.as_tensor(camera.pixel_rays(np.float32))
    out = []
    for b in range(batch):
        # z = z0 + a x + b y with x = z rx, y = z ry  ->  z = z0 / (1 - a rx - b ry)
        out.append((2.0 + 0.3 * b) / (1 - 0.2 * rays[..., 0] - 0.1 * rays[..., 1]))
    return torch.stack(out)


# ---------------------------------------------------------------------- grid
def test_patch_grid_regular_and_cover():
    boxes = patch_grid(64, 64, 8)
    assert boxes.shape == (64, 4)
    assert (
        boxes[0].tolist() == [0, 8, 0, 8] and boxes[1].tolist() == [0, 8, 8, 16] and boxes[8].tolist() == [8, 16, 0, 8]
    )
    assert boxes[-1].tolist() == [56, 64, 56, 64]
    # stride that does not reach the border: a last patch flush with it is added (same size)
    b = patch_grid(10, 12, 4, 3)
    assert sorted(set(b[:, 0].tolist())) == [0, 3, 6] and sorted(set(b[:, 2].tolist())) == [0, 3, 6, 8]
    assert ((b[:, 1] - b[:, 0]) == 4).all() and ((b[:, 3] - b[:, 2]) == 4).all()
    assert len(patch_grid(10, 12, 4, 3, cover=False)) == 3 * 3


def test_patch_larger_than_frame_is_refused():
    with pytest.raises(Sim2RealError, match="disc.patch_size"):
        patch_grid(64, 64, 65)
    with pytest.raises(ConfigError, match="disc.stride"):
        patch_grid(64, 64, 8, 0)


# ---------------------------------------------------------------------- back-projection
def test_fronto_parallel_plane_backprojects_to_known_points():
    depth = torch.full((1, 16, 16), 2.0)
    boxes = torch.tensor([[4, 8, 8, 12]])  # rows 4..7, columns 8..11: 16 pixels
    pp = extract_patch_points(
        depth, depth, CAM16, boxes, num_points=40, min_valid=1, generator=_gen(), normalize="none"
    )
    pts = pp.points[0, 0]  # [40, 3]
    assert pp.valid.all() and int(pp.n_valid[0, 0]) == 16
    assert torch.allclose(pts[:, 2], torch.full((40,), 2.0))
    u = pts[:, 0] / 2.0 * CAM16.fx + CAM16.cx - 0.5  # column of the pixel centre
    v = pts[:, 1] / 2.0 * CAM16.fy + CAM16.cy - 0.5
    assert torch.allclose(u, u.round(), atol=1e-4) and torch.allclose(v, v.round(), atol=1e-4)
    pixels = {(int(r), int(c)) for r, c in zip(v.round(), u.round())}
    # every valid pixel is taken (40 slots > 16 pixels), and nothing outside the box
    assert pixels == {(r, c) for r in range(4, 8) for c in range(8, 12)}
    # known x, y of the corner pixel (row 4, column 8): ((8 + 0.5 - 8) / 20 * 2, (4 + 0.5 - 8) / 20 * 2)
    assert any(torch.allclose(p, torch.tensor([0.05, -0.35, 2.0]), atol=1e-6) for p in pts)


def test_points_match_camera_backproject():
    depth = _tilted_plane(CAM16)
    boxes = patch_grid(16, 16, 4)
    pp = extract_patch_points(depth, depth, CAM16, boxes, 8, 1, _gen(3), normalize="none")
    full = CAM16.backproject(depth)  # [B, H, W, 3]
    for b in range(2):
        for p in (0, 5, 15):
            for q in pp.points[b, p]:
                dist = (full[b] - q).norm(dim=-1)
                assert float(dist.min()) < 1e-5  # each sampled point is the back-projection of one pixel


def test_consistent_normalisation_keeps_the_depth_cad_offset():
    cad = _tilted_plane(CAM16)
    boxes = patch_grid(16, 16, 4)
    for mode in ("cad", "pair"):
        same = extract_patch_points(cad, cad, CAM16, boxes, 32, 4, _gen(), normalize=mode)
        assert torch.allclose(same.points, same.cad_points)  # depth == CAD -> identical after centring
    # depth 5 cm behind the CAD: the offset survives, both use one centre and one scale
    pp = extract_patch_points(cad + 0.05, cad, CAM16, boxes, 32, 4, _gen(), normalize="cad")
    raw = extract_patch_points(cad + 0.05, cad, CAM16, boxes, 32, 4, _gen(), normalize="none")
    s = pp.scale[..., None, None]
    assert torch.allclose(pp.points - pp.cad_points, (raw.points - raw.cad_points) / s, atol=1e-5)
    assert torch.allclose((raw.points - raw.cad_points)[..., 2], torch.full_like(raw.points[..., 2], 0.05), atol=1e-5)
    assert torch.allclose(pp.cad_points.mean(-2), torch.zeros(2, 16, 3), atol=1e-5)  # CAD centroid at 0
    assert torch.allclose(pp.cad_points.norm(dim=-1).amax(-1), torch.ones(2, 16), atol=1e-5)  # unit ball
    pts_m, cad_m = pp.camera_points()
    assert torch.allclose(pts_m, raw.points, atol=1e-5) and torch.allclose(cad_m, raw.cad_points, atol=1e-5)


def test_few_valid_pixels_resample_and_empty_patches_are_skipped():
    depth = torch.full((1, 16, 16), 2.0)
    depth[0, :8, :8] = 0.0  # patch 0 (rows 0-7, cols 0-7): no valid pixel
    depth[0, :8, 8:] = 0.0
    depth[0, 0, 8:11] = 2.0  # patch 1: exactly 3 valid pixels
    depth[0, 1, 8] = float("nan")  # non-finite pixels count as invalid
    depth[0, 12, 12] = float("inf")
    cad = torch.full((1, 16, 16), 2.0)
    cad[0, 8:, 8:] = 0.0  # patch 3: CAD background -> invalid
    mask = torch.ones(1, 16, 16, dtype=torch.bool)
    mask[0, 8:, :8] = False  # patch 2 masked out
    boxes = patch_grid(16, 16, 8)
    pp = extract_patch_points(depth, cad, CAM16, boxes, 16, 3, _gen(), valid_mask=mask, normalize="none")
    assert pp.n_valid[0].tolist() == [0, 3, 0, 0]
    assert pp.valid[0].tolist() == [False, True, False, False] and pp.num_skipped == 3
    for t in (pp.points, pp.cad_points, pp.centre, pp.scale):
        assert torch.isfinite(t).all()
    assert (pp.points[0, [0, 2, 3]] == 0).all() and (pp.cad_points[0, [0, 2, 3]] == 0).all()
    cols = sorted(set((pp.points[0, 1, :, 0] / 2 * 20 + 8 - 0.5).round().int().tolist()))
    assert cols == [8, 9, 10]  # 16 slots drawn (with replacement) from the 3 valid pixels, each present
    # min_valid above the count skips it too, still no NaN after normalisation
    pp = extract_patch_points(depth, cad, CAM16, boxes, 16, 4, _gen(), valid_mask=mask)
    assert not pp.valid.any() and torch.isfinite(pp.points).all()


def test_sampling_is_reproducible_with_a_generator():
    depth = _tilted_plane(CAM16) + 0.01 * torch.randn(2, 16, 16, generator=_gen(9))
    boxes = patch_grid(16, 16, 8)
    a = extract_patch_points(depth, depth, CAM16, boxes, 20, 4, _gen(1))
    b = extract_patch_points(depth, depth, CAM16, boxes, 20, 4, _gen(1))
    c = extract_patch_points(depth, depth, CAM16, boxes, 20, 4, _gen(2))
    assert torch.equal(a.points, b.points) and not torch.equal(a.points, c.points)
    # without replacement when enough pixels: 20 distinct pixels of the 64 of a patch
    assert len({tuple(p.tolist()) for p in a.points[0, 0]}) == 20


def test_extract_rejects_bad_inputs():
    depth = torch.full((1, 16, 16), 2.0)
    with pytest.raises(Sim2RealError, match="camera is 16x16 but the depth frames are 8x8"):
        extract_patch_points(depth[:, :8, :8], depth[:, :8, :8], CAM16, patch_grid(8, 8, 4), 8)
    with pytest.raises(Sim2RealError, match="one size"):
        extract_patch_points(depth, depth, CAM16, torch.tensor([[0, 4, 0, 4], [0, 8, 0, 8]]), 8)
    with pytest.raises(Sim2RealError, match=r"boxes\[0\]"):
        extract_patch_points(depth, depth, CAM16, torch.tensor([[0, 20, 0, 4]]), 8)
    with pytest.raises(ConfigError, match="disc.normalize"):
        extract_patch_points(depth, depth, CAM16, patch_grid(16, 16, 8), 8, normalize="unit")
    with pytest.raises(ConfigError, match="disc.num_points"):
        extract_patch_points(depth, depth, CAM16, patch_grid(16, 16, 8), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_extract_runs_on_cuda():
    depth = _tilted_plane(CAM16).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    pp = extract_patch_points(depth, depth, CAM16, patch_grid(16, 16, 4), 8, 1, g)
    assert pp.points.is_cuda and pp.valid.all()


# ---------------------------------------------------------------------- flags, masks, weight maps
def test_flags_mask_flags_round_trip():
    boxes = patch_grid(64, 64, 8)
    flags = torch.rand(3, 64, generator=_gen(4)) < 0.3
    mask = flags_to_mask(flags, boxes, 64, 64)
    assert mask.shape == (3, 1, 64, 64)
    assert float(mask.sum()) == float(flags.sum()) * 64  # 8x8 pixels per flagged patch
    assert torch.equal(mask_to_flags(mask, boxes), flags)
    assert torch.equal(mask_to_flags(mask[:, 0], boxes, min_fraction=1.0), flags)


def test_overlapping_patches_take_the_maximum():
    boxes = torch.tensor([[0, 4, 0, 4], [0, 4, 2, 6]])
    mask = flags_to_mask(torch.tensor([[0.3, 0.8]]), boxes, 4, 8)[0, 0]
    assert mask[0].tolist() == pytest.approx([0.3, 0.3, 0.8, 0.8, 0.8, 0.8, 0.0, 0.0])


def test_weight_map_at_latent_size_hand_computed():
    boxes = patch_grid(8, 8, 4)  # 4 patches: top-left, top-right, bottom-left, bottom-right
    flags = torch.tensor([[True, False, False, False]])
    full = weight_map(flags, boxes, 8, 8)
    assert full.shape == (1, 1, 8, 8) and float(full[0, 0, :4, :4].min()) == 1.5 and float(full[0, 0, 4:].max()) == 0.5
    w4 = weight_map(flags, boxes, 8, 8, 1.5, 0.5, out_size=4)[0, 0]
    assert w4.tolist() == [[1.5, 1.5, 0.5, 0.5], [1.5, 1.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]
    w2 = weight_map(flags, boxes, 8, 8, out_size=(2, 2))[0, 0]
    assert w2.tolist() == [[1.5, 0.5], [0.5, 0.5]]
    # non-aligned size: nearest takes source pixel floor(i * 8 / 3) = 0, 2, 5 (cv2.INTER_NEAREST)
    w3 = weight_map(flags, boxes, 8, 8, out_size=3)[0, 0]
    assert w3.tolist() == [[1.5, 1.5, 0.5], [1.5, 1.5, 0.5], [0.5, 0.5, 0.5]]


def test_weight_map_continuous_scores():
    boxes = patch_grid(8, 8, 4)
    scores = torch.tensor([[0.2, 0.0, 1.0, 0.5]])  # 1 - P(real) per patch ("w/o bin")
    w = weight_map(scores, boxes, 8, 8, 1.5, 0.5, out_size=2)[0, 0]
    assert torch.allclose(w, torch.tensor([[0.5 + 0.2, 0.5], [1.5, 1.0]]))
    with pytest.raises(Sim2RealError, match=r"\[0, 1\]"):
        weight_map(torch.tensor([[1.2, 0, 0, 0]]), boxes, 8, 8)


def test_batch_has_flags():
    assert not batch_has_flags(torch.zeros(2, 4, dtype=torch.bool))
    assert batch_has_flags(torch.tensor([[False, False], [False, True]]))
    assert not batch_has_flags(torch.zeros(2, 1, 8, 8))


def test_flags_from_scores_binary_continuous_and_bad_threshold():
    scores = torch.tensor([[0.1, 0.6, 0.3, 1.0]])
    valid = torch.tensor([[True, True, False, False]])
    assert flags_from_scores(scores, valid, 0.5, True).tolist() == [[True, False, False, False]]
    assert torch.allclose(flags_from_scores(scores, valid, 0.5, False), torch.tensor([[0.9, 0.4, 0.0, 0.0]]))
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="disc.threshold"):
            flags_from_scores(scores, valid, bad, True)


def test_scale_boxes_and_boxes_to_flags():
    boxes = patch_grid(64, 64, 8)
    b512 = scale_boxes(boxes, 64, RELEASE_FRAME)
    assert b512[9].tolist() == [64, 128, 64, 128]
    assert torch.equal(scale_boxes(b512, 512, 64), boxes)
    assert scale_boxes(torch.tensor([[0, 1, 3, 4]]), (8, 8), (4, 4)).tolist() == [[0, 1, 2, 3]]  # >= 1 px kept
    flags = boxes_to_flags(torch.tensor([[8, 16, 0, 16]]), boxes, 64, 64)
    assert flags.nonzero()[:, 0].tolist() == [8, 9]


# ---------------------------------------------------------------------- release format
def test_release_format_round_trip_from_a_64px_frame(tmp_path):
    boxes = patch_grid(64, 64, 8)
    flags = torch.zeros(64, dtype=torch.bool)
    flags[[3, 17, 63]] = True
    ids = flags.nonzero()[:, 0]
    boxes_512 = scale_boxes(boxes[ids], 64, 512)
    diff = write_release_flags(tmp_path / "flags", "scene7/130", boxes_512, ids.tolist())
    assert diff == tmp_path / "flags" / "scene7" / "130_diff_id.txt"
    lines = diff.read_text().splitlines()
    assert [line.rsplit("/", 1)[-1] for line in lines] == ["130_3.ply", "130_17.ply", "130_63.ply"]
    # what the release's Stage-II loader does: replace .ply by _position.txt, first line r0 r1 c0 c1
    first = open(lines[1].replace(".ply", "_position.txt")).readline().split()
    assert [int(v) for v in first] == [128, 192, 64, 128]  # patch 17: rows 16..24, cols 8..16 at 64 px, x8
    back = read_release_flags(tmp_path / "flags", "scene7/130")
    assert torch.equal(back, boxes_512)
    assert torch.equal(boxes_to_flags(scale_boxes(back, 512, 64), boxes, 64, 64), flags)


def test_release_files_survive_a_moved_folder_and_bad_files_are_named(tmp_path):
    write_release_flags(tmp_path / "a", "7", torch.tensor([[0, 64, 448, 512]]))
    moved = tmp_path / "b"
    (tmp_path / "a").rename(moved)
    assert read_release_flags(moved, "7").tolist() == [[0, 64, 448, 512]]
    write_release_flags(tmp_path / "c", "8", torch.zeros(0, 4, dtype=torch.long))
    assert read_release_flags(tmp_path / "c", "8").shape == (0, 4)
    with pytest.raises(MissingArtifactError, match="9_diff_id.txt"):
        read_release_flags(tmp_path / "c", "9")
    assert read_release_flags(tmp_path / "c", "9", missing_ok=True).shape == (0, 4)
    (moved / "7_0_position.txt").write_text("garbage\n")
    with pytest.raises(Sim2RealError, match="7_0_position.txt"):
        read_release_flags(moved, "7")
    with pytest.raises(Sim2RealError, match="512x512"):
        write_release_flags(tmp_path / "d", "1", torch.tensor([[0, 600, 0, 64]]))


def test_release_ply_written_on_request(tmp_path):
    pts = torch.randn(1, 5, 3)
    write_release_flags(tmp_path, "3", torch.tensor([[0, 64, 0, 64]]), patch_points=pts, absolute_paths=False)
    data = (tmp_path / "3_0.ply").read_bytes()
    header, body = data.split(b"end_header\n")
    assert b"element vertex 5" in header
    assert np.allclose(np.frombuffer(body, dtype="<f4").reshape(5, 3), pts[0].numpy())
    assert (tmp_path / "3_diff_id.txt").read_text() == "3_0.ply\n"


# ---------------------------------------------------------------------- per-split flag file
def _flag_file(tmp_path):
    boxes = patch_grid(16, 16, 8)
    scores = torch.tensor([[0.1, 0.9, 0.4, 1.0], [0.8, 0.2, 0.7, 0.6]])
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    path = tmp_path / "flags" / "val.npz"
    save_flag_file(path, scores, boxes, ["s1/0", "s1/1"], 16, 0.5, True, "val", valid=valid)
    return path, scores, valid, boxes


def test_flag_file_round_trip(tmp_path):
    path, scores, valid, boxes = _flag_file(tmp_path)
    assert path.with_suffix(".json").is_file()
    ff = load_flag_file(path, frame_size=16, split="val")
    assert torch.equal(ff.scores, scores) and torch.equal(ff.valid, valid) and torch.equal(ff.boxes, boxes)
    assert ff.frame_ids == ["s1/0", "s1/1"] and ff.frame_size == (16, 16) and ff.threshold == 0.5 and ff.binary
    assert ff.flags.tolist() == [[True, False, True, False], [False, True, False, False]]
    assert ff.meta["num_flagged"] == 3
    w = ff.weight_map(["s1/1"], out_size=2)
    assert w[0, 0].tolist() == [[0.5, 1.5], [0.5, 0.5]]
    assert ff.to_release(tmp_path / "release") == 3
    assert read_release_flags(tmp_path / "release", "s1/0").tolist() == [[0, 256, 0, 256], [256, 512, 0, 256]]
    with pytest.raises(Sim2RealError, match="s1/9"):
        ff.flags_for(["s1/9"])
    lower = ff.with_threshold(0.15)
    assert lower.flags.tolist() == [[True, False, False, False], [False, False, False, False]]
    assert lower.index("s1/1") == 1 and ff.threshold == 0.5
    with pytest.raises(ConfigError, match="disc.threshold"):
        ff.with_threshold(2.0)


def test_flag_file_mismatch_and_bad_threshold_name_the_file(tmp_path):
    path, scores, valid, boxes = _flag_file(tmp_path)
    with pytest.raises(Sim2RealError, match=r"val\.npz.*16x16 frames but 64x64"):
        load_flag_file(path, frame_size=64)
    with pytest.raises(Sim2RealError, match=r"val\.npz.*split 'val' but split 'train'"):
        load_flag_file(path, split="train")
    with pytest.raises(MissingArtifactError, match="nothing.npz"):
        load_flag_file(tmp_path / "nothing.npz")
    with pytest.raises(ConfigError, match="disc.threshold"):
        save_flag_file(tmp_path / "x.npz", scores, boxes, ["a", "b"], 16, 1.2, True, "val")
    with pytest.raises(Sim2RealError, match="NaN"):
        save_flag_file(tmp_path / "x.npz", scores * float("nan"), boxes, ["a", "b"], 16, 0.5, True, "val")
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(Sim2RealError, match="bad.npz"):
        load_flag_file(tmp_path / "bad.npz")


# ---------------------------------------------------------------------- the refactor's reference
def _digest(*parts) -> str:
    """sha256 (first 16 hex digits) of tensors / arrays (dtype, shape and bytes) and bytes, in order."""
    h = hashlib.sha256()
    for p in parts:
        if not isinstance(p, bytes):
            a = np.ascontiguousarray(p.numpy() if isinstance(p, torch.Tensor) else p)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            p = a.tobytes()
        h.update(p)
    return h.hexdigest()[:16]


def _patch_fingerprint(tmp_path) -> dict[str, str]:
    """Grid, patch points of the three normalisations, flags / masks / weights, the release files and
    a flag file, on seeded random 48x64 frames."""
    g = _gen(0)
    H, W = 48, 64
    camera = Camera(50.0, 50.0, 32.0, 24.0, W, H)
    depth = torch.rand(2, H, W, generator=g) + 1.0
    depth[:, :10, :10] = 0
    cad = depth + 0.01 * torch.randn(2, H, W, generator=g)
    boxes = patch_grid(H, W, 16, 12)
    out = {"grid": _digest(boxes)}
    for normalize in ("cad", "pair", "none"):
        pp = extract_patch_points(depth, cad, camera, boxes, 64, generator=_gen(1), normalize=normalize)
        out[f"points_{normalize}"] = _digest(pp.points, pp.cad_points, pp.valid, pp.n_valid, pp.centre, pp.scale)
    scores = torch.rand(2, len(boxes), generator=g)
    flags = flags_from_scores(scores, threshold=0.4)
    mask = flags_to_mask(flags, boxes, H, W)
    out["flags"] = _digest(flags, flags_from_scores(scores, binary=False), mask, mask_to_flags(mask, boxes, 0.3))
    out["weights"] = _digest(weight_map(flags, boxes, H, W, out_size=(24, 32)), weight_map(scores, boxes, H, W))
    boxes_512 = scale_boxes(boxes, (H, W), RELEASE_FRAME)
    write_release_flags(tmp_path / "rel", "s0/000", boxes_512[:3], [0, 4, 7], pp.points[0, :3], absolute_paths=False)
    files = sorted(p for p in (tmp_path / "rel").rglob("*") if p.is_file())
    out["release"] = _digest(*(f"{p.name}".encode() + p.read_bytes() for p in files))
    out["release_read"] = _digest(boxes_512, read_release_flags(tmp_path / "rel", "s0/000"))
    path = save_flag_file(tmp_path / "flags" / "val.npz", scores, boxes, ["s0/000", "s0/001"], (H, W), 0.4, True, "val")
    ff = load_flag_file(path)
    out["flag_file"] = _digest(
        path.with_suffix(".json").read_bytes(), ff.scores, ff.valid, ff.boxes, ff.flags, ff.weight_map(["s0/001"])
    )
    return out


# Reference of the module split of patches.py (a pure refactor, "every number held"): these digests
# were computed by the code *before* the split (commit ad6e622) and must come out unchanged. They
# are hard-coded on purpose: they are the reference, not a property. Should floating point of
# another machine or torch version ever be the cause of a failure, recompute them by running
# `_patch_fingerprint` on the code of ad6e622 on that machine, never from the code under test.
PATCH_FINGERPRINT = {
    "grid": "03b8ac9c39808bea",
    "points_cad": "c6fdbcf30ba1930b",
    "points_pair": "59c4aeb651943531",
    "points_none": "1394608e96ea194d",
    "flags": "d56a211d011368c3",
    "weights": "6f40f7458afc1799",
    "release": "7852591580575a8b",
    "release_read": "1e4689b380567212",
    "flag_file": "40d29175a96628cf",
}


def test_patch_and_flag_numbers_are_bit_identical_to_the_reference(tmp_path):
    assert _patch_fingerprint(tmp_path) == PATCH_FINGERPRINT


def test_patches_keeps_every_public_name_after_the_split():
    """`sim2real_kit.patches` re-exports the names that moved to patch_boxes.py and flags.py."""
    from sim2real_kit import flags, patch_boxes, patches

    names = set(
        "RELEASE_FRAME NORMALIZE_MODES FLAG_FILE_FORMAT FLAG_FILE_VERSION FlagFile PatchPoints batch_has_flags "
        "boxes_to_flags check_boxes check_threshold extract_patch_points flags_from_scores flags_to_mask "
        "load_flag_file mask_box_fraction mask_to_flags patch_grid read_release_flags save_flag_file scale_boxes "
        "weight_map write_release_flags".split()
    )
    assert names <= set(patches.__all__)
    for name in names:
        assert hasattr(patches, name), name
    for name in flags.__all__:
        assert getattr(patches, name) is getattr(flags, name), name
    for name in ("check_boxes", "patch_grid", "scale_boxes"):
        assert getattr(patches, name) is getattr(patch_boxes, name), name
