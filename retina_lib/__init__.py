"""retina_lib: the small library behind the retina-linknet course.

The names the notebooks use most can be imported from here::

    from retina_lib import LinkNet, DiceLoss, IoU
    net = LinkNet()
    score, loss = DiceLoss()(net(images), labels)

Every other name is imported from the module that defines it, which tells
where to read it. The top level holds what the notebooks teach: ``model``
(LinkNet), ``unet``, ``losses``, ``metrics``, ``epoch_loop`` (Train,
Evaluate), ``recipes``, ``pretrained`` (the trained network that
ships with the course, and its model card), ``baselines`` (Frangi), ``error_analysis``,
``model_stats``, ``plotter``, ``widgets``, ``exercises``, ``course`` (the
notebooks' setup cell) and ``cli`` (``python -m retina_lib``). The machinery
sits in folders below it: ``data/`` (datasets, downloads, readers,
augmentation, synthetic images), ``training/`` (fit, run folders,
checkpoints, weights), ``scoring/`` (predict, test-split scores),
``system/`` (device, precision, seeds) and ``course_results/`` (the measured
results as JSON).
"""
from retina_lib.system.hardware import pick_device, seed_everything
from retina_lib.epoch_loop import Evaluate, Train
from retina_lib.scoring.evaluation import score_network
from retina_lib.scoring.inference import predict
from retina_lib.losses import BCEDiceLoss, ClDiceLoss, DiceLoss, IoU
from retina_lib.model import LinkNet, count_parameters, probabilities
from retina_lib.training.config import TrainConfig
from retina_lib.training.trainer import fit
from retina_lib.training.weights import load_weights

__version__ = "0.1.0"

__all__ = [
    "BCEDiceLoss", "ClDiceLoss", "DiceLoss", "Evaluate", "IoU", "LinkNet", "Train", "TrainConfig",
    "count_parameters", "fit", "load_weights", "pick_device", "predict",
    "probabilities", "score_network", "seed_everything",
]
