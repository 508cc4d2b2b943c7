"""The real-sample section as a background job: `evaluate_real_sample` in a separate process, started before the
benchmark of notebook 05 so that the two share the machine's cores instead of running one after the other.

Why: the tiny models of the demo do not keep two cores busy from one process (per-op overhead): on this
project's 2-core machine two 1-thread processes train 1.25x the images per second of one 2-thread process
(9.5 + 9.5 vs 15.2 img/s, docs/performance.md), so the benchmark and the real sample's few-shot Stage-I, run side
by side on one core each, finish sooner than in a row. The numbers are the same computations (thread counts
change only the order of floating-point sums).

    job = start_real_sample(run, cfg, "data/ycbv_sample")   # returns at once
    result = benchmark.evaluate_run(run, cfg, ...)            # meanwhile, on the other cores
    real = job.result()                                       # RealSampleResult, as evaluate_real_sample's

With fewer than 2 cores (or `background=False`) nothing runs in the background: `result()` evaluates in this
process. A failure in the job is raised by `result()` with the job's traceback.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from sim2real_kit.config import Config
from sim2real_kit.run import RunFolder, as_run


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask: a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _child_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _evaluate(root: str, cfg: Config, src: str, kwargs: dict):
    from sim2real_kit.real_sample.evaluate import evaluate_real_sample

    return evaluate_real_sample(root, cfg, src, **kwargs)


class RealSampleJob:
    """`evaluate_real_sample(run, cfg, src, **kwargs)` running in a spawned process on `threads` cores, while this
    process keeps the rest (its torch threads are lowered until `result()`)."""

    def __init__(self, run: RunFolder | str | Path, cfg: Config, src, threads: int | None, **kwargs):
        self.run, self.cfg, self.src, self.kwargs = as_run(run), cfg, str(src), kwargs
        cores = usable_cores()
        self.threads = threads if threads is not None else max(1, cores // 2)
        self._future: Future | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._own_threads: int | None = None
        if cores >= 2 and 0 < self.threads < cores:
            import torch

            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),  # no fork of a process holding torch threads
                initializer=_child_threads,
                initargs=(self.threads,),
            )
            self._future = self._pool.submit(_evaluate, str(self.run.root), cfg, self.src, kwargs)
            self._own_threads = torch.get_num_threads()
            torch.set_num_threads(max(1, min(self._own_threads, cores - self.threads)))

    @property
    def background(self) -> bool:
        """True when the evaluation runs in another process (else `result()` runs it here)."""
        return self._future is not None

    def result(self):
        """Wait for the job and return its RealSampleResult; this process gets its torch threads back."""
        if self._future is None:
            from sim2real_kit.real_sample.evaluate import evaluate_real_sample

            return evaluate_real_sample(self.run, self.cfg, self.src, **self.kwargs)
        try:
            return self._future.result()
        finally:
            self._restore()

    def _restore(self) -> None:
        if self._own_threads is not None:
            import torch

            torch.set_num_threads(self._own_threads)
            self._own_threads = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def start_real_sample(
    run: RunFolder | str | Path, cfg: Config, src, *, background: bool = True, threads: int | None = None, **kwargs
) -> RealSampleJob:
    """Start `evaluate_real_sample(run, cfg, src, **kwargs)` beside this process (see the module docstring);
    threads: the job's cores (default half of them); background=False: evaluated at `result()`, here."""
    if not background:
        return RealSampleJob(run, cfg, src, threads=0, **kwargs)
    return RealSampleJob(run, cfg, src, threads=threads, **kwargs)
