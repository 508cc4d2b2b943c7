"""Depth maps: 16-bit PNG IO, validity masks, the log normalisation of the release and the
residual encoding of the paper's Stage-I (Sec. 3.2).

Inside the library depth is float metres (z along the optical axis, 0 = invalid). On disk it is
uint16 PNG in millimetres unless a dataset declares a finer unit (`depth_unit_m`, e.g. 0.0001).

Normalisation (release facts): valid depth d in [0.05, 4.9] m maps to ln(d / 0.05) / ln(100) in
[0, ~0.996], invalid pixels map to 1.0 (that is, 5 m), then x * 2 - 1 into [-1, 1]. The residual
target is (real_n - cad_n) / 2 in [-1, 1] (the release's sign: real minus CAD); decoding is
residual * 2 + cad_n. Decoded depth >= 4.9 m is a hole (0).

Every array function accepts numpy arrays and torch tensors and returns the same kind.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from sim2real_kit.errors import ConfigError, DepthFormatError

DEPTH_MIN_M = 0.05  # nearest valid depth of the normalisation, metres
DEPTH_MAX_M = 4.9  # farthest valid depth; decoded depth at or beyond it is a hole
LOG_RANGE = math.log(100.0)  # ln(5 m / 0.05 m): normalised 1.0 == 5 m
MAX_DIFF_M = 0.5  # |real - cad| above this is not a residual but a mismatch: masked out
MM = 0.001


# ---------------------------------------------------------------------- checks
def check_depth(depth, name: str = "depth"):
    """Raise DepthFormatError if `depth` holds NaN, inf or negative values; return it unchanged."""
    xp = _xp(depth)
    if xp is np:
        arr = np.asarray(depth)
        if not np.issubdtype(arr.dtype, np.number):
            raise DepthFormatError(f"{name} must be numeric, got dtype {arr.dtype}")
        finite = np.isfinite(arr).all()
        neg = (arr < 0).any() if finite else False
    else:
        finite = bool(xp.isfinite(depth).all())
        neg = bool((depth < 0).any()) if finite else False
    if not finite:
        raise DepthFormatError(f"{name} contains NaN or inf; depth must be finite metres (0 = invalid)")
    if neg:
        raise DepthFormatError(f"{name} contains negative values; depth is metres >= 0 (0 = invalid)")
    return depth


# ---------------------------------------------------------------------- PNG IO
def read_depth_png(path: str | Path, unit_m: float = MM) -> np.ndarray:
    """Read a uint16 depth PNG -> float32 metres [H, W]. Refuses 8-bit, RGB, float and truncated files."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise DepthFormatError("depth PNG does not exist", path)
    try:
        with Image.open(path) as im:
            im.load()
            mode, bands = im.mode, len(im.getbands())
            arr = np.asarray(im)
    except (OSError, SyntaxError, ValueError, zlib.error) as e:
        raise DepthFormatError(f"cannot decode PNG (truncated or corrupt?): {e}", path) from None
    if bands != 1:
        raise DepthFormatError(
            f"expected a single-channel uint16 depth PNG, got mode {mode} with {bands} channels", path
        )
    if arr.dtype.kind == "f":
        raise DepthFormatError(f"expected uint16 depth, got floating-point image (mode {mode})", path)
    if mode in ("L", "P", "1") or arr.dtype == np.uint8 or arr.dtype == bool:
        raise DepthFormatError(f"expected uint16 depth, got an 8-bit image (mode {mode})", path)
    if arr.dtype != np.uint16:
        if arr.dtype.kind in "iu" and arr.min(initial=0) >= 0 and arr.max(initial=0) <= 65535:
            arr = arr.astype(np.uint16)  # PIL reads some 16-bit PNGs as int32 mode "I"
        else:
            raise DepthFormatError(f"expected uint16 depth, got {arr.dtype}", path)
    return arr.astype(np.float32) * np.float32(unit_m)


def depth_to_uint16(depth_m, unit_m: float = MM, name: str = "depth") -> np.ndarray:
    """Metres -> uint16 counts of `unit_m` (rounded). Errors when a value does not fit 16 bits."""
    depth_m = np.asarray(check_depth(_to_numpy(depth_m), name), dtype=np.float64)
    counts = np.rint(depth_m / unit_m)
    if counts.max(initial=0) > 65535:
        raise DepthFormatError(
            f"{name}: {depth_m.max():.3f} m does not fit uint16 at {unit_m} m per count (max {65535 * unit_m:.3f} m)"
        )
    return counts.astype(np.uint16)


def write_depth_png(path: str | Path, depth_m, unit_m: float = MM) -> None:
    """Write float metres [H, W] as a uint16 PNG (rounded to `unit_m`), atomically."""
    from PIL import Image

    from sim2real_kit.io import atomic_path

    counts = depth_to_uint16(depth_m, unit_m, name=str(path))
    if counts.ndim != 2:
        raise DepthFormatError(f"depth must be 2-D [H, W], got shape {counts.shape}", path)
    with atomic_path(path) as tmp:
        Image.fromarray(counts).save(tmp, format="PNG")


# ---------------------------------------------------------------------- masks and normalisation
def valid_mask(cad, real=None, max_diff: float = MAX_DIFF_M):
    """Training mask of the release: CAD and real within the normalisation range (0.05-4.9 m) and
    |real - cad| < max_diff (metres). Without `real`, only the CAD's validity."""
    m = depth_in_range(cad)
    if real is not None:
        m = m & depth_in_range(real) & (abs(real - cad) < max_diff)
    return m


