"""The 3D-aware local discriminator of the paper (Sec. 3.3): a PointNet that tells real captured
depth patches from generated (Stage-I) ones, guided by the CAD patch.

Input per point, with p = (x, y, z) the real/generated point and c the CAD point of the same pixel
(from `sim2real_kit.patches.extract_patch_points`, one centring/scaling per pair, so the p - c
offset survives): `guidance_input="offset"` (default) feeds 6 channels (p - c, c); "concat" feeds
(p, c), the paper's plain concatenation (checkpoints saved before the option existed were trained
so and load as "concat"); `cad_guidance=False` (ablation) feeds p alone (3 channels). A per-channel
standardisation (BatchNorm without affine) follows: the depth-CAD offset (mm to cm) is 1-3 orders of
magnitude smaller than the patch extent. The two 6-channel encodings hold the same information (an
invertible linear map); on the same patches, ROC-AUC mean +- std over 3 seeds, offset / concat /
unguided (`python benchmarks/bench_disc_input.py --run runs/i17`, docs/figures/disc_input.json):
- tiny run i17, Stage-I val split (32 frames of 4 unseen scenes, 2038 patch pairs; trained on the
  96 train frames, cfg.disc, 300 steps): 0.948 +- 0.009 / 0.948 +- 0.008 / 0.895 +- 0.007 (balanced
  accuracy 0.883 / 0.873 / 0.805): a tie;
- slope case (real offset along the CAD normal grows with the CAD's tilt, generated offset has
  another patch's tilt; depth alone uninformative): 0.844 +- 0.012 / 0.677 +- 0.046 / 0.533 +- 0.009;
- 32 px tilted planes, 1 cm noise vs clean: 1.000 / 1.000 / 0.83 +- 0.19.
"offset" is the default: the run's tie-break (agreement of the flags with the sensor's effect masks,
mean F1 0.410 vs 0.403) and the slope case favour it.
The network then is a shared per-point MLP (Linear + BatchNorm/LayerNorm + ReLU, widths
`cfg.disc.hidden`; `models.pointnet.point_mlp`), a max-pool over points and an MLP head -> one logit of P(real).

The library functions around it (no CLI): `train_discriminator` (balanced real-vs-fake batches,
AdamW, BCE-with-logits; validation accuracy and ROC-AUC on held-out whole frames or scenes,
`split_by_group`), `score_patches` (P(real) per patch, 1.0 on skipped patches), `flags_from_scores`
(from `patches`), `discriminator_accuracy` (share of valid generated patches judged fake: the
paper's 67.8 % on Stage-I -> 32.5 % on Stage-II), `PatchSet` (the valid patches of many frames,
flattened), `collect_patch_set`, `score_frames`.
The discriminator is only used during training (paper); the samplers never load it.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sim2real_kit.camera import Camera
from sim2real_kit.errors import CheckpointError, ConfigError, Sim2RealError
from sim2real_kit.io import atomic_path, atomic_write_json
from sim2real_kit.models.pointnet import NORMS, max_pool, norm_layer, point_mlp
from sim2real_kit.patches import (
    PatchPoints,
    check_threshold,
    extract_patch_points,
    flags_from_scores,
    patch_grid,
)

MODEL_FORMAT = "sim2real_kit.PointNetDiscriminator"
GUIDANCE_INPUTS = ("offset", "concat")  # CAD-guided input per point: (p - c, c) | (p, c)


# ---------------------------------------------------------------------- the network
class PointNetDiscriminator(nn.Module):
    """PointNet patch classifier: points [B, N, 3] (+ CAD points [B, N, 3]) -> logit of P(real) [B]."""

    def __init__(
        self,
        hidden: Sequence[int] = (64, 128, 256),
        cad_guidance: bool = True,
        head_hidden: Sequence[int] = (128,),
        norm: str = "batch",
        dropout: float = 0.0,
        guidance_input: str = "offset",
    ):
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"disc.norm = {norm!r}; allowed: {', '.join(NORMS)}")
        if guidance_input not in GUIDANCE_INPUTS:
            raise ConfigError(f"disc.guidance_input = {guidance_input!r}; allowed: {', '.join(GUIDANCE_INPUTS)}")
        if not hidden or any(int(w) <= 0 for w in hidden):
            raise ConfigError(f"disc.hidden must be a non-empty list of positive widths, got {list(hidden)}")
        self.hidden = tuple(int(w) for w in hidden)
        self.head_hidden = tuple(int(w) for w in head_hidden)
        self.cad_guidance = bool(cad_guidance)
        self.guidance_input = str(guidance_input)
        self.norm_kind = norm
        self.dropout = float(dropout)
        self.in_channels = 6 if self.cad_guidance else 3
        self.meta: dict = {}  # extraction settings it was trained with (patch size, points, ...)

        # per-channel standardisation of the input: the depth-CAD offset is 1-3 orders of magnitude
        # smaller than the patch extent; without it the network needs thousands of steps to see it
        self.point_mlp = point_mlp(self.in_channels, self.hidden, norm, input_norm=True)
        c = self.hidden[-1]
        head: list[nn.Module] = []
        for w in self.head_hidden:
            head += [nn.Linear(c, w), norm_layer(w, norm), nn.ReLU(inplace=True)]
            if self.dropout > 0:
                head.append(nn.Dropout(self.dropout))
            c = w
        head.append(nn.Linear(c, 1))
        self.head = nn.Sequential(*head)

    @classmethod
    def from_config(cls, cfg_disc) -> PointNetDiscriminator:
        """Build from a `DiscConfig` (hidden, cad_guidance, guidance_input, head_hidden, norm, dropout)."""
        return cls(
            hidden=tuple(cfg_disc.hidden),
            cad_guidance=bool(cfg_disc.cad_guidance),
            head_hidden=tuple(cfg_disc.head_hidden),
            norm=str(cfg_disc.norm),
            dropout=float(cfg_disc.dropout),
            guidance_input=str(cfg_disc.guidance_input),
        )

    def config(self) -> dict:
        return {
            "format": MODEL_FORMAT,
            "hidden": list(self.hidden),
            "cad_guidance": self.cad_guidance,
            "guidance_input": self.guidance_input,
            "head_hidden": list(self.head_hidden),
            "norm": self.norm_kind,
            "dropout": self.dropout,
            "meta": self.meta,
        }

    def features(self, points: torch.Tensor, cad_points: torch.Tensor | None = None) -> torch.Tensor:
        """Per-point input [B, N, 3 or 6]: points (unguided); guided: (points - CAD points, CAD points)
        with guidance_input "offset", (points, CAD points) with "concat"."""
        if points.ndim != 3 or points.shape[-1] != 3:
            raise Sim2RealError(f"points must have shape [B, N, 3], got {tuple(points.shape)}")
        if not self.cad_guidance:
            return points
        if cad_points is None:
            raise Sim2RealError("this discriminator is CAD-guided (cad_guidance=True): cad_points are required")
        if cad_points.shape != points.shape:
            raise Sim2RealError(
                f"cad_points shape {tuple(cad_points.shape)} does not match points {tuple(points.shape)}"
            )
        if self.guidance_input == "offset":
            return torch.cat([points - cad_points, cad_points], dim=-1)
        return torch.cat([points, cad_points], dim=-1)

    def forward(self, points: torch.Tensor, cad_points: torch.Tensor | None = None) -> torch.Tensor:
        """points, cad_points [B, N, 3] (normalised patch points) -> logits [B] of P(real)."""
        x = self.point_mlp(self.features(points, cad_points))  # [B, N, C]
        x = max_pool(x)  # [B, C]: symmetric over the points
        return self.head(x)[:, 0]  # [B]

    def prob_real(self, points: torch.Tensor, cad_points: torch.Tensor | None = None) -> torch.Tensor:
        """P(real) [B] (sigmoid of the logit)."""
        return torch.sigmoid(self(points, cad_points))

    # ------------------------------------------------------------------ weights
    def save(self, path: str | Path) -> Path:
        """Write weights as safetensors at `path` and the config as `<stem>.json` beside it (atomic)."""
        from safetensors.torch import save_file

        path = Path(path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        cfg = self.config()
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"config": json.dumps(cfg)})
        atomic_write_json(path.with_suffix(".json"), cfg)
        return path

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> PointNetDiscriminator:
        """Load a discriminator written by `save` (config from the json beside it, else from the
        safetensors metadata); returned in eval mode. Checkpoints written before `guidance_input`
        existed load as "concat" (what they were trained with)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        path = Path(path)
        if not path.is_file():
            raise CheckpointError("discriminator weights not found (written by train_discriminator / save)", path)
        sidecar = path.with_suffix(".json")
        try:
            if sidecar.is_file():
                cfg = json.loads(sidecar.read_text())
            else:
                with safe_open(str(path), framework="pt") as f:
                    cfg = json.loads((f.metadata() or {})["config"])
            state = load_file(str(path), device=str(map_location))
        except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read discriminator: {e}", path) from None
        if cfg.get("format") != MODEL_FORMAT:
            raise CheckpointError(f"not a {MODEL_FORMAT} checkpoint (format {cfg.get('format')!r})", path)
        model = cls(
            hidden=cfg["hidden"],
            cad_guidance=cfg["cad_guidance"],
            head_hidden=cfg.get("head_hidden", (128,)),
            norm=cfg.get("norm", "batch"),
            dropout=cfg.get("dropout", 0.0),
            guidance_input=cfg.get("guidance_input", "concat"),
        )
        model.meta = dict(cfg.get("meta") or {})
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"weights do not fit the configured network: {e}", path) from None
        return model.to(map_location).eval()


