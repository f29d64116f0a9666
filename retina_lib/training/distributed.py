"""Training with several processes (``torchrun``): joining them, and what they share.

``torchrun --nproc_per_node N -m retina_lib train ...`` starts N copies of the
program, one per GPU (or CPU process). :func:`start_distributed` makes each
copy join the others; :func:`~retina_lib.training.trainer.fit` then trains each on its
own share of every epoch, DistributedDataParallel averages their gradients so
that all keep the same weights, and only the first process (rank 0) writes
files and shows progress.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from retina_lib.system.hardware import pick_device
from retina_lib.epoch_loop import EpochResult


def process_rank_and_count() -> tuple[int, int]:
    """(rank, world size): this process's number and how many train together; (0, 1) for a plain run."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def start_distributed(device: str = "auto") -> str:
    """Join the process group if ``torchrun`` launched this process; return the device this process uses.

    torchrun starts N copies of the program and tells each, in environment
    variables, how many there are (WORLD_SIZE), which one it is (RANK,
    LOCAL_RANK on this machine) and where to meet (MASTER_ADDR, MASTER_PORT).
    GPUs talk with the NCCL backend, each process on the GPU of its
    LOCAL_RANK; CPU processes talk with gloo. Without torchrun (or with a
    single process) nothing happens and ``device`` is returned unchanged.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    if pick_device(device).type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return f"cuda:{local_rank}"
    dist.init_process_group("gloo")
    return device


def stop_distributed() -> None:
    """Leave the process group (if any), so the program exits cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(result: EpochResult, device: torch.device) -> EpochResult:
    """The epoch's means over all processes (each trained on an equal share of the images)."""
    values = torch.tensor([result.loss, result.dice_loss, result.iou_loss, result.dice], device=device)
    dist.all_reduce(values)
    return EpochResult(*(values / dist.get_world_size()).tolist())


def share_buffers(model: nn.Module) -> None:
    """Copy rank 0's batch-norm statistics to every process, so all validate exactly the same model.

    Gradients are averaged, so the weights agree; but each process updates
    its running means and variances on its own images.
    """
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
