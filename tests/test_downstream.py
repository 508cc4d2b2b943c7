"""Tests of the downstream task: object extraction from a hand-made layout with instance ids (known places and
categories), the PointNet classifier, the occupancy network against the trivial "input as prediction" floor, and
the `run_downstream` protocol with its summaries."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sim2real_kit.camera import Camera, look_at
from sim2real_kit.data.dataset import crop_resize, eval_box
from sim2real_kit.data.layout import DepthLayout, FrameRef
from sim2real_kit.downstream import (
    ObjectSet,
    OccupancyNetwork,
    PointNetClassifier,
    SharedMLP,
    evaluate_classifier,
    evaluate_reconstruction,
    extract_objects,
    few_shot_subset,
    resample_to_camera,
    run_downstream,
    simulator_depth_source,
    summarize,
    summary_markdown,
    thin_shell,
    train_classifier,
    train_occupancy,
    voxel_downsample,
)
from sim2real_kit.errors import ConfigError, DepthFormatError, LayoutError
from sim2real_kit.models.baselines import RandomPerturbation

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- a hand-made layout with two objects
CAM = Camera(20.0, 20.0, 16.0, 12.0, 32, 24)
# fronto-parallel rectangles facing cameras that look along +y (world z up): (instance id, y, x range, z range)
RECTS = [(1, 2.0, (-0.4, 0.4), (0.6, 1.4)), (2, 3.0, (0.9, 1.7), (0.5, 1.3))]
WALL = (101, 5.0, (-9.0, 9.0), (-9.0, 9.0))
EYES = [(0.0, 0.0, 1.0), (0.3, 0.0, 1.0), (-0.3, 0.0, 1.1)]
INSTANCES = {"1": {"category": "chair", "kind": "object"}, "2": {"category": "table", "kind": "object"},
             "101": {"category": "wall", "kind": "room"}}  # fmt: skip


def render(eye, pose) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the rectangles: depth [H, W] metres (z along the optical axis) and instance ids [H, W]."""
    rays = CAM.pixel_rays() @ pose[:3, :3].T  # [H, W, 3] world directions with camera-z component 1
    depth = np.zeros((CAM.height, CAM.width), np.float32)
    inst = np.zeros((CAM.height, CAM.width), np.int32)
    for iid, y, (x0, x1), (z0, z1) in sorted([*RECTS, WALL], key=lambda r: -r[1]):  # far to near
        t = (y - eye[1]) / rays[..., 1]
        hit = eye + t[..., None] * rays
        inside = (t > 0) & (hit[..., 0] >= x0) & (hit[..., 0] <= x1) & (hit[..., 2] >= z0) & (hit[..., 2] <= z1)
        depth[inside], inst[inside] = t[inside], iid
    return depth, inst


def make_object_layout(root, instance: bool = True, scene_json: bool = True, mesh: bool = False) -> DepthLayout:
    lay = DepthLayout.create(root, CAM, meta={"source": "test"})
    refs = {"train": [], "val": []}
    for split, scene in (("train", "s00"), ("val", "s01")):
        for f, eye in enumerate(EYES):
            pose = look_at(eye, np.add(eye, (0.0, 1.0, 0.0)))
            depth, inst = render(np.asarray(eye), pose)
            ref = FrameRef(scene, f"{f:03d}")
            lay.write_frame(ref, depth, depth, pose, instance=inst if instance else None)
            refs[split].append(ref)
        if scene_json:
            lay.scene_info_path(scene).parent.mkdir(parents=True, exist_ok=True)
            lay.scene_info_path(scene).write_text(json.dumps({"instances": INSTANCES}))
        if mesh:
            write_box_mesh(lay.mesh_path(scene, "real"))
    for split, r in refs.items():
        lay.write_split(split, r)
    return lay


def write_box_mesh(path) -> None:
    """Two 10 cm thick boxes behind the rectangles, vertex colour red = instance id / 255."""
    import open3d as o3d

    merged = o3d.geometry.TriangleMesh()
    for iid, y, (x0, x1), (z0, z1) in RECTS:
        box = o3d.geometry.TriangleMesh.create_box(x1 - x0, 0.1, z1 - z0)
        box.translate((x0, y, z0))
        box.paint_uniform_color((iid / 255.0, 0.0, 0.0))
        merged += box
    path.parent.mkdir(parents=True, exist_ok=True)
    assert o3d.io.write_triangle_mesh(str(path), merged)


@pytest.fixture(scope="module")
def object_layout(tmp_path_factory):
    return make_object_layout(tmp_path_factory.mktemp("obj") / "ds")


