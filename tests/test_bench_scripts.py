"""The GPU campaign's benchmark scripts (issue 22) on the sd21 path, shrunk to run here in seconds: a script that
breaks on the CPU would break on the GPU too, and there a failure costs device time (the sd21 training step
stopped with a shape error after the validity channel of issue 20 changed the loss's input split)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SHRINK = ["model.block_out_channels=[32,32,64,64]", "model.attention_head_dim=8", "model.cross_attention_dim=32",
          "model.norm_num_groups=8"]  # fmt: skip
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    yield
    for name in (
        "bench_train",
        "bench_sample",
        "bench_sample_quality",
        "bench_protocol",
        "bench_demo_overhead",
        "bench_holes",
        "benchlib",
    ):
        sys.modules.pop(name, None)


def test_sd21_random_training_step_runs(bench_path):
    import bench_train

    rows = bench_train.main(["--preset", "sd21-random", "--size", "64", "--batch-size", "2", "--steps", "2",
                             "--repeats", "1", "--warmup", "1", "--variants", "eager", "--override", *SHRINK])  # fmt: skip
    (row,) = rows
    assert "error" not in row, row.get("error")
    assert row["loss_finite"] and row["img_per_s"] > 0 and row["trainable_params_m"] < row["params_m"]


def test_sd21_random_whole_training_step_encodes_maps(bench_path, tmp_path):
    """--whole: the timed step holds the VAE encode (a LatentCodec of a random SD VAE, maps at the frame size)."""
    import bench_train

    rows = bench_train.main(["--preset", "sd21-random", "--size", "64", "--batch-size", "2", "--steps", "1",
                             "--repeats", "1", "--warmup", "1", "--variants", "eager", "--whole",
                             "--profile", str(tmp_path), "--override", *SHRINK])  # fmt: skip
    (row,) = rows
    assert "error" not in row, row.get("error")
    assert row["whole_step"] and row["loss_finite"] and "VAE encode" in row["timed"]
    table = Path(row["profile"]).read_text()
    assert "conv" in table.lower() and "Self CPU" in table  # the profiler's kernel table of the step
    model, _ = bench_train.build_stage_model("sd21-random", bench_train.preset_config("sd21-random", 64, SHRINK),
                                             77, "cpu", whole=True)  # fmt: skip
    assert type(model.codec).__name__ == "LatentCodec" and model.codec.downscale == 8


def test_sd21_random_sampling_runs(bench_path):
    import bench_sample

    rows = bench_sample.main(["--preset", "sd21-random", "--size", "64", "--batch-size", "2", "--steps", "2",
                              "--repeats", "1", "--variants", "eager-fp32", "--override", *SHRINK])  # fmt: skip
    (row,) = rows
    assert "error" not in row, row.get("error")
    assert math.isfinite(row["img_per_s"]) and row["img_per_s"] > 0 and row["frames"] == 2


def test_sample_quality_bench_scores_variants_against_the_reference(bench_path, tmp_path):
    """bench_sample_quality on a trained tiny run: every variant x steps row scored against the real captures,
    the reference's spread over initial noises, the two-sample AUC, and frames/s at a camera's resolution."""
    import json

    import bench_sample_quality
    from conftest import TINY_MODEL, make_plane_layout

    from sim2real_kit import distill, stage1
    from sim2real_kit.data.layout import FrameRef
    from sim2real_kit.run import RunFolder, resolve_config

    lay = make_plane_layout(tmp_path / "ds", scenes=3, frames=2)
    lay.write_split("train", [FrameRef("s00", f"{f:03d}") for f in range(2)])
    lay.write_split("val", [FrameRef(s, f"{f:03d}") for s in ("s01", "s02") for f in range(2)])
    run = RunFolder(tmp_path / "run")
    overrides = [f"data.root={lay.root}", "data.size=16", *TINY_MODEL, "train.steps=2", "train.batch_size=2",
                 "train.val_frames=1", "model.target_std=0", "disc.patch_size=8", "disc.stride=8"]  # fmt: skip
    cfg = resolve_config(run, overrides=overrides)
    stage1.train_stage1(run, cfg, progress=False)
    cfg.override(["distill.teacher_steps=2", "distill.student_steps=1", "distill.steps=2"])
    student = distill.distill_stage1(run, cfg, progress=False)["folder"] + "/pipeline"
    out = tmp_path / "q.json"
    bench_sample_quality.main(["--run", str(run.root), "--device", "cpu", "--variants", "eager-fp32,autocast-bf16",
                               "--steps", "1", "2", "--noise-seeds", "1", "--auc-seeds", "0", "--auc-steps", "2",
                               "--disc-steps", "2", "--native", "40x30", "--native-frames", "2", "--native-steps", "1",
                               "--tile-batch", "16", "--pipelines", f"student={student}", "--json", str(out)])  # fmt: skip
    record = json.loads(out.read_text())
    rows = {(r["variant"], r["steps"]): r for r in record["rows"]}
    assert set(rows) == {(v, s) for v in ("eager-fp32", "autocast-bf16") for s in (1, 2)} | {("student", 1)}
    # the distilled student: at its own 1 step, compared with the reference at the teacher's 2 (the largest --steps)
    st = rows["student", 1]
    assert st["compare_steps"] == 2 and st["pipeline"] == student and len(st["noise_w1_mm"]) == 2 and "auc" in st
    assert st["residual_rel_l2_vs_ref"] > 0 and isinstance(st["quality_held"], bool)
    assert st["speedup_vs_ref"] == pytest.approx(st["frames_per_s"] / rows["eager-fp32", 2]["frames_per_s"])
    for r in rows.values():
        assert r["frames"] == 4 and math.isfinite(r["w1_mm"]) and r["frames_per_s"] > 0
    ref = rows["eager-fp32", 2]
    assert len(ref["noise_w1_mm"]) == 2 and ref["noise_w1_std_mm"] >= 0 and 0 <= ref["auc"] <= 1
    # on the CPU "auto" precision is fp32: the same output as the reference, so quality is held exactly
    same = rows["autocast-bf16", 2]
    assert same["residual_rel_l2_vs_ref"] == 0 and same["w1_mm"] == ref["w1_mm"] and same["quality_held"]
    assert "auc" in same and "auc" not in rows["autocast-bf16", 1]  # --auc-steps 2 only
    assert len(record["native"]) == 2 * 2  # 2 variants x 2 blends x 1 step count
    for r in record["native"]:
        assert (r["width"], r["height"], r["frames"]) == (40, 30, 2) and r["frames_per_s"] > 0
        assert r["valid_pct"] > 50  # the simulation covers the CAD (a strip of it has none)


def test_protocol_merge_joins_seeds_run_apart_into_the_same_table(bench_path, tmp_path, monkeypatch):
    """bench_protocol --summarize-only --merge: the demo-size protocol's 3 seeds (docs/results_data), split into
    two outs as two processes would write them, give back the table of the run that trained them together; a
    seed in both outs is refused (it would count twice)."""
    import json

    import bench_protocol

    saved = json.loads(
        (Path(__file__).resolve().parents[1] / "docs/results_data/protocol_demo/results.json").read_text()
    )
    parts = {tmp_path / "a": [0, 2], tmp_path / "b": [1]}
    for out, seeds in parts.items():
        (out / "procedural").mkdir(parents=True)
        part = {"rows": [r for r in saved["rows"] if r["train_seed"] in seeds],
                "sweeps": {k: {kk: vv for kk, vv in v.items() if kk != "effects"}  # as runs before the effects were kept
                           for k, v in saved["sweeps"].items() if int(k) in seeds}, "table": [], "argv": []}  # fmt: skip
        (out / "procedural" / "results.json").write_text(json.dumps(part))
    # seed 1's run folder kept the benchmark's sensor-effect results (summary.json), the others did not
    from sim2real_kit.realism_test import effect_reproduction

    cad = np.full((4, 4), 2.0, np.float32)
    real = cad.copy()
    real[0] = 0
    hole = np.zeros(cad.shape, bool)
    hole[0] = True
    effects = {n: effect_reproduction(d, cad, real, {"edge_dropout": hole}) for n, d in (("cad", cad), ("real", real))}
    (tmp_path / "b/procedural/seed1/benchmark").mkdir(parents=True)
    (tmp_path / "b/procedural/seed1/benchmark/summary.json").write_text(json.dumps({"effect_reproduction": effects}))
    monkeypatch.chdir(tmp_path)
    bench_protocol.main(["--out", "a", "--worlds", "procedural", "--summarize-only", "--merge", "b"])
    md = (tmp_path / "a/procedural/results.md").read_text()
    assert "| edge_dropout (hole) | 0.00 | 1.00 |" in md and "| effect | CAD (w/o sim) | real (reference) |" in md
    merged = json.loads((tmp_path / "a/procedural/results.json").read_text())
    assert sorted(merged["sweeps"]) == ["0", "1", "2"] and len(merged["rows"]) == len(saved["rows"])
    by_sim = {e["simulator"]: e for e in merged["table"]}
    for entry in saved["table"]:
        for key in ("w1_mm", "c2st_auc"):
            if key in entry and math.isfinite(entry[key]):
                assert by_sim[entry["simulator"]][key] == pytest.approx(entry[key], rel=1e-12), (
                    entry["simulator"],
                    key,
                )
                assert by_sim[entry["simulator"]][f"{key}_std"] == pytest.approx(entry[f"{key}_std"], rel=1e-12)
    assert "seeds [0, 1, 2]" in (tmp_path / "a/procedural/results.md").read_text()
    # two worlds (the procedural one twice here): the headline table over both, mean ± std per world
    (tmp_path / "a/twin").mkdir()
    (tmp_path / "a/twin/results.json").write_text((tmp_path / "a/procedural/results.json").read_text())
    bench_protocol.main(["--out", "a", "--worlds", "procedural", "twin", "--summarize-only"])
    top = (tmp_path / "a/results.md").read_text().split("### World")[0]
    stage1 = by_sim["stage1"]
    cell = f"{stage1['w1_mm']:.2f} ± {stage1['w1_mm_std']:.2f}"
    assert "| procedural: residual W1 mm ↓ |" in top and "| twin: two-sample AUC ↓ (0.5: like real) |" in top
    (line,) = [ln for ln in top.splitlines() if "(`stage1`)" in ln]
    assert line.count(cell) == 2 and line.startswith("| Stage-I (`stage1`) | 3 |")
    assert "(unconverged)" in next(ln for ln in top.splitlines() if "(`pix2pix`)" in ln)
    with pytest.raises(SystemExit, match="seed 1 is also in"):
        bench_protocol.main(["--out", "a", "--worlds", "procedural", "--summarize-only", "--merge", "b"])


def test_disc_step_benchmark_compares_two_layouts_that_train_the_same_network(bench_path, tmp_path):
    """benchmarks/bench_disc_step.py (the speed-up of the discriminator's layout, docs/performance.md) runs, times
    both layouts and finds them training the same network (the loss of every step equal to float precision)."""
    import json

    import bench_disc_step

    out = tmp_path / "disc_step.json"
    assert bench_disc_step.main(["--steps", "2", "--rounds", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["steps_compared"] == 5 and set(res["ms_per_step"]) == {"kit", "before"}
    assert all(v > 0 for v in res["ms_per_step"].values())
    assert res["max_loss_difference"] < 1e-5
    sys.modules.pop("bench_disc_step", None)


def test_demo_overhead_frames_part_restores_the_cache_size(bench_path):
    """bench_demo_overhead.py's frame-cache part (docs/performance.md, "The demo's overhead") times the cache off
    and on over the same train frames, and leaves `dataset.FRAME_CACHE_MB` as it found it."""
    import bench_demo_overhead

    from sim2real_kit.data import dataset

    before = dataset.FRAME_CACHE_MB
    res = bench_demo_overhead.frames_part(n_frames=16, epochs=2, repeats=1)
    assert dataset.FRAME_CACHE_MB == before > 0
    assert res["frames"] == 16 and res["epochs"] == 2  # one 16-frame train scene (+ a val scene)
    assert len(res["seconds"]["cache_off"]) == len(res["seconds"]["cache_on"]) == 1 and res["speedup"] > 0


def _samples_run(run_dir, layout, sim_of):
    """A run folder whose Stage-I val samples are `sim_of(cad, real)` (what `simulate.sample_split` writes)."""
    from sim2real_kit.camera import Camera
    from sim2real_kit.config import load_config
    from sim2real_kit.data.dataset import PairedDepthDataset
    from sim2real_kit.depth import write_depth_png
    from sim2real_kit.io import atomic_write_json
    from sim2real_kit.run import SAMPLES_CAMERA, RunFolder

    cfg = load_config("tiny", overrides=["data.size=16", f"data.root={layout.root}"])
    run = RunFolder(run_dir)
    run.save_config(cfg)
    ds = PairedDepthDataset.from_config(cfg, layout, "val", train=False)
    out = run.samples_dir(1, "val")
    Camera(*[float(v) for v in ds[0]["camera"]], 16, 16).save_json(out / SAMPLES_CAMERA)
    for item in ds:
        base = out / item["scene"] / item["frame"]
        cad, real = item["cad"][0].numpy(), item["real"][0].numpy()
        write_depth_png(f"{base}_gt.png", cad)
        write_depth_png(f"{base}_scan.png", real)
        write_depth_png(f"{base}_sim1.png", sim_of(cad, real))
    atomic_write_json(out / "samples.json", {"split": "val", "stage": 1, "frames": len(ds), "size": 16})
    return run.root


def test_holes_common_pixel_w1_compares_runs_trained_apart(bench_path, tmp_path):
    """Issue 20's GPU jobs train `model` and `mask` as separate processes: `W1 common px` was each run's own
    valid-pixel W1 under another name (one mode per call, so "every mode's pixels" were its own). `--common`
    scores runs trained apart on the pixels all of them keep; with one run there is no common column."""
    import bench_holes
    from conftest import make_plane_layout

    lay = make_plane_layout(tmp_path / "ds", scenes=3, frames=2, width=24, height=16)
    band = np.zeros((16, 16), bool)
    band[:, :5] = True  # the hole model drops these pixels; the mask model is 20 mm off only there
    hole = _samples_run(tmp_path / "model", lay, lambda cad, real: np.where(band | (real <= 0), 0.0, real + 0.004))
    mask = _samples_run(tmp_path / "mask", lay, lambda cad, real: np.where(real > 0, real + 0.02 * band, 0.0))
    res = bench_holes.main(["--common", str(hole), str(mask), "--json", str(tmp_path / "c.json")])
    assert res == 0
    got = __import__("json").loads((tmp_path / "c.json").read_text())
    rows = {Path(k).name: v for k, v in got.items()}
    assert rows["model"]["w1_common_mm"] == pytest.approx(4.0, abs=0.1)  # its 4 mm everywhere it has depth
    assert rows["mask"]["w1_common_mm"] == pytest.approx(0.0, abs=0.1)  # outside the band it is the real capture
    assert rows["mask"]["w1_mm"] > 2.0  # on its own pixels the band's 20 mm counts
    assert 0.5 < rows["mask"]["common_share"] < 1.0 and rows["model"]["common_share"] == rows["mask"]["common_share"]
    # one mode per run (the GPU script's jobs): no number under "common", the table says so
    rates = {k: 0.1 for k in ("hole_rate", "hole_rate_edge", "hole_rate_flat", "hole_rate_real",
                              "hole_rate_real_edge", "hole_rate_real_flat")}  # fmt: skip
    one = {"model": {**rates, "w1_mm": 8.07, "w1_cad_mm": 30.6, "w1_common_mm": None}}
    table = bench_holes.table(one)
    assert "| — |" in table.splitlines()[2] and "on the common ones" not in table


def test_gpu_holes_script_keeps_the_head_jobs_results_apart_from_the_offline_head_fit(tmp_path):
    """experiments/gpu_holes_edges.sh with JOBS="head:0 mask:0": the kit's `head` job writes head_s0.json and the
    offline fit of a head on the `mask` run's samples must not overwrite it (on 2026-12-07 it did: both were
    head_s<seed>.json, and the kit run's own table was lost). `python3`, `nvidia-smi` and `timeout` are stubs
    that record their `--json` path and write its name into it."""
    import os
    import shutil
    import subprocess

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    repo = Path(__file__).resolve().parents[1]
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "nvidia-smi").write_text("#!/bin/sh\necho stub-gpu\n")
    (stubs / "timeout").write_text('#!/bin/sh\nshift\nexec "$@"\n')
    # every python3 call writes its script name into its --json file, and fakes a mask run's samples
    (stubs / "python3").write_text(
        "#!/bin/sh\nscript=$1; json=''; out=''\nwhile [ $# -gt 0 ]; do\n"
        '  [ "$1" = --json ] && json=$2\n  [ "$1" = --out ] && out=$2\n  shift\ndone\n'
        '[ -n "$out" ] && mkdir -p "$out/stage1/samples/val" && echo {} > "$out/stage1/samples/val/samples.json"\n'
        '[ -n "$json" ] && echo "\\"$script\\"" > "$json"\nexit 0\n'
    )
    for f in stubs.iterdir():
        f.chmod(0o755)
    out = tmp_path / "out"
    gpu = tmp_path / "work"
    (gpu / ".gpu" / "data").mkdir(parents=True)
    for sub in ("experiments", "benchmarks"):
        (gpu / sub).symlink_to(repo / sub)
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", JOBS="head:7 mask:7", STEPS="1")
    for d in ("/tmp/h_head_s7", "/tmp/h_mask_s7", "/tmp/d_head_s7", "/tmp/d_mask_s7"):
        shutil.rmtree(d, ignore_errors=True)
    try:
        subprocess.run([bash, "experiments/gpu_holes_edges.sh", str(out)], cwd=gpu, env=env, check=True,
                       capture_output=True, timeout=60)  # fmt: skip
    finally:
        for d in ("/tmp/h_head_s7", "/tmp/h_mask_s7", "/tmp/d_head_s7", "/tmp/d_mask_s7"):
            shutil.rmtree(d, ignore_errors=True)
    written = {p.name: p.read_text().strip().strip('"') for p in out.glob("*.json")}
    assert written["head_s7.json"] == "benchmarks/bench_holes.py", written
    assert written["mask_s7.json"] == "benchmarks/bench_holes.py", written
    fits = [name for name, script in written.items() if script == "experiments/validity_head.py"]
    assert len(fits) == 1 and fits[0] not in ("head_s7.json", "mask_s7.json"), written


def test_sample_bench_times_whole_frames_of_a_cameras_size(bench_path, capsys):
    """bench_sample.py --frame HxW times non-square whole frames in one pass (a camera's 640x480 as one window,
    not the model's square size): the rows say the frame and the output's size, which is the frame's (on
    2026-12-07 the first GPU run of --frame timed the pipeline's default instead: a centre crop resized to the
    model's 128 px, 61 "frames/s" that were not 640x480), and a malformed --frame is an argparse error that names
    the expected form."""
    import bench_sample

    rows = bench_sample.main(["--preset", "tiny", "--frame", "24x40", "--steps", "1", "3", "--batch-size", "2",
                              "--repeats", "1", "--variants", "eager-fp32"])  # fmt: skip
    assert [r.get("steps") for r in rows] == [1, 3] and not any("error" in r for r in rows), rows  # one per count
    assert rows[0]["frame_hw"] == [24, 40] and rows[0]["img_per_s"] > rows[1]["img_per_s"] > 0  # 3 steps slower
    # the pipeline ran on the whole frame, not on a centre crop resized to the model's size (its default)
    assert rows[0]["out_hw"] == [24, 40], rows[0]
    assert "24x40" in capsys.readouterr().out
    assert bench_sample.synthetic_cad(2, 24, width=40).shape == (2, 24, 40)
    with pytest.raises(SystemExit):
        bench_sample.main(["--frame", "640by480"])
    assert "expected HxW in pixels" in capsys.readouterr().err


def test_holes_bench_gives_the_validity_knob_to_the_model_mode_only(bench_path):
    """`bench_holes.py --override model.validity=channel` with the default modes (mask, model): the knob reaches
    the `model` run's config, and the `mask` run, which refuses it (it would change nothing), does not get it."""
    import bench_holes

    from sim2real_kit.config import load_config, validity_channel, validity_head
    from sim2real_kit.errors import ConfigError

    ov = ["model.cond_edges=true", "model.validity=channel"]
    mask, model = (load_config("tiny", overrides=bench_holes.mode_overrides(ov, m)) for m in ("mask", "model"))
    assert mask.data.holes == "mask" and mask.model.cond_edges and not validity_channel(mask)
    assert model.data.holes == "model" and model.model.cond_edges and validity_channel(model)
    assert validity_head(load_config("tiny", overrides=bench_holes.mode_overrides(["model.cond_edges=true"], "model")))
    with pytest.raises(ConfigError, match="model.validity needs data.holes"):
        load_config("tiny", overrides=[*ov, "data.holes=mask"])  # what the mask run got before


def test_sample_bench_variants_reach_the_pipeline(bench_path):
    """Each `bench_sample.VARIANTS` entry sets what its name says on the pipeline (weights dtype, the sampling
    options saved in its config, channels_last weights) and the process's cudnn.benchmark flag, both ways: a
    tuned variant after a plain one and a plain one after a tuned one."""
    import bench_sample
    import torch

    from sim2real_kit.config import load_config
    from sim2real_kit.models.denoiser import ControlledDenoiser
    from sim2real_kit.pipeline import Sim2RealPipeline

    cfg = load_config("tiny", overrides=["data.size=16", "model.block_out_channels=[8,16]", "model.norm_num_groups=4", "model.attention_levels=[false,true]",
                                         "model.attention_head_dim=4", "model.cross_attention_dim=8"])  # fmt: skip
    pipe = Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)])
    conv = pipe.denoisers[0].unet.down_blocks[0].resnets[0].conv1.weight  # [8, 8, 3, 3]
    before = torch.backends.cudnn.benchmark
    try:
        for name in ("autocast-bf16", "tuned-bf16-weights", "compiled-graph", "tuned-graph"):
            bench_sample.set_variant(pipe, name, no_compile=True)
            precision, graph, _, bf16, channels_last, cudnn_benchmark = bench_sample.VARIANTS[name]
            conv = pipe.denoisers[0].unet.down_blocks[0].resnets[0].conv1.weight
            assert pipe.dtype == (torch.bfloat16 if bf16 else torch.float32), name
            assert (pipe.config.precision, pipe.config.cuda_graph, pipe.config.channels_last) == (
                precision, graph, channels_last), name  # fmt: skip
            assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last, name
            assert torch.backends.cudnn.benchmark == cudnn_benchmark, name
        with pytest.raises(ValueError, match="unknown variant"):
            bench_sample.set_variant(pipe, "fp8")
    finally:
        torch.backends.cudnn.benchmark = before
