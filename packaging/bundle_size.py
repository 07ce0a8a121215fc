"""What a built bundle's size is made of: the largest packages and libraries in it.

python packaging/bundle_size.py dist/visualfinder [--top 15]"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

# Grouped one level deeper: these hold several large, separately interesting parts.
DEEPER = {"nvidia", "torch", "PySide6", "_internal"}


def group_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    depth = 1
    while depth < len(parts) - 1 and parts[depth - 1] in DEEPER:
        depth += 1
    return "/".join(parts[:depth]) if len(parts) > 1 else parts[0]


def sizes(root: Path) -> tuple[int, Counter]:
    groups: Counter = Counter()
    total = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            total += size
            groups[group_of(path, root)] += size
    return total, groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    total, groups = sizes(args.bundle)
    print(f"{args.bundle}: {total / 1e9:.2f} GB in all")
    for name, size in groups.most_common(args.top):
        print(f"  {size / 1e6:9,.0f} MB  {size / total:5.1%}  {name}")


if __name__ == "__main__":
    main()
