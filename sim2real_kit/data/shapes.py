"""Procedural furniture of the paper's six categories, each as a *CAD* and a *real* geometry.

The procedural world (DESIGN §2) stands in for LASA (Sec. 4 of the paper): LASA pairs a real ARKit
scan of a room with CAD models an annotator aligned to its objects. What makes the real depth differ
from the CAD depth is partly the sensor (`sensor.py`) and partly the geometry itself: a CAD model is
simplified and boxy, the real object has bevels, thin legs and rods, cushions, handles, clutter on
its surfaces, sits a few centimetres and degrees away from where the CAD was placed, and now and
then has a part that the CAD lacks (or the other way round). `make_object` builds both geometries
from one seeded parameter draw.

Object frame (metres, z up): the footprint is centred on the origin, the object stands on z = 0,
its front faces -y and its back +y (a sofa's back rest, a bed's headboard and a shelf's back
panel are at +y, so `scenes.py` turns +y towards a wall).

Meshes are assembled as numpy vertex / triangle arrays (fast, no open3d call per part) and turned
into `open3d.geometry.TriangleMesh` at the end; open3d is imported lazily.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import numpy as np

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


# ====================================================================== mesh primitives
class MeshBuilder:
    """Collects parts as (vertices [N, 3], triangles [M, 3]) arrays; `to_open3d()` at the end."""

    def __init__(self):
        self._verts: list[np.ndarray] = []
        self._tris: list[np.ndarray] = []
        self._n = 0

    def add(self, verts: np.ndarray, tris: np.ndarray, pose: np.ndarray | None = None) -> MeshBuilder:
        verts = np.asarray(verts, dtype=np.float64)
        if pose is not None:
            verts = verts @ pose[:3, :3].T + pose[:3, 3]
        self._verts.append(verts)
        self._tris.append(np.asarray(tris, dtype=np.int32) + self._n)
        self._n += len(verts)
        return self

    def box(self, center, size, yaw: float = 0.0, tilt=(0.0, 0.0)) -> MeshBuilder:
        """Axis-aligned box of `size` (x, y, z) centred at `center`, rotated by `yaw` (rad, about z)."""
        v, t = _box_template()
        return self.add(v * (np.asarray(size, dtype=np.float64) / 2), t, _pose(center, yaw, tilt))

    def rounded_box(self, center, size, radius: float, segments: int = 5, yaw: float = 0.0, tilt=(0.0, 0.0)):
        """Box with edges and corners rounded by `radius` (clipped to half the smallest side)."""
        size = np.asarray(size, dtype=np.float64)
        radius = float(min(radius, 0.499 * size.min()))
        if radius <= 1e-5:
            return self.box(center, size, yaw, tilt)
        grid, sphere, t = _rounded_template(segments)
        v = np.sign(grid) * (size / 2 - radius) + radius * sphere
        return self.add(v, t, _pose(center, yaw, tilt))

    def cylinder(
        self, base, radius: float, height: float, radius_top: float | None = None, segments: int = 10, tilt=(0.0, 0.0)
    ) -> MeshBuilder:
        """Capped (possibly tapered) cylinder standing on `base`, axis +z tilted by (about x, about y) rad."""
        v, t = _cylinder_template(segments)
        r_top = radius if radius_top is None else radius_top
        v = v.copy()
        top = v[:, 2] > 0.5
        v[:, :2] *= np.where(top, r_top, radius)[:, None]
        v[:, 2] *= height
        return self.add(v, t, _pose(base, 0.0, tilt))

    def rod(self, p0, p1, radius: float, segments: int = 8) -> MeshBuilder:
        """Cylinder of `radius` from point p0 to point p1."""
        p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
        axis = p1 - p0
        length = float(np.linalg.norm(axis))
        if length < 1e-6:
            return self
        v, t = _cylinder_template(segments)
        v = v * np.array([radius, radius, length])
        pose = np.eye(4)
        pose[:3, :3] = _rotation_z_to(axis / length)
        pose[:3, 3] = p0
        return self.add(v, t, pose)

    def extend(self, other: MeshBuilder, pose: np.ndarray | None = None) -> MeshBuilder:
        if other._n:
            v, t = other.arrays()
            self.add(v, t, pose)
        return self

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._verts:
            return np.zeros((0, 3)), np.zeros((0, 3), np.int32)
        return np.concatenate(self._verts), np.concatenate(self._tris)

    def to_open3d(self):
        return to_open3d(*self.arrays())


def to_open3d(verts: np.ndarray, tris: np.ndarray):
    """(vertices [N, 3] metres, triangles [M, 3]) -> open3d.geometry.TriangleMesh with normals."""
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.ascontiguousarray(verts, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.ascontiguousarray(tris, dtype=np.int32)),
    )
    mesh.compute_triangle_normals()
    return mesh


def transform_arrays(verts: np.ndarray, pose: np.ndarray) -> np.ndarray:
    return verts @ pose[:3, :3].T + pose[:3, 3]


def _pose(center, yaw: float = 0.0, tilt=(0.0, 0.0)) -> np.ndarray:
    cz, sz = math.cos(yaw), math.sin(yaw)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1.0]])
    ax, ay = tilt
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    pose = np.eye(4)
    pose[:3, :3] = rz @ ry @ rx
    pose[:3, 3] = center
    return pose


def _rotation_z_to(d: np.ndarray) -> np.ndarray:
    """Rotation taking +z onto the unit vector d."""
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(z, d)
    c = float(np.dot(z, d))
    if np.linalg.norm(v) < 1e-9:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


@functools.cache
def _box_template() -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    # faces as quads (outward, counter-clockwise seen from outside)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    t = np.array([tri for a, b, c, d in quads for tri in ((a, b, c), (a, c, d))], dtype=np.int32)
    return v, _orient_outward(v, t)


@functools.cache
def _rounded_template(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cube-grid template of a rounded box: (grid coords, unit rounding directions, triangles).

    A face grid with an odd number `n` of segments per side has no vertex on a mid plane, so the
    middle strip of each face stays flat and the outer rings bend onto a sphere octant: vertex =
    sign(grid) * (half_size - r) + r * direction."""
    coords = -1 + 2 * np.arange(n + 1) / n
    verts, tris = [], []
    for axis in range(3):
        b, c = (axis + 1) % 3, (axis + 2) % 3
        for sign in (-1.0, 1.0):
            base = len(verts)
            for i in range(n + 1):
                for j in range(n + 1):
                    p = [0.0, 0.0, 0.0]
                    p[axis], p[b], p[c] = sign, coords[i], coords[j]
                    verts.append(p)
            for i in range(n):
                for j in range(n):
                    a0, a1 = base + i * (n + 1) + j, base + (i + 1) * (n + 1) + j
                    q = (a0, a1, a1 + 1, a0 + 1)
                    if sign < 0:
                        q = q[::-1]
                    tris += [(q[0], q[1], q[2]), (q[0], q[2], q[3])]
    grid = np.array(verts)
    # merge vertices shared by two or three faces
    _, first, inverse = np.unique(np.round(grid, 9), axis=0, return_index=True, return_inverse=True)
    grid = grid[first]
    tris = inverse.reshape(-1)[np.array(tris)]
    # rounding direction: per axis, 0 on the flat middle strip, 1 at the face
    t = np.clip((np.abs(grid) - 1 / n) / (1 - 1 / n), 0, 1) * np.sign(grid)
    sphere = t / np.linalg.norm(t, axis=1, keepdims=True)
    keep = tris[:, 0] != tris[:, 1]
    tris = tris[keep & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])].astype(np.int32)
    return grid, sphere, _orient_outward(np.sign(grid) * 0.5 + 0.5 * sphere, tris)


