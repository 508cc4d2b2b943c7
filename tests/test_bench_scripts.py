"""The GPU campaign's benchmark scripts (issue 22) on the sd21 path, shrunk to run here in seconds: a script that
breaks on the CPU would break on the GPU too, and there a failure costs device time (the sd21 training step
stopped with a shape error after the validity channel of issue 20 changed the loss's input split)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SHRINK = ["model.block_out_channels=[32,32,64,64]", "model.attention_head_dim=8", "model.cross_attention_dim=32",
          "model.norm_num_groups=8"]  # fmt: skip
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    yield
    for name in ("bench_train", "bench_sample", "benchlib"):
        sys.modules.pop(name, None)


def test_sd21_random_training_step_runs(bench_path):
    import bench_train

    rows = bench_train.main(["--preset", "sd21-random", "--size", "64", "--batch-size", "2", "--steps", "2",
                             "--repeats", "1", "--warmup", "1", "--variants", "eager", "--override", *SHRINK])  # fmt: skip
    (row,) = rows
    assert "error" not in row, row.get("error")
    assert row["loss_finite"] and row["img_per_s"] > 0 and row["trainable_params_m"] < row["params_m"]


def test_sd21_random_sampling_runs(bench_path):
    import bench_sample

    rows = bench_sample.main(["--preset", "sd21-random", "--size", "64", "--batch-size", "2", "--steps", "2",
                              "--repeats", "1", "--variants", "eager-fp32", "--override", *SHRINK])  # fmt: skip
    (row,) = rows
    assert "error" not in row, row.get("error")
    assert math.isfinite(row["img_per_s"]) and row["img_per_s"] > 0 and row["frames"] == 2