def centroid_world(objects: ObjectSet, i: int) -> np.ndarray:
    return objects.to_world(i).mean(axis=0)


# ---------------------------------------------------------------------- extraction
def test_extract_objects_places_and_categories(object_layout):
    objs = extract_objects(object_layout, "val", "scan", min_points=16, num_points=128, gt_points=512, voxel_m=0.0)
    assert len(objs) == 2 and objs.instances == [1, 2] and objs.scenes == ["s01", "s01"]
    assert [objs.category_names[c] for c in objs.categories] == ["chair", "table"]  # the wall (101) is no object
    assert objs.points.shape == (2, 128, 3) and objs.gt_points.shape == (2, 512, 3)
    for i, (_, y, (x0, x1), (z0, z1)) in enumerate(RECTS):
        assert np.allclose(centroid_world(objs, i), [(x0 + x1) / 2, y, (z0 + z1) / 2], atol=0.06)
        # without a mesh the complete real cloud is the shape: its box centre / longest side define the frame
        assert np.allclose(objs.centers[i].numpy(), [(x0 + x1) / 2, y, (z0 + z1) / 2], atol=0.06)
        # ... measured between pixel centres: up to one pixel footprint (depth / fx) short
        assert abs(2.0 / float(objs.scales[i]) - max(x1 - x0, z1 - z0)) <= y / CAM.fx + 0.01
    gt = objs.gt_points.numpy()
    assert np.allclose(gt.max(1) - gt.min(1), [[2, 0, 2]] * 2, atol=0.2) and np.abs(gt).max() <= 1.0 + 1e-5
    assert objs.meta["frames"] == 3 and objs.meta["skipped"] == {"few_points": 0, "no_gt": 0}
    # deterministic for a seed
    again = extract_objects(object_layout, "val", "scan", min_points=16, num_points=128, gt_points=512, voxel_m=0.0)
    assert torch.equal(again.points, objs.points)
    # min_points skips objects
    with pytest.warns(UserWarning, match="no object"):
        assert len(extract_objects(object_layout, "val", "scan", min_points=10_000)) == 0


def test_extract_objects_mesh_ground_truth(tmp_path):
    lay = make_object_layout(tmp_path / "ds", mesh=True)
    objs = extract_objects(lay, "train", "gt", min_points=16, num_points=128, gt_points=2048, voxel_m=0.02)
    assert objs.meta["gt_source"] == "auto" and len(objs) == 2
    for i, (_, y, (x0, x1), (z0, z1)) in enumerate(RECTS):
        center = np.array([(x0 + x1) / 2, y + 0.05, (z0 + z1) / 2])  # the box behind the visible face
        assert np.allclose(objs.centers[i].numpy(), center, atol=0.01)
        assert abs(float(objs.scales[i]) - 2.0 / 0.8) < 0.05
        # the captured face lies at y = y0 on the box's front: (y0 - centre) * scale in the object frame
        assert abs(float(objs.points[i, :, 1].mean()) - (-0.05 * 2.5)) < 0.02
        assert np.allclose(centroid_world(objs, i), [center[0], y, center[2]], atol=0.06)


def test_extract_objects_from_a_cropped_simulator(object_layout):
    """A simulator working on the model-size crop: instance ids follow its camera, points stay in place."""
    source = simulator_depth_source(object_layout, lambda cad, cam, rng: cad, size=12)
    depth, cam = source(FrameRef("s01", "000"))
    assert depth.shape == (12, 12) and cam.fx == pytest.approx(10.0)
    objs = extract_objects(object_layout, "val", source, min_points=4, num_points=64, gt_points=256, voxel_m=0.0)
    assert len(objs) == 2
    for i, (_, y, (x0, x1), (z0, z1)) in enumerate(RECTS):
        assert np.allclose(centroid_world(objs, i), [(x0 + x1) / 2, y, (z0 + z1) / 2], atol=0.1)
    noisy = extract_objects(object_layout, "val", simulator_depth_source(object_layout, RandomPerturbation(0.02, 0.0)),
                            min_points=16, num_points=64, gt_points=256, voxel_m=0.0)  # fmt: skip
    assert noisy.meta["source"] == "random" and len(noisy) == 2
    assert not torch.equal(noisy.points, extract_objects(object_layout, "val", "scan", min_points=16, num_points=64,
                                                         gt_points=256, voxel_m=0.0).points)  # fmt: skip


