"""The `lasa_depth` + `lasa_pose` layout of the authors' release, read and written atomically.

```
root/
  lasa_depth/<scene>/<frame>_gt.png     CAD depth, uint16 (mm unless dataset.yaml says otherwise), 0 = none
  lasa_depth/<scene>/<frame>_scan.png   real (captured) depth, same unit
  lasa_depth/<scene>/<frame>_rgb.png    colour (optional; only to colour fusions)
  lasa_depth/<scene>/<frame>_inst.png   instance ids, uint16 (optional; kit extension)
  lasa_depth/train.lst, val.lst         one `scene/frame` per line
  lasa_pose/<scene>/<frame>.txt         4x4 camera-to-world (np.loadtxt)
  intrinsics.json                       camera of the raw frames (absent for LASA: fixed ARKit camera)
  dataset.yaml                          format, depth_unit_m, source and generator parameters (optional)
  meshes/<scene>/{cad,real}.ply, scene.json   scene geometry for 3D evaluation (kit extension)
```
A real LASA root has neither `intrinsics.json` nor `dataset.yaml`: its camera is `Camera.lasa()` and
its unit millimetres. `validate(root)` reports every problem it finds, each naming its file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from sim2real_kit.camera import Camera, check_pose
from sim2real_kit.depth import read_depth_png, write_depth_png
from sim2real_kit.errors import LayoutError, PoseError, Sim2RealError
from sim2real_kit.io import atomic_path, atomic_write_text

SPLITS = ("train", "val")
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

    def mesh_path(self, scene: str, kind: str = "cad") -> Path:
        return self.root / "meshes" / scene / f"{kind}.ply"

    def scene_info_path(self, scene: str) -> Path:
        return self.root / "meshes" / scene / "scene.json"

    # ------------------------------------------------------------------ lists
    def frames(self, split: str) -> list[FrameRef]:
        """Frames of a split list; a missing or empty list is an error naming it."""
        p = self.list_path(split)
        if not p.is_file():
            raise LayoutError(f"split list {split}.lst is missing", p)
        refs = [FrameRef.parse(line, p) for line in p.read_text().splitlines() if line.strip()]
        if not refs:
            raise LayoutError(f"split list {split}.lst is empty", p)
        return refs

    def write_split(self, split: str, refs) -> None:
        atomic_write_text(self.list_path(split), "".join(f"{r}\n" for r in refs))

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
def validate(root: str | Path, check_pixels: bool = True, max_frames: int | None = None) -> list[str]:
    """Every problem found in a layout, each as 'path: problem'. Empty list = valid.

    Checks the lists (present, non-empty, well formed, no duplicates, no frame in both splits), each
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
    for split in SPLITS:
        p = lay.list_path(split)
        if not p.is_file():
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


__all__ = ["DepthLayout", "FrameRef", "validate", "assert_valid", "read_pose", "write_pose", "SPLITS", "FORMAT"]
