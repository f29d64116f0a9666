"""Loading weights files safely: ``linknet.pth``, ``checkpoint.pth``, or a file from elsewhere.

A ``.pth`` file is a Python pickle, and unpickling can run any code the file's
author put in it. Every file here is therefore read with
``torch.load(..., weights_only=True)``, which only rebuilds tensors, numbers,
strings and plain containers, and refuses anything else *before* running it.

A file that loads can still be wrong for the model: weights of another
architecture, or weights that became NaN when a training run diverged (such a
network predicts "no vessel" everywhere, a silent wrong answer).
:func:`load_weights` refuses both, with a :class:`WeightsError` that says why.
"""
from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from retina_lib.errors import UserInputError
from retina_lib.model import LinkNet


class WeightsError(UserInputError):
    """A weights file cannot be loaded into the model; the message says why."""


def _first_line(error: BaseException) -> str:
    message = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # torch colours some messages
    return message.splitlines()[0] if message else type(error).__name__


def safe_torch_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` onto the CPU; unreadable or unsafe files raise WeightsError."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"weights file {path} is a folder; give the .pth file inside it "
                                f"(linknet.pth or checkpoint.pth)")
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeDecodeError) as error:
        unsafe = re.search(r"GLOBAL (\S+)", str(error))
        if unsafe:
            raise WeightsError(
                f"{path}: refused: it holds Python objects ({unsafe.group(1)}) besides tensors, numbers and "
                f"containers. Loading such objects can run code hidden in the file, so this library never does; "
                f"weights saved with torch.save(model.state_dict(), path) load fine"
            ) from error
        # torch's own message would suggest weights_only=False, which is how hidden code runs: never relay it.
        reason = "unreadable as a saved state dict" if "weights_only" in str(error) else _first_line(error)
        raise WeightsError(f"{path}: not a PyTorch weights file that loads safely ({reason}); "
                           f"is it truncated, damaged or another kind of file?") from error


def is_full_checkpoint(stored: Any) -> bool:
    """Whether a loaded file is a training checkpoint (``checkpoint.pth``) rather than plain weights."""
    return isinstance(stored, dict) and "best_model" in stored and "optimizer" in stored


#: The layout of ``checkpoint.pth`` that this library writes and reads, stored in it as
#: ``format_version``. Raise it whenever an entry is added, removed or changes meaning,
#: so that an older library refuses the new files instead of misreading them.
CHECKPOINT_FORMAT_VERSION = 1


def checkpoint_version_problem(stored: Mapping[str, Any]) -> Optional[str]:
    """Why this library cannot read a checkpoint's format, or None when it can.

    Checkpoints written before versions existed have no ``format_version``;
    their layout is the one version 1 names, so they are read as version 1.
    A newer version (or anything but a whole number) is refused: reading a
    layout this library does not know could silently restore the wrong things.
    """
    version = stored.get("format_version", 1)
    if isinstance(version, int) and not isinstance(version, bool) and version == CHECKPOINT_FORMAT_VERSION:
        return None
    if isinstance(version, int) and not isinstance(version, bool) and version > CHECKPOINT_FORMAT_VERSION:
        return (f"it is checkpoint format version {version}, newer than the version {CHECKPOINT_FORMAT_VERSION} "
                f"this retina_lib reads; update retina_lib to load it")
    return (f"its format_version is {version!r}; this retina_lib reads checkpoint format version "
            f"{CHECKPOINT_FORMAT_VERSION} only")


def architecture_problems(model: nn.Module, state: Mapping[str, Any]) -> list[str]:
    """What stops ``state`` from loading into ``model``: missing/unexpected keys, shape mismatches."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} instead of {tuple(expected[key].shape)}"
        for key in expected
        if key in state and isinstance(state[key], torch.Tensor) and state[key].shape != expected[key].shape
    ]
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            shown = ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
            problems.append(f"{len(items)} {title} ({shown})")
    return problems


def integer_weights_problem(model: nn.Module, state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """What is wrong when ``state`` holds as integers or booleans tensors that ``model`` keeps as floating point.

    Weights cast with ``.long()`` or ``.bool()`` keep their names and shapes,
    so they load, but their values are gone (mostly 0, or 1 for True) and the
    network gives the same map for every photograph. Integer buffers the
    model itself keeps (BatchNorm's ``num_batches_tracked``) are fine.
    """
    expected = model.state_dict()
    wrong = [f"{key} ({str(state[key].dtype).removeprefix('torch.')})" for key in expected
             if key in state and expected[key].is_floating_point() and not state[key].is_floating_point()]
    if not wrong:
        return None
    shown = ", ".join(wrong[:3]) + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else "")
    return (f"{len(wrong)} weight tensor(s) are stored as integers or booleans instead of floating point "
            f"({shown}); such weights have lost their values and give the same map for every image")


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors in ``state`` that hold NaN or infinite values."""
    return [key for key, value in state.items()
            if value.is_floating_point() and not bool(torch.isfinite(value).all())]


def check_state_dict(path: Path, state: Any) -> Mapping[str, torch.Tensor]:
    """``state`` if it is a state dict of finite tensors, else a WeightsError naming ``path``."""
    if not isinstance(state, Mapping) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise WeightsError(f"{path}: expected a model state dict (names -> tensors), found {type(state).__name__}")
    broken = non_finite_tensors(state)
    if broken:
        shown = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
        raise WeightsError(f"{path}: {len(broken)} weight tensor(s) hold NaN or infinite values ({shown}); "
                           f"the training run that wrote them diverged, and such a network predicts nothing useful")
    return state


def load_weights(path: str | Path, model: Optional[nn.Module] = None) -> nn.Module:
    """Load ``linknet.pth`` or a full ``checkpoint.pth`` into ``model`` (a new LinkNet by default).

    A full checkpoint gives its best weights, the same as ``linknet.pth``.
    Without ``model``, a LinkNet with the stored number of input channels and
    classes is built. Loading uses ``weights_only=True``, so a file cannot run
    code. The model is returned on the CPU in eval mode, ready to predict.

    Raises FileNotFoundError for a missing file, IsADirectoryError for a
    folder, and :class:`WeightsError` for a file that is damaged, holds other
    Python objects, is not a state dict, holds NaN or infinite weights,
    belongs to another architecture (the message lists a few missing or
    unexpected keys and shape mismatches), holds weights cast to integers or
    booleans, or is a checkpoint of a format version this library does not read.

    Taught in notebook 03, section 5.
    """
    path = Path(path)
    stored = safe_torch_load(path)
    if is_full_checkpoint(stored):
        version_problem = checkpoint_version_problem(stored)
        if version_problem is not None:
            raise WeightsError(f"{path}: {version_problem}")
    state = check_state_dict(path, stored["best_model"] if is_full_checkpoint(stored) else stored)
    if model is None:
        model = _linknet_for(state)
    problems = architecture_problems(model, state)
    if problems:
        raise WeightsError(f"{path} holds weights for another architecture than {type(model).__name__}: "
                           + "; ".join(problems))
    integer_problem = integer_weights_problem(model, state)
    if integer_problem is not None:
        raise WeightsError(f"{path}: {integer_problem}")
    model.load_state_dict(state)
    return model.eval()


def _linknet_for(state: Mapping[str, torch.Tensor]) -> LinkNet:
    """A LinkNet with the input channels and classes the state dict was trained with (3 and 1 if unclear)."""
    first_conv, classifier = state.get("initial.conv.weight"), state.get("classifier.weight")
    in_channels = first_conv.shape[1] if first_conv is not None and first_conv.ndim == 4 else 3
    num_classes = classifier.shape[1] if classifier is not None and classifier.ndim == 4 else 1
    return LinkNet(in_channels=in_channels, num_classes=num_classes)