def test_resample_to_camera_matches_the_dataset_crop():
    image = np.arange(24 * 32).reshape(24, 32)
    box = eval_box(CAM)
    for size in (12, 24, 40):
        dst = CAM.crop(*box).resize(size, size)
        assert np.array_equal(resample_to_camera(image, CAM, dst), crop_resize(image, box, size))
    assert resample_to_camera(image, CAM, CAM) is image


def test_extract_objects_bad_inputs(tmp_path, object_layout):
    with pytest.raises(ConfigError, match="depth_source"):
        extract_objects(object_layout, "val", "lidar")
    with pytest.raises(DepthFormatError, match="s01/000"):
        extract_objects(object_layout, "val", lambda ref: np.zeros((5, 5), np.float32))
    with pytest.raises(LayoutError, match="real.ply"):
        extract_objects(object_layout, "val", "scan", gt_source="mesh")
    no_json = make_object_layout(tmp_path / "a", scene_json=False)
    with pytest.raises(LayoutError, match="scene.json"):
        extract_objects(no_json, "val")
    no_inst = make_object_layout(tmp_path / "b", instance=False)
    with pytest.raises(LayoutError, match="000_inst.png"):
        extract_objects(no_inst, "val")


def test_object_set_roundtrip_subset_and_few_shot(tmp_path, object_layout):
    objs = extract_objects(object_layout, "train", "scan", min_points=16, num_points=64, gt_points=128, voxel_m=0.0)
    back = ObjectSet.load(objs.save(tmp_path / "objs.npz"))
    assert torch.equal(back.points, objs.points) and torch.equal(back.gt_points, objs.gt_points)
    assert back.instances == objs.instances and back.meta == json.loads(json.dumps(objs.meta))
    both = ObjectSet.cat([objs, back])
    assert len(both) == 4 and both.category_counts()["chair"] == 2
    shots = few_shot_subset(both, 1, seed=0)
    assert sorted(shots.categories.tolist()) == [0, 1]
    assert len(both.subset(both.categories == 1)) == 2


# ---------------------------------------------------------------------- point-cloud helpers
def test_voxel_downsample_and_thin_shell():
    pts = np.array([[0.001, 0.001, 0.001], [0.009, 0.009, 0.009], [0.5, 0.5, 0.5]])
    assert np.allclose(voxel_downsample(pts, 0.1), [[0.005, 0.005, 0.005], [0.5, 0.5, 0.5]])
    rng = np.random.default_rng(0)
    slab = np.c_[rng.uniform(-1, 1, (4000, 2)), rng.uniform(-0.05, 0.05, 4000)]  # a shell of half-thickness 0.05
    thin = thin_shell(slab, 0.1)
    interior = np.abs(slab[:, :2]).max(1) < 0.8
    # one step maps an offset t to ~t / 4: mean |z| 0.025 -> 0.007; a second step to the noise floor (~0.004)
    assert np.abs(thin[interior, 2]).mean() < 0.35 * np.abs(slab[interior, 2]).mean()
    assert np.abs(thin_shell(slab, 0.1, steps=2)[interior, 2]).mean() < 0.6 * np.abs(thin[interior, 2]).mean()
    drift = thin[interior, :2] - slab[interior, :2]  # along the shell: sampling noise only, no systematic shift
    assert np.abs(drift.mean(0)).max() < 0.003 and np.linalg.norm(drift, axis=1).mean() < 0.03


