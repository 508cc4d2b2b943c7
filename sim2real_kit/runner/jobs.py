"""The variant-seeds of a grid as jobs: one job prepares its run folder (config and data of the
setup run), runs the notebooks and writes done.json; :func:`_run_jobs` runs them in this process or
in worker processes (`python -m sim2real_kit.runner --job run_dir/grid_job.json`, see
``runner/__main__.py``) whose output is relayed line by line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from sim2real_kit.io import atomic_write_json
from sim2real_kit.runner.execute import NotebookFailure, run_notebooks
from sim2real_kit.runner.notebooks import _read_json

SHARED_FROM_SETUP = ("config.yaml", "provenance.json", "data")  # files copied, folders linked


def _prepare_from(shared_run: Path, run_dir: Path) -> None:
    """Copy config.yaml/provenance.json of a finished run and link its data/ into `run_dir`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in SHARED_FROM_SETUP:
        src, dst = shared_run / name, run_dir / name
        if src.is_file():
            shutil.copyfile(src, dst)
        elif src.is_dir():
            if dst.is_symlink() or not dst.exists():
                with contextlib.suppress(FileNotFoundError):
                    dst.unlink()
                os.symlink(os.path.relpath(src.resolve(), run_dir.resolve()), dst, target_is_directory=True)


def _run_job(job: dict) -> dict:
    """One variant-seed (picklable for the process pool): prepare, run_notebooks, done.json."""
    run_dir = Path(job["run_dir"])
    if job.get("shared_run"):
        _prepare_from(Path(job["shared_run"]), run_dir)
    start = time.monotonic()
    try:
        report = run_notebooks(
            run_dir,
            notebooks=[Path(p) for p in job["notebooks"]],
            parameters=job["parameters"],
            timeout_s=job["timeout_s"],
            kernel_name=job["kernel_name"],
            progress=job["progress"],
            _label=f"{job['label']} ",
        )
    except NotebookFailure as err:
        return {"label": job["label"], "status": "failed", "error": str(err)}
    done = {
        "grid": job["grid"],
        "grid_hash": job["grid_hash"],
        "variant": job["variant"],
        "seed": job["seed"],
        "parameters": job["parameters"],
        "duration_s": time.monotonic() - start,
        "notebooks": {r.name: r.duration_s for r in report.notebooks},
        "metrics": report.metrics,
    }
    atomic_write_json(run_dir / "done.json", done)
    return {"label": job["label"], "status": "ok", "error": None}


def _relay(stream) -> None:
    for line in stream:
        print(line, end="", flush=True)


def _worker_env(n_parallel: int) -> dict[str, str]:
    """The environment of a grid worker: SIM2REAL_THREADS = this machine's usable cores shared among the
    `n_parallel` workers that run at once (at least 1 each), unless the user fixed the threads (OMP_NUM_THREADS,
    or SIM2REAL_THREADS other than "auto"). Why: each worker's kernels otherwise pick their threads from the
    cores free when they start (`jobs.adapt_threads`); workers that start together both see every core free and
    run 2 x cores threads between them. On the 2-core machine that ran notebook 06's two Stage-I trainings at
    0.67 img/s each (24 steps in 286 s) and the notebook in 6:07 instead of ~1:20 (2026-12-06, docs/performance.md)."""
    from sim2real_kit.jobs import threads_fixed_by_user, usable_cores

    env = dict(os.environ)
    if threads_fixed_by_user(env):  # ConfigError here, once, for a bad SIM2REAL_THREADS (not in every worker)
        return env
    env["SIM2REAL_THREADS"] = str(max(1, usable_cores() // max(1, n_parallel)))
    return env


def _start_worker(job: dict, n_parallel: int = 1):
    """Write the job file into the job's run folder and start a worker process on it (output relayed
    by a daemon thread), on its share of the cores (`_worker_env`); returns (process, relay thread, job file)."""
    import subprocess
    import threading

    job_file = Path(job["run_dir"]) / "grid_job.json"
    with contextlib.suppress(FileNotFoundError):
        (job_file.parent / "grid_job_result.json").unlink()
    atomic_write_json(job_file, job)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim2real_kit.runner", "--job", str(job_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_worker_env(n_parallel),
    )
    relay = threading.Thread(target=_relay, args=(proc.stdout,), daemon=True)
    relay.start()
    return proc, relay, job_file


def _run_jobs(jobs: list[dict], n_jobs: int) -> list[dict]:
    """Run variant-seeds: in this process when n_jobs == 1, else up to n_jobs worker processes
    (`python -m sim2real_kit.runner --job run_dir/grid_job.json`, independent of the caller's
    __main__, so scripts, notebooks and the CLI all work); their output is relayed line by line."""
    if n_jobs <= 1 or len(jobs) <= 1:
        return [_run_job(j) for j in jobs]
    pending, running, outcomes = list(jobs), {}, {}
    n_parallel = min(n_jobs, len(jobs))
    try:
        while pending or running:
            while pending and len(running) < n_jobs:
                job = pending.pop(0)
                running[job["label"]] = _start_worker(job, n_parallel)
            time.sleep(0.05)
            for label, (proc, relay, job_file) in list(running.items()):
                if proc.poll() is None:
                    continue
                relay.join(timeout=5)
                result = _read_json(job_file.parent / "grid_job_result.json")
                if not isinstance(result, dict):
                    result = {"label": label, "status": "failed", "error": f"worker exited with code {proc.returncode}"}
                outcomes[label] = result
                del running[label]
    finally:
        for proc, _, _ in running.values():  # interrupted: stop the workers we started
            proc.terminate()
    return [outcomes[j["label"]] for j in jobs]


def _job_main(argv: list[str]) -> int:
    """Worker entry point of `_run_jobs`: run one job file, write grid_job_result.json next to it."""
    if len(argv) != 2 or argv[0] != "--job":
        print("usage: python -m sim2real_kit.runner --job run_dir/grid_job.json", file=sys.stderr)
        return 2
    job_file = Path(argv[1])
    result = _run_job(json.loads(job_file.read_text()))
    atomic_write_json(job_file.parent / "grid_job_result.json", result)
    return 0 if result["status"] == "ok" else 1
