"""A tiny training run, started as a separate process by test_run_folder.py, that waits inside an epoch.

``python tests/gated_run.py OUT_DIR GATE_EPOCH`` trains the tiny network of
test_training.py for 3 epochs into OUT_DIR. At the first item of epoch
GATE_EPOCH it creates ``OUT_DIR.waiting`` and waits until ``OUT_DIR.go``
exists: the test knows for sure that the process is in the middle of that
epoch (with the run folder locked and the checkpoint of the epoch before on
disk), and can kill it there, or start a second run into the same folder,
without guessing how fast the machine is.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from test_training import FAST, NoisyEpochs, blob_images, tiny, tiny_net

from retina_lib.training.trainer import fit

EPOCHS = 3


class GatedEpochs(NoisyEpochs):
    """NoisyEpochs that waits at the first item of one epoch until the ``go`` file appears."""

    def __init__(self, gate_epoch: int, waiting: Path, go: Path) -> None:
        super().__init__(blob_images(4))
        self.gate_epoch, self.waiting, self.go = gate_epoch, waiting, go

    def __getitem__(self, index: int):
        if self.epoch == self.gate_epoch and not self.go.exists():
            self.waiting.touch()
            while not self.go.exists():
                time.sleep(0.01)
        return super().__getitem__(index)


def run(out_dir: Path, gate_epoch: int) -> dict:
    """The gated run (gate_epoch 0: no gate); the same computation as :func:`reference_run`."""
    data = GatedEpochs(gate_epoch, out_dir.with_name(out_dir.name + ".waiting"),
                       out_dir.with_name(out_dir.name + ".go"))
    return fit(tiny_net(), data, blob_images(2, seed=1), config=tiny(EPOCHS), out_dir=out_dir, **FAST)


def resume(out_dir: Path) -> dict:
    """Continue the run in ``out_dir`` with the same data, without a gate."""
    return fit(tiny_net(seed=99), NoisyEpochs(blob_images(4)), blob_images(2, seed=1), config=tiny(EPOCHS),
               out_dir=out_dir, resume=True, **FAST)


def reference_run(out_dir: Path) -> dict:
    """The same run, uninterrupted."""
    return fit(tiny_net(), NoisyEpochs(blob_images(4)), blob_images(2, seed=1), config=tiny(EPOCHS), out_dir=out_dir,
               **FAST)


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]))