@functools.cache
def _cylinder_template(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit cylinder: radius 1, z in [0, 1], n sides, capped."""
    a = 2 * np.pi * np.arange(n) / n
    ring = np.stack([np.cos(a), np.sin(a)], 1)
    v = np.concatenate([np.c_[ring, np.zeros(n)], np.c_[ring, np.ones(n)], [[0, 0, 0], [0, 0, 1]]])
    tris = []
    for i in range(n):
        j = (i + 1) % n
        tris += [(i, j, n + j), (i, n + j, n + i), (2 * n, j, i), (2 * n + 1, n + i, n + j)]
    return v, _orient_outward(v, np.array(tris, dtype=np.int32))


def _orient_outward(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Flip triangles of a convex template whose normal points towards the centroid."""
    c = v.mean(0)
    p0, p1, p2 = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    n = np.cross(p1 - p0, p2 - p0)
    flip = np.einsum("ij,ij->i", n, (p0 + p1 + p2) / 3 - c) < 0
    t = t.copy()
    t[flip] = t[flip][:, ::-1]
    return t


# ====================================================================== shared pieces
class _Draw:
    """Seeded parameter draws that are recorded in `params`."""

    def __init__(self, rng: np.random.Generator, cfg: ShapeConfig):
        self.rng, self.cfg, self.params = rng, cfg, {}

    def size(self, name: str, lo: float, hi: float) -> float:
        v = float(self.rng.uniform(lo, hi)) * self.cfg.size_scale
        self.params[name] = round(v, 5)
        return v

    def uniform(self, name: str, lo: float, hi: float) -> float:
        v = float(self.rng.uniform(lo, hi))
        self.params[name] = round(v, 5)
        return v

    def choice(self, name: str, options):
        v = options[int(self.rng.integers(len(options)))]
        self.params[name] = v
        return v

    def integer(self, name: str, lo: int, hi: int) -> int:
        v = int(self.rng.integers(lo, hi + 1))
        self.params[name] = v
        return v

    def flag(self, name: str, p: float) -> bool:
        v = bool(self.rng.random() < p)
        self.params[name] = v
        return v

    def parts(self, name: str, p: float) -> tuple[bool, bool]:
        """An optional part: (in CAD, in real). Usually both or neither; sometimes only one."""
        present = bool(self.rng.random() < p)
        cad = real = present
        if self.rng.random() < self.cfg.part_mismatch_prob:
            if self.rng.random() < 0.5:
                cad = not cad
            else:
                real = not real
        self.params[f"{name}_cad"], self.params[f"{name}_real"] = cad, real
        return cad, real


def _clutter(
    b: MeshBuilder, rng: np.random.Generator, x0, x1, y0, y1, z: float, max_items: int = 4, max_height: float = 0.3
) -> int:
    """Small objects (cups, books, bowls, bottles, boxes) standing on the rectangle [x0,x1]x[y0,y1] at z."""
    n = int(rng.integers(1, max_items + 1))
    placed: list[tuple[float, float, float]] = []
    for _ in range(4 * n):
        if len(placed) >= n:
            break
        kind = rng.choice(["cup", "book", "bowl", "bottle", "box", "books"])
        r = {"cup": 0.045, "book": 0.13, "bowl": 0.09, "bottle": 0.04, "box": 0.1, "books": 0.12}[kind]
        if x1 - x0 < 2 * r or y1 - y0 < 2 * r:
            continue
        cx, cy = rng.uniform(x0 + r, x1 - r), rng.uniform(y0 + r, y1 - r)
        if any(math.hypot(cx - px, cy - py) < r + pr + 0.01 for px, py, pr in placed):
            continue
        placed.append((cx, cy, r))
        yaw = rng.uniform(0, np.pi)
        if kind == "cup":
            b.cylinder([cx, cy, z], 0.04, min(0.1, max_height), radius_top=0.045, segments=10)
        elif kind == "bottle":
            h = min(rng.uniform(0.2, 0.32), max_height)
            b.cylinder([cx, cy, z], 0.035, 0.65 * h, segments=10)
            b.cylinder([cx, cy, z + 0.65 * h], 0.035, 0.35 * h, radius_top=0.012, segments=10)
        elif kind == "bowl":
            b.cylinder([cx, cy, z], 0.04, min(0.07, max_height), radius_top=0.09, segments=12)
        elif kind == "book":
            t = rng.uniform(0.02, 0.05)
            b.box([cx, cy, z + t / 2], [0.22, 0.16, t], yaw=yaw)
        elif kind == "books":
            h = 0.0
            for _k in range(int(rng.integers(2, 5))):
                t = rng.uniform(0.02, 0.045)
                b.box(
                    [cx, cy, z + h + t / 2],
                    [rng.uniform(0.16, 0.24), rng.uniform(0.12, 0.17), t],
                    yaw=yaw + rng.normal(0, 0.15),
                )
                h += t
        else:
            s = rng.uniform(0.06, 0.14, size=3)
            s[2] = min(s[2], max_height)
            b.box([cx, cy, z + s[2] / 2], s, yaw=yaw)
    return len(placed)


def _book_row(
    b: MeshBuilder, rng: np.random.Generator, x0: float, x1: float, y_back: float, depth: float, z: float, max_h: float
) -> None:
    """A row of upright (and a few leaning) books filling part of a shelf board."""
    x = x0 + rng.uniform(0, 0.1)
    end = x0 + (x1 - x0) * rng.uniform(0.4, 1.0)
    while x < end:
        t = rng.uniform(0.015, 0.045)
        h = min(rng.uniform(0.15, 0.3), max_h - 0.01)
        d = min(rng.uniform(0.12, 0.22), depth - 0.01)
        if h <= 0.05 or x + t > x1:
            break
        lean = rng.normal(0, 0.04) if rng.random() < 0.15 else 0.0
        b.box([x + t / 2, y_back - d / 2, z + h / 2], [t, d, h], tilt=(0.0, lean))
        x += t + (rng.uniform(0.0, 0.004) if rng.random() < 0.9 else rng.uniform(0.05, 0.15))


# ====================================================================== categories
def _chair(d: _Draw, cfg: ShapeConfig, rng: np.random.Generator) -> tuple[MeshBuilder, MeshBuilder]:
    w, dep = d.size("width", 0.40, 0.56), d.size("depth", 0.42, 0.56)
    seat_h, seat_t = d.size("seat_height", 0.42, 0.50), d.size("seat_thickness", 0.03, 0.07)
    back_h, back_t = d.size("back_height", 0.32, 0.55), d.size("back_thickness", 0.025, 0.05)
    legs = d.choice("legs", ("four_square", "four_round", "pedestal"))
    leg_w = d.size("leg_width", 0.03, 0.05)
    back_style = d.choice("back", ("solid", "slats", "frame"))
    arms_cad, arms_real = d.parts("arms", 0.3)
    stretchers = d.flag("stretchers", 0.4) and legs != "pedestal"
    cushion = d.flag("cushion", 0.4)
    splay = math.radians(d.uniform("leg_splay_deg", 0.0, 5.0))
    bevel, seg = cfg.bevel_m, cfg.bevel_segments
    seat_top = seat_h
    cad, real = MeshBuilder(), MeshBuilder()

    # CAD: seat slab, full back slab, boxy legs or a column on a flat base
    cad.box([0, 0, seat_top - seat_t / 2], [w, dep, seat_t])
    cad.box([0, dep / 2 - back_t / 2, seat_top + back_h / 2], [w, back_t, back_h])
    leg_h = seat_top - seat_t
    inset = leg_w / 2 + 0.01
    corners = [(sx * (w / 2 - inset), sy * (dep / 2 - inset)) for sx in (-1, 1) for sy in (-1, 1)]
    if legs == "pedestal":
        cad.box([0, 0, leg_h / 2], [0.07, 0.07, leg_h])
        cad.box([0, 0, 0.03], [0.6 * w + 0.1, 0.6 * w + 0.1, 0.06])
    else:
        for x, y in corners:
            cad.box([x, y, leg_h / 2], [max(leg_w, 0.04), max(leg_w, 0.04), leg_h])
    arm_h = d.size("arm_height", 0.18, 0.25)
    if arms_cad:
        for sx in (-1, 1):
            cad.box([sx * (w / 2 - 0.03), 0, seat_top + arm_h / 2], [0.06, dep * 0.8, arm_h])

    # real: bevelled seat (maybe with a cushion), detailed back, thin legs, stretchers, arm rods
    real.rounded_box([0, 0, seat_top - seat_t / 2 - 0.01], [w, dep, seat_t], bevel, seg)
    if cushion:
        real.rounded_box([0, -0.01, seat_top + 0.005], [w - 0.03, dep - 0.05, 0.05], 0.02, seg)
    by = dep / 2 - back_t / 2
    if back_style == "solid":
        real.rounded_box([0, by, seat_top + back_h / 2], [w, back_t, back_h], bevel, seg, tilt=(-0.06, 0))
    else:
        post = 0.025
        for sx in (-1, 1):
            real.box([sx * (w / 2 - post / 2), by, seat_top + back_h / 2], [post, back_t, back_h])
        rail = min(0.08, back_h * 0.25)
        real.rounded_box([0, by, seat_top + back_h - rail / 2], [w, back_t, rail], bevel * 0.5, seg)
        if back_style == "slats":
            n = int(rng.integers(2, 6))
            for i in range(n):
                x = -w / 2 + post + (i + 0.5) * (w - 2 * post) / n
                real.box([x, by, seat_top + (back_h - rail) / 2], [0.012, back_t * 0.6, back_h - rail])
        else:  # a frame back: a lower rail only, the middle is open
            real.box([0, by, seat_top + 0.06], [w - 2 * post, back_t * 0.7, 0.03])
    if legs == "pedestal":
        real.cylinder([0, 0, 0.06], 0.025, leg_h - 0.06, segments=10)
        for k in range(5):
            a = 2 * np.pi * k / 5 + rng.uniform(0, 0.3)
            tip = np.array([math.cos(a), math.sin(a)]) * (0.3 * w + 0.05)
            real.rod([0, 0, 0.06], [tip[0], tip[1], 0.045], 0.015)
            real.rounded_box([tip[0], tip[1], 0.022], [0.045, 0.045, 0.045], 0.02, seg)
    else:
        r = leg_w * rng.uniform(0.3, 0.45)
        for x, y in corners:
            tilt = (-splay * np.sign(y), splay * np.sign(x))
            base = [x + math.sin(splay) * leg_h * np.sign(x), y + math.sin(splay) * leg_h * np.sign(y), 0.0]
            if legs == "four_round":
                real.cylinder(base, r * 0.8, leg_h, radius_top=r, segments=8, tilt=tilt)
            else:
                real.box([base[0], base[1], leg_h / 2], [2 * r, 2 * r, leg_h], tilt=tilt)
        if stretchers:
            z = 0.15
            for sx in (-1, 1):
                real.rod(
                    [sx * (w / 2 - inset), -(dep / 2 - inset), z], [sx * (w / 2 - inset), dep / 2 - inset, z], 0.008
                )
            real.rod([-(w / 2 - inset), 0, z + 0.03], [w / 2 - inset, 0, z + 0.03], 0.008)
    if arms_real:
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.02)
            real.rod([x, -dep * 0.3, seat_top], [x, -dep * 0.3, seat_top + arm_h], 0.012)
            real.rounded_box([x, 0, seat_top + arm_h], [0.05, dep * 0.8, 0.025], 0.01, seg)
    return cad, real


