"""The `sim2real` command: every step of the flow as a subcommand over a run folder.

    sim2real validate ROOT
    sim2real synth --out DIR --scenes N --frames M [--seed S] [--size WxH]
    sim2real import ycbv SRC --out DST [--videos 0000 ...] | sim2real import bop SRC --out DST --split test
    sim2real train --stage 1 --preset tiny [--config FILE] --out runs/x [key=value ...]
    sim2real sample --run runs/x --split val [--stages 1]
    sim2real flag --run runs/x [--threshold 0.5]
    sim2real train --stage 2 --run runs/x
    sim2real simulate --pipeline runs/x --cad DIR --out DIR
    sim2real evaluate --run runs/x --out runs/x/benchmark
    sim2real evaluate-real --run runs/x [--sample data/ycbv_sample] [--holdout mug] [--steps N] [--seeds N]
                           [--calibrate-holes]
    sim2real evaluate-real --run runs/x --train-sample data/ycbv_sample --test-sample lmo_sample [--steps N]
    sim2real notebooks --preset tiny --out runs/demo [key=value ...]
    sim2real ablate configs/ablations/paper.yaml --out runs/ablate [--jobs N]

Every error the kit raises on purpose (`Sim2RealError`) is printed as one clear line and exits 2.
"""

from __future__ import annotations

import argparse
import sys

from sim2real_kit.errors import Sim2RealError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like WxH (e.g. 256x192), got {text!r}") from None
    return w, h


