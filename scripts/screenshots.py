#!/usr/bin/env python3
"""Screenshots of a run report: RUN_DIR/index.html and every RUN_DIR/notebooks/*.html rendered to PNG by
headless Chromium (Debian's `chromium` package), offline, to look at a run's pages without a browser.

    python scripts/screenshots.py runs/demo                  # -> runs/demo/screenshots/*.png
    python scripts/screenshots.py runs/demo --out /tmp/shots --width 1300 --height 2400

Run `write_index` (or `sim2real notebooks`, which does) first. Needs /usr/bin/chromium (or --chromium PATH):
    apt-get install -y chromium
Exit status: 0 when every page was captured, 1 when one failed, 2 when chromium or the pages are missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",
)


def find_chromium(explicit: str | None = None) -> str:
    """The chromium executable: `explicit`, else the first of CHROMIUM_NAMES on PATH; SystemExit(2) with
    how to install it when there is none."""
    if explicit:
        if Path(explicit).is_file() and os.access(explicit, os.X_OK):
            return explicit
        sys.exit(f"error: --chromium {explicit} is not an executable file")
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    print(
        "error: headless Chromium is needed for the screenshots and none was found on PATH "
        f"(looked for {', '.join(CHROMIUM_NAMES)}).\n"
        "  install it:  apt-get install -y chromium   (Debian / Ubuntu; as root or with sudo)\n"
        "  or pass:     --chromium /path/to/chrome",
        file=sys.stderr,
    )
    sys.exit(2)


def pages(run_dir: Path) -> list[Path]:
    """index.html first, then the notebooks' HTML renders in name order."""
    out = [run_dir / "index.html"] if (run_dir / "index.html").is_file() else []
    return out + sorted((run_dir / "notebooks").glob("*.html"))


def shoot(chromium: str, page: Path, target: Path, width: int, height: int, timeout: float = 120.0) -> str | None:
    """One page -> one PNG; None on success, else what went wrong."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="s2r-chromium-") as profile:
        cmd = [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={target}",
            page.resolve().as_uri(),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"chromium took more than {timeout:.0f} s"
    if proc.returncode != 0 or not target.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return f"chromium exit {proc.returncode}: " + " | ".join(tail)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run folder holding index.html (and notebooks/*.html)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/screenshots)")
    parser.add_argument("--width", type=int, default=1300)
    parser.add_argument("--height", type=int, default=2400)
    parser.add_argument("--chromium", default=None, help="the browser executable (default: chromium on PATH)")
    args = parser.parse_args(argv)

    run_dir = args.run_dir.resolve()
    found = pages(run_dir)
    if not found:
        print(
            f"error: no index.html or notebooks/*.html in {run_dir}; write them first: "
            f"python -c \"from sim2real_kit.runner import write_index; write_index('{args.run_dir}')\"",
            file=sys.stderr,
        )
        return 2
    chromium = find_chromium(args.chromium)
    out = (args.out or run_dir / "screenshots").resolve()
    failures = 0
    for page in found:
        target = out / f"{page.stem}.png"
        error = shoot(chromium, page, target, args.width, args.height)
        if error:
            failures += 1
            print(f"FAILED {page.relative_to(run_dir)}: {error}", file=sys.stderr)
        else:
            print(f"{page.relative_to(run_dir)} -> {target}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
