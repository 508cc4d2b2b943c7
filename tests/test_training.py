"""Tests of the generic Trainer: learning, exact resume, atomic safetensors checkpoints, bad checkpoints,
the per-step generator, best checkpoint, GAN-style parameter groups and the accelerate path."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from sim2real_kit.config import TrainConfig
from sim2real_kit.errors import CheckpointError, ConfigError, Sim2RealError
from sim2real_kit.training import (
    Trainer,
    TrainingError,
    checkpoint_dir,
    latest_checkpoint,
    load_weights,
    unwrap_model,
)


# ---------------------------------------------------------------------- toy problem
class ToyRegression(torch.utils.data.Dataset):
    """y = x @ w + noise; records the epochs it was told about (set_epoch)."""

    def __init__(self, n: int = 64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g) + 0.01 * torch.randn(n, 1, generator=g)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i], "name": f"frame{i:03d}"}


class ToyDepth(torch.utils.data.Dataset):
    """cad_depth / real_depth pairs [1, 8, 8] with a per-pixel weight_map, like a Stage-II batch."""

    def __init__(self, n: int = 32):
        g = torch.Generator().manual_seed(1)
        self.cad = torch.rand(n, 1, 8, 8, generator=g)
        self.real = self.cad + 0.1 * torch.randn(n, 1, 8, 8, generator=g)
        self.weight_map = torch.where(torch.rand(n, 1, 8, 8, generator=g) > 0.7, 1.5, 0.5)

    def __len__(self) -> int:
        return len(self.cad)

    def __getitem__(self, i: int) -> dict:
        return {"cad_depth": self.cad[i], "real_depth": self.real[i], "weight_map": self.weight_map[i]}


def mlp(hidden: int = 16, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def mse_loss(model, batch, generator):
    pred = model(batch["x"])  # [B, 1]
    noise = 0.01 * torch.randn(pred.shape, generator=generator, device=pred.device)  # uses the per-step generator
    residual = pred + noise - batch["y"]
    return (residual**2).mean(), {"mae": residual.abs().mean(), "const": 1.0}


def make_cfg(**kw) -> TrainConfig:
    base = dict(steps=20, batch_size=8, lr=1e-2, log_every=1, ckpt_every=5, grad_clip=1.0)
    base.update(kw)
    return TrainConfig(**base)


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_rows_equal(rows_a, rows_b, skip=("img_per_s",), rel=0.0):
    assert len(rows_a) == len(rows_b)
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        assert ra.keys() == rb.keys()
        for key in ra:
            if key not in skip:
                assert float(ra[key]) == pytest.approx(float(rb[key]), abs=1e-6, rel=rel), (ra["step"], key)


# ---------------------------------------------------------------------- learning
def test_loss_goes_down_and_fit_summary(tmp_path):
    dataset = ToyRegression()
    trainer = Trainer(
        mlp(), mse_loss, dataset, make_cfg(steps=60, log_every=5, ckpt_every=30), tmp_path, progress=False
    )
    out = trainer.fit()
    rows = read_csv(tmp_path / "losses.csv")
    assert list(rows[0]) == ["step", "epoch", "loss", "lr", "img_per_s", "const", "grad_norm", "mae"]
    assert [int(r["step"]) for r in rows] == list(range(5, 61, 5))
    assert float(rows[-1]["loss"]) < 0.2 * float(rows[0]["loss"])
    assert out["steps"] == 60 and out["start_step"] == 0
    assert out["loss"] == pytest.approx(float(rows[-1]["loss"]), rel=1e-6)
    assert out["seconds"] > 0 and out["img_per_s"] > 0
    assert float(rows[-1]["const"]) == 1.0 and float(rows[0]["lr"]) == pytest.approx(1e-2)
    # 64 samples, 8 per batch: 8 batches an epoch, so 60 steps start epochs 0..7 in order
    assert dataset.epochs == list(range(8))
    # a finished run resumed again does nothing
    again = Trainer(
        mlp(), mse_loss, ToyRegression(), make_cfg(steps=60, log_every=5), tmp_path, resume=True, progress=False
    )
    assert again.fit()["steps"] == 60 and len(read_csv(tmp_path / "losses.csv")) == 12


# ---------------------------------------------------------------------- Trainer.step is the fit loop's step
def _recording(loss_fn, seen: list):
    def recording_loss(model, batch, generator):
        seen.append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
        return loss_fn(model, batch, generator)

    return recording_loss


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"grad_accum": 2, "ema": True, "ema_decay": 0.9, "lr_warmup_steps": 3},
        {"gan": True, "grad_accum": 2},
    ],
)
def test_step_on_fit_batches_gives_the_fit_weights(tmp_path, variant):
    """fit() and step() called on the batches fit drew, from the same seed: bit-identical weights (and EMA)."""
    variant = dict(variant)
    gan = variant.pop("gan", False)
    cfg = make_cfg(steps=12, log_every=1, ckpt_every=100, **variant)

    def build(run_dir, loss_fn):
        if not gan:
            return Trainer(mlp(), loss_fn, ToyRegression(), cfg, run_dir, seed=5, progress=False)
        model = TinyGAN()
        groups = {"G": model.G, "D": {"params": model.D, "lr": 2e-3, "betas": (0.5, 0.999)}}
        return Trainer(model, loss_fn, ToyRegression(), cfg, run_dir, seed=5, param_groups=groups, progress=False)

    base_loss = gan_loss if gan else mse_loss
    seen: list[dict] = []
    fitted = build(tmp_path / "fit", _recording(base_loss, seen))
    fitted.fit()
    assert len(seen) == cfg.steps * cfg.grad_accum

    stepped = build(tmp_path / "step", base_loss)
    accum = cfg.grad_accum
    losses = []
    for i in range(cfg.steps):
        loss = stepped.step(*seen[i * accum : (i + 1) * accum])
        assert isinstance(loss, torch.Tensor) and loss.ndim == 0  # no host sync inside step
        losses.append(float(loss))
    assert stepped.global_step == fitted.global_step == cfg.steps
    for (name, p), q in zip(fitted.model.named_parameters(), stepped.model.parameters()):
        assert torch.equal(p, q), name
    if cfg.ema:
        for p, q in zip(fitted.ema.shadow_params, stepped.ema.shadow_params):
            assert torch.equal(p, q)
    for name in fitted.optimizers:
        assert fitted.schedulers[name].get_last_lr() == stepped.schedulers[name].get_last_lr()
    # the loss step returns is the one fit logs (log_every = 1: one row per step)
    logged = [float(r["loss"]) for r in read_csv(tmp_path / "fit/losses.csv")]
    assert logged == pytest.approx(losses, rel=1e-6)
    assert not (tmp_path / "step/losses.csv").exists()  # step alone neither logs nor checkpoints
    assert not (tmp_path / "step/checkpoints").exists()


def test_step_takes_grad_accum_micro_batches(tmp_path):
    trainer = Trainer(mlp(), mse_loss, ToyRegression(), make_cfg(grad_accum=2), tmp_path, progress=False)
    batch = {"x": torch.randn(8, 8), "y": torch.randn(8, 1)}
    with pytest.raises(TrainingError, match="grad_accum = 2 micro-batches, got 1"):
        trainer.step(batch)
    assert trainer.global_step == 0
    trainer.step(batch, batch)
    assert trainer.global_step == 1


# ---------------------------------------------------------------------- exact resume
class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("variant", [{}, {"grad_accum": 2, "ema": True, "ema_decay": 0.9, "log_every": 3}])
def test_resume_gives_the_same_run(tmp_path, variant):
    cfg = make_cfg(**variant)
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    Trainer(mlp(), mse_loss, ToyRegression(), cfg, dir_a, seed=3, progress=False).fit()

    # run B: stops after 10 steps (fit(until=10)), resumes, crashes after step 12 (rows 11-12 written but no
    # checkpoint), resumes from step 10 again and finishes: rows are neither lost nor duplicated.
    Trainer(mlp(), mse_loss, ToyRegression(), cfg, dir_b, seed=3, progress=False).fit(until=10)
    calls = {"n": 0}

    def crashing_loss(model, batch, generator):
        calls["n"] += 1
        if calls["n"] > 2 * cfg.grad_accum:
            raise Crash("power cut")
        return mse_loss(model, batch, generator)

    crash_cfg = dataclasses.replace(cfg, ckpt_every=100)
    with pytest.raises(Crash):
        Trainer(
            mlp(seed=6), crashing_loss, ToyRegression(), crash_cfg, dir_b, seed=3, resume=True, progress=False
        ).fit()
    assert latest_checkpoint(dir_b / "checkpoints").name == "step-000010"
    resumed = Trainer(mlp(seed=7), mse_loss, ToyRegression(), cfg, dir_b, seed=3, resume=True, progress=False)
    assert resumed.global_step == 10 and resumed.resumed_from.name == "step-000010"
    resumed.fit()

    rows_a, rows_b = read_csv(dir_a / "losses.csv"), read_csv(dir_b / "losses.csv")
    assert [int(r["step"]) for r in rows_a] == [s for s in range(1, 21) if s % cfg.log_every == 0 or s == 20]
    assert_rows_equal(rows_a, rows_b)
    weights_a = load_file(dir_a / "checkpoints/step-000020/model.safetensors")
    weights_b = load_file(dir_b / "checkpoints/step-000020/model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        torch.testing.assert_close(weights_a[key], weights_b[key], rtol=0, atol=1e-6)
    if cfg.ema:
        ema_a = load_file(dir_a / "checkpoints/step-000020/ema.safetensors")
        ema_b = load_file(dir_b / "checkpoints/step-000020/ema.safetensors")
        for key in ema_a:
            torch.testing.assert_close(ema_a[key], ema_b[key], rtol=0, atol=1e-6)
            assert not torch.equal(ema_a[key], weights_a[key])  # the average differs from the raw weights


# ---------------------------------------------------------------------- checkpoint files
def test_checkpoint_layout_atomic_and_leftover_tmp(tmp_path):
    Trainer(mlp(), mse_loss, ToyRegression(), make_cfg(), tmp_path, progress=False).fit()
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step-000015", "step-000020"]  # keep last 2
    assert (ckpts / "latest").read_text().strip() == "step-000020"
    folder = ckpts / "step-000020"
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "optimizer.pt", "trainer_state.json"]
    with safe_open(folder / "model.safetensors", framework="pt") as f:
        assert set(f.keys()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
        assert f.metadata()["step"] == "20"
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["step"] == 20 and state["epoch"] == 2 and state["sample_in_epoch"] == 32  # 20 batches of 8, 8 an epoch
    assert state["config"]["batch_size"] == 8

    # a crash while writing step 25 leaves a .tmp folder (and `latest` unchanged): it is ignored, then removed
    tmp = ckpts / ".tmp-step-000025"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"half a file")
    assert latest_checkpoint(ckpts).name == "step-000020"
    trainer = Trainer(mlp(), mse_loss, ToyRegression(), make_cfg(steps=25), tmp_path, resume=True, progress=False)
    assert trainer.global_step == 20 and not tmp.exists()
    # a lost `latest` pointer (crash between rename and pointer update) falls back to the highest step folder
    (ckpts / "latest").unlink()
    assert latest_checkpoint(ckpts).name == "step-000020"
    assert checkpoint_dir(tmp_path) == ckpts / "step-000020"
    # inference loading: same weights as the trainer's model
    model = mlp(seed=9)
    assert load_weights(model, tmp_path) == []
    for p, q in zip(model.parameters(), trainer.model.parameters()):
        assert torch.equal(p, q)


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    Trainer(mlp(), mse_loss, ToyRegression(), make_cfg(steps=5), tmp_path, progress=False).fit()
    with pytest.raises(CheckpointError, match="resume=True") as err:
        Trainer(mlp(), mse_loss, ToyRegression(), make_cfg(steps=5), tmp_path, progress=False)
    assert "checkpoints" in str(err.value)
    fresh = Trainer(mlp(), mse_loss, ToyRegression(), make_cfg(steps=5), tmp_path, overwrite=True, progress=False)
    assert fresh.global_step == 0 and not (tmp_path / "checkpoints").exists() and not (tmp_path / "losses.csv").exists()


def test_corrupt_checkpoint_is_named(tmp_path):
    Trainer(mlp(), mse_loss, ToyRegression(), make_cfg(steps=10), tmp_path, progress=False).fit()
    weights = tmp_path / "checkpoints/step-000010/model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        Trainer(mlp(), mse_loss, ToyRegression(), make_cfg(steps=20), tmp_path, resume=True, progress=False)
    assert str(weights) in str(err.value)
    with pytest.raises(CheckpointError) as err:
        load_weights(mlp(), tmp_path / "checkpoints/step-000010")
    assert str(weights) in str(err.value)
    weights.write_bytes(b"")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_weights(mlp(), weights.parent)

    state = tmp_path / "checkpoints/step-000005/trainer_state.json"
    state.write_text('{"step": 5, "epo')
    (tmp_path / "checkpoints/latest").write_text("step-000005\n")
    with pytest.raises(CheckpointError, match="trainer state") as err:
        Trainer(mlp(), mse_loss, ToyRegression(), make_cfg(steps=20), tmp_path, resume=True, progress=False)
    assert str(state) in str(err.value)
    with pytest.raises(CheckpointError, match="no EMA weights"):
        load_weights(mlp(), tmp_path / "checkpoints/step-000005", ema=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_weights(mlp(), tmp_path / "nowhere")


def test_checkpoint_of_another_model_shape_is_named(tmp_path):
    Trainer(mlp(hidden=16), mse_loss, ToyRegression(), make_cfg(steps=5), tmp_path, progress=False).fit()
    with pytest.raises(CheckpointError) as err:
        Trainer(mlp(hidden=32), mse_loss, ToyRegression(), make_cfg(steps=10), tmp_path, resume=True, progress=False)
    message = str(err.value)
    assert "'0.weight'" in message and "(16, 8)" in message and "(32, 8)" in message and "model.safetensors" in message
    with pytest.raises(CheckpointError, match=r"'0\.weight'.*\(16, 8\).*\(32, 8\)"):
        load_weights(mlp(hidden=32), tmp_path)
    deeper = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1), nn.Linear(1, 1))
    assert load_weights(deeper, tmp_path) == ["3.weight", "3.bias"]  # parts the checkpoint lacks are reported
    with pytest.raises(CheckpointError, match=r"'2\.(weight|bias)' of the checkpoint does not exist"):
        load_weights(nn.Sequential(nn.Linear(8, 16)), tmp_path)
    # warm start of a wider input layer (Stage-II from Stage-I): mismatched tensors are skipped and reported
    wider = nn.Sequential(nn.Linear(9, 16), nn.Tanh(), nn.Linear(16, 1))
    assert load_weights(wider, tmp_path, skip_mismatched=True) == ["0.weight"]
    saved = load_file(tmp_path / "checkpoints/step-000005/model.safetensors")
    torch.testing.assert_close(wider[2].weight.detach(), saved["2.weight"])


def test_nan_loss_stops_without_touching_good_checkpoints(tmp_path):
    calls = {"n": 0}

    def diverging(model, batch, generator):
        calls["n"] += 1
        loss, logs = mse_loss(model, batch, generator)
        return (loss * float("nan") if calls["n"] > 10 else loss), logs

    with pytest.raises(TrainingError, match="step 11") as err:
        Trainer(mlp(), diverging, ToyRegression(), make_cfg(), tmp_path, progress=False).fit()
    assert "step-000010" in str(err.value)
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-000010"
    weights = load_file(tmp_path / "checkpoints/step-000010/model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(Sim2RealError, match="empty"):
        Trainer(mlp(), mse_loss, ToyRegression(n=0), make_cfg(), tmp_path, progress=False)
    with pytest.raises(Sim2RealError, match="6 samples, fewer than one batch"):
        Trainer(mlp(), mse_loss, ToyRegression(n=6), make_cfg(), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="train.grad_accum"):
        Trainer(mlp(), mse_loss, ToyRegression(), make_cfg(grad_accum=0), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="needs a val_fn"):
        Trainer(mlp(), mse_loss, ToyRegression(), make_cfg(), tmp_path, best_metric="w1", progress=False)
    with pytest.raises(ConfigError, match="mixed_precision"):
        Trainer(mlp(), mse_loss, ToyRegression(), make_cfg(mixed_precision="fp16"), tmp_path, progress=False)

    def no_groups(model, batch, generator):
        return {"G": mse_loss(model, batch, generator)[0]}

    with pytest.raises(TrainingError, match="param_groups"):
        Trainer(mlp(), no_groups, ToyRegression(), make_cfg(), tmp_path, progress=False).fit()


# ---------------------------------------------------------------------- the per-step generator (weighted loss)
def test_per_step_generator_is_deterministic_and_resumable(tmp_path):
    """A Stage-II-like loss: noise from the generator, per-pixel weight map applied by the caller."""

    def make_loss(record):
        def weighted_loss(model, batch, generator):
            noise = torch.randn(batch["cad_depth"].shape, generator=generator)  # [B, 1, 8, 8]
            record.append(noise[0, 0, 0, :3].clone())
            pred = model(batch["cad_depth"] + 0.1 * noise)  # [B, 1, 8, 8]
            per_pixel = (pred - batch["real_depth"]) ** 2
            return (batch["weight_map"] * per_pixel).sum() / batch["weight_map"].sum(), {}

        return weighted_loss

    def conv(seed=0):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.SiLU(), nn.Conv2d(4, 1, 3, padding=1))

    cfg = make_cfg(steps=8, batch_size=4, grad_accum=2, ckpt_every=4, log_every=2)
    draws_a, draws_b, draws_c, draws_d = [], [], [], []
    Trainer(conv(), make_loss(draws_a), ToyDepth(), cfg, tmp_path / "a", seed=11, progress=False).fit()
    torch.manual_seed(123)  # the global RNG does not matter
    Trainer(conv(), make_loss(draws_b), ToyDepth(), cfg, tmp_path / "b", seed=11, progress=False).fit()
    Trainer(conv(), make_loss(draws_c), ToyDepth(), cfg, tmp_path / "c", seed=12, progress=False).fit()
    assert len(draws_a) == 16  # 8 steps x 2 micro-batches, each its own generator
    torch.testing.assert_close(torch.stack(draws_a), torch.stack(draws_b), rtol=0, atol=0)
    assert not torch.allclose(torch.stack(draws_a), torch.stack(draws_c))  # another seed, other noise
    assert len({tuple(d.tolist()) for d in draws_a}) == 16  # every micro-batch of every step differs
    # resume at step 4 in a fresh folder copy: the generator of steps 5..8 is the same as in the full run
    partial = tmp_path / "p"
    Trainer(conv(), make_loss([]), ToyDepth(), cfg, partial, seed=11, progress=False).fit(until=4)
    Trainer(conv(), make_loss(draws_d), ToyDepth(), cfg, partial, seed=11, resume=True, progress=False).fit()
    torch.testing.assert_close(torch.stack(draws_d), torch.stack(draws_a[8:]), rtol=0, atol=0)
    assert_rows_equal(read_csv(tmp_path / "a/losses.csv"), read_csv(partial / "losses.csv"))


# ---------------------------------------------------------------------- validation, best checkpoint, samples
def test_best_checkpoint_follows_val_fn(tmp_path):
    scores = iter([3.0, 1.0, 2.0, 5.0])
    calls = []

    def val_fn(model):
        calls.append(model.training)
        return {"w1": next(scores), "absrel": 0.5}

    def sample_fn(model, step, out_dir):
        (out_dir / "grid.png").write_bytes(b"\x89PNG fake")

    cfg = make_cfg(val_every=5, sample_every=10, ema=True, ema_decay=0.9)
    trainer = Trainer(
        mlp(),
        mse_loss,
        ToyRegression(),
        cfg,
        tmp_path,
        val_fn=val_fn,
        best_metric="w1",
        sample_fn=sample_fn,
        progress=False,
    )
    out = trainer.fit()
    assert calls == [False] * 4  # eval mode inside val_fn
    assert out["best"] == 1.0 and out["best_step"] == 10
    best = tmp_path / "checkpoints/best"
    state = json.loads((best / "trainer_state.json").read_text())
    assert state["step"] == 10 and state["metrics"] == {"w1": 1.0, "absrel": 0.5}
    assert (best / "ema.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "best",
        "latest",
        "step-000015",
        "step-000020",
    ]
    rows = read_csv(tmp_path / "val.csv")
    assert [(r["step"], r["w1"]) for r in rows] == [("5", "3"), ("10", "1"), ("15", "2"), ("20", "5")]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step-000010", "step-000020"]
    assert (tmp_path / "samples/step-000020/grid.png").is_file()

    # the EMA context swaps the averaged weights in and restores the raw ones afterwards
    raw = [p.detach().clone() for p in trainer.model.parameters()]
    ema = load_file(tmp_path / "checkpoints/step-000020/ema.safetensors")
    with trainer.ema_weights() as model:
        torch.testing.assert_close(model[0].weight.detach(), ema["0.weight"])
    for p, q in zip(trainer.model.parameters(), raw):
        assert torch.equal(p, q)
    model = mlp(seed=4)
    load_weights(model, best, ema=True)
    best_ema = load_file(best / "ema.safetensors")
    torch.testing.assert_close(model[2].bias.detach(), best_ema["2.bias"])

    # max mode keeps the highest
    scores = iter([3.0, 1.0, 2.0, 5.0])
    out = Trainer(
        mlp(),
        mse_loss,
        ToyRegression(),
        cfg,
        tmp_path / "max",
        val_fn=val_fn,
        best_metric="w1",
        best_mode="max",
        progress=False,
    ).fit()
    assert out["best"] == 5.0 and out["best_step"] == 20


# ---------------------------------------------------------------------- GAN-like parameter groups
class TinyGAN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.G = nn.Linear(8, 1)
        self.D = nn.Sequential(nn.Linear(9, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))


def gan_loss(model, batch, generator):
    bce = nn.functional.binary_cross_entropy_with_logits
    fake = model.G(batch["x"])  # [B, 1]
    d_real = model.D(torch.cat([batch["x"], batch["y"]], 1))
    d_fake = model.D(torch.cat([batch["x"], fake.detach()], 1))
    loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
    d_on_fake = model.D(torch.cat([batch["x"], fake], 1))
    loss_g = bce(d_on_fake, torch.ones_like(d_on_fake)) + 10 * (fake - batch["y"]).abs().mean()
    return {"G": loss_g, "D": loss_d}, {"l1": (fake - batch["y"]).abs().mean()}


def test_two_param_groups_update_separately(tmp_path):
    model = TinyGAN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = {"G": model.G, "D": {"params": model.D, "lr": 2e-3, "betas": (0.5, 0.999)}}
    trainer = Trainer(
        model,
        gan_loss,
        ToyRegression(),
        make_cfg(steps=30, log_every=10),
        tmp_path,
        param_groups=groups,
        progress=False,
    )
    assert (
        trainer.optimizers["D"].param_groups[0]["lr"] == 2e-3 and trainer.optimizers["G"].param_groups[0]["lr"] == 1e-2
    )
    trainer.fit()
    for key, value in model.state_dict().items():
        assert not torch.equal(value, before[key]), key  # both nets moved
    rows = read_csv(tmp_path / "losses.csv")
    assert {"loss_G", "loss_D", "grad_norm_G", "grad_norm_D", "l1"} <= set(rows[0])
    assert float(rows[-1]["l1"]) < float(rows[0]["l1"])  # the generator learns the mapping
    opt_state = torch.load(tmp_path / "checkpoints/step-000030/optimizer.pt", weights_only=True)
    assert set(opt_state["optimizers"]) == {"G", "D"}

    # G's loss must not leak into D: with a zero D loss (and no weight decay), D stays exactly where it was
    def g_only(model, batch, generator):
        losses, logs = gan_loss(model, batch, generator)
        return {"G": losses["G"], "D": 0.0 * losses["D"]}, logs

    model = TinyGAN()
    d_before = {k: v.clone() for k, v in model.D.state_dict().items()}
    cfg = make_cfg(steps=5, weight_decay=0.0)
    Trainer(
        model, g_only, ToyRegression(), cfg, tmp_path / "g", param_groups={"G": model.G, "D": model.D}, progress=False
    ).fit()
    for key, value in model.D.state_dict().items():
        assert torch.equal(value, d_before[key]), key


# ---------------------------------------------------------------------- accelerate path
def test_accelerate_path_on_one_cpu_process(tmp_path):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    seen = []

    def loss_fn(model, batch, generator):
        seen.append((type(model), batch["x"].device.type, generator.device.type, batch["name"][0]))
        return mse_loss(model, batch, generator)

    model = mlp()
    trainer = Trainer(
        model,
        loss_fn,
        ToyRegression(),
        make_cfg(steps=4, ckpt_every=2),
        tmp_path,
        accelerator=accelerator,
        progress=False,
    )
    assert trainer.accelerator is accelerator and trainer.num_processes == 1 and trainer.is_main
    assert trainer.autocast_dtype is None  # mixed_precision auto -> fp32 on CPU
    out = trainer.fit()
    assert out["steps"] == 4 and unwrap_model(trainer.forward_model) is model
    assert seen[0][:3] == (nn.Sequential, "cpu", "cpu") and seen[0][3].startswith("frame")
    assert len(accelerator._models) == 1 and len(accelerator._optimizers) == 1  # went through accelerator.prepare

    # bf16 autocast (what CUDA uses by default) runs on CPU too when asked for
    dtypes = []

    def bf16_loss(model, batch, generator):
        pred = model(batch["x"])
        dtypes.append(pred.dtype)
        return ((pred.float() - batch["y"]) ** 2).mean()

    bf16 = Trainer(
        mlp(), bf16_loss, ToyRegression(), make_cfg(steps=3, mixed_precision="bf16"), tmp_path / "bf16", progress=False
    )
    assert bf16.fit()["loss"] > 0 and dtypes == [torch.bfloat16] * 3
    assert next(bf16.model.parameters()).dtype == torch.float32  # weights stay fp32


@pytest.mark.parametrize("native", [True, False])
def test_fast_precision_is_bf16_only_on_a_cpu_that_computes_it(tmp_path, monkeypatch, native):
    """`train.mixed_precision: fast` (the tiny preset): bf16 autocast where the CPU has native bf16, fp32 where
    it would be emulated (slower); the choice reaches the run's training summary."""
    from sim2real_kit import train_setup
    from sim2real_kit.config import load_config

    monkeypatch.setattr(train_setup, "cpu_has_native_bf16", lambda: native)
    dtypes = []

    def loss(model, batch, generator):
        pred = model(batch["x"])
        dtypes.append(pred.dtype)
        return ((pred.float() - batch["y"]) ** 2).mean()

    trainer = Trainer(mlp(), loss, ToyRegression(), make_cfg(steps=2, mixed_precision="fast"), tmp_path, progress=False)
    summary = trainer.fit()
    want = torch.bfloat16 if native else torch.float32
    assert dtypes == [want] * 2 and summary["precision"] == ("bf16" if native else "fp32")
    assert summary["threads"] == torch.get_num_threads()  # recorded: a background job trains on fewer
    assert train_setup.resolve_precision("auto", torch.device("cpu")) is None  # auto stays fp32 on every CPU
    assert load_config("tiny").train.mixed_precision == "fast"


