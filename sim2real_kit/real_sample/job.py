"""The real-sample section as a background job (`jobs.BackgroundJob`): notebook 05 starts it before the benchmark,
so that the two share the machine's cores instead of running one after the other.

    job = start_real_sample(run, cfg, "data/ycbv_sample")   # returns at once
    result = benchmark.evaluate_run(run, cfg, ...)            # meanwhile, on the other cores
    real = job.result()                                       # RealSampleResult, as evaluate_real_sample's
"""

from __future__ import annotations

from pathlib import Path

from sim2real_kit.config import Config
from sim2real_kit.jobs import BackgroundJob, usable_cores
from sim2real_kit.real_sample.evaluate import evaluate_real_sample
from sim2real_kit.run import RunFolder, as_run

__all__ = ["start_real_sample", "usable_cores"]


def start_real_sample(
    run: RunFolder | str | Path, cfg: Config, src, *, background: bool = True, threads: int | None = None, **kwargs
) -> BackgroundJob:
    """Start `evaluate_real_sample(run, cfg, src, **kwargs)` beside this process (`jobs.BackgroundJob`: half the
    cores by default); background=False: evaluated at `result()`, here."""
    return BackgroundJob(
        evaluate_real_sample, str(as_run(run).root), cfg, str(src), background=background, threads=threads, **kwargs
    )
