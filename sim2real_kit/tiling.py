"""Frames larger than the model: overlapping model-size tiles sampled as one sample and blended, the
MultiDiffusion recipe (Bar-Tal et al., ICML 2023) on the kit's `Sim2RealPipeline` (its `step_callback`).

A pipeline works on `size` x `size` maps (the model size). `simulate_tiled` covers a frame [H, W] (or the pixels
of a region of it) with a regular grid of native-resolution tiles overlapping by `overlap` pixels
(`tile_boxes`), cuts every tile's initial noise from one noise map of the frame and, after every DDIM step,
averages the tiles where they overlap (`TileSync`), then blends the outputs with weights that fall to ~0 at a
tile's edge (`blend_window`, `blend_tiles`): no tile border shows (`seam_ratio` ~ 1). Used by the real-sample
evaluation (`real_sample.simulate_tiles`) and by `simulate.simulate_frames` (native-resolution output).
`simulate_full` is the tile-free alternative: each whole frame in one fully convolutional pass.
"""

from __future__ import annotations

import numpy as np
import torch

from sim2real_kit.errors import ConfigError


def tile_boxes(region: np.ndarray, size: int, stride: int | None = None) -> list[tuple[int, int]]:
    """(left, top) of the size x size tiles of a regular grid (step `stride`, default `size`: no overlap) over
    a frame [H, W] that hold a pixel of `region` (the last row / column of tiles is shifted to end at the
    frame's border)."""
    H, W = region.shape
    step = size if stride is None else int(stride)
    if not 0 < step <= size:
        raise ConfigError(f"tile stride must be in 1..{size} (the tile side), got {stride}")
    lefts = sorted({*range(0, W - size + 1, step), W - size})
    tops = sorted({*range(0, H - size + 1, step), H - size})
    return [(x, y) for y in tops for x in lefts if region[y : y + size, x : x + size].any()]


def blend_window(size: int, overlap: int) -> np.ndarray:
    """[S, S] weights of one tile: 1 inside, a linear ramp over the `overlap` pixels at each side down to
    1 / (overlap + 1) at the edge (never 0, so a pixel only one tile covers keeps its value)."""
    ramp = np.ones(size, np.float32)
    if overlap > 0:
        r = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
        ramp[:overlap] = np.minimum(ramp[:overlap], r)
        ramp[size - overlap :] = np.minimum(ramp[size - overlap :], r[::-1])
    return np.outer(ramp, ramp)


def blend_tiles(
    tiles: np.ndarray, boxes: list[tuple[int, int, int]], shape: tuple[int, int, int], overlap: int
) -> np.ndarray:
    """Depth [F, H, W] from overlapping tiles [N, S, S] (metres, 0 = hole) at `boxes` (frame, left, top):
    each pixel the `blend_window`-weighted mean of the tiles' valid values, a hole where the weighted share
    of tiles that see a hole there is more than half; 0 where no tile lies. No step at a tile border: a
    tile's weight falls to ~0 at its edge. (The mean of independent samples is smoother than one sample in
    the overlap; the residual's spread there is reduced by up to 1/sqrt(2).)"""
    valid = tiles > 0
    acc, weight_valid, weight_all = _window_sums(boxes, shape, overlap, np.where(valid, tiles, 0.0), valid)
    keep = weight_valid > 0.5 * weight_all
    out = np.where(keep, acc / np.maximum(weight_valid, 1e-12), 0.0)
    return out.astype(np.float32)


def blend_values(
    tiles: np.ndarray, boxes: list[tuple[int, int, int]], shape: tuple[int, int, int], overlap: int
) -> np.ndarray:
    """A per-pixel quantity [F, H, W] (e.g. P(valid) in [0, 1]) from overlapping tiles [N, S, S] at `boxes`
    (frame, left, top): the `blend_window`-weighted mean of every tile there (no hole logic, unlike `blend_tiles`);
    0 where no tile lies."""
    acc, weight = _window_sums(boxes, shape, overlap, tiles)
    return np.where(weight > 0, acc / np.maximum(weight, 1e-12), 0.0).astype(np.float32)


