"""Re-sample a run's Stage-II val samples with the sim2real_kit on PYTHONPATH and score Stage-I and Stage-II as
notebook 04 does (`notebook.realism_metrics` on stage2/samples/val): the before → after of a change to how the
chain is sampled, on the same trained models. Works on a copy of the run (it deletes stage2/samples/val).

    cp -r runs/demo/{config.yaml,provenance.json,data,stage1,stage2,disc} /tmp/copy_old/   # and /tmp/copy_new/
    git worktree add /tmp/wt_old 1dc9623
    OMP_NUM_THREADS=2 PYTHONPATH=/tmp/wt_old python experiments/resample_stage2.py /tmp/copy_old   # before
    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python experiments/resample_stage2.py /tmp/copy_new         # after"""

from __future__ import annotations

import json
import shutil
import sys
import time

import numpy as np

from sim2real_kit import simulate
from sim2real_kit.notebook import realism_metrics
from sim2real_kit.run import RunFolder


def main(run_dir: str) -> dict:
    run = RunFolder(run_dir)
    cfg = run.load_config()
    shutil.rmtree(run.samples_dir(2, "val"), ignore_errors=True)
    t0 = time.perf_counter()
    simulate.sample_split(run, cfg, "val", stage=2, progress=False)
    seconds = time.perf_counter() - t0
    layout = run.layout(cfg)
    chain, first = run.load_samples(2, "val", layout), run.load_samples(1, "val", layout)
    out = {"sample_s": seconds, "stage1_is_the_stored_draw": bool(np.array_equal(chain.sims[1], first.sims[1]))}
    for k in (1, 2):
        m = realism_metrics(chain, k)
        out[f"stage{k}"] = {key: m[key] for key in ("w1_mm", "w1_pooled_mm", "hole_rate")}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1])
