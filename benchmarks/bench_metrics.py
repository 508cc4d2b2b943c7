"""Time of the evaluation primitives on the CPU (DESIGN §5): DisCo 3D metrics at the paper's
100,000 points (target < 2 s per pair) and the depth-level metrics on a batch of frames.

    .venv/bin/python benchmarks/bench_metrics.py [--repeats 3] [--points 100000]

Prints the median wall time of each call over the repeats.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sim2real_kit.disco import disco_metrics
from sim2real_kit.metrics import depth_metrics, hole_rates, residual_w1

TARGET_S = 2.0  # DisCo metrics of one pair at 100k points


def uv_sphere(radius: float = 0.5, rings: int = 200, segments: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Watertight UV sphere (vertices [V, 3], triangles [F, 3]) built in numpy: 2 poles + rings x segments."""
    polar = np.linspace(0, np.pi, rings + 2)[1:-1]
    azimuth = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    pp, aa = np.meshgrid(polar, azimuth, indexing="ij")
    ring_vertices = radius * np.stack([np.sin(pp) * np.cos(aa), np.sin(pp) * np.sin(aa), np.cos(pp)], -1).reshape(-1, 3)
    vertices = np.concatenate([[[0, 0, radius]], ring_vertices, [[0, 0, -radius]]])
    idx = 1 + np.arange(rings * segments).reshape(rings, segments)
    nxt = np.roll(idx, -1, axis=1)
    top = np.stack([np.zeros(segments, int), idx[0], nxt[0]], 1)
    bottom = np.stack([np.full(segments, len(vertices) - 1), nxt[-1], idx[-1]], 1)
    a, b, c, d = idx[:-1], nxt[:-1], idx[1:], nxt[1:]
    quads = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    return vertices, np.concatenate([top, quads, bottom]).astype(np.int64)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--points", type=int, default=100_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    # two 150k-point clouds on the same sphere, one with 3 mm noise: subsampled to --points each
    directions = rng.normal(size=(2, 150_000, 3))
    clouds = 0.5 * directions / np.linalg.norm(directions, axis=-1, keepdims=True)
    clouds[0] += rng.normal(0, 0.003, clouds[0].shape)
    sec_clouds, m = timed(lambda: disco_metrics(clouds[0], clouds[1], num_points=args.points), args.repeats)
    print(f"disco_metrics point clouds, {args.points} pts, shell IoU: {sec_clouds:.3f} s  {fmt(m)}")

    sphere = uv_sphere()
    moved = (sphere[0] + [0.01, 0.0, 0.0], sphere[1])
    print(f"  (meshes: {len(sphere[1])} triangles each, moved 1 cm)")
    sec_meshes, m = timed(lambda: disco_metrics(moved, sphere, num_points=args.points, occupancy="shell"), args.repeats)
    print(f"disco_metrics meshes, shell IoU: {sec_meshes:.3f} s  {fmt(m)}")
    try:
        import open3d  # noqa: F401

        sec_solid, m = timed(lambda: disco_metrics(moved, sphere, num_points=args.points), args.repeats)
        print(f"disco_metrics watertight meshes, solid IoU (open3d): {sec_solid:.3f} s  {fmt(m)}")
    except ImportError:
        print("disco_metrics watertight meshes, solid IoU: skipped (no open3d)")
    slowest = max(sec_clouds, sec_meshes)
    print(
        f"target < {TARGET_S:.1f} s per pair at 100k points (numpy path): {'met' if slowest < TARGET_S else 'NOT met'}"
    )

    # depth level: 16 frames of 512 x 512
    cad = rng.uniform(0.5, 4.0, (16, 512, 512))
    sim = cad - rng.normal(0.0, 0.01, cad.shape)
    real = np.where(rng.random(cad.shape) < 0.1, 0.0, cad - rng.normal(0.005, 0.012, cad.shape))
    sec, _ = timed(lambda: depth_metrics(sim, real), args.repeats)
    print(f"depth_metrics 16x512x512: {sec:.3f} s")
    sec, w1 = timed(lambda: residual_w1(cad, sim, real), args.repeats)
    print(f"residual_w1 16x512x512: {sec:.3f} s  (W1 = {w1 * 1000:.2f} mm)")
    sec, _ = timed(lambda: hole_rates(cad, real), args.repeats)
    print(f"hole_rates 16x512x512: {sec:.3f} s")


def fmt(metrics: dict) -> str:
    return "  ".join(f"{k}={v:.4f}" for k, v in metrics.items())


if __name__ == "__main__":
    main()
