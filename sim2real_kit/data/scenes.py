"""Procedural rooms: furniture placement and a hand-held walk-around camera (DESIGN §2).

A LASA scene is one room scanned with an iPad while walking around the furniture; each frame is a
256x192 ARKit depth map with a camera-to-world pose, and annotators aligned CAD models to the
furniture. `make_scene` builds the procedural analogue from one seed:

- a rectangular room (floor, four walls, optional ceiling) of `SceneConfig.room_*` size, z up,
  floor at z = 0, spanning [0, width] x [0, depth];
- 3-8 non-intersecting pieces of furniture (`shapes.make_object`), beds / sofas / cabinets /
  shelves mostly with their back against a wall, chairs and tables free-standing;
- a camera trajectory: an arc of an ellipse around the room centre at human height (1.3-1.7 m),
  each frame looking at a piece of furniture across the room (so frames see furniture, not
  blank walls, at 0.5-4.5 m), with a small hand-held roll.

Instance ids (the same in CAD and real geometry and in the rendered `instance` maps):
0 = nothing, 1..N = furniture in placement order, 100 = floor, 101-104 = walls, 105 = ceiling.
`CLASS_NAMES` maps the category codes of `Scene.category_map` (0 none, 1-6 furniture, 7 floor,
8 wall, 9 ceiling). The real room differs from the CAD room by baseboards and a rug.

Worlds (`WORLDS`, `make_scene(world=...)`): "procedural" (the default) has the real geometry above,
more detailed than the CAD and slightly misplaced; "sensor_only" draws the very same room, furniture,
placement and camera path (the same random draws) but makes the real geometry *equal* the CAD one:
every piece of furniture at its CAD pose with its CAD mesh, and the plain room (floor, walls, ceiling;
no baseboards, no rug; present even when `cad_includes_room` is False). Captured depth then differs
from the CAD depth by the sensor's effects alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from sim2real_kit.camera import Camera, look_at
from sim2real_kit.data.shapes import CATEGORIES, MeshBuilder, ObjectPair, ShapeConfig, make_object, to_open3d
from sim2real_kit.errors import ConfigError

FLOOR_ID, WALL_IDS, CEILING_ID = 100, (101, 102, 103, 104), 105
ROOM_ID_MIN = 100
MAX_OBJECTS = 99
CLASS_NAMES = ("none", *CATEGORIES, "floor", "wall", "ceiling")
WORLDS = ("procedural", "sensor_only")  # what the real geometry is: detailed + misplaced, or the CAD itself

# chance that a category stands with its back against a wall
_WALL_PROB = {"chair": 0.1, "table": 0.2, "sofa": 0.8, "bed": 0.95, "cabinet": 0.9, "shelf": 0.95}


@dataclass
class SceneConfig:
    """Generator parameters of the procedural rooms (metres, degrees); recorded in dataset.yaml."""

    n_objects: tuple[int, int] = (3, 8)  # furniture per room, inclusive range
    room_width_m: tuple[float, float] = (3.6, 5.5)
    room_depth_m: tuple[float, float] = (3.2, 5.0)
    room_height_m: tuple[float, float] = (2.4, 3.0)
    ceiling_prob: float = 0.5  # chance that the room has a ceiling
    cad_includes_room: bool = True  # CAD depth covers floor / walls too (LASA's covers only objects)
    baseboard_prob: float = 0.7  # chance of baseboards along the real walls (not in CAD)
    rug_prob: float = 0.4  # chance of a rug on the real floor (not in CAD)
    category_weights: dict = field(
        default_factory=lambda: {"chair": 0.3, "table": 0.15, "sofa": 0.15, "bed": 0.1, "cabinet": 0.15, "shelf": 0.15}
    )  # relative frequency of each category; leave one out (or 0) to exclude it
    clearance_m: float = 0.08  # minimum gap between the footprints of two objects
    camera_height_m: tuple[float, float] = (1.3, 1.7)
    camera_roll_deg: float = 2.0  # std of the hand-held roll
    arc_deg: tuple[float, float] = (100.0, 260.0)  # span of the walk-around arc
    target_jitter_m: float = 0.12  # std of the look-at point around the furniture centre
    min_furniture_fraction: float = 0.15  # a frame must show at least this share of furniture pixels
    shapes: ShapeConfig = field(default_factory=ShapeConfig)

    def check(self) -> SceneConfig:
        lo, hi = self.n_objects
        if not (isinstance(lo, int | np.integer) and isinstance(hi, int | np.integer)) or lo <= 0 or hi < lo:
            raise ConfigError(f"scenes.n_objects must be 1 <= lo <= hi, got {self.n_objects}")
        if hi > MAX_OBJECTS:
            raise ConfigError(f"scenes.n_objects: at most {MAX_OBJECTS} objects per room, got {hi}")
        for name in ("room_width_m", "room_depth_m", "room_height_m", "camera_height_m", "arc_deg"):
            a, b = getattr(self, name)
            if not 0 < a <= b:
                raise ConfigError(f"scenes.{name} must be 0 < lo <= hi, got {getattr(self, name)}")
        if self.room_width_m[0] < 2.0 or self.room_depth_m[0] < 2.0:
            raise ConfigError("scenes.room_width_m / room_depth_m must be at least 2 m to walk around furniture")
        if self.camera_height_m[1] >= self.room_height_m[0]:
            raise ConfigError("scenes.camera_height_m must stay below the lowest ceiling (room_height_m)")
        for name in ("ceiling_prob", "baseboard_prob", "rug_prob", "min_furniture_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"scenes.{name} must be in [0, 1], got {getattr(self, name)}")
        if not isinstance(self.category_weights, dict):
            raise ConfigError("scenes.category_weights must map category names to weights")
        bad = [c for c in self.category_weights if c not in CATEGORIES]
        if bad:
            raise ConfigError(f"scenes.category_weights: unknown category {bad[0]!r}; valid: {', '.join(CATEGORIES)}")
        w = np.asarray(list(self.category_weights.values()), dtype=float)
        if (w < 0).any() or w.sum() <= 0:
            raise ConfigError(f"scenes.category_weights must be >= 0 with a positive sum, got {self.category_weights}")
        for name in ("clearance_m", "camera_roll_deg", "target_jitter_m"):
            if getattr(self, name) < 0:
                raise ConfigError(f"scenes.{name} must be >= 0, got {getattr(self, name)}")
        self.shapes.check()
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> SceneConfig:
        d = dict(d)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown scene parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        shapes = d.pop("shapes", None)
        if isinstance(shapes, dict):
            sk = set(ShapeConfig.__dataclass_fields__)
            bad = sorted(set(shapes) - sk)
            if bad:
                raise ConfigError(f"unknown shape parameter(s) {', '.join(bad)}; valid: {', '.join(sorted(sk))}")
            shapes = ShapeConfig(**shapes)
        cfg = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        if shapes is not None:
            cfg.shapes = shapes
        return cfg


@dataclass
class Scene:
    """One room: CAD and real geometry per instance (world frame), the instance table and the camera path."""

    seed: int
    camera: Camera
    room: dict  # width, depth, height (metres), ceiling (bool), baseboards, rug
    objects: list[ObjectPair]  # furniture in its object frame, instance id = index + 1
    object_poses: np.ndarray  # [N, 4, 4] object frame -> world (CAD placement)
    instances: dict[int, dict]  # id -> {"category", "material", "kind": "object" | "room"}
    cad_parts: dict[int, tuple[np.ndarray, np.ndarray]]  # id -> (vertices [V, 3] world, triangles [T, 3])
    real_parts: dict[int, tuple[np.ndarray, np.ndarray]]
    poses: np.ndarray  # [F, 4, 4] camera-to-world
    config: SceneConfig
    render_threads: int = 0  # open3d ray-casting threads (0 = all cores)
    world: str = "procedural"  # one of WORLDS: "sensor_only" = the real geometry is the CAD geometry
    _renderers: dict = field(default_factory=dict, repr=False)

    @property
    def n_frames(self) -> int:
        return len(self.poses)

    @property
    def materials(self) -> dict[int, str]:
        return {i: info["material"] for i, info in self.instances.items()}

    def renderer(self, kind: str = "cad"):
        """The (cached) `render.SceneRenderer` of the CAD or real geometry."""
        from sim2real_kit.data.render import SceneRenderer

        if kind not in ("cad", "real"):
            raise ConfigError(f"geometry kind must be 'cad' or 'real', got {kind!r}")
        if kind not in self._renderers:
            parts = self.cad_parts if kind == "cad" else self.real_parts
            self._renderers[kind] = SceneRenderer(parts, self.materials, nthreads=self.render_threads)
        return self._renderers[kind]

    def render(self, frame: int, kind: str = "cad", full: bool = True):
        """RenderResult of frame `frame` of the trajectory with the CAD or real geometry
        (`full=False`: depth and instance only)."""
        return self.renderer(kind).render(self.camera, self.poses[frame], full)

    def mesh(self, kind: str = "cad", instances=None):
        """Merged open3d TriangleMesh (world frame) of `kind`; vertex colour red = instance id / 255."""
        parts = self.cad_parts if kind == "cad" else self.real_parts
        ids = sorted(parts) if instances is None else [i for i in instances if i in parts]
        verts, tris, cols, n = [], [], [], 0
        for i in ids:
            v, t = parts[i]
            verts.append(v)
            tris.append(t + n)
            cols.append(np.tile([[i / 255.0, 0.0, 0.0]], (len(v), 1)))
            n += len(v)
        import open3d as o3d

        mesh = to_open3d(np.concatenate(verts), np.concatenate(tris))
        mesh.vertex_colors = o3d.utility.Vector3dVector(np.concatenate(cols))
        return mesh

    def category_map(self, instance: np.ndarray) -> np.ndarray:
        """Instance map [H, W] -> category code [H, W] uint8 (index into CLASS_NAMES)."""
        lut = np.zeros(65536, dtype=np.uint8)
        for i, info in self.instances.items():
            lut[i] = CLASS_NAMES.index(info["category"])
        return lut[np.asarray(instance, dtype=np.int64)]

    def info(self) -> dict:
        """JSON-able description (instance table, room, object poses and parameters) for scene.json."""
        return {
            "seed": self.seed,
            "room": self.room,
            "instances": {str(i): v for i, v in sorted(self.instances.items())},
            "objects": [
                {
                    "id": k + 1,
                    "category": o.category,
                    "material": o.material,
                    "pose": self.object_poses[k].tolist(),
                    "params": o.params,
                }
                for k, o in enumerate(self.objects)
            ],
            "camera": self.camera.to_dict(),
            "n_frames": self.n_frames,
            "mesh_vertex_colour": "red channel = instance id / 255",
        } | ({} if self.world == "procedural" else {"world": self.world})


# ====================================================================== room
def _room_parts(w: float, d: float, h: float, ceiling: bool, rng, cfg: SceneConfig):
    """(cad parts, real parts, room info) of floor, walls, ceiling, as id -> (vertices, triangles)."""
    quad = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32)
    corners = {
        FLOOR_ID: [[0, 0, 0], [w, 0, 0], [w, d, 0], [0, d, 0]],
        WALL_IDS[0]: [[0, 0, 0], [0, 0, h], [w, 0, h], [w, 0, 0]],  # y = 0
        WALL_IDS[1]: [[w, 0, 0], [w, 0, h], [w, d, h], [w, d, 0]],  # x = w
        WALL_IDS[2]: [[w, d, 0], [w, d, h], [0, d, h], [0, d, 0]],  # y = d
        WALL_IDS[3]: [[0, d, 0], [0, d, h], [0, 0, h], [0, 0, 0]],  # x = 0
    }
    if ceiling:
        corners[CEILING_ID] = [[0, 0, h], [0, d, h], [w, d, h], [w, 0, h]]
    cad = {i: (np.array(c, dtype=np.float64), quad.copy()) for i, c in corners.items()}
    real = {}
    baseboards = bool(rng.random() < cfg.baseboard_prob)
    rug = bool(rng.random() < cfg.rug_prob)
    bb_h, bb_t = rng.uniform(0.06, 0.12), rng.uniform(0.012, 0.02)
    for i, (v, t) in cad.items():
        b = MeshBuilder().add(v, t)
        if baseboards and i in WALL_IDS:
            k = WALL_IDS.index(i)
            if k in (0, 2):
                y = bb_t / 2 if k == 0 else d - bb_t / 2
                b.box([w / 2, y, bb_h / 2], [w, bb_t, bb_h])
            else:
                x = w - bb_t / 2 if k == 1 else bb_t / 2
                b.box([x, d / 2, bb_h / 2], [bb_t, d, bb_h])
        real[i] = b.arrays()
    rug_info = None
    if rug:
        rw, rd = rng.uniform(1.2, min(2.5, w - 1.0)), rng.uniform(0.8, min(2.0, d - 1.0))
        cx, cy = rng.uniform(rw / 2 + 0.3, w - rw / 2 - 0.3), rng.uniform(rd / 2 + 0.3, d - rd / 2 - 0.3)
        t = rng.uniform(0.005, 0.015)
        v, tr = real[FLOOR_ID]
        real[FLOOR_ID] = MeshBuilder().add(v, tr).box([cx, cy, t / 2], [rw, rd, t]).arrays()
        rug_info = {"center": [cx, cy], "size": [rw, rd], "thickness": t}
    info = {
        "width": w,
        "depth": d,
        "height": h,
        "ceiling": ceiling,
        "baseboards": baseboards,
        "baseboard_height": bb_h if baseboards else 0.0,
        "rug": rug_info,
    }
    return cad, real, info


# ====================================================================== placement
def _rect_corners(cx: float, cy: float, hx: float, hy: float, yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
    return local @ np.array([[c, s], [-s, c]]) + [cx, cy]


def _rects_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex quads [4, 2]."""
    for poly in (a, b):
        for k in range(4):
            edge = poly[(k + 1) % 4] - poly[k]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def _place(obj: ObjectPair, rng, w: float, d: float, placed: list[np.ndarray], clearance: float):
    """(x, y, yaw) of a free spot in the room for `obj`, or None after a number of tries."""
    hx, hy = obj.footprint
    against_wall = rng.random() < _WALL_PROB[obj.category]
    for _ in range(60):
        if against_wall:
            wall = int(rng.integers(4))
            yaw = (math.pi, -math.pi / 2, 0.0, math.pi / 2)[wall] + math.radians(rng.normal(0, 1.0))
            gap = rng.uniform(0.02, 0.08) + hx * 0.03
            along_len = w if wall in (0, 2) else d
            if along_len < 2 * hx + 0.1:
                continue
            s = rng.uniform(hx + 0.05, along_len - hx - 0.05)
            x, y = {0: (s, hy + gap), 1: (w - hy - gap, s), 2: (s, d - hy - gap), 3: (hy + gap, s)}[wall]
        else:
            yaw = (
                rng.uniform(0, 2 * math.pi)
                if obj.category == "chair"
                else rng.integers(4) * math.pi / 2 + math.radians(rng.normal(0, 6))
            )
            x, y = rng.uniform(0.4, w - 0.4), rng.uniform(0.4, d - 0.4)
        rect = _rect_corners(x, y, hx, hy, yaw)
        if (
            rect[:, 0].min() < 0.005
            or rect[:, 1].min() < 0.005
            or rect[:, 0].max() > w - 0.005
            or rect[:, 1].max() > d - 0.005
        ):
            continue
        grown = _rect_corners(x, y, hx + clearance / 2, hy + clearance / 2, yaw)
        if any(_rects_overlap(grown, other) for other in placed):
            continue
        placed.append(grown)
        return x, y, yaw
    return None


