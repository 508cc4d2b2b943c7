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

With `background=False` (a CI-sized call: a process start costs more than it saves), fewer than 2 free cores
or `threads=0`, nothing runs in the background: `result()` calls the function here.
An exception of the job is raised by `result()` (with the job's traceback as its cause).

Cores other processes keep busy (`busy_cores`, from /proc/stat) are not counted as free: torch's threads wait
for each other at every op, so a thread sharing its core with another program stalls all of them. Measured on
this project's 2-core machine with one core kept busy by another process (bench_train tiny, batch 8, bf16):
2 threads 4.91 img/s, 1 thread 9.87 img/s (quiet machine, 2 threads: 15.66). `adapt_threads()` (called by
`notebook.setup`, so at the start of every notebook) sets torch's threads to the free cores.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from sim2real_kit.errors import ConfigError


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask: a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cpu_times(path: str = "/proc/stat") -> dict[int, tuple[int, int]]:
    """{cpu index: (total, idle) jiffies} of every CPU line of /proc/stat (idle includes iowait)."""
    times = {}
    with open(path) as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                times[int(name[3:])] = (sum(values), values[3] + values[4])
    return times


def busy_cores(window_s: float = 0.3, path: str = "/proc/stat") -> float:
    """Cores of this process's affinity mask that were busy over the next `window_s` seconds (0.0 .. cores),
    this process's own work included: call it while this process is idle. 0.0 where /proc/stat cannot be
    read (not Linux)."""
    try:
        before = _cpu_times(path)
        time.sleep(window_s)
        after = _cpu_times(path)
    except (OSError, ValueError):
        return 0.0
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # pragma: no cover - not Linux
        cpus = set(after)
    busy = 0.0
    for cpu in cpus & set(before) & set(after):
        total, idle = (a - b for a, b in zip(after[cpu], before[cpu], strict=True))
        if total > 0:
            busy += 1.0 - idle / total
    return busy


def free_cores(window_s: float = 0.3) -> int:
    """Usable cores less those other processes keep busy now (at least 1): a core busy more than half the
    window counts as taken."""
    return max(1, usable_cores() - int(round(busy_cores(window_s))))


_DEFAULT_THREADS: int | None = None


def user_threads(environ=None) -> int | None:
    """The thread count the user fixed for the kit's processes: SIM2REAL_THREADS as a whole number >= 1, None for
    "auto" (the default) or unset; anything else is a ConfigError. `environ`: default os.environ."""
    env = os.environ if environ is None else environ
    fixed = env.get("SIM2REAL_THREADS", "auto").strip().lower()
    if fixed == "auto":
        return None
    if not fixed.isdigit() or int(fixed) < 1:
        raise ConfigError(
            f"SIM2REAL_THREADS={env['SIM2REAL_THREADS']!r}: set it to a whole number of threads >= 1, "
            "or to 'auto' (the free cores; the default)"
        )
    return int(fixed)


def threads_fixed_by_user(environ=None) -> bool:
    """True where the user fixed the threads (SIM2REAL_THREADS a number, or OMP_NUM_THREADS set): then neither
    `adapt_threads` nor the grid's workers (`runner.jobs`) choose them. ConfigError for a bad SIM2REAL_THREADS."""
    env = os.environ if environ is None else environ
    return user_threads(env) is not None or bool(env.get("OMP_NUM_THREADS"))


def adapt_threads(window_s: float = 0.3) -> int | None:
    """Set torch's intra-op threads to the free cores (`free_cores`), never above torch's own default (its
    physical cores); returns the count set. Left alone (None) where the user fixed them
    (`threads_fixed_by_user`: SIM2REAL_THREADS a number, which is then set, or OMP_NUM_THREADS);
    SIM2REAL_THREADS=auto is the default."""
    import torch

    global _DEFAULT_THREADS
    if threads_fixed_by_user():
        fixed = user_threads()
        if fixed is not None:
            torch.set_num_threads(fixed)
        return None
    if _DEFAULT_THREADS is None:
        _DEFAULT_THREADS = torch.get_num_threads()
    threads = max(1, min(_DEFAULT_THREADS, free_cores(window_s)))
    torch.set_num_threads(threads)
    return threads


def _child_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class BackgroundJob:
    """`fn(*args, **kwargs)` in a spawned process on `threads` cores (default half of the free ones), started at once;
    this process's torch threads are lowered to the other cores until `result()`. `fn` and its arguments must
    pickle (module-level library functions, configs, paths, run folders). `background=False`: `fn` runs at
    `result()`, here, on this process's threads."""

    def __init__(self, fn: Callable, *args, background: bool = True, threads: int | None = None, **kwargs):
        self.fn, self.args, self.kwargs = fn, args, kwargs
        cores = free_cores() if background and threads is None else usable_cores()
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
