"""How fast does the synthetic fundus generator draw a picture? Measured, never asserted.

    python benchmarks/synthetic_speed.py [--repeats 5] [--json OUT]

The notebooks' smoke mode and many tests draw synthetic fundus pictures with
:func:`retina_lib.data.synthetic.make_fundus`, so its speed decides how long
they take. A test used to assert "under 150 ms per 512 x 512 picture" and
failed whenever the machine was busy; the speed belongs here instead, where a
number is reported with the machine's load next to it.

Each size is drawn ``--repeats`` times per round after one warm-up picture,
and the sizes take turns round by round, so that other programs competing
for the CPU slow all of them alike; the figures are the medians over rounds,
and the ratio between two sizes compares like with like.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# Run from a checkout without installing: make the package next to this folder importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load_average  # noqa: E402  (benchmarks/bench.py, next to this file)
from retina_lib.data.synthetic import make_fundus  # noqa: E402
from retina_lib.system.files import write_atomically  # noqa: E402

SIZES = (256, 512)
ROUNDS = 3


def seconds_per_picture(size: int, first_seed: int, repeats: int) -> float:
    """Mean wall time of drawing ``repeats`` pictures of ``size`` x ``size`` (different seeds)."""
    start = time.perf_counter()
    for seed in range(first_seed, first_seed + repeats):
        make_fundus(size, seed)
    return (time.perf_counter() - start) / repeats


def measure(repeats: int) -> dict:
    """Median milliseconds per picture for each size, and how much a 512 picture costs next to a 256 one."""
    for size in SIZES:
        make_fundus(size, seed=0)  # warm-up: imports, caches
    rounds: dict[int, list[float]] = {size: [] for size in SIZES}
    load_before = load_average()
    for round_number in range(ROUNDS):
        for size in SIZES:
            rounds[size].append(seconds_per_picture(size, first_seed=100 * (round_number + 1), repeats=repeats))
    milliseconds = {size: 1000 * statistics.median(times) for size, times in rounds.items()}
    return {
        "milliseconds_per_picture": {str(size): round(value, 1) for size, value in milliseconds.items()},
        "pictures_per_second": {str(size): round(1000 / value, 2) for size, value in milliseconds.items()},
        "ratio_512_to_256": round(milliseconds[512] / milliseconds[256], 2),
        "rounds": ROUNDS,
        "pictures_per_round": repeats,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="pictures of each size per round (default 5)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    arguments = parser.parse_args(argv)
    figures = measure(arguments.repeats)
    for size in SIZES:
        print(f"{size} x {size}: {figures['milliseconds_per_picture'][str(size)]} ms per picture "
              f"({figures['pictures_per_second'][str(size)]} per second)")
    print(f"a 512 x 512 picture costs {figures['ratio_512_to_256']}x a 256 x 256 one (4x the pixels)")
    print(f"load average before/after: {figures['load_average_before']} / {figures['load_average_after']}")
    if arguments.json:
        write_atomically(arguments.json, lambda path: path.write_text(json.dumps(figures, indent=2) + "\n"))


if __name__ == "__main__":
    main()
