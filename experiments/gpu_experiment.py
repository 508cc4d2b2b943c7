"""GPU experiment of issue 10 (paper Sec. 3.2-3.4 at "small" scale) and the driver of the GPU benchmarks.

Three sub-commands:

    # 1. on a CPU machine with open3d: a procedural dataset, trimmed to what training needs (carried to the GPU)
    .venv/bin/python experiments/gpu_experiment.py make-data --out .gpu/data --scenes 56 --frames 16

    # 2. on the GPU machine (no open3d): Stage-I -> samples -> discriminator flags -> Stage-II -> metrics
    python3 experiments/gpu_experiment.py run --data .gpu/data --run /tmp/gpu_run --out $OUT --budget 530

    # 3. on the GPU machine: benchmarks/bench_train.py / bench_sample.py (sd21-random, small) in one call, JSON into --out
    python3 experiments/gpu_experiment.py perf --out $OUT --budget 520

`sim2real_kit` must be importable: `pip install -e .`, or `export PYTHONPATH=$PWD` in a bare checkout (the GPU
machine's recipe in docs/performance.md and docs/results_gpu.md does).

`run` goes through the kit's own flow over a run folder (`stage1.train_stage1`, `simulate.sample_split`,
`train_and_flag`, `train_chain`, `load_samples`, `realism_metrics`, `disc_accuracy`), resumes a run folder
that exists, and fits its training steps to a wall-clock budget: a 30-step probe measures img/s, Stage-I
gets the steps that fill its share of the budget, Stage-II those that fit in what is left. After each phase
`gpu_results.json` is rewritten, so a run stopped at its limit still returns what it measured.

One process-wide setting: TF32 matrix products on CUDA (`torch.backends.cuda.matmul.allow_tf32 = True`).
Sampling uses the pipeline's own options (`sampling.precision` auto = bf16 autocast on CUDA, the precision the
denoiser was trained in; `sampling.cuda_graph`); `--sample-precision fp32` sets `sampling.precision=fp32`.

Split over two device calls on a warm machine (each <= 10 min): `run --stage1-seconds 420 --stop-after stage1`
trains Stage-I for about that long, then the same command without those two flags resumes the run folder and
does the rest (samples, discriminator, Stage-II in the time left, metrics, the steps curve).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


# ====================================================================== make-data (CPU, open3d)
def make_data(out: Path, scenes: int, frames: int, width: int, height: int, seed: int, workers: int) -> None:
    """Synthesize `scenes` x `frames` procedural frames, then copy into `out` only what training and
    evaluation read: `<frame>_{gt,scan}.png`, poses, split lists, intrinsics.json, dataset.yaml."""
    from sim2real_kit.data.synth import synthesize

    full = out.parent / (out.name + ".full")
    t = time.perf_counter()
    synthesize(full, scenes=scenes, frames=frames, seed=seed, width=width, height=height, workers=workers)
    log(f"synthesized {scenes} x {frames} frames at {width}x{height} in {time.perf_counter() - t:.0f} s")
    if out.exists():
        shutil.rmtree(out)
    for name in ("dataset.yaml", "intrinsics.json"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(full / name, out / name)
    for sub in ("lasa_depth", "lasa_pose"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for lst in sorted((full / "lasa_depth").glob("*.lst")):  # train, val and the benchmark split
        shutil.copy2(lst, out / "lasa_depth" / lst.name)
    for scene_dir in sorted((full / "lasa_depth").iterdir()):
        if not scene_dir.is_dir():
            continue
        (out / "lasa_depth" / scene_dir.name).mkdir()
        for f in scene_dir.iterdir():
            if f.name.endswith(("_gt.png", "_scan.png")):
                shutil.copy2(f, out / "lasa_depth" / scene_dir.name / f.name)
        shutil.copytree(full / "lasa_pose" / scene_dir.name, out / "lasa_pose" / scene_dir.name)
    shutil.rmtree(full)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"wrote {out}: {size / 2**20:.1f} MiB")


# ====================================================================== run (GPU): the two-stage experiment
class Results:
    """The experiment's JSON record, rewritten atomically after every phase (into the run folder and --out)."""

    def __init__(self, paths: list[Path], data: dict | None = None):
        self.paths = paths
        self.data = data or {"phases": {}}

    def phase(self, name: str, seconds: float, **values) -> None:
        self.data["phases"][name] = {"seconds": round(seconds, 2), **values}
        self.save()

    def save(self) -> None:
        from sim2real_kit.io import atomic_write_json

        for p in self.paths:
            atomic_write_json(p, self.data)


