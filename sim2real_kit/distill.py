"""Few-step sampling by progressive distillation (kit extension, issue 22; Salimans & Ho 2022, "Progressive
distillation for fast sampling of diffusion models").

A trained stage samples with N DDIM steps (eta 0, trailing spacing: 999, 899, ..., 99 at N = 10). Fewer steps of
the same model are worse (docs/results.md, "Sampling steps"): at high t its x0 prediction is a conditional mean, so
a 1-4 step sample is smooth. Distillation trains a *student* (initialised from the teacher) to reach in one DDIM step
what the teacher reaches in k = N / M steps, so the student's M-step sampler follows the teacher's N-step one:

    z_t = sqrt(a_t) x + sqrt(1 - a_t) eps           x: a training target (encoded), t on the student's M-step grid
    z_s = k teacher DDIM steps from z_t             (s = t - 1000/M, the student's next timestep)
    x~  = (z_s - c_x z_t) / c_x0                    the x0 whose one DDIM step t -> s lands on z_s
                                                    (c_x, c_x0: `pipeline.ddim_coefficients` of the M-step grid)
    loss = || student(z_t, t, cond) - x~ ||^2        weighted as the stage's own loss (`mask`)

At the student's last step the pipeline returns the x0 prediction itself, so there the target is the teacher's
last x0. The loss is the plain x0 MSE of the kit's training (no SNR weighting). M must divide N and both 1000
(trailing grids nest: the student's timesteps are every k-th of the teacher's); distilling the student again
(`teacher=` its folder) halves once more, the progressive scheme.

`distill_stage1(run, cfg)` distills a run's Stage-I pipeline (single stage, with or without a validity head, no
physics prior) into `stage1/distill_s<M>/` (checkpoints, losses.csv, `pipeline/`). The saved pipeline samples with
M steps by default and records `distilled_steps`; `Sim2RealPipeline.__call__` refuses another step count for it (the
student learned the M-step grid only). `benchmarks/bench_sample_quality.py --pipelines` scores it beside the teacher.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch

from sim2real_kit.config import Config
from sim2real_kit.data.dataset import PairedDepthDataset
from sim2real_kit.errors import ConfigError, MissingArtifactError
from sim2real_kit.run import RunFolder, as_run, prepare_data


def distill_dir(run: RunFolder, student_steps: int) -> Path:
    """Where the M-step student of a run's Stage-I lives."""
    return run.stage_dir(1) / f"distill_s{int(student_steps)}"


def grids(scheduler, teacher_steps: int, student_steps: int) -> dict[str, torch.Tensor]:
    """The two trailing DDIM grids and their update coefficients: `teacher_t` [N], `teacher_coef` [N, 2],
    `student_t` [M], `student_coef` [M, 2] ((c_x, c_x0) per step, `pipeline.ddim_coefficients`). Refuses grids that
    do not nest (every k-th teacher timestep a student timestep)."""
    from sim2real_kit.pipeline import ddim_coefficients

    n, m = int(teacher_steps), int(student_steps)
    total = int(scheduler.config.num_train_timesteps)
    if not (0 < m < n and n % m == 0 and total % n == 0):
        raise ConfigError(
            f"distill: student_steps = {m} must divide teacher_steps = {n} (0 < M < N) and N must divide "
            f"{total}, so the student's trailing timesteps are every {n // max(m, 1)}-th of the teacher's"
        )
    scheduler = copy.deepcopy(scheduler)
    out = {}
    for name, steps in (("teacher", n), ("student", m)):
        scheduler.set_timesteps(steps)
        out[f"{name}_t"] = scheduler.timesteps.clone().long()
        out[f"{name}_coef"] = ddim_coefficients(scheduler, steps)
    k = n // m
    if not torch.equal(out["teacher_t"][::k], out["student_t"]):  # the scheduler's spacing is not nested
        raise ConfigError(
            f"distill: the {m}-step timesteps {out['student_t'].tolist()} are not every {k}-th of the "
            f"{n}-step ones {out['teacher_t'].tolist()} (timestep_spacing {scheduler.config.timestep_spacing!r})"
        )
    return out


