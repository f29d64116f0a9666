"""The real retinal vessel datasets, by name, read lazily from a data root folder.

Each public dataset keeps the layout of its official archive inside one data
root folder::

    DATA_ROOT/DRIVE/training/images/21_training.tif ...    drive
    DATA_ROOT/CHASEDB1/Image_01L.jpg ...                   chase_db1
    DATA_ROOT/STARE/stare-images/im0001.ppm.gz ...         stare
    DATA_ROOT/HRF/images/01_h.jpg ...                      hrf
    DATA_ROOT/Data/train/image/*.png ...                   retina_blood_vessel (Kaggle, 512x512)

Keeping the official layouts (instead of converting everything into one
format) means a user can unzip what they downloaded and point the loader at
it, and that nothing is silently lost in a conversion.

``load_dataset`` only *finds* the files when it is called, so a missing or
incomplete download is reported at once, naming every missing file; images
are decoded when a sample is indexed (HRF alone is 84 MB of JPEG).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterable, Sequence
from typing import Optional, overload

from retina_lib.data.fov import estimate_fov
from retina_lib.data.readers import DatasetError, image_files_in, read_image, read_mask, split_extension
from retina_lib.data.sample import Sample
from retina_lib.data.synthetic import synthetic_dataset
from retina_lib.errors import UserInputError

ENVIRONMENT_VARIABLE = "RETINA_DATA_DIR"
SPLITS = ("train", "test", "all")


def data_root(root: str | Path | None = None) -> Path:
    """The folder that holds the datasets, chosen in this order:

    1. the ``root`` argument, if given;
    2. the environment variable ``RETINA_DATA_DIR``, if set;
    3. the user's cache folder: ``$XDG_CACHE_HOME/retina_lib`` if
       ``XDG_CACHE_HOME`` is set, else ``~/.cache/retina_lib``.

    The folder is not created here; ``download`` creates it when needed.
    """
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return Path(os.environ[ENVIRONMENT_VARIABLE]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "retina_lib"


def _describe_root(root: str | Path | None) -> str:
    """Say where :func:`data_root` took the folder from, for error messages."""
    if root is not None:
        return "given as the root argument"
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return f"from ${ENVIRONMENT_VARIABLE}"
    return f"the default; set ${ENVIRONMENT_VARIABLE} or pass root= to use another folder"


# --- which files make up a sample ---------------------------------------------------------


@dataclass(frozen=True)
class SampleFiles:
    """The files of one sample.

    ``label`` and ``fov`` may name files that do not exist (yet): a layout
    lists what the dataset *should* contain and :func:`load_dataset` reports
    what is missing. ``fov=None`` means "estimate the FOV from the image";
    ``second_label=None`` means "no second observer".
    """

    name: str
    image: Path
    label: Path
    fov: Optional[Path] = None
    second_label: Optional[Path] = None


class _FileFinder:
    """Find the file that stands for an expected path.

    Real downloads differ in details: HRF mixes ``.jpg`` and ``.JPG``, STARE
    files may be gzipped or not. So a file is found by folder and stem, with
    any image extension in any case, gzipped or not: ``manual1/01_h.tif`` is
    found as ``manual1/01_h.TIF`` or ``manual1/01_h.png`` too. Each folder is
    listed once.
    """

    def __init__(self) -> None:
        self._folders: dict[Path, dict[str, list[Path]]] = {}

    def find(self, expected: Path) -> Optional[Path]:
        folder = expected.parent
        if folder not in self._folders:
            self._folders[folder] = self._list(folder)
        candidates = self._folders[folder].get(split_extension(expected)[0], [])
        if len(candidates) > 1:
            names = ", ".join(path.name for path in candidates)
            raise DatasetError(f"{folder}: several files could be {expected.name} ({names}); keep only one")
        return candidates[0] if candidates else None

    @staticmethod
    def _list(folder: Path) -> dict[str, list[Path]]:
        by_stem: dict[str, list[Path]] = {}
        if folder.is_dir():
            for path in image_files_in(folder):
                by_stem.setdefault(split_extension(path)[0], []).append(path)
        return by_stem


# --- the dataset object -------------------------------------------------------------------


def read_sample(files: SampleFiles) -> Sample:
    """Decode one sample's files and check that their sizes agree."""
    image = read_image(files.image)
    label = read_mask(files.label)
    fov = read_mask(files.fov) if files.fov is not None else estimate_fov(image)
    second_label = read_mask(files.second_label) if files.second_label is not None else None
    height, width = image.shape[:2]
    for role, path, mask in (("label", files.label, label), ("FOV mask", files.fov, fov),
                             ("second label", files.second_label, second_label)):
        if mask is not None and mask.shape != (height, width):
            raise DatasetError(
                f"{path}: {role} is {mask.shape[0]} x {mask.shape[1]} (H x W) but its image "
                f"{files.image} is {height} x {width}; they must have the same size"
            )
    return Sample(image=image, label=label, fov=fov, name=files.name, second_label=second_label)


