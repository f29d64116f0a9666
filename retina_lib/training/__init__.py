"""The machinery that runs and records training; the notebooks teach the loop, this keeps it safe.

* :mod:`~retina_lib.training.trainer` - :func:`fit`: epochs, validation, the best weights;
  :class:`TrainConfig`, one recipe's settings
* :mod:`~retina_lib.training.batch_sources` - what ``fit`` iterates over
* :mod:`~retina_lib.training.resident_batches` - batches cut from images kept in memory (GPU or CPU)
* :mod:`~retina_lib.training.run_folder` - one run per folder, files written whole
* :mod:`~retina_lib.training.checkpoints` - what ``checkpoint.pth`` holds, and resuming
* :mod:`~retina_lib.training.weights` - saving and safely loading a network's weights
* :mod:`~retina_lib.training.distributed` - several processes under ``torchrun``

The epoch loop itself (:class:`~retina_lib.epoch_loop.Train`,
:class:`~retina_lib.epoch_loop.Evaluate`) lives at the top of the package,
because notebook 03 teaches it.
"""
