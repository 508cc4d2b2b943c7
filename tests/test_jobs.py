"""jobs.BackgroundJob: where the call runs, what `result()` returns and raises, the threads it leaves here."""

from __future__ import annotations

import os

import pytest
import torch

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
def test_background_job_runs_in_another_process_and_gives_threads_back():
    before = torch.get_num_threads()
    job = BackgroundJob(os.getpid)
    assert job.background and job.threads == usable_cores() // 2
    assert torch.get_num_threads() <= usable_cores() - job.threads  # this process keeps the other cores
    assert job.result() != os.getpid()
    assert torch.get_num_threads() == before


@pytest.mark.skipif(usable_cores() < 2, reason="a background job needs 2 cores")
def test_background_job_raises_the_jobs_error():
    job = BackgroundJob(_fail, "bad input in frame 3")
    with pytest.raises(ValueError, match="bad input in frame 3"):
        job.result()