def _table(d: _Draw, cfg: ShapeConfig, rng: np.random.Generator) -> tuple[MeshBuilder, MeshBuilder]:
    shape = d.choice("top_shape", ("rect", "rect", "round"))
    w = d.size("width", 0.8, 1.8) if shape == "rect" else d.size("width", 0.7, 1.2)
    dep = d.size("depth", 0.6, 1.0) if shape == "rect" else w
    h, top_t = d.size("height", 0.70, 0.78), d.size("top_thickness", 0.025, 0.05)
    legs = d.choice("legs", ("four", "four", "pedestal", "trestle"))
    leg_w = d.size("leg_width", 0.04, 0.08)
    apron = d.flag("apron", 0.6) and legs == "four" and shape == "rect"
    shelf_cad, shelf_real = d.parts("lower_shelf", 0.15)
    bevel, seg = cfg.bevel_m, cfg.bevel_segments
    cad, real = MeshBuilder(), MeshBuilder()
    leg_h = h - top_t
    inset = leg_w / 2 + (0.04 if shape == "rect" else 0.0)
    corners = [(sx * (w / 2 - inset), sy * (dep / 2 - inset)) for sx in (-1, 1) for sy in (-1, 1)]
    if shape == "round":
        corners = [(0.32 * w * math.cos(a), 0.32 * w * math.sin(a)) for a in np.pi / 4 + np.arange(4) * np.pi / 2]

    if shape == "rect":
        cad.box([0, 0, h - top_t / 2], [w, dep, top_t])
        real.rounded_box([0, 0, h - top_t / 2], [w, dep, top_t], min(bevel, top_t * 0.45), seg)
    else:
        cad.cylinder([0, 0, h - top_t], w / 2, top_t, segments=16)
        real.cylinder([0, 0, h - top_t], w / 2, top_t, segments=40)
    if legs == "four":
        for x, y in corners:
            cad.box([x, y, leg_h / 2], [leg_w, leg_w, leg_h])
            real.cylinder([x, y, 0], leg_w * 0.25, leg_h, radius_top=leg_w * 0.45, segments=10)
        if apron:
            t = 0.02
            real.box([0, -(dep / 2 - inset), h - top_t - 0.04], [w - 2 * inset, t, 0.08])
            real.box([0, dep / 2 - inset, h - top_t - 0.04], [w - 2 * inset, t, 0.08])
            real.box([-(w / 2 - inset), 0, h - top_t - 0.04], [t, dep - 2 * inset, 0.08])
            real.box([w / 2 - inset, 0, h - top_t - 0.04], [t, dep - 2 * inset, 0.08])
    elif legs == "pedestal":
        cad.box([0, 0, leg_h / 2], [0.14, 0.14, leg_h])
        cad.box([0, 0, 0.025], [min(w, dep) * 0.6, min(w, dep) * 0.6, 0.05])
        real.cylinder([0, 0, 0], 0.04, leg_h, segments=12)
        for k in range(4):
            a = np.pi / 4 + k * np.pi / 2
            real.rod([0, 0, 0.03], [0.3 * min(w, dep) * math.cos(a), 0.3 * min(w, dep) * math.sin(a), 0.015], 0.015)
    else:  # trestle: two end frames joined by a beam
        for sx in (-1, 1):
            x = sx * (w / 2 - inset)
            cad.box([x, 0, leg_h / 2], [leg_w, dep * 0.8, leg_h])
            real.box([x, 0, leg_h / 2], [leg_w * 0.5, 0.05, leg_h])
            real.box([x, 0, 0.025], [leg_w * 0.6, dep * 0.8, 0.05])
            real.box([x, 0, leg_h - 0.03], [leg_w * 0.6, dep * 0.75, 0.05])
        real.box([0, 0, leg_h * 0.4], [w - 2 * inset, 0.03, 0.06])
    if shelf_cad:
        cad.box([0, 0, 0.2], [w * 0.85, dep * 0.85, 0.03])
    if shelf_real:
        real.box([0, 0, 0.2], [w * 0.85, dep * 0.85, 0.02])
    if rng.random() < cfg.clutter_prob:
        half = 0.45 if shape == "rect" else 0.3
        d.params["clutter_items"] = _clutter(real, rng, -w * half, w * half, -dep * half, dep * half, h)
    return cad, real


