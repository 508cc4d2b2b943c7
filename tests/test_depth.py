import numpy as np
import pytest
import torch
from PIL import Image

from sim2real_kit import depth as D
from sim2real_kit.errors import DepthFormatError


def test_png_round_trip_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 65535, (17, 23), dtype=np.uint16)
    p = tmp_path / "d.png"
    D.write_depth_png(p, counts.astype(np.float64) * 0.001)
    back = D.read_depth_png(p)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(np.rint(back / 0.001).astype(np.uint16), counts)
    raw = np.asarray(Image.open(p))
    np.testing.assert_array_equal(raw, counts)


def test_finer_unit(tmp_path):
    p = tmp_path / "d.png"
    D.write_depth_png(p, np.array([[1.2345, 0.0]]), unit_m=0.0001)
    np.testing.assert_allclose(D.read_depth_png(p, unit_m=0.0001), [[1.2345, 0.0]], atol=1e-6)


@pytest.mark.parametrize(
    "arr,match",
    [
        (np.zeros((4, 4), np.uint8), "8-bit"),
        (np.zeros((4, 4, 3), np.uint8), "channels"),
        (np.zeros((4, 4), np.float32), "floating"),
    ],
)
def test_bad_pngs(tmp_path, arr, match):
    p = tmp_path / "bad.png"
    if arr.dtype == np.float32:
        Image.fromarray(arr, mode="F").save(tmp_path / "bad.tiff")
        p = tmp_path / "bad.tiff"
    else:
        Image.fromarray(arr).save(p)
    with pytest.raises(DepthFormatError, match=match) as e:
        D.read_depth_png(p)
    assert p.name in str(e.value)


def test_truncated_png(tmp_path):
    p = tmp_path / "t.png"
    D.write_depth_png(p, np.ones((64, 64)))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DepthFormatError, match="t.png"):
        D.read_depth_png(p)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0])
def test_nan_inf_negative(tmp_path, bad):
    arr = np.ones((3, 3))
    arr[1, 1] = bad
    with pytest.raises(DepthFormatError):
        D.check_depth(arr)
    with pytest.raises(DepthFormatError):
        D.check_depth(torch.tensor(arr))
    with pytest.raises(DepthFormatError):
        D.write_depth_png(tmp_path / "x.png", arr)
    assert not (tmp_path / "x.png").exists()


def test_too_deep_for_uint16(tmp_path):
    with pytest.raises(DepthFormatError, match="does not fit"):
        D.write_depth_png(tmp_path / "x.png", np.full((2, 2), 70.0))


def test_normalise_round_trip_within_1mm():
    d = np.linspace(0.05, 4.9, 10001)
    n = D.normalize_depth(d)
    assert n.min() >= -1 and n.max() <= 1
    back = D.denormalize_depth(n, hole_at=np.inf)
    assert np.abs(back - d).max() < 1e-3
    # torch, float32
    t = torch.tensor(d, dtype=torch.float32)
    backt = D.denormalize_depth(D.normalize_depth(t), hole_at=float("inf"))
    assert (backt - t).abs().max().item() < 1e-3


def test_normalise_known_values_and_invalid():
    n = D.normalize_depth(np.array([0.05, 5.0 * 0.999, 0.0, 7.0]))
    assert n[0] == pytest.approx(-1.0)
    assert n[2] == 1.0 and n[3] == 1.0
    assert D.denormalize_depth(np.array([1.0]))[0] == 0.0  # 5 m decodes to a hole


def test_residual_encode_decode_exact():
    rng = np.random.default_rng(1)
    cad_n, real_n = rng.uniform(-1, 1, (2, 50))
    res = D.encode_residual(real_n, cad_n)
    assert np.abs(res).max() <= 1
    np.testing.assert_array_equal(D.decode_residual(res, cad_n), cad_n + (real_n - cad_n))
    np.testing.assert_allclose(D.decode_residual(res, cad_n), real_n, atol=1e-15)


def test_valid_mask_release_rule():
    cad = np.array([0.0, 1.0, 1.0, 1.0])
    real = np.array([1.0, 1.2, 1.6, 0.0])
    np.testing.assert_array_equal(D.valid_mask(cad, real), [False, True, False, False])


def test_channels():
    x = torch.rand(2, 1, 4, 4)
    y = D.replicate_channels(x)
    assert y.shape == (2, 3, 4, 4)
    torch.testing.assert_close(D.mean_channels(y), x)
    assert D.replicate_channels(np.zeros((4, 4))).shape == (3, 4, 4)
