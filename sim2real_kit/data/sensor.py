"""Depth-sensor models of the procedural world (DESIGN §2): what turns real geometry into a capture.

`SensorModel` imitates what LASA's scans are: Apple ARKit LiDAR depth (256x192, metres). ARKit's
depth is not a raw time-of-flight image: sparse LiDAR samples (about 24x24) are densified with the
RGB image by a learned, edge-aware fusion. Its artifacts are therefore smooth rather than
speckled: thin parts vanish, small relief is flattened with range, silhouettes bleed onto the
background behind them ("mixed pixels"), confidence drops (here: holes) at edges, at grazing
angles and on dark or shiny surfaces, and the noise is spatially correlated and grows with range
(facts in `shared/reference/sensor-models.md`: Teo & Yang 2023, Luetzenburg et al. 2021, user
reports). The components, applied in this order, each switchable in `SensorConfig`:

1. `thin_structures`  parts narrower than `thin_min_px` pixels (a grey opening of inverse depth)
                      are replaced by what surrounds them.
2. `relief`           edge-aware Gaussian smoothing (`relief_sigma_px`) of inverse depth, blended in
                      from 0 at `relief_start_m` to fully at `relief_full_m`: relief flattens with
                      range. Smoothing inverse depth keeps planes planar.
3. `lowres`           capture at 1/`lowres_factor` resolution (area mean of inverse depth) and
                      bilinear upsampling: edges become ramps one low-res pixel wide.
4. `flying_pixels`    within `flying_band_px` of a depth edge, with probability `flying_prob`
                      (falling off with distance), depth = fg + a (bg - fg), a ~ U(0.15, 0.85).
5. `bias`             smooth low-frequency multiplicative error: a coarse random grid upsampled
                      (std about `bias_rel`) plus a global scale error (std `bias_global_rel`).
6. `noise`            axial noise sigma(z, theta) = (noise_sigma0_m + noise_sigma2 z^2)
                      (1 + noise_incidence_gain tan^2 theta), spatially correlated (Gaussian,
                      `noise_corr_px`) and normalised to exactly that sigma.
7. `edge_dropout`     holes within `edge_dropout_band_px` of depth edges with `edge_dropout_prob`.
8. `grazing_dropout`  holes with probability rising (smoothstep) from 0 at `grazing_start_deg` to
                      `grazing_prob` at `grazing_full_deg` incidence.
9. `material_holes`   holes in blobs (`material_blob_px`) on materials of `material_hole_rate`
                      (dark: light-absorbing, shiny: specular) at those rates.
10. `range_limit`     depth outside [`min_range_m`, `max_range_m`] becomes 0 (ARKit: about 5 m).
11. `quantization`    rounding to `quantization_m` (1 mm: the uint16 millimetre PNG).

Random holes come from a blurred Gaussian field thresholded at the normal quantile of the hole
probability p, so p gives a hole rate p exactly, in blobs rather than salt and pepper.

Every component returns its ground-truth effect mask (`Capture.effects[name]`, bool [H, W]): the
pixels it touched (discrete components) or changed by more than `effect_threshold_m` (continuous
ones; their signed changes are in `Capture.deltas`). Disabled components give all-False masks.

`GenericSensor` is the textbook *physical simulator* baseline of the benchmark (Sec. 5): Kinect v1
noise of Nguyen et al. 2012 or the Redwood disparity-quantisation model of Choi et al. 2015, with
their published constants. It shares nothing with `SensorModel`'s parameters.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.special import ndtri

from sim2real_kit.camera import Camera
from sim2real_kit.errors import Sim2RealError

COMPONENTS = (
    "thin_structures",
    "relief",
    "lowres",
    "flying_pixels",
    "bias",
    "noise",
    "edge_dropout",
    "grazing_dropout",
    "material_holes",
    "range_limit",
    "quantization",
)
CONTINUOUS = ("relief", "lowres", "flying_pixels", "bias", "noise", "quantization")


class SensorError(Sim2RealError):
    """An unknown sensor component / model name or an impossible sensor parameter."""


@dataclass
class SensorConfig:
    """One switch per component (named as in COMPONENTS) and its parameters (metres, pixels, degrees)."""

    # shared: what counts as a depth edge (3x3 range of depth above max(edge_abs_m, edge_rel * z))
    edge_rel: float = 0.04
    edge_abs_m: float = 0.03
    effect_threshold_m: float = 0.005  # continuous components' masks: |change| above this
    # 1. thin structures
    thin_structures: bool = True
    thin_min_px: int = 3  # parts narrower than this many pixels vanish
    thin_min_gap_rel: float = 0.05  # ... when at least 5 % nearer than their surround
    # 2. relief flattening with range
    relief: bool = True
    relief_start_m: float = 2.0
    relief_full_m: float = 4.5
    relief_sigma_px: float = 2.0
    # 3. low-resolution capture, bilinear upsampling
    lowres: bool = True
    lowres_factor: int = 2
    # 4. flying (mixed) pixels at depth edges
    flying_pixels: bool = True
    flying_band_px: int = 2
    flying_prob: float = 0.5
    # 5. smooth low-frequency bias
    bias: bool = True
    bias_rel: float = 0.004  # std of the smooth relative error field
    bias_global_rel: float = 0.002  # std of a per-frame scale error
    bias_grid: tuple[int, int] = (4, 3)  # coarse grid (x, y) of the field
    # 6. axial noise
    noise: bool = True
    noise_sigma0_m: float = 0.0015
    noise_sigma2: float = 0.001  # 1/m: sigma grows with z^2 (2.5 mm at 1 m, 10.5 mm at 3 m facing)
    noise_incidence_gain: float = 0.1  # x (1 + gain tan^2 theta), theta capped at 85 deg
    noise_corr_px: float = 1.0  # Gaussian correlation of the noise field (0 = white)
    # 7. dropout at depth edges
    edge_dropout: bool = True
    edge_dropout_band_px: int = 1
    edge_dropout_prob: float = 0.35
    # 8. dropout at grazing angles
    grazing_dropout: bool = True
    grazing_start_deg: float = 65.0
    grazing_full_deg: float = 85.0
    grazing_prob: float = 0.7
    # 9. holes on dark / shiny materials
    material_holes: bool = True
    material_hole_rate: dict = field(default_factory=lambda: {"dark": 0.3, "shiny": 0.25})
    material_blob_px: float = 2.0
    # 10. range limit
    range_limit: bool = True
    min_range_m: float = 0.15
    max_range_m: float = 5.0
    # 11. quantisation
    quantization: bool = True
    quantization_m: float = 0.001

    # ------------------------------------------------------------------ switches
    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(c for c in COMPONENTS if getattr(self, c))

    def only(self, *names: str) -> SensorConfig:
        """A copy with just the named components enabled."""
        check_components(names)
        return dataclasses.replace(self, **{c: c in names for c in COMPONENTS})

    def without(self, *names: str) -> SensorConfig:
        """A copy with the named components disabled."""
        check_components(names)
        return dataclasses.replace(self, **{c: False for c in names})

    def check(self) -> SensorConfig:
        for c in COMPONENTS:
            if not isinstance(getattr(self, c), bool):
                raise SensorError(f"sensor.{c} is the on/off switch of a component and must be a bool")
        positive = ("edge_abs_m", "relief_full_m", "max_range_m", "quantization_m", "effect_threshold_m")
        for name in positive:
            if not getattr(self, name) > 0:
                raise SensorError(f"sensor.{name} must be > 0, got {getattr(self, name)}")
        non_negative = (
            "edge_rel",
            "thin_min_gap_rel",
            "relief_start_m",
            "relief_sigma_px",
            "bias_rel",
            "bias_global_rel",
            "noise_sigma0_m",
            "noise_sigma2",
            "noise_incidence_gain",
            "noise_corr_px",
            "min_range_m",
            "material_blob_px",
            "flying_band_px",
            "edge_dropout_band_px",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise SensorError(f"sensor.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("flying_prob", "edge_dropout_prob", "grazing_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise SensorError(f"sensor.{name} must be in [0, 1], got {getattr(self, name)}")
        if int(self.thin_min_px) < 1 or int(self.lowres_factor) < 1:
            raise SensorError(
                f"sensor.thin_min_px and sensor.lowres_factor must be >= 1, got "
                f"{self.thin_min_px}, {self.lowres_factor}"
            )
        if self.relief_full_m <= self.relief_start_m:
            raise SensorError("sensor.relief_full_m must exceed sensor.relief_start_m")
        if not 0 <= self.grazing_start_deg < self.grazing_full_deg <= 90:
            raise SensorError("sensor.grazing_start_deg < grazing_full_deg must lie in [0, 90]")
        if self.min_range_m >= self.max_range_m:
            raise SensorError("sensor.min_range_m must be below sensor.max_range_m")
        if len(self.bias_grid) != 2 or min(self.bias_grid) < 1:
            raise SensorError(f"sensor.bias_grid must be two integers >= 1, got {self.bias_grid}")
        from sim2real_kit.data.shapes import MATERIALS

        for mat, rate in self.material_hole_rate.items():
            if mat not in MATERIALS:
                raise SensorError(f"sensor.material_hole_rate: unknown material {mat!r}; valid: {', '.join(MATERIALS)}")
            if not 0 <= rate <= 1:
                raise SensorError(f"sensor.material_hole_rate[{mat!r}] must be in [0, 1], got {rate}")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["bias_grid"] = list(self.bias_grid)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SensorConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise SensorError(f"unknown sensor parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        d = dict(d)
        if "bias_grid" in d:
            d["bias_grid"] = tuple(d["bias_grid"])
        return cls(**d).check()


def check_components(names) -> None:
    """Raise SensorError naming any unknown component name."""
    bad = [n for n in names if n not in COMPONENTS]
    if bad:
        raise SensorError(f"unknown sensor component(s) {', '.join(map(repr, bad))}; valid: {', '.join(COMPONENTS)}")


@dataclass
class Capture:
    """A captured frame: depth [H, W] metres (0 = hole) and per-component ground truth."""

    depth: np.ndarray  # [H, W] float32 metres
    effects: dict[str, np.ndarray]  # component -> bool [H, W] where it acted
    deltas: dict[str, np.ndarray]  # continuous component -> float32 [H, W] metres it added
    edges: np.ndarray  # bool [H, W] depth edges of the input geometry

    @property
    def holes(self) -> np.ndarray:
        return self.depth <= 0


# ====================================================================== helpers
def _near(depth: np.ndarray) -> np.ndarray:
    """Inverse depth (1/m), 0 where there is no depth: planes are linear in it, holes are 'infinitely far'."""
    out = np.zeros_like(depth, dtype=np.float32)
    np.divide(1.0, depth, out=out, where=depth > 0)
    return out


def depth_edges(depth: np.ndarray, rel: float = 0.04, abs_m: float = 0.03) -> np.ndarray:
    """Valid pixels whose 3x3 neighbourhood spans a depth jump > max(abs_m, rel * nearest) (or a hole)."""
    near = _near(depth)
    nmax = ndimage.maximum_filter(near, size=3, mode="nearest")
    nmin = ndimage.minimum_filter(near, size=3, mode="nearest")
    zmin = _near(nmax)
    zmax = np.where(nmin > 0, _near(nmin), np.inf)
    return (depth > 0) & (zmax - zmin > np.maximum(abs_m, rel * zmin))


def edge_distance(edges: np.ndarray) -> np.ndarray:
    """Chessboard distance (pixels) to the nearest edge pixel; 0 on edges."""
    if not edges.any():
        return np.full(edges.shape, np.iinfo(np.int32).max, dtype=np.int32)
    return ndimage.distance_transform_cdt(~edges, metric="chessboard").astype(np.int32)


def clumped_normal(rng: np.random.Generator, shape, blob_px: float) -> np.ndarray:
    """A spatially correlated standard-normal field (blobs of ~blob_px pixels), float32.

    Blobs of 1.5 px and more are drawn at half resolution and upsampled bilinearly (4x fewer
    samples; every pixel has the same interpolation weights, so the field stays stationary)."""
    H, W = shape
    if blob_px >= 1.5:
        g = rng.standard_normal((-(-H // 2), -(-W // 2)), dtype=np.float32)
        g = ndimage.gaussian_filter(g, blob_px / 2, mode="reflect", truncate=3.0)
        g = _linear_upsample(g, H, W, 2, 2)
    else:
        g = rng.standard_normal(shape, dtype=np.float32)
        if blob_px > 0:
            g = ndimage.gaussian_filter(g, blob_px, mode="reflect", truncate=3.0)
    g /= max(float(g.std()), 1e-12)
    return g


def clumped_mask(rng: np.random.Generator, p: np.ndarray | float, shape, blob_px: float) -> np.ndarray:
    """Random bool mask [H, W] in blobs of ~blob_px pixels with per-pixel probability `p`.

    A blurred Gaussian field g is thresholded at Phi^-1(p): P(g < Phi^-1(p)) = p exactly."""
    g = clumped_normal(rng, shape, blob_px)
    p = np.broadcast_to(np.asarray(p, dtype=np.float32), shape)
    out = np.zeros(shape, dtype=bool)
    some = p > 0
    out[some] = g[some] < ndtri(np.clip(p[some], 0, 1))
    return out


def _linear_upsample(low: np.ndarray, height: int, width: int, factor_y: float, factor_x: float) -> np.ndarray:
    """Bilinear resampling of `low` to height x width, pixel centres aligned (u_low = (u + .5)/f - .5)."""

    def axis_weights(n_out: int, n_in: int, f: float):
        c = np.clip((np.arange(n_out) + 0.5) / f - 0.5, 0, n_in - 1)
        i0 = np.floor(c).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (c - i0).astype(np.float32)

    y0, y1, wy = axis_weights(height, low.shape[0], factor_y)
    x0, x1, wx = axis_weights(width, low.shape[1], factor_x)
    rows = low[y0] * (1 - wy)[:, None] + low[y1] * wy[:, None]
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


# ====================================================================== the ARKit-like model
class SensorModel:
    """Spatially variant ARKit-LiDAR-like sensor: `capture(render of the real geometry) -> Capture`."""

    components = COMPONENTS

    def __init__(self, cfg: SensorConfig | None = None, enable=None, disable=None):
        cfg = cfg or SensorConfig()
        if enable is not None:
            cfg = cfg.only(*enable)
        if disable is not None:
            cfg = cfg.without(*disable)
        self.cfg = cfg.check()

    @property
    def enabled(self) -> tuple[str, ...]:
        return self.cfg.enabled

    def noise_sigma(self, depth, incidence=0.0):
        """Configured axial noise std (metres) at depth z (m) and incidence angle (rad)."""
        c = self.cfg
        theta = np.minimum(np.asarray(incidence, dtype=np.float32), np.float32(math.radians(85)))
        z = np.asarray(depth, dtype=np.float32)
        return (c.noise_sigma0_m + c.noise_sigma2 * z * z) * (1 + c.noise_incidence_gain * np.tan(theta) ** 2)

    def capture(self, render, camera: Camera | None = None, rng: np.random.Generator | int | None = None) -> Capture:
        """Turn a `RenderResult` of the *real* geometry into a captured frame (seeded by `rng`)."""
        c = self.cfg
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        depth = np.asarray(render.depth, dtype=np.float32).copy()
        H, W = depth.shape
        if camera is not None and (camera.height, camera.width) != (H, W):
            raise SensorError(f"render of {W}x{H} does not match camera {camera.width}x{camera.height}")
        if render.incidence is None:
            raise SensorError("SensorModel.capture needs a full render (incidence, material): render(..., full=True)")
        incidence = np.asarray(render.incidence, dtype=np.float32)
        material = getattr(render, "material", None)
        false = np.zeros((H, W), dtype=bool)
        effects = {name: false for name in COMPONENTS}
        deltas: dict[str, np.ndarray] = {}
        thr = c.effect_threshold_m

        def record(name: str, new: np.ndarray, old: np.ndarray) -> np.ndarray:
            both = (new > 0) & (old > 0)
            delta = np.where(both, new - old, 0).astype(np.float32)
            deltas[name] = delta
            effects[name] = (np.abs(delta) > thr) | ((new > 0) != (old > 0))
            return new

        # 1. thin structures vanish: grey opening of inverse depth removes near parts narrower than k px
        if c.thin_structures:
            near = _near(depth)
            k = int(c.thin_min_px)
            opened = ndimage.grey_opening(near, size=(k, k), mode="nearest") if k > 1 else near
            thin = (depth > 0) & (opened < near * (1 - c.thin_min_gap_rel))
            depth = np.where(thin, _near(opened), depth).astype(np.float32)
            effects["thin_structures"] = thin
        edges = depth_edges(depth, c.edge_rel, c.edge_abs_m)
        dist = edge_distance(edges)
        valid = depth > 0

        # 2. relief flattens with range (edge-aware smoothing of inverse depth)
        if c.relief and c.relief_sigma_px > 0:
            near = _near(depth)
            band = dist <= math.ceil(2 * c.relief_sigma_px)
            w = (valid & ~band).astype(np.float32)
            frac = np.clip((depth - c.relief_start_m) / (c.relief_full_m - c.relief_start_m), 0, 1)
            num = ndimage.gaussian_filter(near * w, c.relief_sigma_px, mode="nearest", truncate=3.0)
            den = ndimage.gaussian_filter(w, c.relief_sigma_px, mode="nearest", truncate=3.0)
            smooth = np.where(den > 1e-3, num / np.maximum(den, 1e-3), near)
            new = np.where((w > 0) & (frac > 0), _near(near + frac * (smooth - near)), depth).astype(np.float32)
            depth = record("relief", new, depth)

        # 3. low-resolution capture: area mean of inverse depth over f x f cells, bilinear upsampling
        if c.lowres and c.lowres_factor > 1:
            f = int(c.lowres_factor)
            hl, wl = -(-H // f), -(-W // f)
            near = np.pad(_near(depth), ((0, hl * f - H), (0, wl * f - W)), mode="edge")
            ok = np.pad((depth > 0).astype(np.float32), ((0, hl * f - H), (0, wl * f - W)), mode="edge")
            s_near = near.reshape(hl, f, wl, f).sum((1, 3))
            s_ok = ok.reshape(hl, f, wl, f).sum((1, 3))
            low = np.where(s_ok > 0, s_near / np.maximum(s_ok, 1), 0).astype(np.float32)
            low_ok = (s_ok / (f * f) >= 0.5).astype(np.float32)
            up = _linear_upsample(low, H, W, f, f)
            up_ok = _linear_upsample(low_ok, H, W, f, f) >= 0.5
            new = np.where(up_ok & (up > 0), _near(up), 0).astype(np.float32)
            depth = record("lowres", new, depth)

        # 4. flying pixels: foreground / background mixtures near depth edges
        if c.flying_pixels and c.flying_band_px > 0 and c.flying_prob > 0:
            k = int(c.flying_band_px)
            near = _near(depth)
            cand = (depth > 0) & (dist <= k)
            cand &= rng.random((H, W), dtype=np.float32) < c.flying_prob * np.clip(1 - dist / (k + 1), 0, 1)
            nmax = ndimage.maximum_filter(near, size=2 * k + 1, mode="nearest")[cand]
            nmin = ndimage.minimum_filter(near, size=2 * k + 1, mode="nearest")[cand]
            fg, bg = _near(nmax), _near(nmin)
            mix = (nmin > 0) & (bg - fg > np.maximum(c.edge_abs_m, c.edge_rel * fg))
            fly = np.zeros((H, W), dtype=bool)
            fly[cand] = mix
            new = depth.copy()
            alpha = rng.uniform(0.15, 0.85, int(mix.sum())).astype(np.float32)
            new[fly] = fg[mix] + alpha * (bg[mix] - fg[mix])
            record("flying_pixels", new, depth)
            effects["flying_pixels"] = fly
            depth = new

        # 5. smooth low-frequency bias (multiplicative)
        if c.bias:
            gx, gy = (int(v) for v in c.bias_grid)
            coarse = rng.standard_normal((gy, gx)).astype(np.float32) * c.bias_rel
            field_ = _linear_upsample(coarse, H, W, H / gy, W / gx) + np.float32(rng.normal(0, c.bias_global_rel))
            new = np.where(depth > 0, depth * (1 + field_), 0).astype(np.float32)
            depth = record("bias", new, depth)

        # 6. axial noise, depth- and incidence-dependent, spatially correlated
        if c.noise:
            g = clumped_normal(rng, (H, W), c.noise_corr_px)
            new = np.where(depth > 0, depth + self.noise_sigma(depth, incidence) * g, 0)
            new = np.maximum(new, 0).astype(np.float32)
            depth = record("noise", new, depth)

        # 7-9. dropout: at edges, at grazing angles, on dark / shiny materials
        if c.edge_dropout and c.edge_dropout_prob > 0:
            band = (depth > 0) & (dist <= c.edge_dropout_band_px)
            drop = band & clumped_mask(rng, np.where(band, c.edge_dropout_prob, 0), (H, W), 0.7)
            depth[drop] = 0
            effects["edge_dropout"] = drop
        if c.grazing_dropout and c.grazing_prob > 0:
            t = (np.degrees(incidence) - c.grazing_start_deg) / (c.grazing_full_deg - c.grazing_start_deg)
            p = np.where(depth > 0, c.grazing_prob * _smoothstep(t), 0)
            drop = (depth > 0) & clumped_mask(rng, p, (H, W), 1.5)
            depth[drop] = 0
            effects["grazing_dropout"] = drop
        if c.material_holes and material is not None and c.material_hole_rate:
            from sim2real_kit.data.shapes import MATERIALS

            lut = np.zeros(len(MATERIALS) + 1, dtype=np.float32)  # last entry: material -1 (none)
            for mat, rate in c.material_hole_rate.items():
                lut[MATERIALS.index(mat)] = rate
            p = lut[np.asarray(material, dtype=np.int64)]
            drop = (depth > 0) & clumped_mask(rng, np.where(depth > 0, p, 0), (H, W), c.material_blob_px)
            depth[drop] = 0
            effects["material_holes"] = drop

        # 10. range limit, 11. quantisation
        if c.range_limit:
            out = (depth > 0) & ((depth < c.min_range_m) | (depth > c.max_range_m))
            depth[out] = 0
            effects["range_limit"] = out
        if c.quantization:
            new = (np.round(depth / c.quantization_m) * c.quantization_m).astype(np.float32)
            depth = record("quantization", new, depth)
        return Capture(depth=depth, effects=effects, deltas=deltas, edges=edges)


# ====================================================================== physical baseline
REDWOOD_MAX_DEPTH_M = 10.0  # Redwood model: depth at or beyond this returns 0 (habitat-sim's port)
KINECT_V1_FX = 585.0  # px: Kinect v1 depth focal length at 640x480 (Nguyen et al. express sigma_L in these pixels)
GENERIC_MODELS = ("nguyen2012", "redwood")


class GenericSensor:
    """Textbook depth-noise model with published constants (the benchmark's physical simulator).

    - `nguyen2012`: Kinect v1 (Nguyen, Izadi, Lovell 2012). Axial sigma_z = 0.0012 + 0.0019 (z - 0.4)^2
      m for theta <= 60 deg, plus 0.0001 / sqrt(z) * theta^2 / (pi/2 - theta)^2 above; lateral
      sigma_L = 0.8 + 0.035 theta / (pi/2 - theta) Kinect pixels, converted to this camera's pixels
      with fx / 585 and applied as a random shift of each pixel's sample.
    - `redwood`: Choi et al. CVPR 2015 (as ported in habitat-sim / Open3D): pixel shift
      N(0, 0.25 m) rounded, the depth read at the shifted pixel rounded down to even row and column (the
      sensor's half resolution), 0 at >= 10 m, disparity quantisation z' = 35.130 / (round(8 (35.130 / z + N(0, 0.027778 m))) / 8)
      with m the noise multiplier. The per-pixel distortion grid of the original needs its
      calibration file and is left out.
    """

    def __init__(self, model: str = "nguyen2012", noise_multiplier: float = 1.0):
        if model not in GENERIC_MODELS:
            raise SensorError(f"unknown generic sensor model {model!r}; valid: {', '.join(GENERIC_MODELS)}")
        if not noise_multiplier >= 0:
            raise SensorError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
        self.model, self.noise_multiplier = model, float(noise_multiplier)

    @staticmethod
    def nguyen_axial_sigma(depth, incidence=0.0):
        """Nguyen et al. 2012 axial std (m) at depth z (m) and incidence theta (rad)."""
        z = np.asarray(depth, dtype=np.float64)
        theta = np.minimum(np.asarray(incidence, dtype=np.float64), math.radians(89.0))
        sigma = 0.0012 + 0.0019 * (z - 0.4) ** 2
        steep = theta > math.radians(60)
        extra = 0.0001 / np.sqrt(np.maximum(z, 1e-6)) * theta**2 / (math.pi / 2 - theta) ** 2
        return np.where(steep, sigma + extra, sigma)

    def capture(
        self, depth, incidence=None, camera: Camera | None = None, rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        """Noisy depth [H, W] metres from clean depth [H, W] (e.g. CAD depth); 0 stays 0.

        `incidence`: [H, W] radians, or camera-frame normals [H, W, 3] (then `camera` is needed);
        None = facing the camera."""
        from sim2real_kit.data.render import incidence_from_normals

        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        depth = np.asarray(depth, dtype=np.float32)
        H, W = depth.shape
        if incidence is None:
            theta = np.zeros((H, W), np.float32)
        else:
            incidence = np.asarray(incidence)
            if incidence.ndim == 3:
                if camera is None:
                    raise SensorError("GenericSensor.capture: normals given without a camera")
                theta = incidence_from_normals(incidence, camera)
            else:
                theta = incidence.astype(np.float32)
        if theta.shape != (H, W):
            raise SensorError(f"incidence of shape {theta.shape} does not match depth {depth.shape}")
        m = self.noise_multiplier
        vv, uu = np.mgrid[0:H, 0:W]
        if self.model == "nguyen2012":
            th = np.minimum(theta, math.radians(89.0))
            sigma_px = (0.8 + 0.035 * th / (math.pi / 2 - th)) * (
                (camera.fx if camera else KINECT_V1_FX) / KINECT_V1_FX
            )
            su = np.clip(np.rint(uu + rng.normal(0, 1, (H, W)) * sigma_px * m), 0, W - 1).astype(np.int64)
            sv = np.clip(np.rint(vv + rng.normal(0, 1, (H, W)) * sigma_px * m), 0, H - 1).astype(np.int64)
            z = depth[sv, su]
            th = theta[sv, su]
            out = z + rng.normal(0, 1, (H, W)) * self.nguyen_axial_sigma(z, th) * m
        else:
            su = np.clip(uu + np.rint(rng.normal(0, 0.25 * m, (H, W))), 0, W - 1).astype(np.int64)
            sv = np.clip(vv + np.rint(rng.normal(0, 0.25 * m, (H, W))), 0, H - 1).astype(np.int64)
            z = depth[sv - sv % 2, su - su % 2].astype(np.float64)  # the sensor's half resolution
            z = np.where(z >= REDWOOD_MAX_DEPTH_M, 0.0, z)  # out of range: no return
            disparity = np.where(z > 0, 35.130 / np.maximum(z, 1e-6), 0) + rng.normal(0, 0.027778 * m, (H, W))
            q = np.round(8 * disparity) / 8
            out = np.where(q > 0, 35.130 / np.maximum(q, 1e-9), 0)
        out = np.where(z > 0, np.maximum(out, 0), 0)
        return out.astype(np.float32)


__all__ = [
    "COMPONENTS",
    "SensorConfig",
    "SensorModel",
    "Capture",
    "SensorError",
    "GenericSensor",
    "GENERIC_MODELS",
    "depth_edges",
    "edge_distance",
    "clumped_normal",
    "clumped_mask",
    "check_components",
]