def cmd_validate(args) -> int:
    from sim2real_kit.data.layout import validate

    problems = validate(args.root)
    for p in problems:
        print(p)
    print(f"{args.root}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 0 if not problems else 1


def cmd_synth(args) -> int:
    from sim2real_kit.data.synth import synthesize

    w, h = args.size
    lay = synthesize(
        args.out, scenes=args.scenes, frames=args.frames, seed=args.seed, width=w, height=h, workers=args.workers
    )
    print(f"wrote {lay.root} ({len(lay.frames('train'))} train / {len(lay.frames('val'))} val frames)")
    return 0


def cmd_import(args) -> int:
    from sim2real_kit.data import convert

    if args.format == "ycbv":
        lay = convert.import_ycbv(args.src, args.out, videos=args.videos)
    else:
        lay = convert.import_bop(args.src, args.out, split=args.split)
    print(f"wrote {lay.root}")
    if lay.test_only:
        print(
            f"note: one frame: {lay.root} is a test-only sample (val.lst only); score a model trained elsewhere on it "
            f"(sim2real evaluate-real --train-sample OTHER --test-sample {args.src})"
        )
    return 0


def cmd_train(args) -> int:
    from sim2real_kit.run import resolve_config

    if args.stage == 1:
        if not args.out:
            raise Sim2RealError("train --stage 1 needs --out RUN_DIR")
        from sim2real_kit.stage1 import train_stage1

        train_stage1(args.out, resolve_config(args.out, args.preset, args.config, args.overrides))
    else:
        run = args.run or args.out
        if not run:
            raise Sim2RealError(f"train --stage {args.stage} needs --run RUN_DIR (the folder of the Stage-I run)")
        from sim2real_kit.stage2 import train_stage_n

        train_stage_n(run, resolve_config(run, overrides=args.overrides), stage=args.stage)
    return 0


def cmd_distill(args) -> int:
    from sim2real_kit.distill import distill_stage1
    from sim2real_kit.run import RunFolder, resolve_config

    run = RunFolder(args.run)
    run.load_config()  # an error naming how to make the run when it has none
    summary = distill_stage1(run, resolve_config(run, overrides=args.overrides), teacher=args.teacher)
    print(f"wrote {summary['folder']}/pipeline")
    return 0


def cmd_sample(args) -> int:
    from sim2real_kit.run import RunFolder, resolve_config
    from sim2real_kit.simulate import calibrate_validity_threshold, sample_split

    cfg = resolve_config(args.run, overrides=args.overrides)
    if args.calibrate_holes:
        cal = calibrate_validity_threshold(args.run, cfg)
        cfg.override([f"sampling.validity_threshold={cal['threshold']}"])
        RunFolder(args.run).save_config(cfg)
        print(
            f"sampling.validity_threshold = {cal['threshold']:.2f} (saved in {args.run}/config.yaml): train holes "
            f"{100 * cal['rate']:.1f} % vs real {100 * cal['real_rate']:.1f} % ({100 * cal['rate_at_0.5']:.1f} % at "
            f"0.5), {cal['frames']} train frames"
        )
    sample_split(args.run, cfg, split=args.split, stage=args.stages)
    return 0


def cmd_flag(args) -> int:
    from sim2real_kit.flagging import train_and_flag
    from sim2real_kit.run import resolve_config

    knobs = [] if args.threshold is None else [f"disc.threshold={args.threshold}"]
    knobs += ["disc.binary=false"] if args.continuous else []
    train_and_flag(args.run, resolve_config(args.run, overrides=knobs), stage=args.stage)
    return 0


def cmd_simulate(args) -> int:
    from sim2real_kit import simulate

    tiles = {"native": not args.model_size, "overlap": args.overlap, "tile_batch": args.tile_batch}
    tiles["whole"] = bool(args.whole_frames)
    tiles["fast"] = args.fast
    if args.whole_frames and args.model_size:
        raise Sim2RealError(
            "simulate: --whole-frames runs at the camera's resolution; it does not go with --model-size"
        )
    if args.mesh:
        if not args.trajectory:
            raise Sim2RealError("simulate --mesh needs --trajectory POSES.txt (N lines of 16 numbers, camera-to-world)")
        from sim2real_kit.camera import Camera

        camera = Camera.load_json(args.camera) if args.camera else None
        lay = simulate.simulate_meshes(
            args.pipeline, args.mesh, args.trajectory, args.out, camera=camera, stages=args.stages, **tiles
        )
    elif args.cad:
        lay = simulate.simulate_folder(
            args.pipeline, args.cad, args.out, stages=args.stages, depth_unit=args.depth_unit, **tiles
        )
    else:
        raise Sim2RealError("simulate needs --cad DIR (CAD depth PNGs or a layout) or --mesh FILE --trajectory FILE")
    print(f"wrote {lay.root}")
    return 0


def cmd_evaluate(args) -> int:
    from sim2real_kit import benchmark
    from sim2real_kit.run import RunFolder, resolve_config

    run = RunFolder(args.run)
    run.load_config()  # an error naming how to make the run when it has none
    benchmark.evaluate_run(run, resolve_config(run, overrides=args.overrides, save=False), out=args.out)
    return 0


def cmd_evaluate_real(args) -> int:
    from sim2real_kit import real_sample
    from sim2real_kit.run import resolve_config

    if args.sample and (args.train_sample or args.test_sample):
        raise Sim2RealError("evaluate-real: give --sample (held-out object) or --train-sample/--test-sample, not both")
    overrides = [*args.overrides, *(["benchmark.real_sample_calibrate_holes=true"] if args.calibrate_holes else [])]
    cfg = resolve_config(args.run, "tiny", overrides=overrides, quick=args.quick, save=False)
    result = real_sample.evaluate_real_sample(
        args.run,
        cfg,
        args.sample or real_sample.DEFAULT_SAMPLE,
        out=args.out,
        train_samples=args.train_sample,
        test_samples=args.test_sample,
        holdout=args.holdout,
        steps=args.steps,
        seeds=args.seeds,
        stage1=not args.no_stage1,
        physics_prior=args.physics_prior,
    )
    print(result.markdown())
    print(f"wrote {result.out_dir} ({result.seconds:.0f} s)")
    return 0


def cmd_notebooks(args) -> int:
    from sim2real_kit import runner

    params = {"preset": args.preset, "quick": args.quick, "seed": args.seed, "overrides": list(args.overrides)}
    runner.run_notebooks(args.out, parameters=params, timeout_s=args.timeout, index=True)
    index = runner.write_index(args.out)
    print(f"index: {index}")
    return 0


def cmd_ablate(args) -> int:
    from sim2real_kit import runner

    runner.run_grid(args.grid, args.out, jobs=args.jobs, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sim2real", description="Stable-Sim2Real research kit")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a lasa_depth layout and report every problem")
    p.add_argument("root")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("synth", help="generate a procedural paired-depth dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--scenes", type=int, default=24)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_size, default=(256, 192), help="WxH of the rendered frames")
    p.add_argument("--workers", type=int, default=1, help="processes (2 is fastest on 2 cores)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("import", help="import real RGB-D data (YCB-Video, BOP) into the layout")
    p.add_argument("format", choices=["ycbv", "bop"])
    p.add_argument("src")
    p.add_argument("--out", required=True)
    p.add_argument("--videos", nargs="*", default=None)
    p.add_argument("--split", default="test")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("train", help="train a diffusion stage")
    p.add_argument("--stage", type=int, default=1)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--config", default=None, help="YAML file applied on top of the preset")
    p.add_argument("--out", default=None, help="run folder (stage 1)")
    p.add_argument("--run", default=None, help="run folder holding Stage-I (stage >= 2)")
    p.add_argument("overrides", nargs="*", help="key.sub=value")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "distill", help="distill Stage-I into a few-step student (distill.teacher_steps -> student_steps)"
    )
    p.add_argument("--run", required=True, help="run folder holding Stage-I")
    p.add_argument("--teacher", default=None, help="a saved pipeline to distill instead (e.g. an earlier student)")
    p.add_argument("overrides", nargs="*", help="key.sub=value, e.g. distill.student_steps=2 distill.teacher_steps=4")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("sample", help="sample a split with the trained stages into the run folder")
    p.add_argument("--run", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--stages", type=int, default=1, help="sample with stages 1..N")
    p.add_argument(
        "--calibrate-holes",
        action="store_true",
        help="data.holes=model: first set sampling.validity_threshold so that the train split's generated hole rate "
        "matches its real one (saved in config.yaml); not with model.validity=head (its holes are drawn)",
    )
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("flag", help="train the 3D patch discriminator and flag unsatisfactory patches")
    p.add_argument("--run", required=True)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--continuous", action="store_true", help="write continuous scores (w/o bin)")
    p.add_argument("--stage", type=int, default=1, help="flag the output of this stage")
    p.set_defaults(func=cmd_flag)

    p = sub.add_parser("simulate", help="CAD depth maps, or meshes + a trajectory, -> simulated depth")
    p.add_argument("--pipeline", required=True, help="run folder (or saved pipeline folder)")
    p.add_argument("--cad", default=None, help="folder of CAD depth PNGs, or a lasa_depth layout root")
    p.add_argument("--mesh", default=None, help="CAD scene mesh (.ply/.obj) to render")
    p.add_argument("--trajectory", default=None, help="text file: one row-major 4x4 camera-to-world pose per line")
    p.add_argument("--camera", default=None, help="intrinsics JSON for --mesh (default: LASA ARKit camera)")
    p.add_argument("--out", required=True)
    p.add_argument("--stages", type=int, default=None)
    p.add_argument(
        "--depth-unit",
        default="mm",
        help="unit of the --cad PNGs: mm (default), 0.1mm (YCB-Video), cm, m, or metres per count (0.00025); "
        "a layout's own unit is used for a layout",
    )
    p.add_argument(
        "--model-size", action="store_true", help="write model-size maps (the eval crop resized), not the camera's"
    )
    p.add_argument(
        "--overlap", type=int, default=None, help="tile overlap in px (default: a quarter of the model size)"
    )
    p.add_argument(
        "--tile-batch",
        type=int,
        default=None,
        help="most tiles per pipeline call, whole frames grouped (GPU throughput, e.g. 140; default one frame per call)",
    )
    p.add_argument(
        "--whole-frames",
        action="store_true",
        help="no tiles: each frame in one fully convolutional pass (sampling.native_mode full; experiments/full_frame.py)",
    )
    p.add_argument(
        "--fast",
        choices=["auto", "on", "off"],
        default="auto",
        help="the fastest sampling path that holds quality (compiled denoiser, ~1-2 min compile first): auto = on "
        "CUDA only (docs/results_gpu.md)",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("evaluate", help="benchmark every simulator of a run (Table-4 analog)")
    p.add_argument("--run", required=True)
    p.add_argument("--out", default=None)
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("evaluate-real", help="physical baselines and a few-shot Stage-I on real samples")
    p.add_argument("--run", required=True, help="run folder (its config.yaml, else the tiny preset)")
    p.add_argument(
        "--sample", default=None, help="held-out-object mode: YCB-Video / BOP folder (default: data/ycbv_sample)"
    )
    p.add_argument(
        "--train-sample", nargs="+", default=None, help="train / test mode: sample folder(s) Stage-I trains on"
    )
    p.add_argument("--test-sample", nargs="+", default=None, help="train / test mode: sample folder(s) scored on")
    p.add_argument("--out", default=None, help="default RUN/benchmark/real_sample")
    p.add_argument("--holdout", default=None, help="object held out of Stage-I: class id or name (default: largest)")
    p.add_argument("--steps", type=int, default=None, help="Stage-I steps (default: train.steps)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per stochastic simulator (default: benchmark.seeds)")
    p.add_argument("--no-stage1", action="store_true", help="physical baselines only")
    p.add_argument(
        "--physics-prior",
        action="store_true",
        help="also a Stage-I with the physical model's output as a second condition (physics + learned)",
    )
    p.add_argument(
        "--calibrate-holes",
        action="store_true",
        help="data.holes=model: also Stage-I at the validity threshold whose hole rate on the training objects "
        "matches the real sensor's (benchmark.real_sample_calibrate_holes=true)",
    )
    p.add_argument("--quick", action="store_true", help="CI sizes")
    p.add_argument("overrides", nargs="*", help="key.sub=value")
    p.set_defaults(func=cmd_evaluate_real)

    p = sub.add_parser("notebooks", help="run the notebook sequence headless with papermill")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="CI-sized parameters")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--timeout",
        default="auto",
        help="seconds per notebook, 'none', or 'auto' (default: 4x the notebook's expected time; no limit where "
        "none is known, e.g. GPU presets)",
    )
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_notebooks)

    p = sub.add_parser("ablate", help="run an ablation grid of notebooks")
    p.add_argument("grid")
    p.add_argument("--out", required=True)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--quick", action="store_true", default=None)
    p.set_defaults(func=cmd_ablate)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Sim2RealError as e:
        print(f"sim2real {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept (re-run to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
