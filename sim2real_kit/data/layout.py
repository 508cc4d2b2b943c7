"""The `lasa_depth` + `lasa_pose` layout of the authors' release, read and written atomically.

```
root/
  lasa_depth/<scene>/<frame>_gt.png     CAD depth, uint16 (mm unless dataset.yaml says otherwise), 0 = none
  lasa_depth/<scene>/<frame>_scan.png   real (captured) depth, same unit
  lasa_depth/<scene>/<frame>_rgb.png    colour (optional; only to colour fusions)
  lasa_depth/<scene>/<frame>_inst.png   instance ids, uint16 (optional; kit extension)
  lasa_depth/train.lst, val.lst         one `scene/frame` per line
  lasa_depth/benchmark.lst              optional third split (kit extension), same format: scenes held out of
                                        every simulator's training, for the benchmark's downstream task
  lasa_depth/<scene>/<frame>_cadinst.png  instance ids of the CAD rendering, uint16 (optional; kit extension)
  lasa_pose/<scene>/<frame>.txt         4x4 camera-to-world (np.loadtxt)
  intrinsics.json                       camera of the raw frames (absent for LASA: fixed ARKit camera)
  dataset.yaml                          format, depth_unit_m, source and generator parameters (optional)
  meshes/<scene>/{cad,real}.ply, scene.json   scene geometry for 3D evaluation (kit extension)
```
A real LASA root has neither `intrinsics.json` nor `dataset.yaml`: its camera is `Camera.lasa()` and
its unit millimetres. `validate(root)` reports every problem it finds, each naming its file.

Splits (`SPLITS`): `train` (what every simulator trains on: Stage-I/II, the discriminator, the GAN baselines),
`val` (the real captures everything is scored against) and `benchmark` (scenes no simulator trains on: the
simulators turn their CAD into depth for the benchmark's downstream task, paper Sec. 4.2 "Why not perform
simulation on LASA synthetic data"). `train` and `val` are required; `benchmark` is optional (datasets made
before it, or with `data.benchmark_fraction: 0`, have none: `has_split("benchmark")` is False). No scene may be
in two lists, unless dataset.yaml declares frame-wise splits (`splits: {unit: frame}`: the importers' one-video
datasets, whose held-out frames neighbour training frames). `split_sizes` is the one rule of how many scenes
(or frames) each split gets. A test-only sample (dataset.yaml `splits: {test_only: true}`: the importers' one-frame
datasets) has val.lst only; asking for its train split is an error saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from sim2real_kit.camera import Camera, check_pose
from sim2real_kit.depth import read_depth_png, write_depth_png
from sim2real_kit.errors import ConfigError, LayoutError, PoseError, Sim2RealError
from sim2real_kit.io import atomic_path, atomic_write_text

SPLITS = ("train", "val", "benchmark")
REQUIRED_SPLITS = ("train", "val")  # `benchmark` is optional: older datasets have none
DEPTH_DIR, POSE_DIR = "lasa_depth", "lasa_pose"
FORMAT = "lasa_depth"


@dataclass(frozen=True, order=True)
class FrameRef:
    """One frame of the layout: `scene/frame` as in the split lists."""

    scene: str
    frame: str

    def __str__(self) -> str:
        return f"{self.scene}/{self.frame}"

    @classmethod
    def parse(cls, line: str, source: str | Path | None = None) -> FrameRef:
        parts = line.strip().split("/")
        if len(parts) != 2 or not all(parts):
            raise LayoutError(f"list entry {line.strip()!r} is not of the form scene/frame", source)
        return cls(parts[0], parts[1])


class DepthLayout:
    """A dataset root in the `lasa_depth` layout. Opening does not scan the frames; `validate` does."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise LayoutError("dataset root does not exist", self.root)
        if not (self.root / DEPTH_DIR).is_dir():
            raise LayoutError(f"not a lasa_depth dataset: missing folder {DEPTH_DIR}/", self.root)
        self.meta = self._read_meta()
        self.depth_unit_m = float(self.meta.get("depth_unit_m", 0.001))
        if not self.depth_unit_m > 0:
            raise LayoutError(f"depth_unit_m must be > 0, got {self.depth_unit_m}", self.root / "dataset.yaml")
        intr = self.root / "intrinsics.json"
        self.camera = Camera.load_json(intr) if intr.is_file() else Camera.lasa()
        self._cad_renderer: tuple[str, object] | None = None  # (scene, SceneRenderer of its cad.ply): one cached

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls, root: str | Path, camera: Camera, depth_unit_m: float = 0.001, meta: dict | None = None
    ) -> DepthLayout:
        """Create (or reopen, for resume) a layout. A root holding a *different* dataset is refused."""
        root = Path(root)
        meta = dict(meta or {})
        full = {"format": FORMAT, "depth_unit_m": float(depth_unit_m), "camera": camera.to_dict(), **meta}
        full = yaml.safe_load(yaml.safe_dump(full))  # normalise tuples etc. for comparison
        ds = root / "dataset.yaml"
        if ds.is_file():
            old = yaml.safe_load(ds.read_text()) or {}
            if old != full:
                diff = sorted(k for k in set(old) | set(full) if old.get(k) != full.get(k))
                raise LayoutError(
                    f"the folder already holds a different dataset (differs in: {', '.join(diff)}); "
                    "refusing to mix datasets — choose another --out or delete the folder",
                    ds,
                )
        elif root.exists() and any(root.iterdir()):
            raise LayoutError("output folder is not empty and holds no dataset.yaml; refusing to write into it", root)
        (root / DEPTH_DIR).mkdir(parents=True, exist_ok=True)
        (root / POSE_DIR).mkdir(parents=True, exist_ok=True)
        camera.save_json(root / "intrinsics.json")
        if not ds.is_file():
            atomic_write_text(ds, yaml.safe_dump(full, sort_keys=False))
        return cls(root)

    def _read_meta(self) -> dict:
        p = self.root / "dataset.yaml"
        if not p.is_file():
            return {}
        try:
            meta = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise LayoutError(f"not valid YAML: {e}", p) from None
        if not isinstance(meta, dict):
            raise LayoutError("dataset.yaml must be a mapping", p)
        return meta

    # ------------------------------------------------------------------ paths
    def scene_dir(self, scene: str) -> Path:
        return self.root / DEPTH_DIR / scene

    def depth_path(self, ref: FrameRef, kind: str) -> Path:
        """kind: gt | scan | rgb | inst."""
        return self.root / DEPTH_DIR / ref.scene / f"{ref.frame}_{kind}.png"

    def pose_path(self, ref: FrameRef) -> Path:
        return self.root / POSE_DIR / ref.scene / f"{ref.frame}.txt"

    def list_path(self, split: str) -> Path:
        if split not in SPLITS:
            raise LayoutError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        return self.root / DEPTH_DIR / f"{split}.lst"

    def has_split(self, split: str) -> bool:
        """Whether the split's list exists (False for `benchmark` on datasets made without one)."""
        return self.list_path(split).is_file()

    def mesh_path(self, scene: str, kind: str = "cad") -> Path:
        return self.root / "meshes" / scene / f"{kind}.ply"

    def scene_info_path(self, scene: str) -> Path:
        return self.root / "meshes" / scene / "scene.json"

    # ------------------------------------------------------------------ lists
    def frames(self, split: str) -> list[FrameRef]:
        """Frames of a split list; a missing or empty list is an error naming it."""
        p = self.list_path(split)
        if not p.is_file():
            why = (
                ": this dataset has no benchmark split (made before it existed, or with data.benchmark_fraction=0; "
                "re-make or re-import it to hold scenes out of every simulator's training)"
                if split == "benchmark"
                else ""
            )
            if split == "train" and self.test_only:
                n = len(self.frames("val"))
                why = (
                    f": this is a test-only sample ({n} frame{'s' * (n != 1)}, dataset.yaml splits.test_only) with "
                    "nothing to train on; train on another sample and score on this one (sim2real evaluate-real "
                    "--train-sample OTHER --test-sample THIS)"
                )
            raise LayoutError(f"split list {split}.lst is missing{why}", p)
        refs = [FrameRef.parse(line, p) for line in p.read_text().splitlines() if line.strip()]
        if not refs:
            raise LayoutError(f"split list {split}.lst is empty", p)
        return refs

    def write_split(self, split: str, refs) -> None:
        atomic_write_text(self.list_path(split), "".join(f"{r}\n" for r in refs))

    def remove_split(self, split: str) -> None:
        """Delete a split's list (a re-made dataset that no longer has that split); no-op when absent."""
        self.list_path(split).unlink(missing_ok=True)

    @property
    def frame_wise_splits(self) -> bool:
        """dataset.yaml declares frame-wise splits (`splits: {unit: frame}`): scenes may be in several lists."""
        splits = self.meta.get("splits")
        return isinstance(splits, dict) and splits.get("unit") == "frame"

    @property
    def test_only(self) -> bool:
        """dataset.yaml declares a test-only sample (`splits: {test_only: true}`, the importers' one-frame datasets):
        val.lst only, no train split; `frames("train")` says so."""
        splits = self.meta.get("splits")
        return isinstance(splits, dict) and bool(splits.get("test_only"))

    def scenes(self, split: str) -> list[str]:
        return sorted({r.scene for r in self.frames(split)})

    # ------------------------------------------------------------------ frames
    def read_depth(self, ref: FrameRef, kind: str = "gt") -> np.ndarray:
        return read_depth_png(self.depth_path(ref, kind), self.depth_unit_m)

    def read_pose(self, ref: FrameRef) -> np.ndarray:
        return read_pose(self.pose_path(ref))

    def read_frame(self, ref: FrameRef, rgb: bool = False, instance: bool = False) -> dict:
        """{'cad', 'real' float32 [H, W] metres, 'pose' [4, 4], optional 'rgb' uint8, 'instance' int32}."""
        cad, real = self.read_depth(ref, "gt"), self.read_depth(ref, "scan")
        if cad.shape != real.shape:
            raise LayoutError(
                f"CAD depth {cad.shape[::-1]} and real depth {real.shape[::-1]} differ in size (W x H)",
                self.depth_path(ref, "scan"),
            )
        out = {"cad": cad, "real": real, "pose": self.read_pose(ref), "ref": ref}
        if rgb and self.depth_path(ref, "rgb").is_file():
            out["rgb"] = _read_png(self.depth_path(ref, "rgb"))
        if instance and self.depth_path(ref, "inst").is_file():
            out["instance"] = _read_png(self.depth_path(ref, "inst")).astype(np.int32)
        return out

    def write_frame(self, ref: FrameRef, cad, real, pose, rgb=None, instance=None) -> None:
        """Write one frame's files atomically (each file tmp + rename)."""
        cad, real = np.asarray(cad), np.asarray(real)
        if cad.shape != real.shape:
            raise LayoutError(
                f"CAD {cad.shape} and real {real.shape} depth differ in shape", self.depth_path(ref, "gt")
            )
        pose = check_pose(pose, self.pose_path(ref))
        write_depth_png(self.depth_path(ref, "gt"), cad, self.depth_unit_m)
        write_depth_png(self.depth_path(ref, "scan"), real, self.depth_unit_m)
        if rgb is not None:
            _write_png(self.depth_path(ref, "rgb"), np.asarray(rgb, dtype=np.uint8))
        if instance is not None:
            inst = np.asarray(instance)
            if inst.min(initial=0) < 0 or inst.max(initial=0) > 65535:
                raise LayoutError("instance ids must be in [0, 65535]", self.depth_path(ref, "inst"))
            _write_png(self.depth_path(ref, "inst"), inst.astype(np.uint16))
        write_pose(self.pose_path(ref), pose)

    def has_cad_instance(self, ref: FrameRef) -> bool:
        """Whether `cad_instance` can give the frame's CAD instance ids."""
        return self.depth_path(ref, "cadinst").is_file() or self.mesh_path(ref.scene, "cad").is_file()

    def cad_instance(self, ref: FrameRef) -> np.ndarray | None:
        """Instance ids [H, W] int32 of the frame's CAD (0 = no CAD): the object masks of anything made from the
        CAD (a simulator's output), which must not come from the real side. From `<frame>_cadinst.png` (the
        importers' rendered ids), else by ray casting `meshes/<scene>/cad.ply` (the procedural world: vertex
        colour red = id / 255, the geometry `_gt.png` was rendered from) with the layout's camera at the frame's
        pose; None when the layout has neither (`_inst.png` then is the only segmentation)."""
        path = self.depth_path(ref, "cadinst")
        if path.is_file():
            return _read_png(path).astype(np.int32)
        mesh = self.mesh_path(ref.scene, "cad")
        if not mesh.is_file():
            return None
        if self._cad_renderer is None or self._cad_renderer[0] != ref.scene:
            from sim2real_kit.data.render import SceneRenderer

            self._cad_renderer = (ref.scene, SceneRenderer(_instance_parts(mesh)))
        return self._cad_renderer[1].render(self.camera, self.read_pose(ref), full=False).instance.astype(np.int32)

    def write_cad_instance(self, ref: FrameRef, instance) -> None:
        """Write `<frame>_cadinst.png`: the instance ids of the frame's CAD rendering (uint16)."""
        inst = np.asarray(instance)
        if inst.min(initial=0) < 0 or inst.max(initial=0) > 65535:
            raise LayoutError("instance ids must be in [0, 65535]", self.depth_path(ref, "cadinst"))
        _write_png(self.depth_path(ref, "cadinst"), inst.astype(np.uint16))

    def has_frame(self, ref: FrameRef) -> bool:
        return all(self.depth_path(ref, k).is_file() for k in ("gt", "scan")) and self.pose_path(ref).is_file()

    def mark_scene_done(self, scene: str) -> None:
        atomic_write_text(self.scene_dir(scene) / ".done", "done\n")

    def scene_done(self, scene: str) -> bool:
        return (self.scene_dir(scene) / ".done").is_file()

    def __repr__(self) -> str:
        return f"DepthLayout({str(self.root)!r}, unit={self.depth_unit_m} m, camera={self.camera.width}x{self.camera.height})"