class RetinaDataset(Sequence[Sample]):
    """The samples of one dataset split, decoded from disk each time they are indexed.

    With ``cache=True`` each sample is kept after its first decoding. Mind
    the memory: decoded float32 images are large (the 80 Kaggle training
    images take about 300 MB, CHASE_DB1 about 400 MB, HRF about 4.5 GB).
    Cached arrays are made read-only so that an in-place change cannot
    silently alter every later epoch: copy a sample before editing it.
    """

    def __init__(self, title: str, files: Sequence[SampleFiles], cache: bool = False) -> None:
        self.title = title
        self.files = list(files)
        self.cache = cache
        self._decoded: dict[int, Sample] = {}

    def __len__(self) -> int:
        return len(self.files)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> "RetinaDataset": ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return RetinaDataset(self.title, self.files[index], self.cache)
        files = self.files[index]  # raises IndexError past the end, which ends iteration
        position = index % len(self.files)
        if position in self._decoded:
            return self._decoded[position]
        sample = read_sample(files)
        if self.cache:
            for array in (sample.image, sample.label, sample.fov, sample.second_label):
                if array is not None:
                    array.flags.writeable = False
            self._decoded[position] = sample
        return sample

    @property
    def names(self) -> list[str]:
        """The sample names, without decoding anything."""
        return [files.name for files in self.files]

    def __repr__(self) -> str:
        return f"RetinaDataset({self.title!r}, {len(self)} samples)"


# --- the layout of each dataset -----------------------------------------------------------


def _choose(split: str, train: list, test: list) -> list:
    """Pick the part of a dataset that ``split`` names."""
    return {"train": train, "test": test, "all": train + test}[split]


def _drive_files(folder: Path, split: str) -> list[SampleFiles]:
    """DRIVE: official split, training/ (images 21-40) and test/ (01-20)."""
    train = [
        SampleFiles(
            name=f"{number}_training",
            image=folder / "training" / "images" / f"{number}_training.tif",
            label=folder / "training" / "1st_manual" / f"{number}_manual1.gif",
            fov=folder / "training" / "mask" / f"{number}_training_mask.gif",
        )
        for number in range(21, 41)
    ]
    test = [
        SampleFiles(
            name=f"{number:02d}_test",
            image=folder / "test" / "images" / f"{number:02d}_test.tif",
            label=folder / "test" / "1st_manual" / f"{number:02d}_manual1.gif",
            fov=folder / "test" / "mask" / f"{number:02d}_test_mask.gif",
            second_label=folder / "test" / "2nd_manual" / f"{number:02d}_manual2.gif",
        )
        for number in range(1, 21)
    ]
    return _choose(split, train, test)


def _chase_db1_files(folder: Path, split: str) -> list[SampleFiles]:
    """CHASE_DB1: conventional split, Image_01L..Image_10R train, Image_11L..Image_14R test."""
    names = [f"Image_{number:02d}{eye}" for number in range(1, 15) for eye in "LR"]
    samples = [
        SampleFiles(
            name=name,
            image=folder / f"{name}.jpg",
            label=folder / f"{name}_1stHO.png",
            second_label=folder / f"{name}_2ndHO.png",
        )
        for name in names
    ]
    return _choose(split, samples[:20], samples[20:])