def _window_sums(boxes: list[tuple[int, int, int]], shape: tuple[int, int, int], overlap: int, *maps: np.ndarray):
    """(sum of `blend_window` x map over the tiles, for each of `maps` [N, S, S], then the sum of the window alone),
    each float64 [F, H, W], tile i placed at boxes[i] = (frame, left, top): what `blend_tiles` and `blend_values`
    divide."""
    size = maps[0].shape[-1]
    window = blend_window(size, overlap)
    sums = [np.zeros(shape, np.float64) for _ in range(len(maps) + 1)]
    for i, (f, x, y) in enumerate(boxes):
        win = (f, slice(y, y + size), slice(x, x + size))
        for total, m in zip(sums, maps):
            total[win] += window * m[i]
        sums[-1][win] += window
    return sums


def seam_ratio(residual: np.ndarray, boxes: list[tuple[int, int, int]], size: int, valid=None) -> float:
    """How visible the tile borders are in a residual map [F, H, W] (metres): the mean |difference| of
    horizontally and vertically adjacent pixels across a tile's inner border (a tile edge that is not the
    frame's), over the same mean everywhere else. ~1: no seam; a step at the borders makes it grow.
    `valid` [F, H, W]: pixels to count (both of a pair must be valid); default residual != 0."""
    residual = np.asarray(residual, np.float64)
    ok = residual != 0 if valid is None else np.asarray(valid, bool)
    F, H, W = residual.shape
    seam_x = np.zeros((F, H, W - 1), bool)  # pair (x, x+1) straddles a vertical tile border
    seam_y = np.zeros((F, H - 1, W), bool)
    for f, x, y in boxes:
        for edge in (x, x + size):
            if 0 < edge < W:
                seam_x[f, y : y + size, edge - 1] = True
        for edge in (y, y + size):
            if 0 < edge < H:
                seam_y[f, edge - 1, x : x + size] = True
    dx, okx = np.abs(np.diff(residual, axis=2)), ok[:, :, 1:] & ok[:, :, :-1]
    dy, oky = np.abs(np.diff(residual, axis=1)), ok[:, 1:, :] & ok[:, :-1, :]
    border = np.concatenate([dx[okx & seam_x], dy[oky & seam_y]])
    inner = np.concatenate([dx[okx & ~seam_x], dy[oky & ~seam_y]])
    if border.size == 0 or inner.size == 0:
        return float("nan")
    return float(border.mean() / max(inner.mean(), 1e-12))


def _native_frames(pipe, cad, prior) -> np.ndarray:
    """CAD frames [F, H, W] float32 for sampling at their own resolution (`simulate_tiled`, `simulate_full`);
    ConfigError for a pipeline that resizes an eval crop (it saw resized pixels, not the frame's), frames that are
    not [F, H, W], or a physics prior of another shape."""
    size = int(pipe.config.size)
    get = getattr(pipe.config, "get", None)
    crop = int((get("eval_crop", 0) if get else 0) or 0)
    if crop and crop != size:
        raise ConfigError(
            f"the pipeline resizes a {crop}-px centre crop to its {size} px (eval_crop): it saw resized pixels, not "
            "the frame's; sample the frame with a pipeline of eval_crop 0 (or simulate at the model size)"
        )
    cad = np.asarray(cad, np.float32)
    if cad.ndim != 3:
        raise ConfigError(f"CAD frames must be [F, H, W], got shape {cad.shape}")
    if prior is not None and np.shape(prior) != cad.shape:
        raise ConfigError(f"physics prior of shape {np.shape(prior)} for CAD frames of shape {cad.shape}")
    return cad


