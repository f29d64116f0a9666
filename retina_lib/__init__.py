"""retina_lib: the small library behind the retina-linknet course.

The notebooks import everything from here, so that each idea lives in exactly
one readable place::

    from retina_lib import LinkNet, DiceLoss, IoU
    net = LinkNet()
    score, loss = DiceLoss()(net(images), labels)
"""
from .device import pick_device, seed_everything
from .losses import BCEDiceLoss, DiceLoss, IoU
from .model import LinkNet, count_parameters, probabilities

__version__ = "0.1.0"
from .engine import Evaluate, Train
from .training import TrainConfig, fit, load_weights
from .inference import predict
from .evaluation import evaluate
