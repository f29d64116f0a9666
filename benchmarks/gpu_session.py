"""One prepared GPU session (about 8 minutes): the original recipe, the best throughput, the best preset.

    python benchmarks/gpu_session.py --out OUT [--data-dir ROOT] [--preset NAME] [--total-s 470]
    python benchmarks/gpu_session.py --out /tmp/gpu_tiny --tiny     # a check on the CPU in a few minutes

Runs, in this order, each as its own process with a time cap (a step that
runs over is stopped, with everything it started, and the next one begins):

a. **the original recipe end to end** (:mod:`original_recipe_gpu`): 100
   epochs of 80 synthetic 512 x 512 pictures at batch 4, validation after
   every epoch, data resident on the GPU; the wall time of ``fit``
   (target: under 60 s on one H100/H200);
b. **the best training throughput** (:mod:`gpu_throughput`): bfloat16 +
   channels-last at growing batch sizes, then ``torch.compile`` and CUDA
   graphs where they pay, with the fraction of the GPU's peak;
c. **a named preset end to end** (``--preset NAME``, for example the best
   recipe of part 1 of issue 13): ``python -m retina_lib train`` on CHASE_DB1
   from ``--data-dir``, then ``evaluate`` on the test split. Skipped, with a
   message, without ``--preset`` or ``--data-dir``.

Everything lands in two files under ``--out`` (the device tool brings back
at most eight): ``session.log``, every step's full output in order, and
``session.json``, each step's command, exit status, wall time and the JSON
it wrote. Both are rewritten after every step, so a session cut short keeps
what it measured. ``--tiny`` runs the same steps on tiny sizes (64 x 64
pictures, one epoch, synthetic data for the preset): it checks the script,
its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent
sys.path.insert(0, str(REPOSITORY))
from retina_lib.system.files import write_atomically  # noqa: E402

#: Default time caps of the steps, seconds (the preset's test evaluation gets 60 s more).
CAPS = {"original_recipe": 120, "throughput": 210, "preset": 140}
PRESET_TEST_SECONDS = 60
#: The whole session's default time: 8 minutes; a step never gets more than what is left.
TOTAL_SECONDS = 480


class Session:
    """The log and the JSON of the session, and the time left."""

    def __init__(self, out: Path, total_s: float) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.log_path = out / "session.log"
        self.json_path = out / "session.json"
        self.log_path.write_text("")
        self.started = time.perf_counter()
        self.total_s = total_s
        self.report: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                                       "started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": []}

    def log(self, text: str) -> None:
        line = f"== {time.strftime('%H:%M:%S')} {text}"
        print(line, flush=True)
        with self.log_path.open("a") as log:
            log.write(line + "\n")

    def seconds_left(self) -> float:
        return self.total_s - (time.perf_counter() - self.started)

    def save(self) -> None:
        self.report["elapsed_s"] = time.perf_counter() - self.started
        text = json.dumps(self.report, indent=2)
        write_atomically(self.json_path, lambda path: path.write_text(text))

    def run_step(self, name: str, command: list[str], cap_s: float,
                 json_path: Optional[Path] = None) -> dict[str, Any]:
        """Run ``command`` for at most ``cap_s`` seconds (less if the session's time runs short), logging it all."""
        cap = max(1.0, min(cap_s, self.seconds_left()))
        self.log(f"step {name} (cap {cap:.0f} s): {' '.join(command)}")
        environment = {**os.environ, "PYTHONUNBUFFERED": "1",
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))}
        started = time.perf_counter()
        with self.log_path.open("a") as log:
            # A new process group, so that on time-out the compiler's worker processes stop too.
            process = subprocess.Popen(command, cwd=REPOSITORY, env=environment, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                status: Optional[int] = process.wait(timeout=cap)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                stop_group(process)
                status = process.returncode
        step: dict[str, Any] = {"name": name, "command": command, "cap_s": cap, "exit_status": status,
                                "timed_out": timed_out, "wall_s": time.perf_counter() - started}
        if json_path is not None and json_path.exists():
            step["result"] = json.loads(json_path.read_text())
        self.log(f"step {name}: exit status {status}{' (stopped at its time cap)' if timed_out else ''}, "
                 f"{step['wall_s']:.1f} s")
        self.report["steps"].append(step)
        self.save()
        return step


def stop_group(process: subprocess.Popen) -> None:
    """Stop ``process`` and every process it started: SIGTERM, then SIGKILL after 10 s."""
    for stop_signal, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, stop_signal)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def describe_gpu(session: Session) -> None:
    """nvidia-smi's name, memory, driver and clocks of the GPU, into the report."""
    if shutil.which("nvidia-smi") is None:
        session.report["gpu"] = "nvidia-smi not found"
        return
    query = "name,memory.total,driver_version,clocks.max.sm,power.limit"
    answer = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                            capture_output=True, text=True, timeout=30)
    session.report["gpu"] = answer.stdout.strip() or answer.stderr.strip()
    session.log(f"GPU: {session.report['gpu']}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for session.log and session.json")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_session"),
                        help="folder for the steps' own files (weights, JSON); default: %(default)s")
    parser.add_argument("--data-dir", type=Path, metavar="ROOT", help="data root holding CHASEDB1/ (for the preset)")
    parser.add_argument("--preset", metavar="NAME", help="the preset to train and test in step c")
    parser.add_argument("--preset-tta", action="store_true", help="evaluate the preset with flip TTA")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--total-s", type=float, default=TOTAL_SECONDS,
                        help="the whole session's time, seconds (default: %(default)s)")
    for step, cap in CAPS.items():
        parser.add_argument(f"--{step.replace('_', '-')}-s", type=float, default=cap, dest=f"{step}_s",
                            help=f"time cap of that step (default: %(default)s)")
    parser.add_argument("--tiny", action="store_true", help="every step on tiny sizes, to check the script")
    args = parser.parse_args(argv)

    session = Session(args.out, args.total_s)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    session.report.update(device=args.device, tiny=args.tiny, preset=args.preset,
                          data_dir=str(args.data_dir) if args.data_dir else None)
    describe_gpu(session)
    session.save()

    # a. The original recipe end to end.
    recipe_json = work / "original_recipe.json"
    recipe_json.unlink(missing_ok=True)
    command = [python, str(HERE / "original_recipe_gpu.py"), "--device", args.device, "--json", str(recipe_json)]
    if args.tiny:
        command += ["--epochs", "1", "--size", "64", "--images", "8"]
    session.run_step("original_recipe", command, args.original_recipe_s, recipe_json)

    # b. The best training throughput.
    throughput_json = work / "throughput.json"
    throughput_json.unlink(missing_ok=True)
    cap = min(args.throughput_s, session.seconds_left())
    command = [python, str(HERE / "gpu_throughput.py"), "--device", args.device, "--json", str(throughput_json),
               "--budget-s", f"{max(10.0, cap - 30):.0f}"]  # 30 s for starting up and the last measurement
    if args.tiny:
        command += ["--tiny"]
    session.run_step("throughput", command, cap, throughput_json)

    # c. A named preset end to end: train, then the test split.
    preset = args.preset or ("course" if args.tiny else None)
    if preset is None or (args.data_dir is None and not args.tiny):
        why = "no --preset given" if preset is None else "no --data-dir given"
        session.log(f"step preset skipped: {why}")
        session.report["steps"].append({"name": "preset", "skipped": why})
    else:
        run_dir = work / f"preset_{preset}"
        shutil.rmtree(run_dir, ignore_errors=True)
        if args.tiny:
            data = ["--dataset", "synthetic", "--synthetic-n", "6", "--synthetic-size", "96"]
            shrink = ["--epochs", "1", "--samples-per-epoch", "2", "--mode", "crop", "--size", "64", "--val-count", "1"]
        else:
            data = ["--dataset", "chase_db1", "--data-dir", str(args.data_dir)]
            shrink = []
        train_command = [python, "-m", "retina_lib", "train", "--preset", preset, *data, *shrink,
                         "--device", args.device, "--out", str(run_dir)]
        step = session.run_step("preset_train", train_command, args.preset_s)
        history = run_dir / "history.json"
        if history.exists():
            step["history"] = json.loads(history.read_text())
            session.save()
        test_json = work / f"preset_{preset}_test.json"
        test_json.unlink(missing_ok=True)
        weights = run_dir / "linknet.pth"
        if step["exit_status"] == 0 and weights.exists():
            evaluate_command = [python, "-m", "retina_lib", "evaluate", *data, "--weights", str(weights),
                                "--split", "test", "--device", args.device, "--json", str(test_json)]
            if args.preset_tta:
                evaluate_command.append("--tta")
            session.run_step("preset_test", evaluate_command, PRESET_TEST_SECONDS, test_json)
        else:
            session.log("step preset_test skipped: training did not finish")

    summarise(session)
    session.save()
    return 0


def summarise(session: Session) -> None:
    """The session's headline figures, from the steps' JSON, into the log and the report."""
    steps = {step["name"]: step for step in session.report["steps"]}
    summary: dict[str, Any] = {}
    recipe = steps.get("original_recipe", {}).get("result")
    if recipe:
        summary["original_recipe_fit_s"] = recipe["fit_seconds"]
        summary["original_recipe_train_img_s"] = recipe["train_img_s"]
    best = (steps.get("throughput", {}).get("result") or {}).get("best")
    if best:
        summary.update(best_img_s=best["img_s"], best_batch=best["batch_size"], best_compile=best["compile"],
                       best_tflop_s=best["tflop_s"], best_fraction_of_peak=best["fraction_of_datasheet_peak"])
    if "preset_train" in steps:
        summary["preset_train_wall_s"] = steps["preset_train"]["wall_s"]
    test = steps.get("preset_test", {}).get("result")
    if test:
        summary["preset_test"] = {key: test.get(key) for key in ("f1", "auc_roc", "auc_pr", "threshold", "n_images")}
    session.report["summary"] = summary
    session.log("summary: " + json.dumps(summary, default=str)[:2000])


if __name__ == "__main__":
    sys.exit(main())