class DistillModel(torch.nn.Module):
    """The student (trainable) beside the frozen codec and teacher, so the Trainer moves and saves them together
    (checkpoints hold the student's weights and the frozen modules' buffers)."""

    def __init__(self, codec, student, teacher):
        super().__init__()
        self.codec, self.denoiser, self.teacher = codec, student, teacher
        for p in [*codec.parameters(), *teacher.parameters()]:
            p.requires_grad_(False)
        teacher.eval()

    def forward(self, noisy, timesteps, condition):
        return self.denoiser(noisy, timesteps, condition)


@torch.no_grad()
def teacher_targets(teacher, z, condition, index, g: dict[str, torch.Tensor]) -> torch.Tensor:
    """The student's x0 target [B, C, h, w] at student step `index` [B] (long) from z_t [B, C, h, w]: k teacher DDIM
    steps from the student's timestep, then the x0 whose one student step lands where they did (the teacher's last
    x0 at the student's last step)."""
    n, m = len(g["teacher_t"]), len(g["student_t"])
    k = n // m
    teacher_t, teacher_coef, student_coef = (
        g[key].to(z.device) for key in ("teacher_t", "teacher_coef", "student_coef")
    )
    x, x0 = z.float(), None
    for j in range(k):
        step = index * k + j  # [B] teacher step numbers
        c = teacher_coef[step].view(-1, 2, 1, 1, 1)
        x0 = teacher(x.to(condition.dtype), teacher_t[step], condition).float()
        x = c[:, 0] * x + c[:, 1] * x0
    c = student_coef[index].view(-1, 2, 1, 1, 1)
    landed = (x - c[:, 0] * z.float()) / c[:, 1]
    last = (index == m - 1).view(-1, 1, 1, 1)
    return torch.where(last, x0, landed)


def distill_loss(scheduler, g: dict[str, torch.Tensor], validity_weight: float = 1.0):
    """loss_fn(model, batch, generator) of the Trainer: the student's x0 error against `teacher_targets`, weighted as
    the stage's diffusion loss (`models.denoiser.weighted_error`: `mask`, validity channels their own group)."""
    from sim2real_kit.models.denoiser import condition_input, weighted_error
    from sim2real_kit.training import unwrap_model

    def loss_fn(model, batch, generator):
        inner = unwrap_model(model)
        codec, teacher = inner.codec, inner.teacher
        target_n, cad_n = batch["target"], batch["cad_n"]
        b = target_n.shape[0]
        k = int(getattr(codec, "input_channels", 1))
        encoded = codec.encode(torch.cat([target_n[:, :k], cad_n], dim=0)).split(b, dim=0)
        latents = codec.join_validity(encoded[0], target_n[:, k:])  # [B, C + V, h, w]
        condition = condition_input(codec, encoded[1:], cad_n, teacher.edge_channels)
        gen_device = generator.device if generator is not None else latents.device
        index = torch.randint(0, len(g["student_t"]), (b,), generator=generator, device=gen_device).to(latents.device)
        noise = torch.randn(latents.shape, generator=generator, device=gen_device, dtype=latents.dtype)
        t = g["student_t"].to(latents.device)[index]
        z = scheduler.add_noise(latents.float(), noise.to(latents.device).float(), t)
        target = teacher_targets(teacher, z, condition, index, g)
        prediction = model(z.to(condition.dtype), t, condition)
        squared = (prediction.float() - target).pow(2)  # [B, C + V, h, w]
        loss, _ = weighted_error(squared, batch["mask"], codec, validity_weight)
        return loss

    return loss_fn


