"""Progressive distillation (sim2real_kit/distill.py): the targets make a perfect student's M-step DDIM sampler the
teacher's N-step one, the grids refuse what does not nest, a distilled pipeline samples with its own step count
only, and a short distillation on a toy run moves the student's few-step output towards the teacher's many-step one
(loss going down). The knobs reach the artifact: the student's step count, the teacher's, the optimizer steps."""

import csv

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL

from sim2real_kit import distill, stage1
from sim2real_kit.cli import main
from sim2real_kit.config import load_config
from sim2real_kit.errors import ConfigError
from sim2real_kit.models.denoiser import make_scheduler
from sim2real_kit.pipeline import Sim2RealPipeline
from sim2real_kit.run import RunFolder, read_json, resolve_config

pytestmark = pytest.mark.usefixtures("one_thread")


class ToyTeacher(torch.nn.Module):
    """x0 = tanh(0.8 x + 0.3 cond + t / 1000): a smooth function of all three inputs."""

    def forward(self, x, t, cond):
        return torch.tanh(0.8 * x + 0.3 * cond + t.view(-1, 1, 1, 1).float() / 1000)


def ddim_loop(scheduler, model, x, cond, steps: int) -> torch.Tensor:
    """diffusers' DDIM loop (the pipeline's eager path): the last x0 prediction."""
    scheduler.set_timesteps(steps)
    x0 = x
    for t in scheduler.timesteps:
        out = model(x, t.expand(x.shape[0]), cond)
        step = scheduler.step(out, t, x, eta=0.0)
        x, x0 = step.prev_sample, step.pred_original_sample
    return x0


@pytest.mark.parametrize(("teacher_steps", "student_steps"), [(10, 5), (4, 2), (4, 1), (10, 2)])
def test_a_perfect_student_samples_the_teachers_trajectory_in_fewer_steps(teacher_steps, student_steps):
    cfg = load_config("tiny")
    sched = make_scheduler(cfg, "ddim")
    g = distill.grids(sched, teacher_steps, student_steps)
    teacher = ToyTeacher()
    student_t = g["student_t"]

    def oracle(z, t, cond):  # the student that predicts exactly its targets
        index = (student_t.view(1, -1) == t.view(-1, 1)).float().argmax(dim=1)
        return distill.teacher_targets(teacher, z, cond, index, g)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 5, 5, generator=gen)
    cond = torch.randn(3, 2, 5, 5, generator=gen)
    want = ddim_loop(make_scheduler(cfg, "ddim"), teacher, x, cond, teacher_steps)
    got = ddim_loop(make_scheduler(cfg, "ddim"), oracle, x, cond, student_steps)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    # and the teacher itself at the student's step count is another sample: the test can fail
    fewer = ddim_loop(make_scheduler(cfg, "ddim"), teacher, x, cond, student_steps)
    assert (fewer - want).abs().max() > 1e-2


def test_grids_nest_or_are_refused():
    sched = make_scheduler(load_config("tiny"), "ddim")
    g = distill.grids(sched, 10, 5)
    assert g["teacher_t"].tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert g["student_t"].tolist() == [999, 799, 599, 399, 199]
    assert g["teacher_coef"].shape == (10, 2) and g["student_coef"].shape == (5, 2)
    for bad in [(10, 3), (10, 10), (3, 1)]:  # 3 does not divide 10; M = N; 3 does not divide 1000
        with pytest.raises(ConfigError, match="distill"):
            distill.grids(sched, *bad)
    with pytest.raises(ConfigError, match="distill.student_steps"):
        load_config("tiny", overrides=["distill.student_steps=3"])


def tiny_pipeline(distilled_steps: int = 0) -> Sim2RealPipeline:
    from sim2real_kit.models.denoiser import ControlledDenoiser

    cfg = load_config("tiny", overrides=["data.size=16", *TINY_MODEL, "sampling.steps=2"])
    torch.manual_seed(0)
    pipe = Sim2RealPipeline.build(cfg, [ControlledDenoiser.from_config(cfg)])
    if distilled_steps:
        pipe.register_to_config(distilled_steps=distilled_steps)
    return pipe


def test_a_distilled_pipeline_samples_with_its_own_step_count_only(tmp_path):
    cad = np.full((1, 16, 16), 1.5, np.float32)
    plain = tiny_pipeline()
    assert "distilled_steps" not in plain.index_config()  # other pipelines' index is unchanged
    plain(cad, num_inference_steps=3)  # any count
    pipe = tiny_pipeline(distilled_steps=2)
    pipe.save_pretrained(tmp_path / "p")
    loaded = Sim2RealPipeline.from_pretrained(tmp_path / "p")
    assert loaded.config.distilled_steps == 2 and loaded.config.num_inference_steps == 2
    loaded(cad)  # its default: 2 steps
    with pytest.raises(ConfigError, match="distilled for 2 DDIM steps"):
        loaded(cad, num_inference_steps=4)
    with pytest.raises(ConfigError, match="eta 0"):
        loaded(cad, eta=0.5)