# ---------------------------------------------------------------------- poses
def read_pose(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise PoseError("pose file does not exist", path)
    try:
        pose = np.loadtxt(path, dtype=np.float64)
    except ValueError as e:
        raise PoseError(f"pose file is not numeric: {e}", path) from None
    return check_pose(pose, path)


def write_pose(path: str | Path, pose) -> None:
    pose = check_pose(pose, path)
    with atomic_path(path) as tmp:
        np.savetxt(tmp, pose, fmt="%.9f")


def _instance_parts(path: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{instance id: (vertices, triangles)} of a scene mesh whose vertex colour red is instance id / 255."""
    import open3d as o3d

    mesh = o3d.io.read_triangle_mesh(str(path))
    if len(mesh.triangles) == 0 or not mesh.has_vertex_colors():
        raise LayoutError("mesh has no triangles or no vertex colours (red = instance id / 255)", path)
    vertices, triangles = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    ids = np.rint(np.asarray(mesh.vertex_colors)[:, 0] * 255).astype(np.int64)[triangles[:, 0]]
    return {int(i): (vertices, triangles[ids == i]) for i in np.unique(ids) if i > 0}


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except OSError as e:
        raise LayoutError(f"cannot decode PNG: {e}", path) from None


def _write_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


# ---------------------------------------------------------------------- validation
def split_sizes(n: int, val_fraction: float, benchmark_fraction: float = 0.0) -> tuple[int, int]:
    """(val, benchmark) counts of `n` scenes (or frames): val round(n * val_fraction), at least 1, at most n - 1
    (the synth / importer rule before the benchmark split); benchmark round(n * benchmark_fraction), at least 1
    when the fraction is > 0, but never so many that train would be empty: 0 when n - val < 2 (then the
    dataset has no benchmark split). train gets the rest."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 0 <= benchmark_fraction < 1 or not val_fraction + benchmark_fraction < 1:
        raise ConfigError(
            f"benchmark_fraction must be in [0, 1) with val_fraction + benchmark_fraction < 1, got "
            f"{benchmark_fraction} (val_fraction {val_fraction})"
        )
    if n < 2:
        raise ConfigError(f"need at least 2 scenes (or frames) to make non-empty train and val splits, got {n}")
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    n_bench = 0 if benchmark_fraction == 0 else min(n - n_val - 1, max(1, int(round(n * benchmark_fraction))))
    return n_val, n_bench


def validate(root: str | Path, check_pixels: bool = True, max_frames: int | None = None) -> list[str]:
    """Every problem found in a layout, each as 'path: problem'. Empty list = valid.

    Checks the lists (train and val present, benchmark optional; non-empty, well formed, no duplicates, no
    frame in two splits, no scene in two splits unless dataset.yaml declares frame-wise splits), each
    listed frame's files (present, decodable uint16 depth, CAD/real same size, size matching the
    camera), poses (4x4 rigid) and dataset.yaml / intrinsics.json."""
    root = Path(root)
    problems: list[str] = []
    if not root.is_dir():
        return [f"{root}: dataset root does not exist"]
    try:
        lay = DepthLayout(root)
    except Sim2RealError as e:
        return [str(e)]
    seen: dict[FrameRef, str] = {}
    scene_split: dict[str, str] = {}
    for split in SPLITS:
        p = lay.list_path(split)
        if not p.is_file():
            if split in REQUIRED_SPLITS and not (split == "train" and lay.test_only):
                problems.append(f"{p}: split list {split}.lst is missing")
            continue
        lines = [ln for ln in p.read_text().splitlines() if ln.strip()]
        if not lines:
            problems.append(f"{p}: split list {split}.lst is empty")
        refs = []
        for i, line in enumerate(lines, 1):
            try:
                ref = FrameRef.parse(line)
            except LayoutError:
                problems.append(f"{p}:{i}: entry {line.strip()!r} is not of the form scene/frame")
                continue
            if ref in seen:
                problems.append(f"{p}:{i}: {ref} listed twice (also in {seen[ref]}.lst)")
                continue
            seen[ref] = split
            refs.append(ref)
        if not lay.frame_wise_splits:
            for scene in dict.fromkeys(r.scene for r in refs):
                other = scene_split.setdefault(scene, split)
                if other != split:
                    problems.append(
                        f"{p}: scene {scene} is also in {other}.lst (splits are by scene: a scene in two lists "
                        "leaks it into the other split; dataset.yaml `splits: {unit: frame}` declares frame-wise "
                        "splits)"
                    )
        if max_frames is not None:
            refs = refs[:max_frames]
        for ref in refs:
            problems.extend(_validate_frame(lay, ref, check_pixels))
    return problems


def _validate_frame(lay: DepthLayout, ref: FrameRef, check_pixels: bool) -> list[str]:
    problems = []
    shapes = {}
    for kind in ("gt", "scan"):
        path = lay.depth_path(ref, kind)
        if not path.is_file():
            problems.append(f"{path}: missing ({'CAD' if kind == 'gt' else 'real'} depth of {ref})")
            continue
        if check_pixels:
            try:
                shapes[kind] = read_depth_png(path, lay.depth_unit_m).shape
            except Sim2RealError as e:
                problems.append(str(e))
    if len(shapes) == 2 and shapes["gt"] != shapes["scan"]:
        problems.append(f"{lay.depth_path(ref, 'scan')}: size {shapes['scan']} differs from CAD depth {shapes['gt']}")
    for kind, shape in shapes.items():
        if shape != (lay.camera.height, lay.camera.width):
            problems.append(
                f"{lay.depth_path(ref, kind)}: size {shape[1]}x{shape[0]} differs from the camera's "
                f"{lay.camera.width}x{lay.camera.height}"
            )
            break
    try:
        lay.read_pose(ref)
    except Sim2RealError as e:
        problems.append(str(e))
    return problems


def assert_valid(root: str | Path) -> None:
    problems = validate(root)
    if problems:
        raise LayoutError(f"{len(problems)} problem(s):\n  " + "\n  ".join(problems), root)


__all__ = [
    "DepthLayout",
    "FrameRef",
    "validate",
    "assert_valid",
    "read_pose",
    "write_pose",
    "split_sizes",
    "SPLITS",
    "REQUIRED_SPLITS",
    "FORMAT",
]
