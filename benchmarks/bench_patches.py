"""Throughput of the discriminator's patch path (paper Sec. 3.3): patches per second extracted
(`extract_patch_points`), scored (`score_patches` with the default PointNet) and both, for a batch
of frames at the tiny preset size (64 px frames, 8 px patches, 128 points) and at the paper size
(512 px frames, 64 px patches, 512 points). The baseline, run in the same process, is a
straightforward Python loop over frames and patches (boolean-index the valid pixels, randperm,
back-project, centre); the ratio shows what the vectorised extraction buys.

    .venv/bin/python benchmarks/bench_patches.py            # CPU, plus CUDA when available
    .venv/bin/python benchmarks/bench_patches.py --device cpu --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from sim2real_kit.camera import Camera
from sim2real_kit.models.discriminator import PointNetDiscriminator, score_patches
from sim2real_kit.patches import extract_patch_points, patch_grid

CASES = (
    # name, frame side (px), patch side (px), points per patch, frames per batch
    ("tiny 64px", 64, 8, 128, 32),
    ("sd21 512px", 512, 64, 512, 8),
)


def synthetic_frames(size: int, frames: int, device: torch.device, seed: int = 0):
    """CAD depth of tilted planes 1.5-3 m away with a 10 % CAD hole, and a noisy 'real' depth."""
    g = torch.Generator().manual_seed(seed)
    cam = Camera(size * 1.1, size * 1.1, size / 2, size / 2, size, size)
    rays = torch.as_tensor(cam.pixel_rays(np.float32))
    normal = torch.randn(frames, 3, generator=g) * torch.tensor([0.3, 0.3, 0.0]) + torch.tensor([0.0, 0.0, -1.0])
    normal = normal / normal.norm(dim=1, keepdim=True)
    dist = 1.5 + 1.5 * torch.rand(frames, generator=g)
    cad = -dist[:, None, None] / torch.einsum("hwc,fc->fhw", rays, normal)  # [F, H, W] metres
    cad[:, : size // 10] = 0.0  # background without CAD
    real = cad + 0.01 * torch.randn(cad.shape, generator=g) * (cad > 0)
    return real.to(device), cad.to(device), cam


def loop_extract(depth, cad, camera, boxes, num_points, min_valid, generator):
    """Baseline: one patch at a time in Python (same outputs up to the random draw)."""
    B = depth.shape[0]
    P = len(boxes)
    pts_all = torch.zeros(B, P, num_points, 3, device=depth.device)
    cad_all = torch.zeros_like(pts_all)
    rays = torch.as_tensor(camera.pixel_rays(np.float32), device=depth.device)
    for b in range(B):
        for p, (r0, r1, c0, c1) in enumerate(boxes.tolist()):
            d, c = depth[b, r0:r1, c0:c1], cad[b, r0:r1, c0:c1]
            ok = (d > 0) & (c > 0)
            n = int(ok.sum())
            if n < min_valid:
                continue
            ray = rays[r0:r1, c0:c1][ok]
            if n >= num_points:
                pick = torch.randperm(n, generator=generator, device=depth.device)[:num_points]
            else:
                pick = torch.randint(n, (num_points,), generator=generator, device=depth.device)
            pts, cpts = d[ok][pick, None] * ray[pick], c[ok][pick, None] * ray[pick]
            centre = cpts.mean(0)
            scale = (cpts - centre).norm(dim=-1).max().clamp(min=1e-6)
            pts_all[b, p], cad_all[b, p] = (pts - centre) / scale, (cpts - centre) / scale
    return pts_all, cad_all


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median wall time (s) of `fn` over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(device: torch.device, repeats: int, baseline: bool) -> None:
    model = PointNetDiscriminator().to(device).eval()  # default widths (64, 128, 256), CAD-guided
    for name, size, patch, points, frames in CASES:
        real, cad, cam = synthetic_frames(size, frames, device)
        boxes = patch_grid(size, size, patch)
        n_patches = frames * len(boxes)
        gen = torch.Generator(device=device).manual_seed(0)

        def extract(real=real, cad=cad, cam=cam, boxes=boxes, points=points, gen=gen):
            return extract_patch_points(real, cad, cam, boxes, points, 8, gen)

        pp = extract()
        t_extract = timed(extract, repeats, device)
        t_score = timed(lambda pp=pp: score_patches(model, pp), repeats, device)
        t_both = timed(lambda extract=extract: score_patches(model, extract()), repeats, device)
        print(
            f"[{device.type}] {name}: {frames} frames x {len(boxes)} patches x {points} points | "
            f"extract {n_patches / t_extract:,.0f} patches/s | score {n_patches / t_score:,.0f} patches/s | "
            f"extract+score {n_patches / t_both:,.0f} patches/s ({t_both * 1e3:.1f} ms per batch)"
        )
        if baseline:

            def loop(real=real, cad=cad, cam=cam, boxes=boxes, points=points, gen=gen):
                return loop_extract(real, cad, cam, boxes, points, 8, gen)

            t_loop = timed(loop, max(1, repeats // 2), device)
            print(
                f"[{device.type}] {name}: python-loop extraction {n_patches / t_loop:,.0f} patches/s -> "
                f"vectorised is x{t_loop / t_extract:.1f} faster"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true", help="skip the Python-loop baseline")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    elif args.device == "cuda":
        raise SystemExit("no CUDA device available")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for device in devices:
        run(device, args.repeats, not args.no_baseline)


if __name__ == "__main__":
    main()