# The 20 STARE images that have vessel labels (STARE has about 400 photographs).
STARE_LABELLED = (
    "im0001", "im0002", "im0003", "im0004", "im0005", "im0044", "im0077", "im0081", "im0082", "im0139",
    "im0162", "im0163", "im0235", "im0236", "im0239", "im0240", "im0255", "im0291", "im0319", "im0324",
)


def _stare_files(folder: Path, split: str) -> list[SampleFiles]:
    """STARE: no official split, so the first 10 labelled images train and the last 10 test."""
    samples = [
        SampleFiles(
            name=name,
            image=folder / "stare-images" / f"{name}.ppm.gz",
            label=folder / "labels-ah" / f"{name}.ah.ppm.gz",
            second_label=folder / "labels-vk" / f"{name}.vk.ppm.gz",
        )
        for name in STARE_LABELLED
    ]
    return _choose(split, samples[:10], samples[10:])


def _hrf_files(folder: Path, split: str) -> list[SampleFiles]:
    """HRF: images 01-05 of each category (healthy, glaucoma, diabetic retinopathy) train, 06-15 test."""
    samples = {"train": [], "test": []}
    for number in range(1, 16):
        for category in ("h", "g", "dr"):
            name = f"{number:02d}_{category}"
            samples["train" if number <= 5 else "test"].append(
                SampleFiles(
                    name=name,
                    image=folder / "images" / f"{name}.jpg",
                    label=folder / "manual1" / f"{name}.tif",
                    fov=folder / "mask" / f"{name}_mask.tif",
                )
            )
    return _choose(split, samples["train"], samples["test"])


def _stem_matched_files(image_folder: Path, label_folder: Path, fov_folder: Optional[Path] = None,
                        prefix: str = "") -> list[SampleFiles]:
    """Pair every image in ``image_folder`` with the label (and FOV mask) of the same stem."""
    if not image_folder.is_dir():
        raise DatasetError(f"{image_folder}: folder not found; expected the images of the dataset there")
    images = image_files_in(image_folder)
    if not images:
        raise DatasetError(f"{image_folder}: contains no image files")
    samples = []
    for image in images:
        stem = split_extension(image)[0]
        samples.append(
            SampleFiles(
                name=prefix + stem,
                image=image,
                label=label_folder / f"{stem}.png",
                fov=fov_folder / f"{stem}.png" if fov_folder is not None else None,
            )
        )
    return samples


def _retina_blood_vessel_files(folder: Path, split: str) -> list[SampleFiles]:
    """The Kaggle 512x512 set: Data/train/{image,mask} and Data/test/{image,mask}, no FOV masks."""
    parts = _choose(split, ["train"], ["test"])
    return [
        files
        for part in parts
        for files in _stem_matched_files(folder / part / "image", folder / part / "mask", prefix=f"{part}_")
    ]


def _folder_files(folder: Path) -> list[SampleFiles]:
    """Any ``images/`` + ``masks/`` (+ optional ``fov/``) folder whose files share their stems."""
    fov_folder = folder / "fov"
    return _stem_matched_files(folder / "images", folder / "masks", fov_folder if fov_folder.is_dir() else None)


# --- the registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """What the loader needs to know about one public dataset."""

    title: str  # the name people use in papers
    folder: str  # the folder inside the data root, named as the official archive extracts
    layout: str  # what that folder holds, shown when it is missing
    how_to_get: str  # how to obtain it, shown when it is missing
    list_files: Callable[[Path, str], list[SampleFiles]]


def _downloadable(name: str, archive: str) -> str:
    return (f"Download it with `python -m retina_lib download {name}` or `retina_lib.data.download({name!r})`, "
            f"or extract the official {archive} there yourself.")