def simulate_tiled(
    pipe,
    cad: np.ndarray,
    region: np.ndarray | None = None,
    generator: torch.Generator | None = None,
    steps: int | None = None,
    eta: float = 0.0,
    overlap: int | None = None,
    blend: str = "sample",
    stages: int | None = None,
    prior: np.ndarray | None = None,
    tile_batch: int | None = None,
    return_validity: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Simulated depth [F, H, W] metres of CAD frames [F, H, W] metres at their own resolution (0 outside the
    tiles): `pipe` run on `pipe.config.size`-px native-resolution tiles (no resize) covering `region` [F, H, W]
    (default: where CAD > 0), overlapping by `overlap` pixels (default a quarter of the tile). Frames smaller than
    a tile are padded with 0 (no CAD) and cut back.

    blend = "sample" (default): the tiles of a frame are one sample, MultiDiffusion-style: their initial noise
    is cut from one noise map per frame and after every DDIM step the tiles are averaged where they overlap
    (`TileSync`, `blend_window` weights), then the outputs are blended (`blend_tiles`). "after": independent
    samples per tile, blended afterwards (averaging independent samples narrows the residual in the overlaps).
    `overlap=0`: the plain grid. steps / eta / stages: the pipeline's (None = its defaults, all stages). prior
    [F, H, W] metres: the physics prior of a pipeline that has one (`Sim2RealPipeline(prior_depth=...)`), tiled
    as the CAD. tile_batch: the most tiles per pipeline call, whole frames grouped (None: one frame per call);
    grouping frames fills a GPU (and keeps one CUDA graph per group size) at 640 x 480, where one frame is ~35
    tiles of 128 px. Another grouping draws the noise in another order: another sample of the same law.
    return_validity (a `data.holes: model` pipeline): (depth, P(valid) [F, H, W]), the tiles' P(valid) blended as
    a weighted mean (`blend_values`; 0 outside the tiles), so that a threshold applies afterwards (with the
    pipeline's `validity_threshold` at 0, `np.where(p < tau, 0, depth)` is the depth at threshold tau). A
    pipeline with a validity head (`model.validity: head`) draws its holes from one uniform field per frame cut
    into the tiles (`_frame_field_tiles`), so the tiles agree on them where they overlap (up to the head's P(valid)
    near a tile border); no threshold applies to them."""
    size = int(pipe.config.size)
    overlap = size // 4 if overlap is None else int(overlap)
    if not 0 <= overlap < size:
        raise ConfigError(f"tile overlap must be in 0..{size - 1} pixels, got {overlap}")
    if blend not in ("sample", "after"):
        raise ConfigError(f"tile blend must be 'sample' or 'after', got {blend!r}")
    cad = _native_frames(pipe, cad, prior)
    region = cad > 0 if region is None else np.asarray(region, bool)
    F, H, W = cad.shape
    pad_h, pad_w = max(size - H, 0), max(size - W, 0)  # a frame smaller than a tile: no-CAD border
    if pad_h or pad_w:
        cad = np.pad(cad, ((0, 0), (0, pad_h), (0, pad_w)))
        region = np.pad(region, ((0, 0), (0, pad_h), (0, pad_w)))
        prior = None if prior is None else np.pad(prior, ((0, 0), (0, pad_h), (0, pad_w)))
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    stride = size - overlap
    out = np.zeros_like(cad)
    prob = np.zeros_like(cad) if return_validity else None
    per_frame = [[(f, x, y) for x, y in tile_boxes(region[f], size, stride)] for f in range(F)]
    groups, group = [], []  # frames sampled together: up to tile_batch tiles (a larger frame alone)
    for f in range(F):
        if not per_frame[f]:
            continue
        if group and (tile_batch is None or sum(len(per_frame[g]) for g in group) + len(per_frame[f]) > tile_batch):
            groups.append(group)
            group = []
        group.append(f)
    groups += [group] if group else []
    for group in groups:
        boxes = [b for f in group for b in per_frame[f]]
        tiles = np.stack([cad[f, y : y + size, x : x + size] for f, x, y in boxes])  # [N, S, S]
        callback = None
        if blend == "sample" and overlap > 0 and any(len(per_frame[f]) > 1 for f in group):
            callback = TileSync(boxes, cad.shape[1:], size, overlap, gen)
        extra = {} if stages is None else {"stages": stages}
        if prior is not None:
            extra["prior_depth"] = np.stack([prior[f, y : y + size, x : x + size] for f, x, y in boxes]).astype(
                np.float32
            )
        if getattr(pipe, "validity_head", None) is not None:  # one hole field per frame, cut into its tiles
            extra["hole_uniform"] = _frame_field_tiles(pipe, group, boxes, cad.shape[1:], size)
        result = pipe(
            tiles,
            num_inference_steps=steps,
            eta=eta,
            generator=gen,
            batch_size=len(tiles),  # one chunk: the callback sees every tile of the call at once
            step_callback=callback,
            **extra,
        )
        slot = {f: k for k, f in enumerate(group)}
        where = [(slot[f], x, y) for f, x, y in boxes]
        out[group] = blend_tiles(np.asarray(result.depth), where, (len(group), *cad.shape[1:]), overlap)
        if prob is not None:
            prob[group] = blend_values(_validity_of(result), where, (len(group), *cad.shape[1:]), overlap)
    if prob is not None:
        return out[:, :H, :W], prob[:, :H, :W]
    return out[:, :H, :W]


def _frame_field_tiles(pipe, group: list[int], boxes: list[tuple[int, int, int]], shape: tuple[int, int], size: int):
    """`Sim2RealPipeline(hole_uniform=...)` for the tiles `boxes` (frame, left, top) of the frames `group`: draws
    one hole field [len(group), H, W] per call from its generator (`pipe.hole_field`) and cuts the tiles
    [N, S, S] out of it, so overlapping tiles of a frame see the same u (a validity head's holes agree there)."""
    slot = {f: k for k, f in enumerate(group)}

    def draw(generator):
        u = pipe.hole_field((len(group), *shape), generator)
        return torch.stack([u[slot[f], y : y + size, x : x + size] for f, x, y in boxes])

    return draw


def _validity_of(result) -> np.ndarray:
    """The pipeline output's P(valid) [B, h, w]; ConfigError for a pipeline without a hole model."""
    validity = getattr(result, "validity", None)
    if validity is None:
        raise ConfigError(
            "P(valid) asked of a pipeline without a hole model: it needs a Stage-I trained with data.holes=model"
        )
    return np.asarray(validity, np.float32)


def simulate_full(
    pipe,
    cad: np.ndarray,
    region: np.ndarray | None = None,
    generator: torch.Generator | None = None,
    steps: int | None = None,
    eta: float = 0.0,
    stages: int | None = None,
    prior: np.ndarray | None = None,
    margin: int | None = None,
    return_validity: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Simulated depth [F, H, W] metres of CAD frames [F, H, W] metres at their own resolution, the denoisers run
    fully convolutionally (`Sim2RealPipeline(native=True)`) on one window per frame: the bounding box of the
    frame's `region` pixels (default: the whole frame) grown by `margin` px of context on each side (default a
    quarter of the model size, the tiles' overlap) and to at least the model size; 0 outside it and in frames
    without region pixels. No tiles: no overlap computed twice, no blending, one sample per window. The
    alternative to `simulate_tiled`; the model, trained on `size`-px crops, sees a larger field at once (its
    attention over more positions, at a cost quadratic in the window's pixels), so whether it holds quality is
    measured, not assumed (`experiments/full_frame.py`). prior [F, H, W] metres: the physics prior of a pipeline
    that has one. return_validity: (depth, P(valid) [F, H, W]) as `simulate_tiled`'s."""
    size = int(pipe.config.size)
    cad = _native_frames(pipe, cad, prior)
    region = np.ones(cad.shape, bool) if region is None else np.asarray(region, bool)
    if region.shape != cad.shape:
        raise ConfigError(f"region of shape {region.shape} for CAD frames of shape {cad.shape}")
    margin = size // 4 if margin is None else int(margin)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    extra = {} if stages is None else {"stages": stages}
    out = np.zeros_like(cad)
    prob = np.zeros_like(cad) if return_validity else None
    for f in range(cad.shape[0]):
        box = window_box(region[f], size, margin)
        if box is None:
            continue
        top, bottom, left, right = box
        if prior is not None:
            extra["prior_depth"] = np.asarray(prior[f : f + 1, top:bottom, left:right], np.float32)
        window = cad[f : f + 1, top:bottom, left:right]
        result = pipe(window, num_inference_steps=steps, eta=eta, generator=gen, native=True, **extra)
        out[f, top:bottom, left:right] = np.asarray(result.depth)[0]
        if prob is not None:
            prob[f, top:bottom, left:right] = _validity_of(result)[0]
    return (out, prob) if prob is not None else out


def window_box(region: np.ndarray, size: int, margin: int) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of `simulate_full`'s window over a frame's `region` [H, W]: its bounding box
    grown by `margin` px on each side and to at least `size` px (centred, inside the frame where it fits); None
    without region pixels."""
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    if not len(rows):
        return None

    def grow(lo: int, hi: int, n: int) -> tuple[int, int]:
        lo, hi = max(lo - margin, 0), min(hi + margin, n)
        short = size - (hi - lo)
        if short > 0:
            lo = max(lo - short // 2, 0)
            hi = min(lo + size, n)
            lo = max(hi - size, 0)
        return lo, hi

    top, bottom = grow(int(rows[0]), int(rows[-1]) + 1, region.shape[0])
    left, right = grow(int(cols[0]), int(cols[-1]) + 1, region.shape[1])
    return top, bottom, left, right


class TileSync:
    """`step_callback` of `simulate_tiled`: the tiles of each frame as one sample. `boxes`: (frame, left, top)
    of every tile of the pipeline call, in batch order (several frames allowed). Before the first step each
    tile's noise is cut from one noise map of its frame (overlaps start equal); after every step the tiles
    of a frame are averaged where they overlap (`blend_window` weights) and cut again. Works on the denoised
    map at the codec's resolution (pixel presets: the tile itself)."""

    def __init__(self, boxes, frame_shape, size: int, overlap: int, generator: torch.Generator):
        self.boxes, self.frame_shape, self.size, self.overlap, self.gen = boxes, frame_shape, size, overlap, generator

    def _scaled(self, x: torch.Tensor):
        down = self.size // x.shape[-1]
        if (
            self.size % x.shape[-1]
            or any(v % down for _, bx, by in self.boxes for v in (bx, by))
            or self.overlap % down
        ):
            raise ConfigError(f"tile positions and overlap must be multiples of the codec's downscale {down}")
        H, W = (-(-d // down) for d in self.frame_shape)
        return down, H, W, x.shape[-1], self.overlap // down

    def __call__(self, x: torch.Tensor, frames: slice, i: int) -> torch.Tensor:
        down, H, W, s, ov = self._scaled(x)
        boxes = self.boxes[frames]
        order = list(dict.fromkeys(f for f, _, _ in boxes))  # the frames of this batch, in box order
        if i < 0:  # one noise map per frame: overlapping tiles start from the same noise
            canvas = {f: torch.randn((x.shape[1], H, W), generator=self.gen).to(x.device, x.dtype) for f in order}
            return torch.stack(
                [canvas[f][:, by // down : by // down + s, bx // down : bx // down + s] for f, bx, by in boxes]
            )
        window = torch.from_numpy(blend_window(s, ov)).to(x.device, x.dtype)
        acc = torch.zeros((len(order), x.shape[1], H, W), device=x.device, dtype=x.dtype)
        wsum = torch.zeros((len(order), 1, H, W), device=x.device, dtype=x.dtype)
        slot = {f: k for k, f in enumerate(order)}
        for tile, (f, bx, by) in zip(x, boxes):
            r, c = by // down, bx // down
            acc[slot[f], :, r : r + s, c : c + s] += window * tile
            wsum[slot[f], :, r : r + s, c : c + s] += window
        mean = acc / wsum.clamp_min(1e-12)
        return torch.stack(
            [mean[slot[f], :, by // down : by // down + s, bx // down : bx // down + s] for f, bx, by in boxes]
        )


__all__ = [
    "tile_boxes",
    "blend_window",
    "blend_tiles",
    "seam_ratio",
    "simulate_tiled",
    "simulate_full",
    "window_box",
    "TileSync",
]
