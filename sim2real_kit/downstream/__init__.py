"""The downstream task of the benchmark: 3D networks trained on a simulator's output, tested on real captures
(the paper's Tables 1-3 analogs on the procedural world; DESIGN §5 item 4).

Paper (Sec. 4.2-4.3): DisCo (instance reconstruction) and OcCo/DGCNN (object classification) are
pre-trained on simulated partial point clouds and evaluated on real scans, zero-shot or after a few-shot
fine-tuning. Here, tiny and CPU-fast:

1. **Objects** (`extract_objects`): for each scene of a split and each furniture instance, the instance's
   pixels of every frame are back-projected with the frame's camera and camera-to-world pose
   (`Camera.backproject`) and gathered over the scene's frames: a partial, noisy cloud of the object as the
   simulator "captures" it. The depth comes from any source — the real scan, the CAD render, or a
   simulator's output (`simulator_depth_source`, `folder_depth_source`, or any `callable(ref)`); the
   object masks are the instance ids of the geometry the depth was made from (`instances`): the CAD
   rendering's (`DepthLayout.cad_instance`) for the CAD and simulators, the real capture's
   (`<frame>_inst.png`) for the real scan, resampled to the source's camera when it works on a crop. Clouds are voxel-downsampled (`voxel_m`), objects with fewer than
   `min_points` points are skipped, the rest resampled to `num_points`.
   Ground truth: the category (scene.json's instance table) and the complete shape: `gt_points` surface
   samples of the instance's part of `meshes/<scene>/real.ply` (vertex colour red = instance id / 255);
   when a scene has no mesh, the complete *real* cloud (all frames of the real depth) stands in
   (`gt_source="scan"`, or "auto" falls back to it). Every object lives in its **object frame**: the
   DisCo normalisation of its ground-truth shape (bounding-box centre, longest side -> [-1, 1]), the
   annotated box LASA provides for its objects; simulated points outside the box grown by `margin`
   (background seen through the instance mask where the simulated geometry is not where the annotation
   says) are dropped.
2. **Classification**: `PointNetClassifier` (shared per-point MLP, max-pool, MLP head) over the six
   categories; training augments with a random rotation about the up axis (z), scaling and jitter.
   Metrics: accuracy and balanced accuracy (mean per-category recall).
3. **Reconstruction**: `OccupancyNetwork` (PointNet encoder -> latent; MLP decoder of (latent, Fourier
   features of xyz) -> occupancy logit), trained on query points labelled from the ground-truth surface
   samples: **a query is occupied when it lies within `occ_threshold` (object-frame units, default 0.06)
   of the surface** — a thickened-surface label, since furniture is thin and a point-cloud ground truth has
   no defined inside (the "shell" occupancy of `metrics.disco_metrics`). Scores per test object:
   `iou` = volumetric IoU of predicted vs ground-truth occupancy on `eval_points` points uniform in
   [-1, 1]^3 (the DisCo / ONet definition, with the network's own shell thickness); `cd_l2_x1000`, `fscore`
   from `metrics.disco_metrics` between the predicted surface points and the ground-truth samples. Surface
   points (`extract_surface`): lattice points of a `grid`^3 lattice with occupancy > 0.5, densified inside
   their cells, then pulled onto the shell's mid-surface by one mean-shift step (`thin_shell`); without
   that last step every point would sit up to `occ_threshold` off the surface. The ceiling of the protocol
   is `evaluate_reconstruction(None, test, oracle=True)` (the ground-truth shell through the same
   extraction): on the tiny procedural world (24 scenes, 27 val objects, 16384 gt samples each) IoU 1,
   CD-L2 0.21, F@0.01 0.62 (grid 32) — F is capped by the lattice and the gt sample density, not by the network.
   `evaluate_reconstruction(None, test)` scores the partial input itself (shell around the input points):
   what a network must beat.
4. **Protocol** (`run_downstream`): for each simulator's training set and seed, train from scratch
   (zero-shot: test on real directly) and, for each k in `few_shot_k`, fine-tune a copy on k real objects
   per category (the paper's pre-train + few-shot fine-tune); "real" (trained on real captures) is the
   upper bound. `summarize` gives mean ± std over seeds; `summary_markdown` a table.

Modules: `objects` (step 1: `ObjectSet`, depth sources, `extract_objects`), `networks` (steps 2-3: the
networks, their training and scores), `protocol` (step 4: `run_downstream` and its summaries); the PointNet
block is `models.pointnet`. Everything public is importable from here (`from sim2real_kit import downstream as
ds; ds.extract_objects`). open3d is imported lazily (only to read the per-instance meshes).
"""

from sim2real_kit.downstream.networks import MIN_PRED_POINTS as MIN_PRED_POINTS
from sim2real_kit.downstream.networks import (
    OCC_THRESHOLD,
    OccupancyNetwork,
    PointNetClassifier,
    SharedMLP,
    evaluate_classifier,
    evaluate_reconstruction,
    extract_surface,
    grid_points,
    occupancy_labels,
    occupancy_pool,
    predict_occupancy,
    thin_shell,
    train_classifier,
    train_occupancy,
)
from sim2real_kit.downstream.objects import ROOM_ID_MIN as ROOM_ID_MIN
from sim2real_kit.downstream.objects import DepthSource as DepthSource
from sim2real_kit.downstream.objects import (
    ObjectSet,
    extract_objects,
    folder_depth_source,
    instance_meshes,
    resample_to_camera,
    scene_categories,
    simulator_depth_source,
    voxel_downsample,
)
from sim2real_kit.downstream.protocol import (
    TASKS,
    few_shot_subset,
    mean_spread,
    run_downstream,
    summarize,
    summary_markdown,
)

# the public API of the former module downstream.py (ROOM_ID_MIN, MIN_PRED_POINTS and DepthSource are reachable too)
__all__ = [
    "ObjectSet",
    "extract_objects",
    "scene_categories",
    "instance_meshes",
    "folder_depth_source",
    "simulator_depth_source",
    "resample_to_camera",
    "voxel_downsample",
    "PointNetClassifier",
    "OccupancyNetwork",
    "SharedMLP",
    "train_classifier",
    "evaluate_classifier",
    "occupancy_labels",
    "occupancy_pool",
    "train_occupancy",
    "grid_points",
    "predict_occupancy",
    "evaluate_reconstruction",
    "extract_surface",
    "thin_shell",
    "few_shot_subset",
    "run_downstream",
    "mean_spread",
    "summarize",
    "summary_markdown",
    "TASKS",
    "OCC_THRESHOLD",
]
