"""The run folder (`sim2real_kit.run`): one home for a run's paths, config and provenance; the config of a
notebook or CLI call resolved once."""

from __future__ import annotations

import json
import re

import pytest

from sim2real_kit.config import Config, load_config
from sim2real_kit.errors import ConfigError, MissingArtifactError
from sim2real_kit.run import RunFolder, resolve_config


def test_config_and_provenance_are_written_once_and_steps_appended(tmp_path, plane_layout):
    run = RunFolder(tmp_path / "run")
    cfg = load_config("tiny", overrides=[f"data.root={plane_layout.root}"])
    run.save_config(cfg)
    assert Config.from_yaml(run.config_path) == cfg
    first = json.loads(run.provenance_path.read_text())
    assert first["steps"] == [] and first["run"]["packages"]["numpy"] and first["run"]["git_commit"] is not None
    cfg.override(["train.steps=7"])
    run.save_config(cfg)  # config.yaml follows the config; the run's provenance record stays as it was
    assert Config.from_yaml(run.config_path).train.steps == 7
    assert json.loads(run.provenance_path.read_text())["run"] == first["run"]
    run.record_step("stage1", cfg, steps=7)
    run.record_step("flag1", cfg, threshold=0.5)
    steps = json.loads(run.provenance_path.read_text())["steps"]
    assert [s["step"] for s in steps] == ["stage1", "flag1"] and steps[0]["steps"] == 7
    assert re.fullmatch(r"[0-9a-f]{16}", steps[0]["dataset_fingerprint"]) and steps[1]["threshold"] == 0.5


def test_resolve_config_reads_the_run_then_applies_quick_seed_overrides(tmp_path):
    run = RunFolder(tmp_path / "run")
    cfg = resolve_config(run, "tiny", overrides=["train.steps=11"], seed=3)
    assert cfg.train.steps == 11 and cfg.seed == 3 and run.has_config()
    # a later step: the run's config.yaml, not the preset (the preset name is ignored once the run exists)
    again = resolve_config(run, "small", overrides=["disc.threshold=0.3"])
    assert again.train.steps == 11 and again.data.size == 64 and again.disc.threshold == 0.3
    quick = resolve_config(run, quick=True, save=False)  # the overlay shrinks the run's own config
    assert quick.data.size == 32 and quick.disc.threshold == 0.3
    assert Config.from_yaml(run.config_path).data.size == 64  # save=False wrote nothing
    with pytest.raises(ConfigError, match="exists; a --config file"):
        resolve_config(run, config_file=tmp_path / "x.yaml")


def test_paths_of_the_design(tmp_path):
    run = RunFolder(tmp_path)
    assert run.samples_dir(2, "val") == tmp_path / "stage2" / "samples" / "val"
    assert run.disc_dir(1) == tmp_path / "disc" and run.disc_dir(2) == tmp_path / "disc2"
    assert run.flags_path(1, "train") == tmp_path / "disc" / "flags" / "train" / "flags.npz"
    assert run.metrics_path("02_stage1") == tmp_path / "notebooks" / "02_stage1.metrics.json"
    assert run.control("stage1_long").root == tmp_path / "controls" / "stage1_long"
    cfg = load_config("tiny")
    assert run.dataset_root(cfg) == tmp_path / "data"
    cfg.override(["data.root=/somewhere/LASA"])
    assert str(run.dataset_root(cfg)) == "/somewhere/LASA"


def test_missing_artifacts_name_the_command(tmp_path, plane_layout):
    run = RunFolder(tmp_path / "run")
    with pytest.raises(MissingArtifactError, match="sim2real notebooks --out"):
        run.load_config()
    with pytest.raises(MissingArtifactError, match=r"sim2real sample --run .* --split val --stages 1"):
        run.load_samples(1, "val", plane_layout)