def _sofa(d: _Draw, cfg: ShapeConfig, rng: np.random.Generator) -> tuple[MeshBuilder, MeshBuilder]:
    w, dep = d.size("width", 1.4, 2.4), d.size("depth", 0.8, 1.0)
    seat_h, top = d.size("seat_height", 0.40, 0.48), d.size("back_top", 0.75, 0.95)
    arm_w, arm_h = d.size("arm_width", 0.12, 0.25), d.size("arm_height", 0.55, 0.70)
    back_t = d.size("back_thickness", 0.15, 0.25)
    feet_h = d.size("feet_height", 0.0, 0.12)
    seats = d.integer("seats", 2, 3)
    arms_cad, arms_real = d.parts("arms", 0.9)
    pillows = d.integer("pillows", 0, 2)
    seg = cfg.bevel_segments
    cad, real = MeshBuilder(), MeshBuilder()
    aw_cad = arm_w if arms_cad else 0.0
    aw_real = arm_w if arms_real else 0.0

    # CAD: one block from the floor to the seat, a back block, two arm blocks
    cad.box([0, 0, seat_h / 2], [w, dep, seat_h])
    cad.box([0, dep / 2 - back_t / 2, (seat_h + top) / 2], [w, back_t, top - seat_h])
    if arms_cad:
        for sx in (-1, 1):
            cad.box(
                [sx * (w / 2 - arm_w / 2), -back_t / 2, (seat_h + arm_h) / 2], [arm_w, dep - back_t, arm_h - seat_h]
            )

    # real: frame on feet (the floor shows underneath), seat and back cushions with gaps, round arms
    cush_t = min(0.16, seat_h - feet_h - 0.08)
    frame_top = seat_h - cush_t
    real.rounded_box([0, 0, (feet_h + frame_top) / 2], [w, dep, frame_top - feet_h], 0.03, seg)
    for sx in (-1, 1):
        for sy in (-1, 1):
            real.cylinder([sx * (w / 2 - 0.06), sy * (dep / 2 - 0.06), 0], 0.022, feet_h + 0.01, radius_top=0.03)
    inner = w - 2 * aw_real
    cw = inner / seats
    for i in range(seats):
        x = -inner / 2 + (i + 0.5) * cw
        real.rounded_box(
            [x, -back_t / 2 + 0.01, frame_top + cush_t / 2], [cw - 0.012, dep - back_t - 0.02, cush_t], 0.05, seg
        )
        real.rounded_box(
            [x, dep / 2 - back_t / 2 - 0.02, (seat_h + top) / 2 + 0.02],
            [cw - 0.012, back_t * 0.8, top - seat_h - 0.04],
            0.06,
            seg,
            tilt=(-0.12, 0),
        )
    real.rounded_box([0, dep / 2 - 0.04, (frame_top + top - 0.1) / 2], [w, 0.08, top - 0.1 - frame_top], 0.03, seg)
    if arms_real:
        for sx in (-1, 1):
            real.rounded_box(
                [sx * (w / 2 - arm_w / 2), 0, (feet_h + arm_h) / 2],
                [arm_w, dep, arm_h - feet_h],
                min(0.08, arm_w * 0.45),
                seg,
            )
    for k in range(pillows):
        x = (-1 if k == 0 else 1) * (inner / 2 - 0.25)
        real.rounded_box(
            [x, dep / 2 - back_t - 0.08, seat_h + 0.2],
            [0.4, 0.14, 0.4],
            0.06,
            seg,
            yaw=rng.normal(0, 0.2),
            tilt=(-0.35, rng.normal(0, 0.1)),
        )
    d.params["cad_arm_width"], d.params["real_arm_width"] = aw_cad, aw_real
    return cad, real


