"""jobs.BackgroundJob: where the call runs, what `result()` returns and raises, the threads it leaves here."""

from __future__ import annotations

import os

import pytest
import torch

from sim2real_kit.errors import ConfigError
from sim2real_kit.jobs import BackgroundJob, usable_cores


def _fail(message: str) -> None:
    raise ValueError(message)


def test_background_false_runs_the_call_here_at_result():
    calls = []
    job = BackgroundJob(calls.append, "x", background=False, threads=1)  # threads ignored: nothing in background
    assert not job.background and job.threads == 0
    assert calls == []  # not run before result()
    assert job.result() is None and calls == ["x"]


@pytest.mark.skipif(usable_cores() < 2, reason="a background job needs 2 cores")
def test_background_job_runs_in_another_process_and_gives_threads_back(monkeypatch):
    from sim2real_kit import jobs

    monkeypatch.setattr(jobs, "busy_cores", lambda *a, **k: 0.0)  # as on a quiet machine
    before = torch.get_num_threads()
    job = BackgroundJob(os.getpid)
    assert job.background and job.threads == usable_cores() // 2
    assert torch.get_num_threads() <= usable_cores() - job.threads  # this process keeps the other cores
    assert job.result() != os.getpid()
    assert torch.get_num_threads() == before


@pytest.mark.skipif(usable_cores() < 2, reason="a background job needs 2 cores")
def test_background_job_raises_the_jobs_error(monkeypatch):
    from sim2real_kit import jobs

    monkeypatch.setattr(jobs, "busy_cores", lambda *a, **k: 0.0)
    job = BackgroundJob(_fail, "bad input in frame 3")
    with pytest.raises(ValueError, match="bad input in frame 3"):
        job.result()


def test_busy_cores_reads_the_busy_share_of_each_cpu_in_the_affinity_mask(monkeypatch, tmp_path):
    from sim2real_kit import jobs

    # two snapshots of /proc/stat: cpu0 busy 3/4 of the window, cpu1 idle, cpu7 (not ours) busy
    snapshots = iter(
        [
            "cpu  0 0 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0 0 0\ncpu1 10 0 0 500 0 0 0 0\ncpu7 0 0 0 0 0 0 0 0\n",
            "cpu  0 0 0 0 0 0 0 0\ncpu0 160 0 15 120 5 0 0 0 0 0\ncpu1 10 0 0 600 0 0 0 0\ncpu7 99 0 0 0 0 0 0 0\n",
        ]
    )
    stat = tmp_path / "stat"

    def fake_cpu_times(path):
        stat.write_text(next(snapshots))
        return jobs.__dict__["_real_cpu_times"](str(stat))

    monkeypatch.setitem(jobs.__dict__, "_real_cpu_times", jobs._cpu_times)
    monkeypatch.setattr(jobs, "_cpu_times", fake_cpu_times)
    monkeypatch.setattr(jobs.os, "sched_getaffinity", lambda pid: {0, 1})
    # cpu0: total 100, idle 25 (idle 20 + iowait 5) -> 0.75 busy; cpu1: 0; cpu7 outside the mask
    assert jobs.busy_cores(0.0) == pytest.approx(0.75)


def test_busy_cores_is_zero_without_proc_stat(tmp_path):
    from sim2real_kit.jobs import busy_cores

    assert busy_cores(0.0, path=str(tmp_path / "missing")) == 0.0


@pytest.mark.skipif(usable_cores() < 2, reason="needs a second core for the other program")
def test_a_program_keeping_a_core_busy_leaves_one_thread_to_torch(monkeypatch):
    """The measured failure (bench_train tiny: 2 threads 4.91 img/s vs 1 thread 9.87 with one core busy)."""
    import subprocess
    import sys

    from sim2real_kit import jobs

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SIM2REAL_THREADS", raising=False)
    monkeypatch.setattr(jobs, "_DEFAULT_THREADS", usable_cores())
    before = torch.get_num_threads()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.5)
        assert jobs.busy_cores(0.5) > 0.7
        threads = jobs.adapt_threads(0.5)
        assert threads == torch.get_num_threads() <= usable_cores() - 1
        job = BackgroundJob(os.getpid)  # half of the free cores
        if usable_cores() == 2:  # one free core: no background process, the call runs here
            assert not job.background and job.result() == os.getpid()
    finally:
        hog.kill()
        hog.wait()
        torch.set_num_threads(before)


def test_adapt_threads_leaves_threads_the_user_fixed(monkeypatch):
    from sim2real_kit import jobs

    before = torch.get_num_threads()
    monkeypatch.setattr(jobs, "free_cores", lambda window_s=0.3: 1)
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        monkeypatch.delenv("SIM2REAL_THREADS", raising=False)
        torch.set_num_threads(2)
        assert jobs.adapt_threads() is None and torch.get_num_threads() == 2
        monkeypatch.setenv("SIM2REAL_THREADS", "3")
        assert jobs.adapt_threads() is None and torch.get_num_threads() == 3
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setenv("SIM2REAL_THREADS", "auto")
        assert jobs.adapt_threads() == 1 == torch.get_num_threads()  # one free core
        for bad in ("abc", "0", "-2", "1.5"):
            monkeypatch.setenv("SIM2REAL_THREADS", bad)
            with pytest.raises(ConfigError, match="SIM2REAL_THREADS"):
                jobs.adapt_threads()
    finally:
        torch.set_num_threads(before)


def test_notebook_setup_adapts_threads(monkeypatch, tmp_path):
    from sim2real_kit import jobs, notebook

    calls = []
    monkeypatch.setattr(jobs, "adapt_threads", lambda *a, **k: calls.append(1))
    notebook.setup(tmp_path / "run", quick=True)
    assert calls == [1]
