"""How much longer does the course recipe take on a CPU without AVX-512 and bfloat16? Measured, in one run.

    python benchmarks/course_epoch_isa.py --data-dir DATA [--epochs 3] [--rounds 2] [--json OUT]

Why this exists: the notebooks' CPU times were measured on CPUs with native
bfloat16 (AVX512-BF16 or AMX), where ``fit`` trains in bfloat16 and
channels-last. On a CPU without them both stay off (``retina_lib/system/hardware.py``)
and training runs in float32. A learner on such a CPU should know what to expect.

The script runs the real command, ``python -m retina_lib train --preset course
--epochs N`` on CHASE_DB1, in turns: as this CPU is, then with oneDNN and
ATen capped at AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2``), which
makes the library's policy and PyTorch's kernels behave as on a CPU without
AVX-512, ``--rounds`` times each. It reads each run's per-epoch times from its
``history.json`` and reports, per setting, the median over every run's epochs
after the first (the first includes warm-up), and the ratio. Taking turns makes
a busy spell of the machine slow both settings alike. The emulation keeps this CPU's cores, caches and clock, so it measures
the instruction sets' share only; an older CPU is slower still.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))
from retina_lib.system.files import write_atomically  # noqa: E402

CAPPED_AT_AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def train_epochs(data_dir: Path, epochs: int, extra_environment: dict[str, str]) -> dict:
    """Run the course recipe for ``epochs`` epochs; return its epoch times and what the run chose."""
    with tempfile.TemporaryDirectory(prefix="retina_isa_") as scratch:
        command = [sys.executable, "-m", "retina_lib", "train", "--preset", "course", "--dataset", "chase_db1",
                   "--data-dir", str(data_dir), "--device", "cpu", "--epochs", str(epochs),
                   "--out", str(Path(scratch) / "run")]
        environment = {**os.environ, **extra_environment}
        started = time.perf_counter()
        finished = subprocess.run(command, cwd=REPOSITORY, env=environment, capture_output=True, text=True)
        if finished.returncode != 0:
            raise SystemExit(f"training failed ({extra_environment or 'native'}):\n{finished.stderr[-2000:]}")
        history = json.loads((Path(scratch) / "run" / "history.json").read_text())
    return {"path": training_path(environment), "epoch_seconds": [round(s, 2) for s in history["epoch_seconds"]],
            "wall_seconds": round(time.perf_counter() - started, 1), "load_average_after": round(os.getloadavg()[0], 2)}


def summary(runs: list[dict], extra_environment: dict[str, str]) -> dict:
    """Every run of one setting, and the median epoch over all of them, each run's first epoch left out."""
    after_first = [seconds for run in runs for seconds in run["epoch_seconds"][1:]]
    return {"environment": extra_environment, "runs": runs,
            "median_epoch_seconds_after_first": round(statistics.median(after_first), 2)}


def training_path(environment: dict[str, str]) -> dict:
    """What ``fit`` chooses on the CPU under ``environment``: its mixed precision and memory format."""
    question = ("from retina_lib.system.hardware import default_amp, default_channels_last; "
                "print(default_amp('cpu'), default_channels_last('cpu'))")
    answer = subprocess.run([sys.executable, "-c", question], cwd=REPOSITORY, env=environment,
                            capture_output=True, text=True, check=True).stdout.split()
    return {"amp": answer[0], "channels_last": answer[1] == "True"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the data root holding CHASEDB1/")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (at least 2; the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each setting, taking turns")
    parser.add_argument("--json", type=Path, help="write the results here")
    arguments = parser.parse_args()
    if arguments.epochs < 2:
        parser.error(f"--epochs must be at least 2 (the first epoch is warm-up), got {arguments.epochs}")
    native_runs, capped_runs = [], []
    for _ in range(arguments.rounds):  # taking turns, so that a slow spell of the machine slows both sides
        native_runs.append(train_epochs(arguments.data_dir, arguments.epochs, {}))
        capped_runs.append(train_epochs(arguments.data_dir, arguments.epochs, CAPPED_AT_AVX2))
    native, capped = summary(native_runs, {}), summary(capped_runs, CAPPED_AT_AVX2)
    ratio = capped["median_epoch_seconds_after_first"] / native["median_epoch_seconds_after_first"]
    results = {"command": "python benchmarks/course_epoch_isa.py " + " ".join(sys.argv[1:]),
               "cpu": next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                            if line.startswith("model name")), "unknown"),
               "cores": os.cpu_count(), "native": native, "capped_at_avx2": capped,
               "capped_over_native": round(ratio, 2),
               "course_minutes_native": round(native["median_epoch_seconds_after_first"] * 40 / 60, 1),
               "course_minutes_capped": round(capped["median_epoch_seconds_after_first"] * 40 / 60, 1)}
    print(f"median epoch: {native['median_epoch_seconds_after_first']} s as this CPU is, "
          f"{capped['median_epoch_seconds_after_first']} s capped at AVX2: {ratio:.2f}x")
    if arguments.json:
        write_atomically(arguments.json, lambda temporary: temporary.write_text(json.dumps(results, indent=2) + "\n"))


if __name__ == "__main__":
    main()