def distill_stage1(
    run: RunFolder | str | Path,
    cfg: Config,
    teacher: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
    overwrite: bool = False,
) -> dict:
    """Distill a run's Stage-I (or the saved pipeline `teacher`, e.g. an earlier student: progressive halving) from
    `distill.teacher_steps` to `distill.student_steps` DDIM steps: `distill.steps` optimizer steps at `distill.lr`
    (the rest of `train`: batch size, EMA, precision) on Stage-I's training data; saves the student's pipeline to
    `stage1/distill_s<M>/pipeline` (resumable) and returns the Trainer's summary with the folder."""
    from sim2real_kit.pipeline import Sim2RealPipeline
    from sim2real_kit.stage1 import _val_fn, stage_trainer

    run = as_run(run)
    d = cfg.distill
    source = Path(teacher) if teacher is not None else run.pipeline_dir(1)
    if not (source / "model_index.json").is_file():
        raise MissingArtifactError(
            f"no teacher pipeline at {source}; train Stage-I first: sim2real train --stage 1 --out {run.root}"
        )
    pipe = Sim2RealPipeline.from_pretrained(source)
    if pipe.num_stages != 1 or pipe.config.get("prior", ""):
        raise ConfigError(
            f"distill: {source} has {pipe.num_stages} stage(s)"
            f"{' and a physics prior' if pipe.config.get('prior', '') else ''}; distill_stage1 takes a one-stage "
            "pipeline conditioned on the CAD alone"
        )
    was = int(pipe.config.get("distilled_steps", 0) or 0)
    if was and was != d.teacher_steps:
        raise ConfigError(
            f"distill: the teacher {source} was distilled for {was} DDIM steps; set distill.teacher_steps={was}"
        )
    layout = prepare_data(run, cfg, progress=progress)
    scheduler = pipe.scheduler  # the teacher's DDIM schedule: its grids and its add_noise
    g = grids(scheduler, d.teacher_steps, d.student_steps)
    teacher_net = pipe.denoisers[0]
    student = copy.deepcopy(teacher_net).train()
    for p in student.parameters():
        p.requires_grad_(True)
    out = distill_dir(run, d.student_steps)
    _check_same_teacher(out, source, d.teacher_steps, d.student_steps, resume and not overwrite)
    run.record_step(
        f"distill_s{d.student_steps}", cfg, teacher=str(source), teacher_steps=d.teacher_steps, steps=d.steps
    )
    train_cfg = dataclasses.replace(cfg.train, steps=d.steps, lr=d.lr, lr_warmup_steps=0)
    sample_cfg = copy.deepcopy(cfg)
    sample_cfg.sampling.steps = d.student_steps  # validation samples the student at its own step count
    ds = PairedDepthDataset.from_config(cfg, layout, "train", train=True, keys=("cad_n", "target", "mask"))
    val_fn = _val_fn(sample_cfg, layout, pipe.codec, [], cfg.train.val_frames)
    model = DistillModel(pipe.codec, student, teacher_net)
    loss_fn = distill_loss(scheduler, g, cfg.train.validity_weight)
    trainer = stage_trainer(cfg, model, loss_fn, ds, train_cfg, out, cfg.seed, val_fn, resume, overwrite, progress)
    summary = trainer.fit()
    with trainer.ema_weights():  # the teacher's pipeline (its scalars, codec, validity head) with the student
        pipe.denoisers[0] = trainer.unwrapped_model.denoiser
        pipe.register_to_config(num_inference_steps=int(d.student_steps), distilled_steps=int(d.student_steps))
        pipe.save_pretrained(out / "pipeline", trained_from=f"distilled from {source} ({d.teacher_steps} steps)")
    return {**summary, "folder": str(out), "teacher": str(source)}


def _check_same_teacher(out: Path, source: Path, teacher_steps: int, student_steps: int, resuming: bool) -> None:
    """Record which teacher (folder, save_id, steps) a student folder distills (`distill.json`); a resumed folder
    that distilled another teacher is refused, so its checkpoints never continue against other targets."""
    import json

    from sim2real_kit.io import atomic_write_json

    index = json.loads((source / "model_index.json").read_text())
    record = {
        "teacher": str(source.resolve()),
        "teacher_save_id": index.get("save_id"),
        "teacher_steps": int(teacher_steps),
        "student_steps": int(student_steps),
    }
    path = out / "distill.json"
    if resuming and path.is_file():
        before = json.loads(path.read_text())
        if before != record:
            raise ConfigError(
                f"{out} holds a student of another teacher ({before}); this call distills {record}. Move the "
                "folder away to keep it, or call with overwrite=True",
                path,
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