def logged_img_per_s(losses_csv: Path, after_step: int = 0) -> float:
    """Median img/s of the Trainer's losses.csv rows after `after_step` (the first window is dropped)."""
    import numpy as np

    with open(losses_csv) as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) > after_step]
    vals = [float(r["img_per_s"]) for r in rows[1:]] or [float(r["img_per_s"]) for r in rows]
    return float(np.median(vals))


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_sampling(run_dir: Path, frames: int, steps: int, batch: int) -> float:
    """Frames/s of the saved Stage-I pipeline on the first `frames` val frames (one warm-up call first)."""
    import torch

    from sim2real_kit.data.dataset import PairedDepthDataset
    from sim2real_kit.run import RunFolder
    from sim2real_kit.simulate import load_pipeline

    run = RunFolder(run_dir)
    cfg = run.load_config()
    ds = PairedDepthDataset.from_config(cfg, run.layout(cfg), "val", train=False)
    cad = torch.stack([ds[i]["cad"][0] for i in range(min(frames, len(ds)))])
    pipe = load_pipeline(run, 1, cfg)
    pipe(cad[:batch], num_inference_steps=2, batch_size=batch, generator=torch.Generator().manual_seed(0))
    _sync()
    t = time.perf_counter()
    pipe(cad, num_inference_steps=steps, batch_size=batch, generator=torch.Generator().manual_seed(0))
    _sync()
    return len(cad) / (time.perf_counter() - t)


def steps_curve(run_dir: Path, samples, step_counts: list[int], frames: int, batch: int, seed: int) -> list[dict]:
    """Residual W1 (mm) of Stage-I vs real at each DDIM step count, on the first `frames` frames of `samples`."""
    import torch

    from sim2real_kit.metrics import residual_w1
    from sim2real_kit.run import RunFolder
    from sim2real_kit.simulate import load_pipeline

    run = RunFolder(run_dir)
    pipe = load_pipeline(run, 1, run.load_config())
    cad = torch.from_numpy(samples.cad[:frames])
    real = samples.real[:frames]
    out = []
    for steps in step_counts:
        t = time.perf_counter()
        res = pipe(cad, num_inference_steps=steps, batch_size=batch, generator=torch.Generator().manual_seed(seed))
        sim = res.depth.cpu().numpy()
        dt = time.perf_counter() - t
        out.append(
            {
                "steps": steps,
                "frames": len(cad),
                "w1_mm": 1000 * residual_w1(samples.cad[:frames], sim, real),
                "w1_cad_mm": 1000 * residual_w1(samples.cad[:frames], samples.cad[:frames], real),
                "seconds": dt,
                "frames_per_s": len(cad) / dt,
            }
        )
        log(f"steps curve: DDIM-{steps}: W1 {out[-1]['w1_mm']:.2f} mm ({dt:.1f} s)")
    return out