def _bed(d: _Draw, cfg: ShapeConfig, rng: np.random.Generator) -> tuple[MeshBuilder, MeshBuilder]:
    w, length = d.size("width", 0.9, 1.8), d.size("length", 1.9, 2.1)
    frame_h, mat_t = d.size("frame_height", 0.2, 0.35), d.size("mattress_thickness", 0.18, 0.28)
    head_h = d.size("headboard_height", 0.8, 1.2)
    head_cad, head_real = d.parts("headboard", 0.9)
    foot_cad, foot_real = d.parts("footboard", 0.3)
    legs_h = d.size("leg_height", 0.05, 0.15)
    pillows = d.integer("pillows", 1, 2)
    duvet = d.flag("duvet", 0.7)
    seg = cfg.bevel_segments
    top = frame_h + mat_t
    cad, real = MeshBuilder(), MeshBuilder()
    cad.box([0, 0, top / 2], [w, length, top])
    if head_cad:
        cad.box([0, length / 2 - 0.03, head_h / 2], [w + 0.04, 0.06, head_h])
    if foot_cad:
        cad.box([0, -length / 2 + 0.03, (top + 0.15) / 2], [w + 0.04, 0.06, top + 0.15])

    real.rounded_box([0, 0, (legs_h + frame_h) / 2], [w, length, frame_h - legs_h], cfg.bevel_m, seg)
    for sx in (-1, 1):
        for sy in (-1, 1):
            real.box([sx * (w / 2 - 0.05), sy * (length / 2 - 0.05), legs_h / 2], [0.05, 0.05, legs_h])
    real.rounded_box([0, -0.01, frame_h + mat_t / 2], [w - 0.03, length - 0.04, mat_t], 0.06, seg)
    if duvet:
        cover = rng.uniform(0.6, 0.8) * length
        real.rounded_box([0, -length / 2 + cover / 2 - 0.02, top + 0.02], [w + 0.06, cover, 0.07], 0.04, seg)
        real.rounded_box([0, -length / 2 + cover / 2, top - 0.12], [w + 0.1, cover - 0.06, 0.24], 0.03, seg)
    for k in range(pillows):
        x = 0.0 if pillows == 1 else (k - 0.5) * w / 2
        real.rounded_box(
            [x, length / 2 - 0.3, top + 0.07],
            [min(0.6, w / pillows - 0.05), 0.38, 0.16],
            0.07,
            seg,
            yaw=rng.normal(0, 0.08),
            tilt=(-0.15, 0),
        )
    if head_real:
        real.rounded_box(
            [0, length / 2 - 0.03, (legs_h + head_h) / 2 + 0.02], [w + 0.04, 0.05, head_h - legs_h], 0.02, seg
        )
    if foot_real:
        real.rounded_box([0, -length / 2 + 0.03, (top + 0.15) / 2], [w + 0.04, 0.05, top + 0.15], 0.02, seg)
    return cad, real


