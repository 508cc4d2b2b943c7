"""`python -m sim2real_kit.runner --job run_dir/grid_job.json`: the worker process of a grid run
with `jobs > 1` (runs one variant-seed, writes grid_job_result.json next to the job file)."""

import sys

from sim2real_kit.runner.jobs import _job_main

sys.exit(_job_main(sys.argv[1:]))