# ====================================================================== camera
def _inside_any(p: np.ndarray, rects: list[np.ndarray], margin: float) -> bool:
    for r in rects:
        c = r.mean(0)
        ex, ey = r[1] - r[0], r[3] - r[0]
        lx, ly = np.linalg.norm(ex), np.linalg.norm(ey)
        q = p - c
        if abs(q @ ex / lx) < lx / 2 + margin and abs(q @ ey / ly) < ly / 2 + margin:
            return True
    return False


def _trajectory(
    rng, cfg: SceneConfig, room: dict, centres: np.ndarray, rects: list[np.ndarray], n_frames: int, view_ok
) -> np.ndarray:
    """[F, 4, 4] camera-to-world poses walking an arc around the room and looking at furniture."""
    w, d = room["width"], room["depth"]
    c = np.array([w / 2, d / 2])
    span = math.radians(rng.uniform(*cfg.arc_deg)) if n_frames > 1 else 0.0
    phi0 = rng.uniform(0, 2 * math.pi)
    height = rng.uniform(*cfg.camera_height_m)
    phis = phi0 + span * (np.arange(n_frames) / max(n_frames - 1, 1))
    # the widest ellipse whose frames stand clear of every object
    eyes_xy = None
    for scale in (0.75, 0.62, 0.5, 0.38, 0.26, 0.15):
        a, b = scale * (w / 2 - 0.4), scale * (d / 2 - 0.4)
        xy = c + np.stack([a * np.cos(phis), b * np.sin(phis)], 1)
        free = [not _inside_any(p, rects, 0.25) for p in xy]
        if all(free) or scale == 0.15:
            eyes_xy = xy
            break
    bob = 0.04 * np.sin(np.linspace(0, rng.uniform(2, 6), n_frames) + rng.uniform(0, 6))
    eyes = np.c_[eyes_xy, height + bob]
    # per frame: candidate targets ranked by how squarely they lie across the room at a usable range
    poses = np.empty((n_frames, 4, 4))
    for f in range(n_frames):
        to_centre = np.r_[c - eyes[f, :2], 0.0]
        to_centre /= np.linalg.norm(to_centre) + 1e-9
        vec = centres - eyes[f]
        dist = np.linalg.norm(vec[:, :2], axis=1)
        score = (vec / np.linalg.norm(vec, axis=1, keepdims=True)) @ to_centre
        score -= np.where(dist < 0.9, 1.0, 0.0) + np.where(dist > 4.2, 0.5 * (dist - 4.2), 0.0)
        order = np.argsort(-score)
        chosen = None
        for k in order:
            tgt = centres[k] + rng.normal(0, cfg.target_jitter_m, 3) * [1, 1, 0.5]
            pose = _pose_with_roll(eyes[f], tgt, rng, cfg.camera_roll_deg)
            if view_ok(pose):
                chosen = pose
                break
        if chosen is None:  # no view shows enough furniture: take the best-ranked one anyway
            chosen = _pose_with_roll(eyes[f], centres[order[0]], rng, cfg.camera_roll_deg)
        poses[f] = chosen
    return poses