def _cabinet(d: _Draw, cfg: ShapeConfig, rng: np.random.Generator) -> tuple[MeshBuilder, MeshBuilder]:
    w, dep, h = d.size("width", 0.4, 1.2), d.size("depth", 0.35, 0.6), d.size("height", 0.5, 2.0)
    fronts = d.choice("fronts", ("doors", "drawers", "mixed"))
    n_doors = d.integer("doors", 1, 3)
    plinth = d.size("plinth_height", 0.0, 0.1)
    handle = d.choice("handle", ("bar", "knob", "none"))
    seg = cfg.bevel_segments
    cad, real = MeshBuilder(), MeshBuilder()
    cad.box([0, 0, h / 2], [w, dep, h])

    real.rounded_box([0, 0.005, (plinth + h) / 2], [w, dep - 0.01, h - plinth], min(cfg.bevel_m, 0.006), seg)
    if plinth > 0.005:
        real.box([0, 0.02, plinth / 2], [w - 0.04, dep - 0.06, plinth])
    # fronts: panels 1.5 cm proud of the carcass with 4 mm gaps, each with a handle
    panels = []
    body_h = h - plinth
    if fronts in ("drawers", "mixed"):
        n_draw = int(rng.integers(2, 5)) if fronts == "drawers" else 1
        dh = (body_h * (1.0 if fronts == "drawers" else 0.25)) / n_draw
        for i in range(n_draw):
            panels.append((0.0, w, h - (i + 0.5) * dh, dh, "drawer"))
        body_h -= dh * n_draw
    if fronts in ("doors", "mixed") and body_h > 0.1:
        dw = w / n_doors
        for i in range(n_doors):
            panels.append((-w / 2 + (i + 0.5) * dw, dw, plinth + body_h / 2, body_h, "door"))
    for x, pw, z, ph, kind in panels:
        real.box([x, -dep / 2 - 0.0075, z], [pw - 0.004, 0.015, ph - 0.004])
        if handle == "none":
            continue
        hz = z if kind == "drawer" else z + min(0.3, ph * 0.25)
        hx = x if kind == "drawer" else x + (pw / 2 - 0.06) * (1 if x <= 0 else -1)
        if handle == "bar":
            if kind == "drawer":
                real.rod([hx - 0.06, -dep / 2 - 0.045, hz], [hx + 0.06, -dep / 2 - 0.045, hz], 0.006)
            else:
                real.rod([hx, -dep / 2 - 0.045, hz - 0.07], [hx, -dep / 2 - 0.045, hz + 0.07], 0.006)
            for s in (-0.05, 0.05):
                p = [hx + s, -dep / 2 - 0.015, hz] if kind == "drawer" else [hx, -dep / 2 - 0.015, hz + s]
                real.rod(p, [p[0], -dep / 2 - 0.045, p[2]], 0.004)
        else:
            real.rounded_box([hx, -dep / 2 - 0.03, hz], [0.03, 0.03, 0.03], 0.014, seg)
    if h < 1.3 and rng.random() < cfg.clutter_prob:
        d.params["clutter_items"] = _clutter(real, rng, -w * 0.45, w * 0.45, -dep * 0.4, dep * 0.4, h, max_items=3)
    return cad, real


