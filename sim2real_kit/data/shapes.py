"""Procedural furniture of the paper's six categories, each as a *CAD* and a *real* geometry.

The procedural world (DESIGN §2) stands in for LASA (Sec. 4 of the paper): LASA pairs a real ARKit
scan of a room with CAD models an annotator aligned to its objects. What makes the real depth differ
from the CAD depth is partly the sensor (`sensor.py`) and partly the geometry itself: a CAD model is
simplified and boxy, the real object has bevels, thin legs and rods, cushions, handles, clutter on
its surfaces, sits a few centimetres and degrees away from where the CAD was placed, and now and
then has a part that the CAD lacks (or the other way round). `make_object` builds both geometries
from one seeded parameter draw.

Where the pieces live: this module holds the categories, materials, `ShapeConfig`, `ObjectPair`
and `make_object` (the public face; every name it had before the split is still importable from
here); the per-category generators and their seeded draws are in `furniture.py`, the things on
their surfaces in `clutter.py`, and the mesh primitives (`MeshBuilder`, `to_open3d`) in
`primitives.py`.

Object frame (metres, z up): the footprint is centred on the origin, the object stands on z = 0,
its front faces -y and its back +y (a sofa's back rest, a bed's headboard and a shelf's back
panel are at +y, so `scenes.py` turns +y towards a wall).

Meshes are assembled as numpy vertex / triangle arrays (fast, no open3d call per part) and turned
into `open3d.geometry.TriangleMesh` at the end; open3d is imported lazily.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from sim2real_kit.data.furniture import BUILDERS, Draw
from sim2real_kit.data.primitives import MeshBuilder, pose_matrix, to_open3d, transform_arrays
from sim2real_kit.errors import ConfigError, Sim2RealError

CATEGORIES = ("chair", "table", "sofa", "bed", "cabinet", "shelf")
MATERIALS = ("matte", "wood", "fabric", "dark", "shiny")  # what the sensor model distinguishes

# Material draw per category: (material, probability). Dark and shiny surfaces lose depth (sensor.py).
_MATERIAL_PRIORS = {
    "chair": (("wood", 0.35), ("fabric", 0.2), ("dark", 0.25), ("shiny", 0.2)),
    "table": (("wood", 0.45), ("matte", 0.2), ("dark", 0.2), ("shiny", 0.15)),
    "sofa": (("fabric", 0.6), ("dark", 0.3), ("matte", 0.1)),
    "bed": (("fabric", 0.75), ("dark", 0.15), ("wood", 0.1)),
    "cabinet": (("wood", 0.4), ("matte", 0.3), ("dark", 0.15), ("shiny", 0.15)),
    "shelf": (("wood", 0.55), ("matte", 0.25), ("dark", 0.2)),
}


class ShapeError(Sim2RealError):
    """An unknown category or an impossible shape parameter."""


@dataclass
class ShapeConfig:
    """How far the *real* geometry strays from the CAD one (all lengths in metres)."""

    real_offset_m: float = 0.03  # max horizontal offset of the whole real object from its CAD pose
    real_rot_deg: float = 3.0  # max yaw of the whole real object relative to its CAD pose (degrees)
    part_mismatch_prob: float = 0.15  # chance that an optional part exists in only one of CAD / real
    clutter_prob: float = 0.7  # chance that a surface (table top, shelf board, cabinet top) holds clutter
    bevel_m: float = 0.012  # edge rounding radius of real boards and boxes
    bevel_segments: int = 5  # odd; 3 = chamfer, 5+ = round edges
    size_scale: float = 1.0  # scales every sampled dimension (for toy-sized tests)

    def check(self) -> ShapeConfig:
        for name in ("real_offset_m", "real_rot_deg", "bevel_m"):
            if getattr(self, name) < 0:
                raise ConfigError(f"shapes.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("part_mismatch_prob", "clutter_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"shapes.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.bevel_segments < 3 or self.bevel_segments % 2 == 0:
            raise ConfigError(f"shapes.bevel_segments must be odd and >= 3, got {self.bevel_segments}")
        if not self.size_scale > 0:
            raise ConfigError(f"shapes.size_scale must be > 0, got {self.size_scale}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ObjectPair:
    """One piece of furniture in its object frame: CAD and real geometry (open3d TriangleMesh)."""

    cad: object  # open3d.geometry.TriangleMesh
    real: object  # open3d.geometry.TriangleMesh
    category: str
    params: dict = field(default_factory=dict)  # every sampled dimension / switch (JSON-able)
    material: str = "matte"

    @property
    def footprint(self) -> tuple[float, float]:
        """Half extents (x, y) in metres of the union of CAD and real geometry around the origin."""
        pts = np.concatenate([np.asarray(self.cad.vertices), np.asarray(self.real.vertices)])
        return float(np.abs(pts[:, 0]).max()), float(np.abs(pts[:, 1]).max())

    @property
    def height(self) -> float:
        """Top of the taller of the two geometries, metres."""
        return float(max(np.asarray(self.cad.vertices)[:, 2].max(), np.asarray(self.real.vertices)[:, 2].max()))


def check_category(category: str) -> str:
    if category not in CATEGORIES:
        raise ShapeError(f"unknown category {category!r}; valid: {', '.join(CATEGORIES)}")
    return category


def make_object(category: str, rng: np.random.Generator | int, cfg: ShapeConfig | None = None) -> ObjectPair:
    """One seeded piece of furniture: CAD (boxy, simplified) and real (detailed, slightly moved) meshes.

    `rng` is a numpy Generator (or an int seed). The real geometry is offset by up to
    `cfg.real_offset_m` and turned by up to `cfg.real_rot_deg` as a whole; both are in `params`."""
    check_category(category)
    cfg = (cfg or ShapeConfig()).check()
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    draw = Draw(rng, cfg)
    cad, real = BUILDERS[category](draw, cfg, rng)
    names, probs = zip(*_MATERIAL_PRIORS[category])
    material = str(names[int(rng.choice(len(names), p=np.array(probs) / sum(probs)))])
    # the whole real object sits slightly off its CAD pose
    r = cfg.real_offset_m * math.sqrt(rng.random())
    a = rng.uniform(0, 2 * np.pi)
    yaw = math.radians(cfg.real_rot_deg) * rng.uniform(-1, 1)
    offset = pose_matrix([r * math.cos(a), r * math.sin(a), 0.0], yaw)
    draw.params.update(
        real_offset_m=[round(r * math.cos(a), 5), round(r * math.sin(a), 5)], real_yaw_deg=round(math.degrees(yaw), 4)
    )
    real_v, real_t = real.arrays()
    real_v = transform_arrays(real_v, offset)
    real_v[:, 2] = np.maximum(real_v[:, 2], 0.0)  # splayed legs and tilted parts end flat on the floor
    return ObjectPair(
        cad=cad.to_open3d(),
        real=to_open3d(real_v, real_t),
        category=category,
        params=draw.params,
        material=material,
    )


__all__ = [
    "CATEGORIES",
    "MATERIALS",
    "ObjectPair",
    "ShapeConfig",
    "ShapeError",
    "MeshBuilder",
    "make_object",
    "check_category",
    "to_open3d",
    "transform_arrays",
]