# ---------------------------------------------------------------------- data parallel (opt-in, ~20 s)
DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_training import TinyGAN, ToyRegression, gan_loss, make_cfg, mlp
from sim2real_kit.training import Trainer

def exact_loss(model, batch, generator):
    pred = model(batch["x"])
    return ((pred - batch["y"]) ** 2).mean()

kind, out, per_process = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = make_cfg(batch_size=per_process, grad_accum=2, ema=True, ema_decay=0.9, log_every=2)
if kind == "mlp":
    Trainer(mlp(), exact_loss, ToyRegression(), cfg, out, progress=False).fit(until=10)
    Trainer(mlp(seed=3), exact_loss, ToyRegression(), cfg, out, resume=True, progress=False).fit()
else:
    model = TinyGAN()
    Trainer(model, gan_loss, ToyRegression(), cfg, out, param_groups={{"G": model.G, "D": model.D}}, progress=False).fit()
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "gan"])
def test_two_cpu_processes_match_one(tmp_path, kind, request):
    """torchrun + gloo: 2 processes x 4 samples give the run of 1 process x 8 samples (same global batches).
    Opt-in: `pytest -m slow tests/test_training.py`."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("opt-in: run with -m slow")
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, str(script), kind, str(tmp_path / "one"), "8"], check=True, env=env)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    subprocess.run([*launcher, str(script), kind, str(tmp_path / "two"), "4"], check=True, env=env, capture_output=True)
    assert_rows_equal(read_csv(tmp_path / "one/losses.csv"), read_csv(tmp_path / "two/losses.csv"), rel=1e-6)
    one = load_file(tmp_path / "one/checkpoints/step-000020/model.safetensors")
    two = load_file(tmp_path / "two/checkpoints/step-000020/model.safetensors")
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=0, atol=1e-6)


def test_compile_setting_also_compiles_what_the_model_marks_frozen(tmp_path, monkeypatch):
    """With train.compile on CUDA, the Trainer compiles `forward` and calls the model's `compile_frozen` (a
    latent codec's VAE encoder runs in the loss, outside `forward`: left eager it was ~1/2 of an sd21 step)."""
    from types import SimpleNamespace

    from sim2real_kit.training import Trainer

    calls = []

    class Model(torch.nn.Linear):
        def compile_frozen(self):
            calls.append("frozen")

    fake = SimpleNamespace(
        cfg=SimpleNamespace(compile=True), device=torch.device("cuda"), run_dir=tmp_path, model=Model(1, 1)
    )
    fake.forward_model = fake.model
    import torch._inductor.config as inductor_config

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)  # restored after
    monkeypatch.setattr(inductor_config, "conv_1x1_as_mm", inductor_config.conv_1x1_as_mm)
    Trainer._setup_compile(fake)  # torch.compile is lazy: nothing is compiled until the first call
    assert calls == ["frozen"] and fake.forward_model is not fake.model
    fake.cfg.compile, fake.forward_model, calls[:] = False, fake.model, []
    Trainer._setup_compile(fake)
    assert calls == [] and fake.forward_model is fake.model
