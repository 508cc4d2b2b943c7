"""Background jobs: a library function in a spawned process on part of the machine's cores, while this process
keeps the rest, for two independent steps of a notebook that would otherwise run one after the other (notebook
04: Stage-II and its control, Stage-I trained on; notebook 05: the benchmark and the real-sample section).

Why: the tiny models of the demo do not keep two cores busy from one process (per-op overhead): on this
project's 2-core machine two 1-thread processes train 1.26x the images per second of one 2-thread process
(docs/performance.md, "Two processes on two cores"). The job runs the same code as the call here, but another
thread count sums in another order, and training amplifies that into other weights: a job's training is another
draw of the same training, not a bit-identical copy (docs/results.md: Stage-II's demo W1 14.4 vs 15.3 mm).

    job = BackgroundJob(stage2.stage1_control, run, cfg, progress=False)   # returns at once
    stage2.train_chain(run, cfg, 2)                                        # meanwhile, on the other cores
    control = job.result()                                                 # what stage1_control returned

With `background=False` (a CI-sized call: a process start costs more than it saves), fewer than 2 cores or
`threads=0`, nothing runs in the background: `result()` calls the function here.
An exception of the job is raised by `result()` (with the job's traceback as its cause).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask: a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _child_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class BackgroundJob:
    """`fn(*args, **kwargs)` in a spawned process on `threads` cores (default half of them), started at once;
    this process's torch threads are lowered to the other cores until `result()`. `fn` and its arguments must
    pickle (module-level library functions, configs, paths, run folders). `background=False`: `fn` runs at
    `result()`, here, on this process's threads."""

    def __init__(self, fn: Callable, *args, background: bool = True, threads: int | None = None, **kwargs):
        self.fn, self.args, self.kwargs = fn, args, kwargs
        cores = usable_cores()
        self.threads = 0 if not background else max(1, cores // 2) if threads is None else int(threads)
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
            self._future = self._pool.submit(fn, *args, **kwargs)
            self._own_threads = torch.get_num_threads()
            torch.set_num_threads(max(1, min(self._own_threads, cores - self.threads)))

    @property
    def background(self) -> bool:
        """True when the call runs in another process (else `result()` makes it here)."""
        return self._future is not None

    def result(self) -> Any:
        """Wait for the job and return what `fn` returned; this process gets its torch threads back."""
        if self._future is None:
            return self.fn(*self.args, **self.kwargs)
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