DATASETS: dict[str, DatasetInfo] = {
    "drive": DatasetInfo(
        title="DRIVE",
        folder="DRIVE",
        layout=("training/{images/21_training.tif, 1st_manual/21_manual1.gif, mask/21_training_mask.gif} and "
                "test/{images/01_test.tif, 1st_manual/01_manual1.gif, 2nd_manual/01_manual2.gif, "
                "mask/01_test_mask.gif}"),
        how_to_get=(
            "DRIVE may not be redistributed, so it cannot be downloaded automatically: create a free account at "
            "https://drive.grand-challenge.org, download training.zip and test.zip and extract both into the "
            "DRIVE folder so that it holds training/ and test/. Note that the grand-challenge test.zip has no "
            "1st_manual labels: the test split needs the labelled release of DRIVE."
        ),
        list_files=_drive_files,
    ),
    "chase_db1": DatasetInfo(
        title="CHASE_DB1",
        folder="CHASEDB1",
        layout="Image_01L.jpg, Image_01L_1stHO.png, Image_01L_2ndHO.png, ... Image_14R_2ndHO.png (flat)",
        how_to_get=_downloadable("chase_db1", "CHASEDB1.zip"),
        list_files=_chase_db1_files,
    ),
    "stare": DatasetInfo(
        title="STARE",
        folder="STARE",
        layout="stare-images/im0001.ppm.gz, labels-ah/im0001.ah.ppm.gz, labels-vk/im0001.vk.ppm.gz (or .ppm)",
        how_to_get=_downloadable("stare", "stare-images.tar, labels-ah.tar and labels-vk.tar (one folder each)"),
        list_files=_stare_files,
    ),
    "hrf": DatasetInfo(
        title="HRF",
        folder="HRF",
        layout="images/01_h.jpg, manual1/01_h.tif, mask/01_h_mask.tif, ... for 01-15 of h, g and dr",
        how_to_get=_downloadable("hrf", "all.zip"),
        list_files=_hrf_files,
    ),
    "retina_blood_vessel": DatasetInfo(
        title="Retina Blood Vessel (Kaggle)",
        folder="Data",
        layout="train/image/*.png, train/mask/*.png, test/image/*.png, test/mask/*.png",
        how_to_get=(
            "This set needs a Kaggle account, so it cannot be downloaded automatically: sign in at "
            "https://www.kaggle.com/datasets/abdallahwagih/retina-blood-vessel, press Download (or run "
            "`kaggle datasets download abdallahwagih/retina-blood-vessel`) and unzip the archive into the "
            "data root so that it holds Data/train and Data/test."
        ),
        list_files=_retina_blood_vessel_files,
    ),
}

DATASET_NAMES = (*DATASETS, "folder", "synthetic")


def dataset_folder(name: str, root: str | Path | None = None) -> Path:
    """The folder in which dataset ``name`` lives inside the data root (see :func:`data_root`)."""
    name = _check_name(name)
    if name not in DATASETS:
        raise UserInputError(f"dataset {name!r} has no folder in the data root; these do: {', '.join(DATASETS)}")
    return data_root(root) / DATASETS[name].folder


def _check_name(name: str) -> str:
    """Return ``name`` in lower case, or raise UserInputError listing the valid names."""
    if name.lower() not in DATASET_NAMES:
        raise UserInputError(f"unknown dataset {name!r}; valid names are: {', '.join(DATASET_NAMES)}")
    return name.lower()


# --- loading ------------------------------------------------------------------------------


def load_dataset(name: str, split: str = "train", root: str | Path | None = None, **options) -> Sequence[Sample]:
    """Return the samples of one dataset split as a lazy sequence of :class:`Sample`.

    Args:
        name: one of ``drive``, ``chase_db1``, ``stare``, ``hrf``,
            ``retina_blood_vessel``, ``folder``, ``synthetic``.
        split: ``"train"``, ``"test"`` or ``"all"``. DRIVE's split is the
            official one; the others follow the usual conventions (see the
            ``_*_files`` functions). For ``folder``, ``"all"`` reads ``root``
            itself and ``"train"``/``"test"`` read ``root/train``/``root/test``.
        root: the data root (see :func:`data_root`); for ``folder``, the folder
            that holds ``images/`` and ``masks/``. Unused for ``synthetic``.
        **options: for ``synthetic``, ``n``, ``size`` and ``seed`` (passed to
            ``synthetic_dataset``). For the others: ``cache=True`` keeps
            decoded samples in memory; ``skip_incomplete=True`` leaves out
            (with a warning) samples whose label or FOV file is missing,
            instead of raising.

    Raises:
        ValueError: unknown dataset name or split.
        DatasetError: missing data, incomplete samples (all named in one
            message); mismatched sizes or unreadable files when indexed.
    """
    name = _check_name(name)
    if name == "synthetic":
        if root is not None:
            raise UserInputError("the synthetic dataset is generated, not read: do not pass root")
        return synthetic_dataset(split, **options)
    if split not in SPLITS:
        raise UserInputError(f"unknown split {split!r} for dataset {name!r}; valid splits are: {', '.join(SPLITS)}")
    if name == "folder":
        return _load_folder(split, root, **options)
    return _load_registered(name, split, root, **options)


