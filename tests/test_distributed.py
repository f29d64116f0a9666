"""Training with several processes (torch.distributed) on the CPU: two processes, the gloo backend.

Each process trains on its own half of every epoch, so the two end with the
same weights only if their gradients were averaged (DistributedDataParallel).
"""
from __future__ import annotations

import json
from dataclasses import replace
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from retina_lib.data import SegmentationDataset, synthetic_dataset
from retina_lib.training.run_folder import BEST_WEIGHTS_FILE, CHECKPOINT_FILE, HISTORY_FILE
from retina_lib.recipes import recipe
from retina_lib.training.trainer import fit
from retina_lib.training.weights import load_weights

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORLD_SIZE = 2

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="this PyTorch build has no torch.distributed with gloo")


def tiny_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))


def train_as_one_of_two(rank: int, rendezvous_file: str, out_dir: str, results_dir: str) -> None:
    """What each process runs: join the group, fit, save its final weights for the test to compare."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        samples = list(synthetic_dataset("train", n=4, size=48))
        train_set = SegmentationDataset(samples[:3], mode="resize", size=32, samples_per_epoch=8)
        val_set = SegmentationDataset(samples[3:], mode="resize", size=32, augment=False)
        # Different initial weights on purpose: DistributedDataParallel must start both from rank 0's.
        model = tiny_net(seed=rank)
        config = replace(recipe("original"), epochs=2, batch_size=2, lr=1e-2, mode="resize", size=32,
                         samples_per_epoch=8)
        history = fit(model, train_set, val_set, config, device="cpu", amp="off", progress=False, out_dir=out_dir if rank == 0 else Path(out_dir).with_name("rank1_run"))
        torch.save(model.state_dict(), Path(results_dir) / f"rank{rank}.pt")
        (Path(results_dir) / f"history{rank}.json").write_text(json.dumps(history))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_average_gradients_and_only_rank_0_writes(tmp_path: Path) -> None:
    out_dir, results = tmp_path / "run", tmp_path / "results"
    results.mkdir()
    mp.spawn(train_as_one_of_two, args=(str(tmp_path / "rendezvous"), str(out_dir), str(results)),
             nprocs=WORLD_SIZE, join=True)

    weights = [torch.load(results / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), f"{name} differs between the processes"
    assert not torch.equal(weights[0]["0.weight"], tiny_net(seed=0)[0].weight), "training changed nothing"
    histories = [json.loads((results / f"history{rank}.json").read_text()) for rank in range(WORLD_SIZE)]
    assert histories[0]["train_loss"] == histories[1]["train_loss"]  # averaged over both processes

    assert (out_dir / CHECKPOINT_FILE).is_file() and (out_dir / HISTORY_FILE).is_file()
    assert not (tmp_path / "rank1_run").exists() or not any((tmp_path / "rank1_run").iterdir())
    loaded = load_weights(out_dir / BEST_WEIGHTS_FILE, model=tiny_net(seed=5))
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, weights[0][name])


@pytest.mark.slow
def test_torchrun_launch_of_the_command_line(tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD_SIZE), "--standalone",
        "-m", "retina_lib", "train", "--dataset", "synthetic", "--synthetic-n", "6", "--synthetic-size", "64",
        "--preset", "original", "--mode", "resize", "--size", "64", "--epochs", "1", "--batch-size", "2", "--val-count", "2", "--device", "cpu",
        "--amp", "off", "--out", str(out_dir),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    finished = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True,
                              timeout=900)  # only a guard against a hang, not a speed limit
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("weights:") == 1, finished.stdout  # only rank 0 reports
    assert (out_dir / CHECKPOINT_FILE).is_file()
    assert len(json.loads((out_dir / HISTORY_FILE).read_text())["train_loss"]) == 1
    load_weights(out_dir / BEST_WEIGHTS_FILE)  # a complete LinkNet state dict