def depth_in_range(depth):
    """Pixels the normalisation treats as valid: 0.05 m <= d <= 4.9 m."""
    return (depth >= DEPTH_MIN_M) & (depth <= DEPTH_MAX_M)


def normalize_depth(depth, mask=None):
    """Metres -> log-normalised depth in [-1, 1]; invalid (out of range, or outside `mask`) -> 1."""
    xp = _xp(depth)
    ok = depth_in_range(depth)
    if mask is not None:
        ok = ok & mask
    safe = xp.where(ok, depth, xp.ones_like(depth) * DEPTH_MIN_M) if xp is not np else np.where(ok, depth, DEPTH_MIN_M)
    n = xp.log(safe / DEPTH_MIN_M) / LOG_RANGE
    n = xp.where(ok, n, xp.ones_like(n))
    return n * 2 - 1


def cad_condition(cad):
    """The normalised CAD map [.., H, W] in [-1, 1] a denoiser is conditioned on (invalid -> 1).

    A function of the CAD depth (metres) alone, used by training (`PairedDepthDataset`) and sampling
    (`Sim2RealPipeline`, the GAN baselines) alike: the real capture's holes and mismatches select
    target pixels and loss weights, never the condition (else the model learns from a condition it
    never sees at sampling time)."""
    return normalize_depth(cad, valid_mask(cad))


def cad_edge_map(cad_n, scale_m: float = 0.05):
    """Depth discontinuities of a normalised CAD condition: torch [B, 1, H, W] -> [B, 1, H, W] in [0, 1],
    tanh(largest |depth jump| to a 4-neighbour / `scale_m`), jumps in metres (invalid CAD counts as 4.9 m:
    a silhouette against background is a jump). A function of the CAD alone, like `cad_condition`.

    Why (kit extension, `model.cond_edges`): in `cad_condition`'s log units a 5 cm jump at 2 m is ~0.015 of
    a map that spans ~0.6, so a denoiser's first convolutions do not find the edges where sensors lose data
    (docs/results.md, "Holes"); this map hands them over at unit scale."""
    import torch
    import torch.nn.functional as F

    d = denormalize_depth(cad_n.float(), hole_at=math.inf)  # metres; invalid CAD (1) -> the range's far end
    p = F.pad(d, (1, 1, 1, 1), mode="replicate")
    center = p[..., 1:-1, 1:-1]
    jump = torch.stack(
        [(center - p[..., 1:-1, :-2]).abs(), (center - p[..., 1:-1, 2:]).abs(),
         (center - p[..., :-2, 1:-1]).abs(), (center - p[..., 2:, 1:-1]).abs()]
    ).amax(dim=0)  # fmt: skip
    return torch.tanh(jump / scale_m).to(cad_n.dtype)


def denormalize_depth(depth_n, hole_at: float = DEPTH_MAX_M):
    """Log-normalised [-1, 1] -> metres; results at or beyond `hole_at` (4.9 m) become 0 (a hole)."""
    xp = _xp(depth_n)
    if xp is np:
        n = np.clip(depth_n, -1.0, 1.0)
    else:
        n = depth_n.clamp(-1.0, 1.0)
    d = DEPTH_MIN_M * xp.exp((n + 1) / 2 * LOG_RANGE)
    return xp.where(d >= hole_at, xp.zeros_like(d), d)


def encode_residual(real_n, cad_n, scale: float = 0.5):
    """Stage-I target: (real_n - cad_n) * scale; scale 0.5 is the release's /2, keeping it in [-1, 1]."""
    return (real_n - cad_n) * scale


def decode_residual(residual, cad_n, scale: float = 0.5):
    """Inverse of `encode_residual`: residual / scale + cad_n (normalised depth)."""
    return residual / scale + cad_n


def previous_stage_condition(prev_depth_m, cad_n, condition: str, residual_scale: float):
    """The normalised map [B, 1, H, W] (torch) that conditions stage k > 1, from stage k-1's output in metres
    (holes 0) and the CAD condition `cad_n` (`cad_condition`): "depth" -> normalize_depth(prev); "residual"
    -> encode_residual(normalize_depth(prev), cad_n, residual_scale) (the target's own scale).

    The previous output is first rounded to whole millimetres, as the uint16 PNG that Stage-II's dataset
    reads it from: training (`StageNDataset`) and sampling (`Sim2RealPipeline`) call this same function, so
    the condition a later stage learns from is the one it gets."""
    import torch

    prev_mm = torch.round(prev_depth_m.float() * 1000.0)
    prev_n = normalize_depth(prev_mm * np.float32(MM))
    if condition == "depth":
        return prev_n
    if condition == "residual":
        return encode_residual(prev_n, cad_n, residual_scale)
    raise ConfigError(f"stage2.condition = {condition!r}; allowed: depth, residual")


def replicate_channels(x, channels: int = 3):
    """[..., 1, H, W] or [H, W] -> [..., channels, H, W] (the VAE wants 3 channels)."""
    xp = _xp(x)
    if x.ndim == 2:
        x = x[None]
    if xp is np:
        return np.repeat(x, channels, axis=-3)
    return (
        x.repeat_interleave(channels, dim=-3) if x.shape[-3] == 1 else x.repeat(*([1] * (x.ndim - 3)), channels, 1, 1)
    )


def mean_channels(x):
    """[..., C, H, W] -> [..., 1, H, W]: the release averages the 3 decoded channels."""
    xp = _xp(x)
    return x.mean(axis=-3, keepdims=True) if xp is np else x.mean(dim=-3, keepdim=True)


def _xp(x):
    if type(x).__module__.startswith("torch"):
        import torch

        return torch
    return np


def _to_numpy(x):
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return np.asarray(x)
