import re
from pathlib import Path

import pytest
import tomllib
import yaml

from sim2real_kit.config import PRESETS, Config, load_config
from sim2real_kit.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_load_and_round_trip(preset, tmp_path):
    cfg = Config.preset_config(preset)
    assert cfg.preset == preset
    cfg.to_yaml(tmp_path / "c.yaml")
    again = Config.from_yaml(tmp_path / "c.yaml")
    assert again == cfg


def test_sd21_is_the_paper():
    cfg = Config.preset_config("sd21")
    assert cfg.model.space == "latent" and cfg.data.size == 512 and cfg.train.lr == pytest.approx(3e-5)


def test_overrides_typed():
    cfg = load_config("tiny", overrides=["train.steps=12", "data.holes=generate", "model.block_out_channels=[8,16,16]"])
    assert cfg.train.steps == 12 and cfg.data.holes == "generate"
    assert cfg.model.block_out_channels == (8, 16, 16)
    cfg.override(["train.lr=1e-3"])
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.stepz'.*train\.steps"):
        load_config("tiny", overrides=["train.stepz=3"])
    with pytest.raises(ConfigError, match="unknown config key 'nope'"):
        Config.from_dict({"nope": 1})


@pytest.mark.parametrize(
    "override,match",
    [
        ("train.steps=abc", "must be an integer"),
        ("train.ema=3", "true/false"),
        ("data.holes=sometimes", "allowed: mask, model, generate"),
        ("disc.threshold=1.5", r"\[0, 1\]"),
        ("stage2.flagged_weight=-1", ">= 0"),
        ("data.size=0", "> 0"),
        ("trainsteps", "key.sub=value"),
    ],
)
def test_wrong_values(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("tiny", overrides=[override])


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="c.yaml"):
        Config.from_yaml(p)
    p.write_text("train:\n  steps: 3.5\n")
    with pytest.raises(ConfigError, match="c.yaml.*integer"):
        Config.from_yaml(p)


def _norm(name: str) -> str:
    return re.split(r"[<>=!~ \[]", name.strip())[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    env_names = set()
    for item in env["dependencies"]:
        if isinstance(item, dict):
            env_names |= {_norm(x) for x in item.get("pip", [])}
        elif not item.startswith("python") and not item.startswith("pip"):
            env_names.add(_norm(item))
    env_names.discard("-e .")
    env_names = {n for n in env_names if n and n != "-e"}
    assert {_norm(d) for d in deps} == env_names


def test_a_run_saved_before_the_validity_head_keeps_its_validity_channel(tmp_path):
    """model.validity's default moved from "channel" to "head" (2026-12-07). A run folder's config.yaml written
    before the key existed, with data.holes: model, was a validity-channel run and must load as one (its
    checkpoints have the channel); a user's config file without the key gets today's default, the head."""
    import yaml

    from sim2real_kit.config import Config
    from sim2real_kit.run import RunFolder

    d = Config.preset_config("tiny").to_dict()
    d["data"]["holes"] = "model"
    del d["model"]["validity"]
    run = RunFolder(tmp_path / "old_run")
    run.root.mkdir()
    run.config_path.write_text(yaml.safe_dump(d))
    assert run.load_config().model.validity == "channel"
    assert load_config("tiny", config_file=run.config_path).model.validity == "head"
    d["model"]["validity"] = "head"  # a run saved since: the key is there and wins
    run.config_path.write_text(yaml.safe_dump(d))
    assert run.load_config().model.validity == "head"
