"""Where ``predict`` and ``evaluate`` write their results, and the checks made before any work.

The rule for every file is :mod:`retina_lib.system.files`'s: whole files only,
never over an input or the weights, never over a file the library did not
write unless the user passes ``--overwrite``, never through a link. Here it is
applied to the two commands that write where the user says:

* ``predict`` writes ``NAME_prob.png`` and ``NAME_mask.png`` per image. Each
  PNG carries the text ``Software: retina_lib predict``, so predicting again
  replaces the library's own maps without ``--overwrite``, while an expert
  label that happens to be called ``NAME_mask.png`` is refused.
* ``evaluate --json`` writes one JSON file, checked before the (long)
  evaluation instead of failing after it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image, PngImagePlugin

from retina_lib.data.datasets import DATASETS, data_root
from retina_lib.data.readers import split_extension
from retina_lib.errors import UserInputError
from retina_lib.system.files import check_target, same_file_key, write_atomically, write_files_atomically

#: The PNG text that marks a map written by ``predict`` (key, value).
PREDICTION_MARK = ("Software", "retina_lib predict")


def prediction_paths(image_path: Path, out_dir: Optional[Path]) -> tuple[Path, Path]:
    """Where ``predict`` writes the maps of ``image_path``: ``NAME_prob.png`` and ``NAME_mask.png``."""
    name, _ = split_extension(image_path)
    folder = out_dir if out_dir is not None else image_path.parent
    return folder / f"{name}_prob.png", folder / f"{name}_mask.png"


def written_by_predict(path: Path) -> bool:
    """Whether ``path`` is a PNG that ``predict`` wrote (it carries :data:`PREDICTION_MARK`)."""
    key, value = PREDICTION_MARK
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.info.get(key) == value
    except (OSError, ValueError, Image.DecompressionBombError):  # not an image the library could have written
        return False


def check_prediction_paths(images: Sequence[Path], out_dir: Optional[Path], weights: Path,
                           overwrite: bool = False) -> None:
    """Refuse, before anything is written, outputs that would overwrite an input, the weights or each other.

    ``predict scan.png scan.jpg`` would write both maps to ``scan_prob.png``,
    ``predict scan.png scan_prob.png`` would overwrite the second input before
    reading it, and ``predict eye.png`` beside an expert label ``eye_mask.png``
    would replace the label (refused unless ``overwrite``).
    """
    protected: dict[Path, str] = {Path(image): "the input" for image in images}
    protected[Path(weights)] = "the weights"
    written_by: dict[str, Path] = {}
    for image in images:
        for output in prediction_paths(image, out_dir):
            check_target(output, option=f"predicting {image} would write", protected=protected,
                         overwrite=overwrite, ours=written_by_predict)
            key = same_file_key(output)
            if key in written_by:
                other = written_by[key]
                reason = "the same image is given twice" if same_file_key(other) == same_file_key(image) \
                    else f"{other} and {image} have the same name"
                raise UserInputError(f"two inputs would both write {output} ({reason}); nothing was written: "
                                 f"predict them in separate commands with different --out folders")
            written_by[key] = image


def save_prediction(probability: np.ndarray, threshold: float, paths: tuple[Path, Path]) -> None:
    """Write the probability map (x 255, 8-bit) and the mask (probability >= threshold) to ``paths``.

    Both are written whole before either replaces an older file, so a failure
    (a full disk) leaves the previous pair as it was.
    """
    probability_path, mask_path = paths
    probability_path.parent.mkdir(parents=True, exist_ok=True)
    mark = PngImagePlugin.PngInfo()
    mark.add_text(*PREDICTION_MARK)
    maps = {probability_path: np.round(probability * 255).astype(np.uint8),
            mask_path: (probability >= threshold).astype(np.uint8) * 255}
    write_files_atomically({
        path: lambda target, array=array: Image.fromarray(array).save(target, format="PNG", pnginfo=mark)
        for path, array in maps.items()})


def dataset_folder(dataset: str, data_dir: Optional[Path]) -> Optional[Path]:
    """The folder holding dataset ``dataset``'s files (None for the generated synthetic one)."""
    if dataset in DATASETS:
        return data_root(data_dir) / DATASETS[dataset].folder
    return Path(data_dir) if data_dir is not None else None  # "folder": the folder itself


def check_json_path(path: Path, weights: Path, dataset: str, data_dir: Optional[Path] = None,
                    overwrite: bool = False) -> None:
    """Refuse an unusable or forbidden ``--json`` path before the evaluation, not after it.

    The weights are never replaced, nor any file inside the dataset's folder;
    another existing file only with ``overwrite``.
    """
    folder = dataset_folder(dataset, data_dir)
    inside = {same_file_key(parent) for parent in Path(path).absolute().parents}
    if folder is not None and same_file_key(folder) in inside:
        raise UserInputError(f"--json {path} is inside the dataset folder {folder}; the library never writes "
                         f"among a dataset's files: write the results elsewhere")
    check_target(path, option="--json", protected={Path(weights): "the weights"}, overwrite=overwrite)


def write_json(path: Path, results: Mapping[str, Any]) -> None:
    """Write ``results`` as indented JSON to ``path`` as a whole file (numbers as floats)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=float)
    write_atomically(path, lambda temporary: temporary.write_text(text))
