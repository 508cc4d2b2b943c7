"""Are two runs' numbers the same? Compare every number of `notebooks/*.metrics.json` of two run folders.

Made for refactors that must hold every number (issue 18): run the demo before and after with the same seed,
then

    python experiments/compare_runs.py runs/demo_before runs/demo_after [--rel 1e-9] [--out diff.json]

Lists every value that moved (notebook, dotted key, before, after, relative change), keys only one run has,
and exits 1 when anything moved. Timing values (keys with seconds / img_per_s / duration / time / _s) and
paths are not numbers of the method and are skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

SKIP = ("seconds", "img_per_s", "frames_per_s", "duration", "time", "_s", "run", "root", "path", "dataset_root")


def leaves(obj, prefix: str = ""):
    """(dotted key, value) of every scalar in a JSON object."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def skipped(key: str) -> bool:
    last = key.split(".")[-1].split("[")[0]
    return any(last == s or last.endswith(s) for s in SKIP)


def same(a, b, rel: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


def compare(before: Path, after: Path, rel: float) -> dict:
    out: dict = {"moved": [], "only_before": [], "only_after": [], "compared": 0}
    names = sorted(
        {p.name for p in (before / "notebooks").glob("*.metrics.json")}
        | {p.name for p in (after / "notebooks").glob("*.metrics.json")}
    )
    for name in names:
        a_path, b_path = before / "notebooks" / name, after / "notebooks" / name
        a = dict(leaves(json.loads(a_path.read_text()))) if a_path.is_file() else {}
        b = dict(leaves(json.loads(b_path.read_text()))) if b_path.is_file() else {}
        notebook = name.removesuffix(".metrics.json")
        for key in sorted(set(a) | set(b)):
            if skipped(key):
                continue
            if key not in b:
                out["only_before"].append(f"{notebook}:{key}")
            elif key not in a:
                out["only_after"].append(f"{notebook}:{key}")
            else:
                out["compared"] += 1
                if not same(a[key], b[key], rel):
                    change = None
                    if isinstance(a[key], (int, float)) and isinstance(b[key], (int, float)) and a[key]:
                        change = (b[key] - a[key]) / abs(a[key])
                    out["moved"].append(
                        {"notebook": notebook, "key": key, "before": a[key], "after": b[key], "rel_change": change}
                    )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--rel", type=float, default=1e-9, help="relative tolerance (default 1e-9: equal)")
    ap.add_argument("--out", type=Path, default=None, help="write the comparison as JSON")
    args = ap.parse_args(argv)
    result = compare(args.before, args.after, args.rel)
    print(f"{result['compared']} numbers compared; {len(result['moved'])} moved")
    for m in result["moved"]:
        change = "" if m["rel_change"] is None else f" ({100 * m['rel_change']:+.2f} %)"
        print(f"  {m['notebook']}: {m['key']}: {m['before']} -> {m['after']}{change}")
    for side in ("only_before", "only_after"):
        if result[side]:
            print(f"{side}: {', '.join(result[side][:20])}{' ...' if len(result[side]) > 20 else ''}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 1 if result["moved"] or result["only_before"] or result["only_after"] else 0


if __name__ == "__main__":
    sys.exit(main())