# ---------------------------------------------------------------------- patch sets
@dataclass
class PatchSet:
    """Valid patches of many frames, flattened: points, cad_points [M, N, 3]; source [M, 2] long
    (frame index, patch index) into the PatchPoints they came from (frame index offset by the
    frames collected before, in `collect_patch_set`)."""

    points: torch.Tensor
    cad_points: torch.Tensor
    source: torch.Tensor | None = None

    def __post_init__(self):
        if self.points.ndim != 3 or self.points.shape[-1] != 3 or self.cad_points.shape != self.points.shape:
            raise Sim2RealError(
                f"a PatchSet needs points and cad_points of one shape [M, N, 3], got "
                f"{tuple(self.points.shape)} and {tuple(self.cad_points.shape)}"
            )

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.points.shape[1])

    @classmethod
    def from_patch_points(cls, patch_points: PatchPoints, frame_offset: int = 0) -> PatchSet:
        idx = patch_points.valid.nonzero()  # [M, 2]
        src = idx.clone()
        src[:, 0] += frame_offset
        return cls(patch_points.points[patch_points.valid], patch_points.cad_points[patch_points.valid], src)

    @classmethod
    def cat(cls, sets: Sequence[PatchSet]) -> PatchSet:
        if not sets:
            raise Sim2RealError("no patch sets to concatenate")
        sources = [s.source for s in sets]
        return cls(
            torch.cat([s.points for s in sets]),
            torch.cat([s.cad_points for s in sets]),
            torch.cat(sources) if all(s is not None for s in sources) else None,
        )

    def subset(self, index: torch.Tensor) -> PatchSet:
        index = index.to(self.points.device)
        return PatchSet(
            self.points[index], self.cad_points[index], None if self.source is None else self.source[index.cpu()]
        )

    def to(self, device) -> PatchSet:
        return PatchSet(self.points.to(device), self.cad_points.to(device), self.source)


