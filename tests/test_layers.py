"""The package's layering (pyproject.toml, [tool.importlinter]; `make lint` runs `lint-imports`): every module
of the package sits in one layer, so a new module cannot slip past the contract; and the contract holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _layers() -> list[set[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [{name.strip() for name in layer.split("|")} for layer in contract["layers"]]


def test_every_module_has_a_layer():
    listed = set().union(*_layers())
    package = ROOT / "sim2real_kit"
    modules = {f"sim2real_kit.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {f"sim2real_kit.{p.parent.name}" for p in package.glob("*/__init__.py")}
    assert modules - listed == set(), "add these modules to a layer of pyproject.toml's import-linter contract"
    assert listed - modules == set(), "the contract lists modules that do not exist"


def test_the_layers_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout
