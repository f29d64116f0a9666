"""load_dataset on the real layouts.

The first part builds tiny copies of the layouts we cannot ship (DRIVE, STARE,
the Kaggle set, a user's folder) in tmp_path. The second part reads the real
CHASE_DB1 and HRF copies through the ``shared_datasets`` fixture (skipped when
they are absent) and decodes only what it must: HRF photographs are 3504 x 2336.
"""
from __future__ import annotations

import gzip
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retina_lib.data import (
    DatasetError,
    RetinaDataset,
    Sample,
    data_root,
    estimate_fov,
    load_dataset,
    synthetic_dataset,
)
from retina_lib.data.datasets import STARE_LABELLED

HEIGHT, WIDTH = 24, 20


# --- writing tiny fake datasets ----------------------------------------------------------


def fundus_like(height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> np.ndarray:
    """A uint8 RGB picture: a bright reddish disc on a black frame, as a fundus camera takes."""
    rows, cols = np.mgrid[:height, :width]
    inside = (rows - height / 2) ** 2 + (cols - width / 2) ** 2 < (0.45 * min(height, width)) ** 2
    noise = np.random.default_rng(seed).integers(0, 30, size=(height, width))
    picture = np.zeros((height, width, 3), dtype=np.uint8)
    picture[..., 0] = np.where(inside, 180 + noise, 0)
    picture[..., 1] = np.where(inside, 80 + noise, 0)
    picture[..., 2] = np.where(inside, 30, 0)
    return picture


def label_pattern(height: int = HEIGHT, width: int = WIDTH, shift: int = 0) -> np.ndarray:
    """A bool 'vessel' map: a line through the middle of the disc."""
    label = np.zeros((height, width), dtype=bool)
    label[height // 2 + shift, width // 4: 3 * width // 4] = True
    return label


def save(array: np.ndarray, path: Path, palette_indices: bool = False) -> Path:
    """Write ``array`` to ``path`` in the format its name asks for (bool arrays become masks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == bool:
        if palette_indices:  # DRIVE's 2nd_manual: palette GIF, index 0 = (4, 2, 4), index 1 = (252, 254, 252)
            picture = Image.fromarray(array.astype(np.uint8), mode="P")
            picture.putpalette([4, 2, 4, 252, 254, 252] + [0, 0, 0] * 254)
        else:
            picture = Image.fromarray(array.astype(np.uint8) * 255)
    else:
        picture = Image.fromarray(array)
    if path.name.endswith(".ppm.gz"):
        buffer = io.BytesIO()
        picture.save(buffer, format="PPM")
        path.write_bytes(gzip.compress(buffer.getvalue()))
    else:
        picture.save(path)
    return path


def make_drive(root: Path, with_test_labels: bool = True) -> Path:
    drive = root / "DRIVE"
    fov = np.ones((HEIGHT, WIDTH), dtype=bool)
    fov[:2] = False
    for number in range(21, 41):
        save(fundus_like(seed=number), drive / "training" / "images" / f"{number}_training.tif")
        save(label_pattern(), drive / "training" / "1st_manual" / f"{number}_manual1.gif")
        save(fov, drive / "training" / "mask" / f"{number}_training_mask.gif")
    for number in range(1, 21):
        save(fundus_like(seed=number), drive / "test" / "images" / f"{number:02d}_test.tif")
        save(fov, drive / "test" / "mask" / f"{number:02d}_test_mask.gif")
        save(label_pattern(shift=1), drive / "test" / "2nd_manual" / f"{number:02d}_manual2.gif",
             palette_indices=True)
        if with_test_labels:
            save(label_pattern(), drive / "test" / "1st_manual" / f"{number:02d}_manual1.gif")
    return drive


def make_stare(root: Path) -> Path:
    stare = root / "STARE"
    for index, name in enumerate(STARE_LABELLED):
        extension = ".ppm.gz" if index % 2 == 0 else ".ppm"  # some users gunzip the files
        save(fundus_like(seed=index), stare / "stare-images" / f"{name}{extension}")
        save(label_pattern(), stare / "labels-ah" / f"{name}.ah{extension}")
        save(label_pattern(shift=1), stare / "labels-vk" / f"{name}.vk{extension}")
    return stare


def make_folder(folder: Path, stems: list[str], with_fov: bool = False) -> Path:
    for stem in stems:
        save(fundus_like(), folder / "images" / f"{stem}.jpg")
        save(label_pattern(), folder / "masks" / f"{stem}.png")
        if with_fov:
            save(np.tile(np.arange(WIDTH) >= 2, (HEIGHT, 1)), folder / "fov" / f"{stem}.gif")  # left 2 columns out
    return folder


# --- DRIVE --------------------------------------------------------------------------------


def test_drive_official_split_labels_fov_and_second_observer(tmp_path: Path) -> None:
    make_drive(tmp_path)
    train = load_dataset("drive", "train", root=tmp_path)
    test = load_dataset("drive", "test", root=tmp_path)
    assert (len(train), len(test), len(load_dataset("drive", "all", root=tmp_path))) == (20, 20, 40)
    assert train.names[0] == "21_training" and test.names[0] == "01_test"

    sample = test[0]
    assert isinstance(sample, Sample)
    assert sample.image.shape == (HEIGHT, WIDTH, 3) and sample.image.dtype == np.float32
    np.testing.assert_array_equal(sample.label, label_pattern())
    assert not sample.fov[:2].any() and sample.fov[2:].all(), "the FOV comes from the mask file"
    # The palette GIF is read by the brightness of each index's colour, not refused for its (4, 2, 4).
    np.testing.assert_array_equal(sample.second_label, label_pattern(shift=1))
    assert train[0].second_label is None, "DRIVE's training set has one observer only"


def test_drive_test_split_without_first_observer_fails_clearly(tmp_path: Path) -> None:
    """The grand-challenge test.zip ships no 1st_manual: evaluating on it must not silently work."""
    make_drive(tmp_path, with_test_labels=False)
    assert len(load_dataset("drive", "train", root=tmp_path)) == 20
    with pytest.raises(DatasetError) as error:
        load_dataset("drive", "test", root=tmp_path)
    message = str(error.value)
    assert "20 of 20" in message and "test/1st_manual" in message and "test.zip" in message


# --- STARE, Kaggle, folder -----------------------------------------------------------------


def test_stare_split_gzip_or_not_and_estimated_fov(tmp_path: Path) -> None:
    make_stare(tmp_path)
    train = load_dataset("stare", "train", root=tmp_path)
    test = load_dataset("stare", "test", root=tmp_path)
    assert train.names == list(STARE_LABELLED[:10]) and test.names == list(STARE_LABELLED[10:])
    for sample in (train[0], train[1]):  # im0001 is gzipped, im0002 is not
        np.testing.assert_array_equal(sample.label, label_pattern())
        np.testing.assert_array_equal(sample.second_label, label_pattern(shift=1))
        np.testing.assert_array_equal(sample.fov, estimate_fov(sample.image))
        assert sample.fov[HEIGHT // 2, WIDTH // 2] and not sample.fov[0, 0]


def test_kaggle_layout(tmp_path: Path) -> None:
    for part, count in (("train", 3), ("test", 2)):
        for index in range(count):
            save(fundus_like(seed=index), tmp_path / "Data" / part / "image" / f"{index}.png")
            save(label_pattern(), tmp_path / "Data" / part / "mask" / f"{index}.png")
    train = load_dataset("retina_blood_vessel", "train", root=tmp_path)
    assert train.names == ["train_0", "train_1", "train_2"]
    assert len(load_dataset("retina_blood_vessel", "all", root=tmp_path)) == 5
    sample = load_dataset("retina_blood_vessel", "test", root=tmp_path)[1]
    assert sample.name == "test_1" and sample.fov.dtype == bool and sample.fov.shape == (HEIGHT, WIDTH)


def test_folder_with_and_without_fov_masks(tmp_path: Path) -> None:
    plain = make_folder(tmp_path / "plain", ["b", "a"])
    dataset = load_dataset("folder", "all", root=plain)
    assert dataset.names == ["a", "b"]
    np.testing.assert_array_equal(dataset[0].fov, estimate_fov(dataset[0].image))

    with_fov = make_folder(tmp_path / "with_fov", ["a"], with_fov=True)
    fov = load_dataset("folder", "all", root=with_fov)[0].fov
    assert not fov[:, :2].any() and fov[:, 2:].all(), "fov/ files are used when present"


def test_folder_train_split_reads_subfolder(tmp_path: Path) -> None:
    make_folder(tmp_path / "train", ["x"])
    assert load_dataset("folder", "train", root=tmp_path).names == ["x"]
    with pytest.raises(DatasetError, match="split='all'"):
        load_dataset("folder", "test", root=tmp_path)


def test_folder_image_without_mask_is_reported_or_skipped(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, ["a", "b", "c"])
    (folder / "masks" / "b.png").unlink()
    (folder / "masks" / "c.png").unlink()
    with pytest.raises(DatasetError) as error:
        load_dataset("folder", "all", root=folder)
    assert "masks/b.png" in str(error.value) and "masks/c.png" in str(error.value)

    with pytest.warns(UserWarning, match="b: missing masks/b.png.*c: missing masks/c.png"):
        dataset = load_dataset("folder", "all", root=folder, skip_incomplete=True)
    assert dataset.names == ["a"]


# --- errors, laziness, caching --------------------------------------------------------------


def test_missing_data_root_says_how_to_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as error:
        load_dataset("chase_db1", root=tmp_path / "nowhere")
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "CHASEDB1") in message
    assert "python -m retina_lib download chase_db1" in message


@pytest.mark.parametrize("name, words", [("drive", "grand-challenge.org"), ("retina_blood_vessel", "Kaggle account")])
def test_missing_account_datasets_explain_where_to_get_them(tmp_path: Path, name: str, words: str) -> None:
    with pytest.raises(DatasetError, match=words):
        load_dataset(name, root=tmp_path)


def test_unknown_dataset_or_split_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chase_db1.*hrf.*folder.*synthetic"):
        load_dataset("chase", root=tmp_path)
    with pytest.raises(ValueError, match="'validation'.*train, test, all"):
        load_dataset("hrf", "validation", root=tmp_path)


def test_data_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETINA_DATA_DIR", str(tmp_path / "from_env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root(tmp_path / "given") == tmp_path / "given"
    assert data_root() == tmp_path / "from_env"
    monkeypatch.delenv("RETINA_DATA_DIR")
    assert data_root() == tmp_path / "xdg" / "retina_lib"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "retina_lib"


def test_env_variable_is_used_by_load_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_stare(tmp_path)
    monkeypatch.setenv("RETINA_DATA_DIR", str(tmp_path))
    assert len(load_dataset("stare", "all")) == 20


def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, ["a"])
    save(label_pattern(HEIGHT + 2, WIDTH), folder / "masks" / "a.png")
    dataset = load_dataset("folder", "all", root=folder)  # sizes are only known once decoded
    with pytest.raises(DatasetError, match=r"masks/a.png.*26 x 20.*images/a.jpg.*24 x 20"):
        dataset[0]


def test_corrupt_file_fails_when_indexed_with_its_name(tmp_path: Path) -> None:
    """Construction only looks for files (lazy); decoding a broken one names it."""
    folder = make_folder(tmp_path, ["a", "b"])
    (folder / "images" / "b.jpg").write_bytes(b"not a jpeg")
    dataset = load_dataset("folder", "all", root=folder)
    assert dataset[0].name == "a"
    with pytest.raises(DatasetError, match="b.jpg"):
        dataset[1]


def test_sequence_protocol_and_cache(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, ["a", "b", "c"])
    dataset = load_dataset("folder", "all", root=folder)
    assert [sample.name for sample in dataset] == ["a", "b", "c"]
    assert dataset[-1].name == "c"
    assert isinstance(dataset[1:], RetinaDataset) and dataset[1:].names == ["b", "c"]
    with pytest.raises(IndexError):
        dataset[3]
    assert dataset[0].image is not dataset[0].image, "without cache every access decodes again"

    cached = load_dataset("folder", "all", root=folder, cache=True)
    first = cached[0]
    assert cached[0] is first and cached[-3] is first
    with pytest.raises(ValueError, match="read-only"):
        first.image[0, 0, 0] = 1.0


def test_synthetic_passes_options_through() -> None:
    samples = load_dataset("synthetic", "test", n=2, size=48, seed=3)
    expected = synthetic_dataset("test", n=2, size=48, seed=3)
    assert len(samples) == 2 and samples[0].image.shape == (48, 48, 3)
    np.testing.assert_array_equal(samples[1].label, expected[1].label)
    with pytest.raises(ValueError, match="root"):
        load_dataset("synthetic", root="somewhere")


# --- the FOV estimate on drawn pictures -----------------------------------------------------


def test_estimate_fov_finds_a_drawn_disc() -> None:
    picture = fundus_like(200, 240).astype(np.float32) / 255.0
    rows, cols = np.mgrid[:200, :240]
    disc = (rows - 100) ** 2 + (cols - 120) ** 2 < 90 ** 2
    fov = estimate_fov(picture)
    assert fov.dtype == bool and fov.shape == (200, 240)
    assert fov[disc].all(), "the whole disc is inside"
    sigma = 0.005 * 200  # the smoothing; the estimate may reach about a sigma past a sharp rim
    assert not fov[(rows - 100) ** 2 + (cols - 120) ** 2 >= (90 + 2 * sigma) ** 2].any()


def test_estimate_fov_ignores_specks_and_fills_dark_spots() -> None:
    picture = fundus_like(200, 240).astype(np.float32) / 255.0
    picture[5:9, 5:9] = 0.9  # a bright speck in the black frame (text, dust)
    picture[90:110, 110:130] = 0.02  # a dark lesion inside the disc
    fov = estimate_fov(picture)
    assert not fov[5:9, 5:9].any() and fov[90:110, 110:130].all()


def test_estimate_fov_without_dark_frame_is_whole_image() -> None:
    crop = np.full((50, 60, 3), 0.6, dtype=np.float32)
    assert estimate_fov(crop).all()


# --- the real CHASE_DB1 copy ----------------------------------------------------------------


def test_chase_db1_split_sizes(shared_datasets: Path) -> None:
    train = load_dataset("chase_db1", "train", root=shared_datasets)
    test = load_dataset("chase_db1", "test", root=shared_datasets)
    every = load_dataset("chase_db1", "all", root=shared_datasets)
    assert (len(train), len(test), len(every)) == (20, 8, 28)
    assert train.names[0] == "Image_01L" and train.names[-1] == "Image_10R"
    assert test.names == [f"Image_{number}{eye}" for number in range(11, 15) for eye in "LR"]
    assert set(train.names).isdisjoint(test.names)


@pytest.fixture(scope="module")
def chase_statistics(shared_datasets: Path) -> list[dict]:
    """Decode all 28 CHASE_DB1 images once and keep only a few numbers per image (a few seconds)."""
    statistics = []
    for sample in load_dataset("chase_db1", "all", root=shared_datasets):
        statistics.append({
            "name": sample.name,
            "shape": sample.image.shape,
            "dtype": sample.image.dtype,
            "range": (float(sample.image.min()), float(sample.image.max())),
            "masks": [(mask.shape, mask.dtype) for mask in (sample.label, sample.fov, sample.second_label)],
            "label_pixels": int(sample.label.sum()),
            "label_pixels_in_fov": int((sample.label & sample.fov).sum()),
            "fov_fraction": float(sample.fov.mean()),
            "vessel_fraction_in_fov": float(sample.label[sample.fov].mean()),
            "second_fraction_in_fov": float(sample.second_label[sample.fov].mean()),
        })
    for row in statistics:
        print(f"{row['name']}: vessels {row['vessel_fraction_in_fov']:.3f} of FOV "
              f"(2nd observer {row['second_fraction_in_fov']:.3f}), FOV {row['fov_fraction']:.3f} of image, "
              f"label coverage {row['label_pixels_in_fov'] / row['label_pixels']:.4f}")
    return statistics


def test_chase_db1_samples_decode_as_specified(chase_statistics: list[dict]) -> None:
    for row in chase_statistics:
        assert row["shape"] == (960, 999, 3), f"{row['name']}: CHASE_DB1 is 960 x 999 (H x W)"
        assert row["dtype"] == np.float32 and 0.0 <= row["range"][0] < row["range"][1] <= 1.0
        assert row["masks"] == [((960, 999), np.dtype(bool))] * 3, "label, FOV and second label"


def test_chase_db1_vessel_fractions_are_plausible(chase_statistics: list[dict]) -> None:
    """About 7-15 % of FOV pixels are vessels; a label read wrongly (all 0 or all 1) would fail this."""
    for row in chase_statistics:
        assert 0.06 <= row["vessel_fraction_in_fov"] <= 0.15, row
        assert 0.04 <= row["second_fraction_in_fov"] <= 0.15, row


def test_estimated_fov_covers_chase_db1_vessels(chase_statistics: list[dict]) -> None:
    """CHASE_DB1 has no FOV masks: the estimate must keep the labelled vessels inside."""
    covered = sum(row["label_pixels_in_fov"] for row in chase_statistics)
    total = sum(row["label_pixels"] for row in chase_statistics)
    assert covered / total >= 0.995
    for row in chase_statistics:
        assert row["label_pixels_in_fov"] / row["label_pixels"] >= 0.99, row["name"]
        assert 0.55 <= row["fov_fraction"] <= 0.8, row["name"]  # a disc inside a 960 x 999 frame


# --- the real HRF copy (three labels missing) ------------------------------------------------

MISSING_HRF_LABELS = ("manual1/11_h.tif", "manual1/12_h.tif", "manual1/13_h.tif")


def test_hrf_missing_labels_are_all_named(shared_datasets: Path) -> None:
    with pytest.raises(DatasetError) as error:
        load_dataset("hrf", "all", root=shared_datasets)
    message = str(error.value)
    assert "3 of 45" in message and "skip_incomplete=True" in message
    for missing in MISSING_HRF_LABELS:
        assert missing in message


def test_hrf_skip_incomplete_warns_and_keeps_the_rest(shared_datasets: Path) -> None:
    with pytest.warns(UserWarning) as caught:
        test = load_dataset("hrf", "test", root=shared_datasets, skip_incomplete=True)
    assert all(missing in str(caught[0].message) for missing in MISSING_HRF_LABELS)
    assert len(test) == 27 and not {"11_h", "12_h", "13_h"} & set(test.names)
    with pytest.warns(UserWarning, match="skipping 3 incomplete samples"):
        assert len(load_dataset("hrf", "all", root=shared_datasets, skip_incomplete=True)) == 42
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the training split is complete: no warning
        assert len(load_dataset("hrf", "train", root=shared_datasets)) == 15


def test_hrf_mixed_case_extensions_and_rgb_fov_mask(shared_datasets: Path) -> None:
    train = load_dataset("hrf", "train", root=shared_datasets)
    files = {files.name: files for files in train.files}
    assert files["01_dr"].image.name == "01_dr.JPG" and files["01_h"].image.name == "01_h.jpg"

    sample = train[train.names.index("01_dr")]  # one 3504 x 2336 JPEG decode
    assert sample.image.shape == (2336, 3504, 3) and sample.image.dtype == np.float32
    assert 0.0 <= sample.image.min() and sample.image.max() <= 1.0
    assert sample.fov.shape == (2336, 3504) and sample.fov.dtype == bool, "RGB TIFF mask read as 2-D"
    assert 0.7 < sample.fov.mean() < 0.95
    assert 0.04 < sample.label[sample.fov].mean() < 0.2
    assert sample.second_label is None