def collect_patch_set(
    depth,
    cad,
    camera: Camera,
    cfg_disc,
    generator: torch.Generator | None = None,
    valid_mask=None,
    boxes=None,
    batch_size: int = 32,
) -> tuple[PatchSet, int]:
    """Valid patches of frames depth, cad [F, H, W] (numpy or torch, metres) as one PatchSet, in
    batches of `batch_size` frames; boxes default to `patch_grid(H, W, cfg.patch_size, cfg.stride)`.
    Returns (patch set, number of skipped patches)."""
    H, W = depth.shape[-2:]
    boxes = patch_grid(H, W, cfg_disc.patch_size, cfg_disc.stride) if boxes is None else boxes
    sets, skipped = [], 0
    for start, pp in _frame_batches(depth, cad, camera, cfg_disc, boxes, generator, valid_mask, batch_size):
        sets.append(PatchSet.from_patch_points(pp, frame_offset=start))
        skipped += pp.num_skipped
    return PatchSet.cat(sets), skipped


def _frame_batches(depth, cad, camera, cfg_disc, boxes, generator, valid_mask, batch_size):
    """Yield (first frame index, PatchPoints) over frames [F, H, W], `batch_size` frames at a time."""
    for start in range(0, len(depth), batch_size):
        sl = slice(start, start + batch_size)
        yield (
            start,
            extract_patch_points(
                depth[sl],
                cad[sl],
                camera,
                boxes,
                cfg_disc.num_points,
                cfg_disc.min_valid,
                generator,
                None if valid_mask is None else valid_mask[sl],
                cfg_disc.normalize,
            ),
        )