@pytest.fixture
def trained_run(tmp_path, plane_layout):
    overrides = [
        f"data.root={plane_layout.root}",
        "data.size=16",
        *TINY_MODEL,
        "train.steps=30",
        "train.batch_size=2",
        "train.val_frames=1",
        "train.ema=false",
        "train.lr=1e-3",
        "model.target_std=0.5",
    ]
    run = tmp_path / "run"
    stage1.train_stage1(run, resolve_config(run, overrides=overrides), progress=False)
    return run


def test_distillation_moves_the_students_few_steps_towards_the_teachers_many(trained_run):
    cfg = resolve_config(
        trained_run,
        overrides=["distill.teacher_steps=4", "distill.student_steps=1", "distill.steps=60", "distill.lr=5e-4"],
    )
    summary = distill.distill_stage1(trained_run, cfg, progress=False)
    folder = RunFolder(trained_run).stage_dir(1) / "distill_s1"
    assert summary["folder"] == str(folder) and summary["steps"] == 60  # distill.steps reached the trainer
    rows = list(csv.DictReader(open(folder / "losses.csv")))
    losses = [float(r["loss"]) for r in rows]
    assert {float(r["lr"]) for r in rows} == {5e-4}  # distill.lr reached the optimizer (train.lr is 1e-3)
    assert np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2])  # the loss goes down
    student = Sim2RealPipeline.from_pretrained(folder / "pipeline")
    assert student.config.distilled_steps == 1 and student.config.num_inference_steps == 1
    teacher = Sim2RealPipeline.from_pretrained(RunFolder(trained_run).pipeline_dir(1))
    cad = np.full((4, 16, 16), 2.0, np.float32)
    cad[:, 4:9, 4:9] = 1.2
    cad[:, 0, :] = 0.0

    def residual(pipe, steps):
        return pipe(cad, num_inference_steps=steps, generator=torch.Generator().manual_seed(7)).residual

    want = residual(teacher, 4)
    before = np.abs(residual(teacher, 1) - want).mean()
    after = np.abs(residual(student, 1) - want).mean()
    assert after < 0.6 * before, (before, after)
    steps = read_json(RunFolder(trained_run).provenance_path)["steps"]
    assert any(s["step"] == "distill_s1" and s["teacher_steps"] == 4 for s in steps)


def test_distilling_a_student_again_needs_its_step_count_as_the_teacher_steps(trained_run, capsys):
    assert (
        main(
            [
                "distill",
                "--run",
                str(trained_run),
                "distill.teacher_steps=4",
                "distill.student_steps=2",
                "distill.steps=2",
            ]
        )
        == 0
    )
    student = RunFolder(trained_run).stage_dir(1) / "distill_s2" / "pipeline"
    assert f"wrote {student}" in capsys.readouterr().out
    # the same student folder asked to continue against another teacher (10 steps, not 4): refused, kept
    cfg = resolve_config(trained_run, overrides=["distill.teacher_steps=10", "distill.student_steps=2"], save=False)
    with pytest.raises(ConfigError, match="holds a student of another teacher"):
        distill.distill_stage1(trained_run, cfg, progress=False)
    assert (student / "model_index.json").is_file()
    cfg = resolve_config(trained_run, overrides=["distill.teacher_steps=4", "distill.student_steps=1"], save=False)
    with pytest.raises(ConfigError, match="distilled for 2 DDIM steps; set distill.teacher_steps=2"):
        distill.distill_stage1(trained_run, cfg, teacher=student, progress=False)
    cfg = resolve_config(
        trained_run, overrides=["distill.teacher_steps=2", "distill.student_steps=1", "distill.steps=2"], save=False
    )
    out = distill.distill_stage1(trained_run, cfg, teacher=student, progress=False)
    assert Sim2RealPipeline.from_pretrained(f"{out['folder']}/pipeline").config.distilled_steps == 1


def test_a_students_pipeline_keeps_the_teachers_validity_head(trained_run, tmp_path):
    """model.validity=head: the holes come from the head, not the denoiser; the student's pipeline carries the same
    head (same weights), so a student draws the teacher's holes."""
    from sim2real_kit.holes import ValidityHead

    torch.manual_seed(3)
    head = ValidityHead(width=4)
    teacher = Sim2RealPipeline.from_pretrained(RunFolder(trained_run).pipeline_dir(1)).set_validity_head(head)
    teacher.save_pretrained(tmp_path / "teacher")
    cfg = resolve_config(
        trained_run, overrides=["distill.teacher_steps=2", "distill.student_steps=1", "distill.steps=2"], save=False
    )
    out = distill.distill_stage1(trained_run, cfg, teacher=tmp_path / "teacher", progress=False)
    student = Sim2RealPipeline.from_pretrained(f"{out['folder']}/pipeline")
    assert student.validity_head is not None
    for a, b in zip(head.state_dict().values(), student.validity_head.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