def _load_registered(name: str, split: str, root: str | Path | None, *, cache: bool = False,
                     skip_incomplete: bool = False) -> RetinaDataset:
    info = DATASETS[name]
    folder = data_root(root) / info.folder
    if not folder.is_dir():
        raise DatasetError(
            f"{info.title} not found: expected the folder {folder} (data root {data_root(root)}, "
            f"{_describe_root(root)}). It should hold {info.layout}. {info.how_to_get}"
        )
    files = _complete(info.list_files(folder, split), f"{info.title} {split}", folder, info.how_to_get,
                      skip_incomplete)
    return RetinaDataset(f"{info.title} {split}", files, cache)


def _load_folder(split: str, root: str | Path | None, *, cache: bool = False,
                 skip_incomplete: bool = False) -> RetinaDataset:
    if root is None:
        raise UserInputError("the folder dataset needs root=, the folder that holds images/ and masks/")
    folder = Path(root).expanduser() if split == "all" else Path(root).expanduser() / split
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: folder not found; split {split!r} of the folder dataset reads "
            + ("root itself" if split == "all" else f"root/{split} (use split='all' for a single folder)")
        )
    hint = "Each image in images/ needs a mask of the same stem in masks/ (and in fov/, if that folder exists)."
    title = f"folder {folder}"
    return RetinaDataset(title, _complete(_folder_files(folder), title, folder, hint, skip_incomplete), cache)


def _complete(samples: Iterable[SampleFiles], title: str, folder: Path, hint: str,
              skip_incomplete: bool) -> list[SampleFiles]:
    """Replace expected paths by the files found, and report samples that lack a file.

    The image, label and FOV mask (where the layout has one) are required.
    A missing second-observer label just becomes ``None``: only some datasets
    or splits have one. All incomplete samples are named in one message, so
    a partial download is diagnosed in one go.
    """
    finder = _FileFinder()
    complete: list[SampleFiles] = []
    problems: list[str] = []
    samples = list(samples)
    for files in samples:
        image, label = finder.find(files.image), finder.find(files.label)
        fov = finder.find(files.fov) if files.fov is not None else None
        missing = [expected for expected, found in ((files.image, image), (files.label, label), (files.fov, fov))
                   if expected is not None and found is None]
        if missing:
            problems.append(f"{files.name}: missing " + ", ".join(_relative(path, folder) for path in missing))
            continue
        second = finder.find(files.second_label) if files.second_label is not None else None
        complete.append(SampleFiles(files.name, image, label, fov, second))

    if problems and not skip_incomplete:
        absent_folders = sorted({_relative(path.parent, folder) for files in samples
                                 for path in (files.image, files.label, files.fov)
                                 if path is not None and not path.parent.is_dir()})
        listed = problems if len(problems) <= 12 else problems[:10] + [f"... and {len(problems) - 10} more"]
        raise DatasetError(
            f"{title}: {len(problems)} of {len(samples)} samples are incomplete in {folder}:\n  "
            + "\n  ".join(listed)
            + (f"\nThese folders do not exist: {', '.join(absent_folders)}." if absent_folders else "")
            + "\n(Any image extension is accepted, e.g. .png, .gif, .tif, gzipped or not.) "
            + hint
            + " Pass skip_incomplete=True to leave the incomplete samples out."
        )
    if problems:
        warnings.warn(f"{title}: skipping {len(problems)} incomplete samples: " + "; ".join(problems), stacklevel=4)
    if not complete:
        raise DatasetError(f"{title}: no complete sample in {folder}. {hint}")
    return complete


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` where possible, for shorter messages."""
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)
