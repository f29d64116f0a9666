"""retina_lib: the small library behind the retina-linknet course.

The notebooks import everything from here, so that each idea lives in exactly
one readable place::

    from retina_lib import LinkNet, DiceLoss, IoU
    net = LinkNet()
    score, loss = DiceLoss()(net(images), labels)

Modules: ``model`` (LinkNet), ``losses``, ``metrics``, ``data`` (datasets,
downloads, synthetic fundus images, augmentation), ``engine`` (Train,
Evaluate), ``training`` (fit and TrainConfig), ``run_folder``,
``checkpoints`` and ``weights`` (a run's files, resuming, safe loading),
``batches`` and ``distributed`` (what fit iterates over, several processes),
``recipes``, ``inference`` (predict), ``evaluation`` (evaluate),
``baselines`` (Frangi), ``error_analysis`` (misses by vessel width, where
false alarms gather), ``model_stats`` (shapes, parameters, FLOPs, receptive
fields), ``plotter``, ``widgets``, ``measured`` (the course's measured
results), ``exercises`` (answer checks), ``course`` (the notebooks' setup)
and ``cli`` (``python -m retina_lib``).
"""
from .device import pick_device, seed_everything
from .engine import Evaluate, Train
from .evaluation import evaluate
from .inference import predict
from .losses import BCEDiceLoss, ClDiceLoss, DiceLoss, IoU
from .model import LinkNet, count_parameters, probabilities
from .training import TrainConfig, fit, load_weights

__version__ = "0.1.0"

__all__ = [
    "BCEDiceLoss", "ClDiceLoss", "DiceLoss", "Evaluate", "IoU", "LinkNet", "Train", "TrainConfig",
    "count_parameters", "evaluate", "fit", "load_weights", "pick_device", "predict",
    "probabilities", "seed_everything",
]