def plot_steps_curve(curve: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 3.4))
    ax = fig.subplots()
    steps = [c["steps"] for c in curve]
    ax.plot(steps, [c["w1_mm"] for c in curve], "o-", label="Stage-I")
    ax.axhline(curve[0]["w1_cad_mm"], color="grey", ls="--", label="clean CAD")
    ax.set_xscale("log")
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("DDIM steps")
    ax.set_ylabel("residual W1 vs real [mm]")
    ax.set_title(f"quality vs steps ({curve[0]['frames']} val frames)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def sample_figure(samples2, path: Path, n: int = 4) -> None:
    """CAD / real / Stage-I / Stage-II (+ residual panels) of `n` val frames from different scenes."""
    scenes, rows = set(), []
    for i, ref in enumerate(samples2.refs):
        if ref.scene not in scenes:
            scenes.add(ref.scene)
            rows.append(i + 5 if i + 5 < len(samples2.refs) and samples2.refs[i + 5].scene == ref.scene else i)
        if len(rows) == n:
            break
    sims = {"Stage-I": samples2.sims[1], "Stage-II": samples2.sims[2]}
    ids = [str(r) for r in samples2.refs]
    try:
        from sim2real_kit.viz import save_sample_grid

        title = "val frames: CAD / real / Stage-I / Stage-II"
        save_sample_grid(path, samples2.cad, samples2.real, sims, frames=rows, frame_ids=ids, title=title)
    except ImportError:
        from matplotlib.figure import Figure

        cols = [("CAD", samples2.cad), ("real", samples2.real), *sims.items()]
        fig = Figure(figsize=(2.4 * len(cols), 2.4 * len(rows)))
        axes = fig.subplots(len(rows), len(cols), squeeze=False)
        for r, i in enumerate(rows):
            for c, (name, stack) in enumerate(cols):
                axes[r, c].imshow(stack[i], cmap="turbo", vmin=0.3, vmax=5.0)
                axes[r, c].set_axis_off()
                axes[r, c].set_title(name if r == 0 else "", fontsize=9)
        fig.savefig(path, dpi=100)


class Experiment:
    """One `run`: the run folder, the results record, the config overrides and the time budget its phases share."""

    def __init__(self, args):
        import torch

        self.args = args
        self.deadline = T0 + args.budget
        self.out, self.run_dir, self.data = Path(args.out), Path(args.run), Path(args.data).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        self.res = self._open_results()
        self.overrides = self._overrides()
        self.res.data["overrides"] = self.overrides
        self.res.data["preset"] = args.preset
        self.res.save()

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def _open_results(self) -> Results:
        """The record of an earlier call on this run folder (it resumes), or a new one; the environment."""
        import diffusers
        import torch

        state_path = self.run_dir / "gpu_results.json"
        prev = json.loads(state_path.read_text()) if state_path.is_file() else None
        res = Results([state_path, self.out / "gpu_results.json"], prev)
        res.data.setdefault("env", {}).update(
            torch=torch.__version__,
            device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            python=sys.version.split()[0],
            argv=sys.argv,
        )
        res.data["env"]["diffusers"] = diffusers.__version__
        return res

    def _overrides(self) -> list[str]:
        args = self.args
        return [
            f"data.root={self.data}",
            f"train.batch_size={args.batch_size}",
            f"train.lr={args.lr}",
            f"train.lr_warmup_steps={args.warmup_steps}",
            "train.ckpt_every=1000000",
            "train.keep_checkpoints=1",
            "train.log_every=10",
            f"train.val_frames={args.val_frames}",
            f"sampling.steps={args.sampling_steps}",
            f"sampling.batch_size={args.sample_batch}",
            f"data.num_workers={args.workers}",
            f"sampling.precision={'auto' if args.sample_precision == 'bf16' else 'fp32'}",
            *args.override,
        ]

    def probe_and_plan(self) -> dict:
        """1. A short Stage-I run (resumable) measures training img/s, a sampling call frames/s; from them the
        plan of Stage-I's steps. A plan in the record (an earlier call) is kept."""
        from sim2real_kit.data.layout import DepthLayout
        from sim2real_kit.run import resolve_config
        from sim2real_kit.stage1 import train_stage1

        args, run_dir, res = self.args, self.run_dir, self.res
        plan = res.data.get("plan")
        if plan is not None:
            return plan
        t = time.perf_counter()
        cfg = resolve_config(run_dir, args.preset, overrides=[*self.overrides, f"train.steps={args.probe_steps}"])
        train_stage1(run_dir, cfg, progress=False)
        train_rate = logged_img_per_s(run_dir / "stage1" / "losses.csv")
        sample_rate = time_sampling(run_dir, args.sample_batch, args.sampling_steps, args.sample_batch)
        res.phase("probe", time.perf_counter() - t, train_img_per_s=train_rate, sample_frames_per_s=sample_rate)
        log(f"probe: train {train_rate:.1f} img/s, sampling DDIM-{args.sampling_steps} {sample_rate:.1f} frames/s")
        lay = DepthLayout(self.data)
        n_train, n_val = len(lay.frames("train")), len(lay.frames("val"))
        sample_s = (n_train + n_val + 2 * n_val) / sample_rate  # Stage-I both splits + the chain on val
        curve_s = args.curve_frames * sum(args.curve_steps) / args.sampling_steps / sample_rate
        fixed = sample_s + curve_s + args.disc_seconds + args.reserve + 2 * args.stage_overhead
        train_s = max(60.0, self.left() - fixed)
        t1 = args.stage1_seconds if args.stage1_seconds else train_s * args.stage1_share
        steps1 = max(args.probe_steps + 10, int(t1 * train_rate / args.batch_size))
        plan = {
            "train_img_per_s": train_rate,
            "sample_frames_per_s": sample_rate,
            "train_frames": n_train,
            "val_frames": n_val,
            "seconds_left_at_plan": self.left(),
            "sampling_seconds_planned": sample_s,
            "train_seconds_planned": train_s,
            "stage1_steps": steps1,
        }
        res.data["plan"] = plan
        res.save()
        log(f"plan: {json.dumps(plan)}")
        return plan

    def train_stage1(self, plan: dict) -> float:
        """2. Stage-I to its planned steps (resumes the probe's checkpoint); returns its img/s after the probe."""
        from sim2real_kit.run import resolve_config
        from sim2real_kit.stage1 import train_stage1

        run_dir = self.run_dir
        t = time.perf_counter()
        s1 = train_stage1(
            run_dir, resolve_config(run_dir, overrides=[f"train.steps={plan['stage1_steps']}"]), progress=False
        )
        rate1 = logged_img_per_s(run_dir / "stage1" / "losses.csv", self.args.probe_steps)
        self.res.phase("stage1_train", time.perf_counter() - t, summary=s1, img_per_s=rate1)
        log(f"Stage-I: {s1['steps']} steps, loss {s1['loss']:.4g}, val W1 {s1['best']} mm, {rate1:.1f} img/s")
        shutil.copy2(run_dir / "stage1" / "losses.csv", self.out / "gpu_stage1_losses.csv")
        return rate1

    def sample_and_flag(self) -> None:
        """3. Stage-I samples of both splits, then the discriminator and its flags (each skipped when done)."""
        from sim2real_kit.flagging import train_and_flag
        from sim2real_kit.run import RunFolder
        from sim2real_kit.simulate import sample_split

        run_dir, res = self.run_dir, self.res
        run = RunFolder(run_dir)
        cfg = run.load_config()
        for split in ("train", "val"):
            if not run.has_samples(1, split):
                t = time.perf_counter()
                sample_split(run, cfg, split, stage=1, progress=False)
                n = len(list(run.samples_dir(1, split).rglob("*_sim1.png")))
                seconds = time.perf_counter() - t
                res.phase(f"sample_stage1_{split}", seconds, frames=n, frames_per_s=n / seconds)
                log(f"sampled Stage-I {split}: {n} frames")
        if run.flags_state(1) != "ok":  # missing, or made from samples drawn since
            t = time.perf_counter()
            disc_metrics = train_and_flag(run, cfg, stage=1, progress=False)
            res.phase("disc_stage1", time.perf_counter() - t, metrics=disc_metrics)
            log(f"discriminator: {json.dumps({k: v for k, v in disc_metrics.items() if k != 'train_history'})}")

    def train_stage2(self, plan: dict, rate1: float) -> None:
        """4. Stage-II: the steps that fit in what is left, then the chain's val samples (`train_chain`)."""
        from sim2real_kit.run import resolve_config
        from sim2real_kit.stage2 import train_chain

        args, run_dir = self.args, self.run_dir
        if "stage2_steps" not in plan:
            n_val = plan["val_frames"]
            rest = self.left() - 2 * n_val / plan["sample_frames_per_s"] - args.reserve - args.stage_overhead
            rest -= args.curve_frames * sum(args.curve_steps) / args.sampling_steps / plan["sample_frames_per_s"]
            plan["stage2_steps"] = max(20, min(plan["stage1_steps"], int(rest * rate1 / args.batch_size)))
            plan["seconds_left_at_stage2"] = self.left()
            self.res.save()
            log(f"Stage-II: {plan['stage2_steps']} steps")
        cfg = resolve_config(run_dir, overrides=[f"train.steps={plan['stage2_steps']}"])  # Stage-II's step count
        t = time.perf_counter()
        s2 = train_chain(run_dir, cfg, 2, progress=False)
        shutil.copy2(run_dir / "stage2" / "losses.csv", self.out / "gpu_stage2_losses.csv")
        rate2 = logged_img_per_s(run_dir / "stage2" / "losses.csv")
        self.res.phase("stage2_chain", time.perf_counter() - t, summary=s2, img_per_s=rate2)
        log(f"Stage-II: {s2}")

    def evaluate(self):
        """5. Realism per stage (W1 mm vs clean CAD's), discriminator fake share of Stage-I vs Stage-II, the
        sample figure; returns (config, Stage-I val samples, chain val samples)."""
        from sim2real_kit.flagging import run_share_judged_fake
        from sim2real_kit.notebook import realism_metrics
        from sim2real_kit.run import RunFolder, read_json

        run = RunFolder(self.run_dir)
        t = time.perf_counter()
        cfg = run.load_config()
        layout = run.layout(cfg)
        s1_val, s2_val = run.load_samples(1, "val", layout), run.load_samples(2, "val", layout)
        metrics = {
            "stage1_samples": realism_metrics(s1_val, 1),
            "chain_stage1": realism_metrics(s2_val, 1),
            "chain_stage2": realism_metrics(s2_val, 2),
            "disc1_fake_share": {
                name: run_share_judged_fake(run, s2_val, depth, cfg)
                for name, depth in (
                    ("stage1", s2_val.sims[1]),
                    ("stage2", s2_val.sims[2]),
                    ("real", s2_val.real),
                    ("cad", s2_val.cad),
                )
            },
            "disc_metrics": read_json(run.disc_metrics(1)),
        }
        metrics["disc_metrics"].pop("train_history", None)
        self.res.data["metrics"] = metrics
        self.res.phase("metrics", time.perf_counter() - t)
        m1, m2 = metrics["chain_stage1"], metrics["chain_stage2"]
        w1 = f"W1 mm: CAD {m1['w1_cad_mm']:.2f}, Stage-I {m1['w1_mm']:.2f}, Stage-II {m2['w1_mm']:.2f}"
        log(f"{w1}; disc fake share: {metrics['disc1_fake_share']}")
        try:
            sample_figure(s2_val, self.out / "gpu_samples.png")
        except Exception as e:  # noqa: BLE001 - the numbers matter more than the figure
            log(f"sample figure failed: {type(e).__name__}: {e}")
        return cfg, s1_val, s2_val

    def quality_vs_steps(self, plan: dict, cfg, s1_val) -> None:
        """6. Stage-I's residual W1 at each DDIM step count, on as many val frames as the time left allows."""
        args = self.args
        rate = plan["sample_frames_per_s"] * args.sampling_steps  # frame-steps per second
        frames = min(args.curve_frames, int((self.left() - 10) * rate / sum(args.curve_steps)))
        if frames >= 8:
            t = time.perf_counter()
            curve = steps_curve(
                self.run_dir, s1_val, list(args.curve_steps), frames, args.sample_batch, cfg.seed + 1000
            )
            self.res.data["steps_curve"] = curve
            self.res.phase("steps_curve", time.perf_counter() - t)
            plot_steps_curve(curve, self.out / "gpu_steps_curve.png")

    def finish(self, s2_val) -> None:
        import numpy as np

        self.res.data["open3d_imported"] = "open3d" in sys.modules
        self.res.data["total_seconds"] = time.perf_counter() - T0
        self.res.data["frames_mean_valid"] = float(np.mean(s2_val.cad > 0))
        self.res.save()
        log(f"done; open3d imported: {'open3d' in sys.modules}")


def run_experiment(args) -> None:
    exp = Experiment(args)
    plan = exp.probe_and_plan()
    rate1 = exp.train_stage1(plan)
    if args.stop_after == "stage1":
        log("stopping after Stage-I (--stop-after stage1); run again without it to go on")
        return
    exp.sample_and_flag()
    exp.train_stage2(plan, rate1)
    cfg, s1_val, s2_val = exp.evaluate()
    exp.quality_vs_steps(plan, cfg, s1_val)
    exp.finish(s2_val)


# ====================================================================== perf (GPU): the benchmarks in one call
PERF_JOBS = (
    # (name, script in benchmarks/, arguments, share of the remaining budget it may take)
    ("train_sd21", "bench_train.py", "--preset sd21-random --device cuda --steps 10 --repeats 2 --warmup 3 --vae", 0.5),
    ("sample_sd21", "bench_sample.py", "--preset sd21-random --device cuda --steps 50 --batch-size 8 --repeats 2", 0.6),
    ("train_small", "bench_train.py", "--preset small --device cuda --batch-size 64 --steps 10 --repeats 2", 1.0),
)


def run_perf(args) -> None:
    """Each benchmark in its own process (clean memory and compile caches), bounded by the budget; stdout of
    all of them into `gpu_perf.log` (every variant prints a JSON line as soon as it is measured)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = T0 + args.budget
    with open(out / "gpu_perf.log", "a") as logf:
        for name, script, job_args, share in PERF_JOBS:
            if args.only and name not in args.only:
                continue
            left = deadline - time.perf_counter()
            if left < 30:
                log(f"{name}: skipped, {left:.0f} s left")
                continue
            timeout = max(30.0, left * share)
            cmd = [
                sys.executable,
                str(BENCHMARKS / script),
                *job_args.split(),
                "--json",
                str(out / f"gpu_bench_{name}.json"),
            ]
            log(f"{name}: {' '.join(cmd[1:])} (timeout {timeout:.0f} s)")
            logf.write(f"### {name}\n")
            logf.flush()
            try:
                p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
                text, rc = p.stdout, p.returncode
            except subprocess.TimeoutExpired as e:
                text = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                rc = "timeout"
            logf.write(text)
            logf.flush()
            tail = [ln for ln in text.splitlines() if not ln.startswith("{")][-14:]
            print("\n".join(tail), flush=True)
            log(f"{name}: rc {rc}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("make-data", help="procedural dataset, trimmed for carrying (CPU, open3d)")
    d.add_argument("--out", default=".gpu/data")
    d.add_argument("--scenes", type=int, default=56)
    d.add_argument("--frames", type=int, default=16)
    d.add_argument("--width", type=int, default=171)
    d.add_argument("--height", type=int, default=128)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--workers", type=int, default=2)
    r = sub.add_parser("run", help="Stage-I -> flags -> Stage-II -> metrics within a time budget")
    r.add_argument("--data", default=".gpu/data")
    r.add_argument("--run", default="/tmp/gpu_run")
    r.add_argument("--out", default="gpu_out")
    r.add_argument("--budget", type=float, default=520, help="wall-clock seconds for the whole command")
    r.add_argument("--preset", default="small")
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--lr", type=float, default=2e-4)
    r.add_argument("--warmup-steps", type=int, default=50)
    r.add_argument("--probe-steps", type=int, default=30)
    r.add_argument("--val-frames", type=int, default=16)
    r.add_argument("--sampling-steps", type=int, default=20)
    r.add_argument("--sample-batch", type=int, default=112)
    r.add_argument("--sample-precision", choices=("bf16", "fp32"), default="bf16")
    r.add_argument("--workers", type=int, default=6)
    r.add_argument("--stage1-share", type=float, default=0.65, help="share of the training time for Stage-I")
    r.add_argument("--stage1-seconds", type=float, default=0, help="Stage-I training seconds (0: the share)")
    r.add_argument("--stop-after", choices=("stage1", "all"), default="all")
    r.add_argument("--disc-seconds", type=float, default=40, help="planned time of train_and_flag")
    r.add_argument("--stage-overhead", type=float, default=15, help="planned start/save time per stage")
    r.add_argument("--reserve", type=float, default=30, help="seconds kept for metrics and figures")
    r.add_argument("--curve-steps", type=int, nargs="*", default=[50, 20, 10, 5])
    r.add_argument("--curve-frames", type=int, default=112)
    r.add_argument("--override", nargs="*", default=[])
    f = sub.add_parser("perf", help="bench_train / bench_sample on the GPU")
    f.add_argument("--out", default="gpu_out")
    f.add_argument("--budget", type=float, default=480)
    f.add_argument("--only", nargs="*", default=None, help="job names: train_sd21 sample_sd21 train_small")
    args = p.parse_args()
    if args.cmd == "make-data":
        make_data(Path(args.out), args.scenes, args.frames, args.width, args.height, args.seed, args.workers)
    elif args.cmd == "run":
        run_experiment(args)
    else:
        run_perf(args)


if __name__ == "__main__":
    main()