# ---------------------------------------------------------------------- synthetic point-cloud sets
def unit_sphere(rng, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def plane_or_sphere(rng, m: int, n: int = 128) -> ObjectSet:
    """Noisy unit spheres (class 1) and randomly oriented flat squares (class 0)."""
    clouds, labels = [], []
    for k in range(m):
        if k % 2:
            cloud = unit_sphere(rng, n)
        else:
            basis, _ = np.linalg.qr(rng.normal(size=(3, 3)))
            cloud = rng.uniform(-1, 1, (n, 2)) @ basis[:2]
        clouds.append(cloud + rng.normal(0, 0.02, (n, 3)))
        labels.append(k % 2)
    return ObjectSet(torch.tensor(np.stack(clouds), dtype=torch.float32), torch.tensor(labels),
                     category_names=("plane", "sphere"))  # fmt: skip


def partial_spheres(rng, m: int, n: int = 256, g: int = 2048) -> ObjectSet:
    """The half of a unit sphere seen from a random direction (input) and the whole sphere (ground truth)."""
    clouds, gts = [], []
    for _ in range(m):
        gt = unit_sphere(rng, g)
        visible = gt[gt @ unit_sphere(rng, 1)[0] > 0.1]
        clouds.append(visible[rng.choice(len(visible), n)] + rng.normal(0, 0.01, (n, 3)))
        gts.append(gt)
    return ObjectSet(torch.tensor(np.stack(clouds), dtype=torch.float32), torch.zeros(m, dtype=torch.int64),
                     category_names=("sphere",), gt_points=torch.tensor(np.stack(gts), dtype=torch.float32))  # fmt: skip


def test_classifier_separates_planes_from_spheres():
    rng = np.random.default_rng(0)
    train, test = plane_or_sphere(rng, 40), plane_or_sphere(rng, 40)
    model = train_classifier(train, steps=60, batch_size=16, lr=3e-3, seed=0)
    assert isinstance(model, PointNetClassifier) and not model.training
    scores = evaluate_classifier(model, test)
    assert scores["accuracy"] > 0.9 and scores["balanced_accuracy"] > 0.9 and scores["n_test"] == 40


def test_occupancy_network_beats_the_partial_input():
    rng = np.random.default_rng(0)
    train, test = partial_spheres(rng, 16), partial_spheres(rng, 4)
    kw = {"grid": 20, "eval_points": 2048}
    floor = evaluate_reconstruction(None, test, **kw)  # the half sphere itself as the reconstruction
    ceiling = evaluate_reconstruction(None, test, oracle=True, **kw)
    assert floor["iou"] < 0.3 and ceiling["iou"] == 1.0 and ceiling["cd_l2_x1000"] < 1.0
    model = OccupancyNetwork(latent=64, hidden=64, widths=(32, 64, 128))
    model = train_occupancy(train, steps=200, batch_size=8, queries_per_object=256, lr=3e-3, seed=0, model=model)
    scores = evaluate_reconstruction(model, test, **kw)
    assert scores["empty_rate"] == 0.0
    assert scores["iou"] > 0.5 and scores["iou"] > floor["iou"] + 0.2, (scores, floor)
    assert scores["cd_l2_x1000"] < floor["cd_l2_x1000"] / 5


# ---------------------------------------------------------------------- the shared PointNet block holds every number
class _FrozenSharedMLP(torch.nn.Module):
    """downstream.py's SharedMLP before the shared block (models/pointnet.py), verbatim."""

    def __init__(self, in_dim, widths):
        super().__init__()
        self.linears = torch.nn.ModuleList()
        self.norms = torch.nn.ModuleList()
        for w in widths:
            self.linears.append(torch.nn.Linear(in_dim, w))
            self.norms.append(torch.nn.BatchNorm1d(w))
            in_dim = w

    def forward(self, x):
        B, N, _ = x.shape
        for linear, norm in zip(self.linears, self.norms):
            x = torch.nn.functional.relu(norm(linear(x).reshape(B * N, -1)).reshape(B, N, -1))
        return x


class _FrozenClassifier(torch.nn.Module):
    """downstream.py's PointNetClassifier before the shared block, verbatim."""

    def __init__(self, num_classes=6, widths=(64, 128, 256), head=128, dropout=0.3):
        super().__init__()
        nn = torch.nn
        self.encoder = _FrozenSharedMLP(3, widths)
        self.head = nn.Sequential(
            nn.Linear(widths[-1], head),
            nn.BatchNorm1d(head),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(head, num_classes),
        )

    def forward(self, points):
        return self.head(self.encoder(points).amax(dim=1))


class _FrozenOccupancy(torch.nn.Module):
    """downstream.py's OccupancyNetwork before the shared block, verbatim (forward only)."""

    def __init__(self, latent=128, hidden=128, layers=3, widths=(64, 128, 256), fourier=4):
        super().__init__()
        nn = torch.nn
        self.encoder = _FrozenSharedMLP(3, widths)
        self.to_latent = nn.Linear(widths[-1], latent)
        self.fourier = int(fourier)
        in_dim = latent + 3 + 6 * self.fourier
        mlp = []
        for _ in range(layers):
            mlp += [nn.Linear(in_dim, hidden), nn.ReLU()]
            in_dim = hidden
        mlp.append(nn.Linear(hidden, 1))
        self.decoder = nn.Sequential(*mlp)

    def forward(self, points, queries):
        latent = self.to_latent(self.encoder(points).amax(dim=1))
        if self.fourier:
            freqs = (2.0 ** torch.arange(self.fourier, dtype=queries.dtype)) * math.pi
            angles = queries[..., None] * freqs
            queries = torch.cat([queries, angles.sin().flatten(-2), angles.cos().flatten(-2)], dim=-1)
        z = latent[:, None, :].expand(-1, queries.shape[1], -1)
        return self.decoder(torch.cat([z, queries], dim=-1)).squeeze(-1)


NETWORKS = [
    (_FrozenClassifier, PointNetClassifier, {}),
    (_FrozenClassifier, PointNetClassifier, {"num_classes": 3, "widths": (8, 16), "head": 12, "dropout": 0.0}),
    (_FrozenOccupancy, OccupancyNetwork, {}),
    (
        _FrozenOccupancy,
        OccupancyNetwork,
        {"latent": 16, "hidden": 24, "layers": 2, "widths": (8, 16, 32), "fourier": 0},
    ),
    (_FrozenSharedMLP, SharedMLP, {"in_dim": 3, "widths": (8, 16)}),
]


@pytest.mark.parametrize(("frozen", "network", "kw"), NETWORKS)
def test_shared_pointnet_block_holds_weights_keys_and_outputs(frozen, network, kw):
    """The downstream networks built from models.pointnet are the networks they were before (frozen copies above):
    same initial weights for a seed, same state_dict keys, same outputs, gradients and BatchNorm statistics."""
    torch.manual_seed(0)
    old = frozen(**kw)
    torch.manual_seed(0)
    new = network(**kw)
    assert list(old.state_dict()) == list(new.state_dict())
    assert [n for n, _ in old.named_parameters()] == [n for n, _ in new.named_parameters()]
    assert all(torch.equal(v, new.state_dict()[k]) for k, v in old.state_dict().items())
    g = torch.Generator().manual_seed(2)
    inputs = (torch.randn(4, 50, 3, generator=g),)
    if network is OccupancyNetwork:
        inputs += (torch.randn(4, 30, 3, generator=g),)
    outs = []
    for model in (old, new):
        torch.manual_seed(1)  # dropout
        out = model.train()(*inputs)
        out.sum().backward()
        outs.append(out)
    assert torch.equal(outs[0], outs[1])
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(old.parameters(), new.parameters()))
    assert all(torch.equal(v, new.state_dict()[k]) for k, v in old.state_dict().items())  # running statistics
    assert torch.equal(old.eval()(*inputs), new.eval()(*inputs))


