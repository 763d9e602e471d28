"""Benchmark: generate the default concept world and report wall time and throughput.

Usage (from the repository root)::

    .venv/bin/python benchmarks/world.py [--workers 2] [--keep DIR]

Budget (issue 2/4): the default world (24 classes x 250 images at 32 px with their saliency maps
+ 1500 probe images at 64 px) generates in under 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from kdinterp.world import WorldParams, generate_world

BUDGET_S = 60.0


def main() -> None:
    """Generate the default world into a temporary (or kept) directory and print the timing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
    parser.add_argument("--keep", type=Path, help="generate into this (new) directory and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "concept_world"
        start = time.perf_counter()
        world = generate_world(WorldParams(), out, workers=args.workers, progress=False)
        seconds = time.perf_counter() - start
    counts = world["counts"]
    images = counts["train"] + counts["val"] + counts["probe"]
    top = max(world["coverage"], key=world["coverage"].get)
    print(f"concept world (default params, workers={args.workers}): {images} images "
          f"(+ {counts['train'] + counts['val']} saliency maps) in {seconds:.1f} s "
          f"= {images / seconds:.0f} images/s (budget {BUDGET_S:.0f} s: {'ok' if seconds < BUDGET_S else 'OVER'})")
    print(f"largest concept: {top} covers {world['coverage'][top]:.2%} of probe pixels")


if __name__ == "__main__":
    main()