def _shelf(d: _Draw, cfg: ShapeConfig, rng: np.random.Generator) -> tuple[MeshBuilder, MeshBuilder]:
    w, dep, h = d.size("width", 0.6, 1.2), d.size("depth", 0.25, 0.4), d.size("height", 0.8, 2.0)
    board = d.size("board_thickness", 0.018, 0.03)
    n = d.integer("shelves", 2, max(2, min(6, int(h / 0.32))))
    back_cad, back_real = d.parts("back_panel", 0.8)
    seg = cfg.bevel_segments
    cad, real = MeshBuilder(), MeshBuilder()
    # CAD: sides, top, bottom and boards at nominal thickness (at least 3 cm), optional back
    t_cad = max(board, 0.03)
    for b, t, bev in ((cad, t_cad, 0.0), (real, board, min(cfg.bevel_m, board * 0.45))):
        add = b.box if bev == 0.0 else (lambda c, s, _b=b, _r=bev: _b.rounded_box(c, s, _r, seg))
        for sx in (-1, 1):
            add([sx * (w / 2 - t / 2), 0, h / 2], [t, dep, h])
        add([0, 0, h - t / 2], [w - 2 * t, dep, t])
        add([0, 0, t / 2 + (0.0 if b is cad else 0.04)], [w - 2 * t, dep, t])
        for i in range(1, n):
            z = i * h / n
            add([0, 0, z], [w - 2 * t, dep - (0.0 if b is cad else 0.02), t])
    if back_cad:
        cad.box([0, dep / 2 - 0.005, h / 2], [w, 0.01, h])
    if back_real:
        real.box([0, dep / 2 - 0.003, h / 2], [w - 0.01, 0.006, h - 0.01])
    # real: books and things on the boards
    filled = 0
    for i in range(n):
        z0 = board + 0.04 if i == 0 else i * h / n + board / 2
        z1 = (i + 1) * h / n - board / 2 - (board if i == n - 1 else 0.0)
        if rng.random() < cfg.clutter_prob:
            filled += 1
            if rng.random() < 0.7:
                _book_row(real, rng, -w / 2 + board, w / 2 - board, dep / 2 - 0.01, dep - 0.02, z0, z1 - z0)
            else:
                _clutter(
                    real,
                    rng,
                    -w / 2 + board + 0.02,
                    w / 2 - board - 0.02,
                    -dep / 2 + 0.02,
                    dep / 2 - 0.02,
                    z0,
                    max_items=2,
                    max_height=z1 - z0 - 0.02,
                )
    d.params["filled_boards"] = filled
    return cad, real


_BUILDERS = {"chair": _chair, "table": _table, "sofa": _sofa, "bed": _bed, "cabinet": _cabinet, "shelf": _shelf}


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
    draw = _Draw(rng, cfg)
    cad, real = _BUILDERS[category](draw, cfg, rng)
    names, probs = zip(*_MATERIAL_PRIORS[category])
    material = str(names[int(rng.choice(len(names), p=np.array(probs) / sum(probs)))])
    # the whole real object sits slightly off its CAD pose
    r = cfg.real_offset_m * math.sqrt(rng.random())
    a = rng.uniform(0, 2 * np.pi)
    yaw = math.radians(cfg.real_rot_deg) * rng.uniform(-1, 1)
    offset = _pose([r * math.cos(a), r * math.sin(a), 0.0], yaw)
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
]