def _pose_with_roll(eye, target, rng, roll_deg: float) -> np.ndarray:
    pose = look_at(eye, target)
    r = math.radians(rng.normal(0, roll_deg)) if roll_deg > 0 else 0.0
    cr, sr = math.cos(r), math.sin(r)
    pose[:3, :3] = pose[:3, :3] @ np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1.0]])
    return pose


# ====================================================================== scene
def check_world(world: str) -> str:
    if world not in WORLDS:
        raise ConfigError(f"unknown world {world!r}; valid: {', '.join(WORLDS)}")
    return world


def make_scene(
    seed: int,
    n_frames: int,
    camera: Camera | None = None,
    cfg: SceneConfig | None = None,
    n_objects: int | None = None,
    world: str = "procedural",
) -> Scene:
    """Build room, furniture and camera trajectory from `seed` (deterministic).

    `n_frames` > 0 frames; `n_objects` overrides the drawn furniture count (1..99). `world`
    "sensor_only": the same scene (same draws, CAD and camera path) with real geometry = CAD geometry
    (plus the plain room), see the module docstring."""
    cfg = (cfg or SceneConfig()).check()
    world = check_world(world)
    if not isinstance(n_frames, int | np.integer) or n_frames <= 0:
        raise ConfigError(f"n_frames must be a positive integer, got {n_frames!r}")
    if n_objects is not None and (not isinstance(n_objects, int | np.integer) or not 0 < n_objects <= MAX_OBJECTS):
        raise ConfigError(f"n_objects must be an integer in 1..{MAX_OBJECTS}, got {n_objects!r}")
    camera = camera or Camera.lasa()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5CE7E]))
    w, d = rng.uniform(*cfg.room_width_m), rng.uniform(*cfg.room_depth_m)
    h = rng.uniform(*cfg.room_height_m)
    ceiling = bool(rng.random() < cfg.ceiling_prob)
    room_cad, room_real, room = _room_parts(w, d, h, ceiling, rng, cfg)
    n = int(n_objects) if n_objects is not None else int(rng.integers(cfg.n_objects[0], cfg.n_objects[1] + 1))
    weights = np.array([float(cfg.category_weights.get(c, 0.0)) for c in CATEGORIES])
    weights = weights / weights.sum()

    objects, poses, rects = [], [], []
    tries = 0
    while len(objects) < n and tries < 4 * n:
        tries += 1
        category = CATEGORIES[int(rng.choice(len(CATEGORIES), p=weights))]
        obj = make_object(category, np.random.default_rng(rng.integers(2**63)), cfg.shapes)
        spot = _place(obj, rng, w, d, rects, cfg.clearance_m)
        if spot is None:
            continue
        x, y, yaw = spot
        pose = np.eye(4)
        pose[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
        pose[:3, 3] = [x, y, 0.0]
        objects.append(obj)
        poses.append(pose)

    instances: dict[int, dict] = {}
    cad_parts: dict[int, tuple] = {}
    real_parts: dict[int, tuple] = {}
    for k, (obj, pose) in enumerate(zip(objects, poses)):
        i = k + 1
        instances[i] = {"category": obj.category, "material": obj.material, "kind": "object"}
        for parts, mesh in ((cad_parts, obj.cad), (real_parts, obj.real)):
            v = np.asarray(mesh.vertices) @ pose[:3, :3].T + pose[:3, 3]
            parts[i] = (v, np.asarray(mesh.triangles))
    floor_mat = "wood" if rng.random() < 0.6 else "matte"
    for i in room_cad:
        name = "floor" if i == FLOOR_ID else "ceiling" if i == CEILING_ID else "wall"
        instances[i] = {"category": name, "material": floor_mat if i == FLOOR_ID else "matte", "kind": "room"}
        real_parts[i] = room_real[i]
        if cfg.cad_includes_room:
            cad_parts[i] = room_cad[i]

    scene = Scene(
        seed=int(seed),
        camera=camera,
        room=room,
        objects=objects,
        object_poses=np.array(poses).reshape(-1, 4, 4),
        instances=instances,
        cad_parts=cad_parts,
        real_parts=real_parts,
        poses=np.zeros((0, 4, 4)),
        config=cfg,
    )

    # camera path; each view is checked on a coarse CAD rendering of the furniture only
    from sim2real_kit.data.render import SceneRenderer

    check_cam = camera.resize(max(8, camera.width // 4), max(6, camera.height // 4))
    furniture = SceneRenderer({i: p for i, p in cad_parts.items() if i < ROOM_ID_MIN} or {FLOOR_ID: room_cad[FLOOR_ID]})

    def view_ok(pose) -> bool:
        if not objects:
            return True
        inst = furniture.render(check_cam, pose, full=False).instance
        return float(((inst > 0) & (inst < ROOM_ID_MIN)).mean()) >= cfg.min_furniture_fraction

    centres = np.array([p[:3, 3] + [0, 0, min(o.height * 0.5, 0.8)] for o, p in zip(objects, poses)]).reshape(-1, 3)
    if not len(centres):
        centres = np.array([[w / 2, d / 2, 0.5]])
    scene.poses = _trajectory(rng, cfg, room, centres, rects, n_frames, view_ok)
    if world == "sensor_only":  # after every draw: the scene is the procedural one but for its real geometry
        scene.real_parts = {i: cad_parts[i] for i in cad_parts if i < ROOM_ID_MIN}
        scene.real_parts.update(room_cad)
        scene.room = {**room, "baseboards": False, "baseboard_height": 0.0, "rug": None}
        scene.world = world
    return scene


__all__ = [
    "SceneConfig",
    "Scene",
    "make_scene",
    "check_world",
    "CLASS_NAMES",
    "WORLDS",
    "FLOOR_ID",
    "WALL_IDS",
    "CEILING_ID",
    "ROOM_ID_MIN",
]