# ---------------------------------------------------------------------- protocol
def test_run_downstream_rows_and_summary():
    rng = np.random.default_rng(1)

    def objects(m):  # spheres and planes with complete shapes: both tasks run
        s = plane_or_sphere(rng, m, n=64)
        s.gt_points = s.points.clone()
        return s

    sims = {"cad": objects(8), "random": objects(8)}
    real_train, test = objects(8), objects(6)
    torch.set_num_threads(2)  # the caller's setting; the run itself uses one thread, then restores two
    rows = run_downstream(sims, test, seeds=(0, 1), few_shot_k=(0, 2), real_train_objects=real_train, steps=4,
                          grid=8, eval_points=256, num_threads=1)  # fmt: skip
    assert torch.get_num_threads() == 2
    assert len(rows) == 3 * 2 * 2 * 2  # (cad, random, real) x tasks x seeds x settings
    assert {(r["simulator"], r["task"], r["setting"], r["seed"]) for r in rows} == {
        (s, t, k, seed) for s in ("cad", "random", "real") for t in ("classification", "reconstruction")
        for k in ("zero-shot", "few-shot-2") for seed in (0, 1)
    }  # fmt: skip
    for r in rows:
        metrics = (
            ("accuracy", "balanced_accuracy") if r["task"] == "classification" else ("iou", "cd_l2_x1000", "fscore")
        )
        assert all(math.isfinite(r[m]) for m in metrics), r
        assert r["n_test"] == 6 and r["n_train"] == 8 + (4 if r["setting"] == "few-shot-2" else 0)
    summary = summarize(rows)
    assert len(summary) == 12 and all(s["seeds"] == 2 for s in summary)
    cls = next(s for s in summary if s["simulator"] == "cad" and s["task"] == "classification")
    accs = [r["accuracy"] for r in rows if r["simulator"] == "cad" and r["task"] == "classification"
            and r["setting"] == "zero-shot"]  # fmt: skip
    assert cls["accuracy_mean"] == pytest.approx(np.mean(accs)) and cls["accuracy_std"] == pytest.approx(
        np.std(accs, ddof=1)
    )
    table = summary_markdown(summary)
    assert table.count("\n") == 2 + 12 and "±" in table
    with pytest.raises(ConfigError, match="real_train_objects"):
        run_downstream(sims, test, few_shot_k=2)
    with pytest.raises(ConfigError, match="task"):
        run_downstream(sims, test, tasks=("segmentation",))
    with pytest.raises(ConfigError, match="'empty'"):
        run_downstream({"empty": sims["cad"].subset([])}, test)