# ---------------------------------------------------------------------- training
def split_by_group(
    frames: Sequence[torch.Tensor],
    val_fraction: float,
    groups: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    """Hold out whole groups of frames (frames, or e.g. scenes) for validation.

    `frames`: per patch set, the frame index of each patch ([M_k] long: a PatchSet's `source[:, 0]`;
    all sets index one frame list, so the real and fake patches of a frame go to the same side).
    `groups` [F] long: group id of each frame index; None = every frame is its own group. Of the G
    groups present in any set, round(G * val_fraction) (at least 1, at most G - 1) are drawn with
    `generator`; none when val_fraction is 0 or G < 2. Returns (per set a bool mask [M_k], True =
    held out; the held-out group ids [G_val], sorted; G)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"disc.val_fraction must be in [0, 1), got {val_fraction}")
    frames = [torch.as_tensor(f).long().reshape(-1).cpu() for f in frames]
    if groups is None:
        ids = frames
    else:
        groups = torch.as_tensor(groups).long().reshape(-1).cpu()
        for f in frames:
            bad = f[(f < 0) | (f >= len(groups))]
            if len(bad):
                raise Sim2RealError(
                    f"groups maps {len(groups)} frames but a patch comes from frame index {int(bad[0])}"
                )
        ids = [groups[f] for f in frames]
    present = torch.unique(torch.cat(ids)) if ids else torch.zeros(0, dtype=torch.long)
    G = len(present)
    n_val = 0 if val_fraction == 0 or G < 2 else min(G - 1, max(1, int(round(G * val_fraction))))
    held = present[torch.randperm(G, generator=generator)[:n_val]].sort().values
    return [torch.isin(i, held) for i in ids], held, G


def train_discriminator(
    real: PatchSet,
    fake: PatchSet,
    cfg_disc,
    seed: int = 0,
    val_fraction: float | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    eval_every: int | None = None,
    groups: torch.Tensor | None = None,
) -> tuple[PointNetDiscriminator, dict]:
    """Train a PointNet to tell real patches (label 1) from generated ones (label 0).

    Each of `cfg_disc.steps` AdamW steps (lr `cfg_disc.lr`) sees a balanced batch of
    `cfg_disc.batch_size` patches, half real, half fake, drawn from the training parts.
    Validation holds out whole groups of frames (`split_by_group`): a `val_fraction` (None =
    `cfg_disc.val_fraction`) of the groups, `groups` [F] long mapping the frame index
    (`source[:, 0]`, one frame list for real and fake) to a group id (e.g. the scene); None = each
    frame is a group. A split needs `source` on both sets (Sim2RealError otherwise). With fewer than
    2 groups there is no validation (a warning; n_val_groups 0). Returns (model in eval mode,
    history) with history keys: step, train_loss (per step), val_step / val_accuracy_curve (every
    `eval_every` steps, default steps/10), val_accuracy (balanced: mean of the real and fake
    accuracies at 0.5), val_real_accuracy, val_fake_accuracy, val_auc (ROC-AUC), n_groups,
    n_val_groups, n_train_real/fake, n_val_real/fake. Without a validation part the val entries are NaN."""
    val_fraction = float(cfg_disc.val_fraction if val_fraction is None else val_fraction)
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"disc.val_fraction must be in [0, 1), got {val_fraction}")
    for name, s in (("real", real), ("fake", fake)):
        if len(s) < 2:
            raise Sim2RealError(f"the {name} patch set has {len(s)} patches; at least 2 are needed to train")
    if real.num_points != fake.num_points:
        raise Sim2RealError(f"real patches have {real.num_points} points but fake ones {fake.num_points}")
    steps, batch_size = int(cfg_disc.steps), int(cfg_disc.batch_size)
    if steps < 1 or batch_size < 2:
        raise ConfigError(f"disc.steps must be >= 1 and disc.batch_size >= 2, got {steps} and {batch_size}")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    gen = torch.Generator().manual_seed(int(seed))

    n_groups = 0
    if val_fraction > 0:
        for name, s in (("real", real), ("fake", fake)):
            if s.source is None:
                raise Sim2RealError(
                    f"the {name} patch set has no source (frame index per patch): the validation split holds "
                    f"out whole frames; build it with PatchSet.from_patch_points / collect_patch_set, or pass "
                    f"val_fraction=0"
                )
        frames = [real.source[:, 0], fake.source[:, 0]]
        (val_real, val_fake), held, n_groups = split_by_group(frames, val_fraction, groups, gen)
        if n_groups < 2:
            warnings.warn(
                f"discriminator: the patches come from {n_groups} frame group(s); no validation split", stacklevel=2
            )
    else:
        val_real, val_fake = torch.zeros(len(real), dtype=torch.bool), torch.zeros(len(fake), dtype=torch.bool)
        held = torch.zeros(0, dtype=torch.long)
    for name, m in (("real", val_real), ("fake", val_fake)):
        if bool(m.all()):
            raise Sim2RealError(
                f"the held-out groups {held.tolist()} take all {name} patches; none is left to train on"
            )
    real_tr = real.subset((~val_real).nonzero()[:, 0]).to(device)
    fake_tr = fake.subset((~val_fake).nonzero()[:, 0]).to(device)
    real_val = real.subset(val_real.nonzero()[:, 0]).to(device) if val_real.any() else None
    fake_val = fake.subset(val_fake.nonzero()[:, 0]).to(device) if val_fake.any() else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = PointNetDiscriminator.from_config(cfg_disc).to(device)
    model.meta = {
        "patch_size": int(cfg_disc.patch_size),
        "stride": int(cfg_disc.stride),
        "num_points": real.num_points,
        "min_valid": int(cfg_disc.min_valid),
        "normalize": str(cfg_disc.normalize),
        "seed": int(seed),
    }
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg_disc.lr), weight_decay=float(cfg_disc.weight_decay))
    loss_fn = nn.BCEWithLogitsLoss()
    half = batch_size // 2
    labels = torch.cat([torch.ones(half), torch.zeros(half)]).to(device)
    eval_every = max(1, steps // 10) if eval_every is None else int(eval_every)
    history: dict = {"step": [], "train_loss": [], "val_step": [], "val_accuracy_curve": []}
    has_val = real_val is not None and fake_val is not None

    from tqdm.auto import tqdm

    bar = tqdm(range(1, steps + 1), desc="discriminator", disable=not progress, leave=False)
    for step in bar:
        model.train()
        ir = torch.randint(len(real_tr), (half,), generator=gen).to(device)
        jf = torch.randint(len(fake_tr), (half,), generator=gen).to(device)
        points = torch.cat([real_tr.points[ir], fake_tr.points[jf]])  # [2*half, N, 3]
        cad_points = torch.cat([real_tr.cad_points[ir], fake_tr.cad_points[jf]])
        loss = loss_fn(model(points, cad_points), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history["step"].append(step)
        history["train_loss"].append(float(loss.detach()))
        if has_val and (step % eval_every == 0 or step == steps):
            acc = _evaluate(model, real_val, fake_val)["val_accuracy"]
            history["val_step"].append(step)
            history["val_accuracy_curve"].append(acc)
            bar.set_postfix(loss=f"{history['train_loss'][-1]:.3f}", val_acc=f"{acc:.3f}")
    model.eval()
    if has_val:
        history.update(_evaluate(model, real_val, fake_val))
    else:
        history.update(val_accuracy=math.nan, val_real_accuracy=math.nan, val_fake_accuracy=math.nan, val_auc=math.nan)
    history.update(
        n_groups=n_groups,
        n_val_groups=len(held),
        n_train_real=len(real_tr),
        n_train_fake=len(fake_tr),
        n_val_real=0 if real_val is None else len(real_val),
        n_val_fake=0 if fake_val is None else len(fake_val),
    )
    return model, history


@torch.no_grad()
def _evaluate(model: PointNetDiscriminator, real_val: PatchSet, fake_val: PatchSet) -> dict:
    p_real = score_patches(model, real_val)
    p_fake = score_patches(model, fake_val)
    acc_real = float((p_real >= 0.5).float().mean())
    acc_fake = float((p_fake < 0.5).float().mean())
    scores = torch.cat([p_real, p_fake]).cpu()
    labels = torch.cat([torch.ones(len(p_real)), torch.zeros(len(p_fake))])
    return {
        "val_accuracy": 0.5 * (acc_real + acc_fake),
        "val_real_accuracy": acc_real,
        "val_fake_accuracy": acc_fake,
        "val_auc": roc_auc(scores, labels),
    }


def roc_auc(scores, labels) -> float:
    """ROC-AUC of `scores` for binary `labels` (1 = positive) by the rank formula (Mann-Whitney U,
    ties averaged): (sum of positive ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg). NaN when a class is absent."""
    from scipy.stats import rankdata

    scores = np.asarray(torch.as_tensor(scores).detach().cpu(), dtype=np.float64).reshape(-1)
    labels = np.asarray(torch.as_tensor(labels).detach().cpu()).reshape(-1).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ---------------------------------------------------------------------- scoring
@torch.no_grad()
def score_patches(
    model: PointNetDiscriminator, patch_points: PatchPoints | PatchSet, batch_size: int = 4096
) -> torch.Tensor:
    """P(real) of every patch: [B, P] for PatchPoints (skipped patches get 1.0 = judged real, never
    flagged; see `patch_points.valid`), [M] for a PatchSet. Runs in eval mode on the model's device,
    `batch_size` patches at a time; the result lies on the input's device. Never NaN."""
    if isinstance(patch_points, PatchSet):
        points, cad_points, out_device = patch_points.points, patch_points.cad_points, patch_points.points.device
        valid = None
    else:
        valid = patch_points.valid
        points, cad_points = patch_points.points[valid], patch_points.cad_points[valid]  # [M, N, 3]
        out_device = valid.device
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    probs = []
    try:
        for start in range(0, len(points), batch_size):
            sl = slice(start, start + batch_size)
            cad = cad_points[sl].to(device) if model.cad_guidance else None
            probs.append(model.prob_real(points[sl].to(device), cad).float())
    finally:
        model.train(was_training)
    prob = torch.cat(probs).to(out_device) if probs else torch.zeros(0, device=out_device)
    prob = torch.nan_to_num(prob, nan=1.0)
    if valid is None:
        return prob
    scores = torch.ones(valid.shape, device=out_device)
    scores[valid] = prob
    return scores


def score_frames(
    model: PointNetDiscriminator,
    depth,
    cad,
    camera: Camera,
    cfg_disc,
    generator: torch.Generator | None = None,
    valid_mask=None,
    batch_size: int = 32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score every patch of frames depth, cad [F, H, W] (generated or real, metres) on the grid of
    `cfg_disc` (patch_size, stride, num_points, min_valid, normalize).

    Returns (scores [F, P] P(real), 1.0 on skipped patches; valid [F, P]; boxes [P, 4]), on CPU.
    Flags: `flags_from_scores(scores, valid, cfg_disc.threshold, cfg_disc.binary)`."""
    H, W = depth.shape[-2:]
    boxes = patch_grid(H, W, cfg_disc.patch_size, cfg_disc.stride)
    scores, valid = [], []
    for _, pp in _frame_batches(depth, cad, camera, cfg_disc, boxes, generator, valid_mask, batch_size):
        scores.append(score_patches(model, pp).cpu())
        valid.append(pp.valid.cpu())
    return torch.cat(scores), torch.cat(valid), boxes


def discriminator_accuracy(scores_on_generated, valid=None, threshold: float = 0.5) -> float:
    """Share of valid generated patches the frozen discriminator judges fake (P(real) < threshold):
    the realism metric of the paper (67.8 % on Stage-I output -> 32.5 % on Stage-II; lower = more
    realistic). Raises Sim2RealError when no patch is valid."""
    threshold = check_threshold(threshold)
    scores = torch.as_tensor(scores_on_generated, dtype=torch.float32)
    ok = torch.isfinite(scores)
    if valid is not None:
        ok = ok & torch.as_tensor(valid, dtype=torch.bool, device=scores.device)
    n = int(ok.sum())
    if n == 0:
        raise Sim2RealError("discriminator accuracy: no valid patch to score")
    return float(((scores < threshold) & ok).sum()) / n


__all__ = [
    "PatchSet",
    "PointNetDiscriminator",
    "collect_patch_set",
    "discriminator_accuracy",
    "flags_from_scores",
    "roc_auc",
    "score_frames",
    "score_patches",
    "split_by_group",
    "train_discriminator",
]
