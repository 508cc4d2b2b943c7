"""The downstream protocol (package docstring, step 4): `run_downstream` trains each simulator's networks per
task and seed, zero-shot and few-shot (`few_shot_subset`), and scores them on the real test objects;
`summarize`, `mean_spread` and `summary_markdown` give mean ± std over seeds.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sim2real_kit.downstream.networks import (
    OCC_THRESHOLD,
    evaluate_classifier,
    evaluate_reconstruction,
    train_classifier,
    train_occupancy,
)
from sim2real_kit.downstream.objects import ObjectSet, _check_set
from sim2real_kit.errors import ConfigError

TASKS = ("classification", "reconstruction")


def few_shot_subset(objects: ObjectSet, k: int, seed: int = 0) -> ObjectSet:
    """k objects per category (all of a category when it has fewer), drawn with a seeded generator."""
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    picks = []
    for c in objects.categories.unique().tolist():
        idx = (objects.categories == c).nonzero().reshape(-1)
        picks.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    return objects.subset(torch.cat(picks).sort().values)


def run_downstream(
    train_objects_by_simulator: Mapping[str, ObjectSet],
    test_objects: ObjectSet,
    seeds: Sequence[int] = (0, 1, 2),
    few_shot_k: int | Sequence[int] = 0,
    *,
    real_train_objects: ObjectSet | None = None,
    tasks: Sequence[str] = TASKS,
    steps: int = 300,
    finetune_steps: int | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    occ_threshold: float = OCC_THRESHOLD,
    grid: int = 32,
    eval_points: int = 16384,
    per_category: bool = False,
    num_threads: int | None = None,
    progress: bool = False,
) -> list[dict]:
    """The downstream benchmark: one row per (simulator, task, setting, seed).

    train_objects_by_simulator: {name: ObjectSet of the train split as that simulator captures it} (e.g.
    "cad", "random", "physical", "pix2pix", "cyclegan", "stage1", "stage2"); test_objects: the val split's
    real captures (`extract_objects(layout, "val", "scan")`). real_train_objects: the train split's real
    captures — added as simulator "real" (the upper bound) unless the dict has one, and the pool of the
    few-shot fine-tuning sets. few_shot_k: 0 (zero-shot: trained on simulated data only), k > 0 (pre-trained
    on the simulator's data, then fine-tuned `finetune_steps` (default steps // 2) on k real objects per
    category, seeded) or a sequence of them (one pre-training shared by all). Row keys: simulator, task,
    setting ("zero-shot" | "few-shot-k"), seed, n_train (objects seen, fine-tuning set included), seconds
    (wall time of pre-training + fine-tuning + evaluation), and the metrics of `evaluate_classifier` /
    `evaluate_reconstruction`. num_threads: torch intra-op threads during the run, restored afterwards (None:
    leave them; 1 is the fastest for these tiny networks on a busy CPU: measured 5-15x faster than 2 threads at
    load 3 on 2 cores)."""
    ks = [few_shot_k] if isinstance(few_shot_k, int) else list(few_shot_k)
    if any(k < 0 for k in ks) or not ks:
        raise ConfigError(f"few_shot_k must be >= 0 (0 = zero-shot), got {few_shot_k!r}")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ConfigError(f"unknown downstream task {unknown[0] if unknown else tasks!r}; valid: {', '.join(TASKS)}")
    if any(k > 0 for k in ks) and real_train_objects is None:
        raise ConfigError("few_shot_k > 0 needs real_train_objects (the train split's real captures)")
    sims = dict(train_objects_by_simulator)
    if real_train_objects is not None and "real" not in sims:
        sims["real"] = real_train_objects
    if not sims:
        raise ConfigError("train_objects_by_simulator is empty")
    for name, objects in sims.items():
        _check_set(objects, f"simulator {name!r}", need_gt="reconstruction" in tasks)
    _check_set(test_objects, "test_objects", need_gt="reconstruction" in tasks)
    settings = _Settings(
        steps=int(steps),
        finetune_steps=max(1, steps // 2) if finetune_steps is None else int(finetune_steps),
        batch_size=batch_size,
        lr=lr,
        occ_threshold=occ_threshold,
        grid=grid,
        eval_points=eval_points,
        per_category=per_category,
    )
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        return _run_jobs(sims, test_objects, seeds, ks, real_train_objects, tasks, settings, progress)
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class _Settings:
    """Training and scoring settings of one `run_downstream` call (its arguments of the same names)."""

    steps: int
    finetune_steps: int
    batch_size: int
    lr: float
    occ_threshold: float
    grid: int
    eval_points: int
    per_category: bool


def _train(task: str, objects: ObjectSet, steps: int, seed: int, s: _Settings, model=None):
    """A network of `task` trained `steps` steps on `objects` (fine-tuned when `model` is given)."""
    if task == "classification":
        return train_classifier(objects, steps, s.batch_size, s.lr, seed, model=model)
    batch_size = max(2, s.batch_size // 2)
    return train_occupancy(objects, steps, batch_size, lr=s.lr, threshold=s.occ_threshold, seed=seed, model=model)


def _evaluate(task: str, model, test: ObjectSet, seed: int, s: _Settings) -> dict:
    """The scores of a `task` network on `test` (`evaluate_classifier` / `evaluate_reconstruction`)."""
    if task == "classification":
        return evaluate_classifier(model, test)
    return evaluate_reconstruction(
        model, test, s.grid, s.eval_points, s.occ_threshold, seed, per_category=s.per_category
    )


def _run_jobs(sims, test_objects, seeds, ks, real_train_objects, tasks, s: _Settings, progress) -> list[dict]:
    """One row per (simulator, task, seed, k): pre-train once per (simulator, task, seed), fine-tune a copy per
    k > 0, evaluate each."""
    from tqdm.auto import tqdm

    rows: list[dict] = []
    jobs = [(name, task, seed) for name in sims for task in tasks for seed in seeds]
    for name, task, seed in tqdm(jobs, desc="downstream", disable=not progress):
        train = sims[name]
        t0 = time.perf_counter()
        base = _train(task, train, s.steps, seed, s)
        pretrain_s = time.perf_counter() - t0
        for k in ks:
            t1 = time.perf_counter()
            model, n_train = base, len(train)
            if k > 0:
                shots = few_shot_subset(real_train_objects, k, seed)
                n_train += len(shots)
                model = _train(task, shots, s.finetune_steps, seed + 1, s, model=copy.deepcopy(base))
            metrics = _evaluate(task, model, test_objects, seed, s)
            rows.append(
                {
                    "simulator": name,
                    "task": task,
                    "setting": "zero-shot" if k == 0 else f"few-shot-{k}",
                    "seed": int(seed),
                    "n_train": n_train,
                    "seconds": pretrain_s + time.perf_counter() - t1,
                    **metrics,
                }
            )
    return rows


def mean_spread(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, sample std (0 for one value), count) of the finite values (NaN, 0 when there are none)."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, 0.0, 0
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0, int(arr.size)


def summarize(rows: Sequence[Mapping], by: Sequence[str] = ("simulator", "task", "setting")) -> list[dict]:
    """Mean and spread over seeds of every numeric metric: one dict per group with the `by` keys, `seeds`,
    and `<metric>_mean`, `<metric>_std` (order of first appearance kept)."""
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    skip = set(by) | {"seed"}
    out = []
    for key, members in groups.items():
        entry = dict(zip(by, key))
        entry["seeds"] = len(members)
        metrics = [k for k in members[0] if k not in skip and isinstance(members[0][k], int | float)]
        for m in metrics:
            mean, std, _ = mean_spread(r.get(m) for r in members)
            entry[f"{m}_mean"], entry[f"{m}_std"] = mean, std
        out.append(entry)
    return out


def summary_markdown(
    summary: Sequence[Mapping], metrics: Sequence[str] = ("accuracy", "iou", "cd_l2_x1000", "fscore"), digits: int = 3
) -> str:
    """A markdown table "simulator | task | setting | seeds | metric (mean ± std) ..." of `summarize` output;
    a metric a row does not have is left blank."""
    head = ["simulator", "task", "setting", "seeds", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        cells = [
            str(s.get("simulator", "")),
            str(s.get("task", "")),
            str(s.get("setting", "")),
            str(s.get("seeds", "")),
        ]
        for m in metrics:
            mean = s.get(f"{m}_mean")
            cells.append("" if mean is None else f"{mean:.{digits}f} ± {s.get(f'{m}_std', 0.0):.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["TASKS", "few_shot_subset", "mean_spread", "run_downstream", "summarize", "summary_markdown"]
