"""The 3D patch discriminator's training step on the CPU: the kit's layout against the layout before it (ReLUs in
place on `point_norm`'s reshaped view, `amax` max-pool), in the same process, same weights, same batches.

Every two-sample test (notebook 05's benchmark trains one fresh discriminator per simulator), notebook 03's
flagging discriminator and the ablations train this network for `disc.steps` steps of `disc.batch_size` patches
of `disc.num_points` points; on the 2-core CPU that is most of the benchmark's time (docs/performance.md).
Reports ms per step (median over rounds, the two layouts interleaved so machine load hits both), the ratio,
and the largest difference of the loss over the timed steps (the two layouts must train the same network).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_disc_step.py                 # 1 thread (as in notebook 05)
    .venv/bin/python benchmarks/bench_disc_step.py --threads 2 --json /tmp/disc_step.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from unittest import mock

import torch
from benchlib import environment


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20, help="steps per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from sim2real_kit.config import Config
    from sim2real_kit.models import discriminator as disc_module
    from sim2real_kit.models.discriminator import PointNetDiscriminator

    cfg = Config().disc
    torch.manual_seed(0)
    new = PointNetDiscriminator.from_config(cfg)
    old = copy.deepcopy(new)
    for m in old.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = True
    pools = {"kit": disc_module.max_pool, "before": lambda f: f.amax(dim=1)}
    models = {"kit": new, "before": old}
    opts = {
        k: torch.optim.AdamW(m.parameters(), lr=float(cfg.lr), weight_decay=float(cfg.weight_decay))
        for k, m in models.items()
    }
    g = torch.Generator().manual_seed(1)
    b, n = int(cfg.batch_size), int(cfg.num_points)
    points, cad = torch.randn(b, n, 3, generator=g), torch.randn(b, n, 3, generator=g)
    labels = torch.cat([torch.ones(b // 2), torch.zeros(b - b // 2)])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses: dict[str, list[float]] = {k: [] for k in models}

    def step(k: str) -> None:
        with mock.patch.object(disc_module, "max_pool", pools[k]):
            loss = loss_fn(models[k](points, cad), labels)
        opts[k].zero_grad(set_to_none=True)
        loss.backward()
        opts[k].step()
        losses[k].append(float(loss.detach()))

    for k in models:  # warm-up
        for _ in range(3):
            step(k)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.rounds):
        for k in models:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(k)
            times[k].append(1000 * (time.perf_counter() - t0) / args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = max(abs(a - c) for a, c in zip(losses["kit"], losses["before"]))
    result = {
        "threads": args.threads,
        "batch_size": b,
        "num_points": n,
        "hidden": list(cfg.hidden),
        "ms_per_step": med,
        "ms_per_step_rounds": times,
        "speedup": med["before"] / med["kit"],
        "max_loss_difference": diff,
        "steps_compared": len(losses["kit"]),
        "env": environment(torch.device("cpu")),
    }
    print(f"| layout | ms/step ({args.threads} thread(s), batch {b} x {n} points) |\n| --- | --- |")
    print(f"| before (in-place ReLU on a view, amax pool) | {med['before']:.1f} |")
    print(f"| kit | {med['kit']:.1f} |")
    print(f"speed-up {result['speedup']:.2f}x; largest loss difference over {len(losses['kit'])} steps: {diff:.2e}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
