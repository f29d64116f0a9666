"""Fundus photographs with vessel labels: real datasets, synthetic ones, and training batches.

Start with :func:`load_dataset`::

    from retina_lib.data import load_dataset
    train = load_dataset("chase_db1", "train")   # reads DATA_ROOT/CHASEDB1
    sample = train[0]                            # a Sample, decoded now
    sample.image.shape, sample.label.mean()

See :func:`data_root` for where the datasets are looked for and
:func:`download` for fetching the ones with public links.
"""
from retina_lib.data.datasets import (
    DATASET_NAMES,
    DATASETS,
    RetinaDataset,
    SampleFiles,
    data_root,
    dataset_folder,
    load_dataset,
    read_sample,
)
from retina_lib.data.download import DOWNLOADABLE, DownloadError, download
from retina_lib.data.fov import estimate_fov
from retina_lib.data.readers import DatasetError, read_image, read_mask
from retina_lib.data.sample import Sample
from retina_lib.data.synthetic import synthetic_dataset
from retina_lib.data.training_set import SegmentationDataset

__all__ = [
    "DATASET_NAMES",
    "DATASETS",
    "DOWNLOADABLE",
    "DatasetError",
    "DownloadError",
    "RetinaDataset",
    "Sample",
    "SampleFiles",
    "SegmentationDataset",
    "data_root",
    "dataset_folder",
    "download",
    "estimate_fov",
    "load_dataset",
    "read_image",
    "read_mask",
    "read_sample",
    "synthetic_dataset",
]
