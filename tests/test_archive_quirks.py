"""Each quirk of the official dataset archives, rebuilt as tiny files in tmp_path, loads as it should.

``data/README.md`` lists these quirks in a table; every row has a test here
(or, where noted there, in ``test_data_readers.py`` / ``test_datasets_real.py``).
The files are written in the format of the real archive (same modes,
compression and extensions, checked against the real CHASE_DB1 and HRF
files), but only a few pixels large.
"""
from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retina_lib.data import DatasetError, estimate_fov, load_dataset, read_mask
from retina_lib.data.datasets import STARE_LABELLED

HEIGHT, WIDTH = 24, 20

#: The two colours of DRIVE's test/2nd_manual/*_manual2.gif palettes, as distributed.
DRIVE_PALETTE = [4, 2, 4, 252, 254, 252]


def fundus(seed: int = 0) -> np.ndarray:
    """A uint8 RGB picture: a bright reddish disc on a black frame."""
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    inside = (rows - HEIGHT / 2) ** 2 + (cols - WIDTH / 2) ** 2 < (0.45 * min(HEIGHT, WIDTH)) ** 2
    noise = np.random.default_rng(seed).integers(0, 30, size=(HEIGHT, WIDTH))
    picture = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    picture[..., 0] = np.where(inside, 180 + noise, 0)
    picture[..., 1] = np.where(inside, 80 + noise, 0)
    picture[..., 2] = np.where(inside, 30, 0)
    return picture


def vessels(shift: int = 0) -> np.ndarray:
    """A bool vessel map: an L-shaped line inside the disc, not symmetric."""
    label = np.zeros((HEIGHT, WIDTH), dtype=bool)
    label[HEIGHT // 2 + shift, WIDTH // 4: 3 * WIDTH // 4] = True
    label[HEIGHT // 3: HEIGHT // 2, WIDTH // 4] = True
    return label


def palette_gif(path: Path, indices: np.ndarray, palette: list[int]) -> Path:
    """Write ``indices`` as a palette GIF with ``palette`` (flat R, G, B list), as DRIVE's 2nd_manual."""
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(indices.astype(np.uint8), mode="P")
    picture.putpalette(palette + [0, 0, 0] * (256 - len(palette) // 3))
    picture.save(path)
    return path


def write(picture: Image.Image, path: Path, **options) -> Path:
    """Save ``picture`` at ``path``; a ``.gz`` name is gzipped (STARE)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        buffer = io.BytesIO()
        picture.save(buffer, format=Path(path.name[:-3]).suffix[1:].upper(), **options)
        path.write_bytes(gzip.compress(buffer.getvalue()))
    else:
        picture.save(path, **options)
    return path


def grey(mask: np.ndarray, foreground: int = 255) -> Image.Image:
    """A greyscale ("L") picture of ``mask``: 0 for background, ``foreground`` for the mask."""
    return Image.fromarray(mask.astype(np.uint8) * foreground)


# --- palette masks (DRIVE's second observer) ----------------------------------------------


def test_drive_second_observer_palette_is_read_by_brightness(tmp_path: Path) -> None:
    path = palette_gif(tmp_path / "01_manual2.gif", vessels(), DRIVE_PALETTE)
    written = Image.open(path)
    assert written.mode == "P" and written.getpalette("RGB")[:6] == DRIVE_PALETTE, "precondition: DRIVE's palette"
    np.testing.assert_array_equal(read_mask(path), vessels())


def test_palette_with_bright_index_0_is_read_by_colour_not_index(tmp_path: Path) -> None:
    """Index 0 drawn white and index 1 black: index numbers mean nothing, colours do."""
    path = palette_gif(tmp_path / "inverted.gif", ~vessels(), [255, 255, 255, 0, 0, 0])
    np.testing.assert_array_equal(read_mask(path), vessels())


def test_palette_with_several_dark_and_bright_shades_is_accepted(tmp_path: Path) -> None:
    indices = vessels().astype(np.uint8) * 2
    indices[0, 0] = 1  # a second dark shade
    indices[HEIGHT // 2, WIDTH // 2] = 3  # a second bright shade, on a vessel pixel
    path = palette_gif(tmp_path / "shades.gif", indices, [0, 0, 0, 30, 20, 30, 250, 250, 250, 210, 220, 200])
    np.testing.assert_array_equal(read_mask(path), vessels())


@pytest.mark.parametrize("palette, colour", [
    ([0, 0, 0, 128, 128, 128], "(128, 128, 128)"),  # mid grey: vessel or not?
    ([0, 0, 0, 255, 0, 0], "(255, 0, 0)"),  # pure red: bright in one channel only
])
def test_ambiguous_palette_mask_is_refused_naming_the_colour(tmp_path: Path, palette: list[int], colour: str) -> None:
    path = palette_gif(tmp_path / "ambiguous.gif", vessels(), palette)
    with pytest.raises(DatasetError, match=r"ambiguous.gif.*index 1 = " + re.escape(colour)):
        read_mask(path)


def test_palette_with_three_brightness_groups_is_refused(tmp_path: Path) -> None:
    indices = vessels().astype(np.uint8)
    indices[0, :3] = 2
    path = palette_gif(tmp_path / "three.gif", indices, [0, 0, 0, 255, 255, 255, 120, 120, 120])
    with pytest.raises(DatasetError, match="three.gif.*index 2 = [(]120, 120, 120[)].*greyscale"):
        read_mask(path)


def test_unused_palette_entries_do_not_matter(tmp_path: Path) -> None:
    """GIF palettes are padded with whatever colours; only the indices that pixels use count."""
    path = palette_gif(tmp_path / "padded.gif", vessels(), DRIVE_PALETTE + [128, 128, 128] * 5)
    np.testing.assert_array_equal(read_mask(path), vessels())


def test_drive_test_split_loads_with_its_second_observer(tmp_path: Path) -> None:
    """The official test layout: tif images, gif labels and FOV masks, 2nd_manual palettes."""
    drive = tmp_path / "DRIVE" / "test"
    fov = np.ones((HEIGHT, WIDTH), dtype=bool)
    fov[:2] = False
    for number in range(1, 21):
        write(Image.fromarray(fundus(number)), drive / "images" / f"{number:02d}_test.tif")
        write(grey(vessels()), drive / "1st_manual" / f"{number:02d}_manual1.gif")
        write(grey(fov), drive / "mask" / f"{number:02d}_test_mask.gif")
        palette_gif(drive / "2nd_manual" / f"{number:02d}_manual2.gif", vessels(shift=1), DRIVE_PALETTE)
    test = load_dataset("drive", "test", root=tmp_path)
    assert len(test) == 20
    sample = test[19]
    assert sample.name == "20_test"
    np.testing.assert_array_equal(sample.label, vessels())
    np.testing.assert_array_equal(sample.second_label, vessels(shift=1))
    np.testing.assert_array_equal(sample.fov, fov)


# --- STARE ---------------------------------------------------------------------------------


def make_stare(root: Path, label_mode: str) -> None:
    """STARE's three tar files, each extracted into a folder of its name, plus unlabelled photographs."""
    stare = root / "STARE"
    for index, name in enumerate(STARE_LABELLED):
        extension = ".ppm.gz" if index % 2 == 0 else ".ppm"  # as distributed, or gunzipped by the user
        write(Image.fromarray(fundus(index)), stare / "stare-images" / f"{name}{extension}")
        for observer, shift in (("ah", 0), ("vk", 1)):
            label = grey(vessels(shift)).convert(label_mode)
            write(label, stare / f"labels-{observer}" / f"{name}.{observer}{extension}")
    write(Image.fromarray(fundus()), stare / "stare-images" / "im0006.ppm.gz")  # no label: not a sample


@pytest.mark.parametrize("label_mode", ["RGB", "L"])  # colour PPM (P6) with equal channels, or greyscale (P5)
def test_stare_gzipped_or_plain_ppm_labels_without_fov(tmp_path: Path, label_mode: str) -> None:
    make_stare(tmp_path, label_mode)
    every = load_dataset("stare", "all", root=tmp_path)
    assert every.names == list(STARE_LABELLED), "only the 20 labelled photographs are samples"
    assert {files.image.name for files in every.files[:2]} == {"im0001.ppm.gz", "im0002.ppm"}
    for sample in (every[0], every[1]):
        np.testing.assert_array_equal(sample.label, vessels())
        np.testing.assert_array_equal(sample.second_label, vessels(shift=1))
        np.testing.assert_array_equal(sample.fov, estimate_fov(sample.image))
        assert sample.fov[HEIGHT // 2, WIDTH // 2] and not sample.fov[0, 0]


# --- CHASE_DB1 -------------------------------------------------------------------------------


def test_chase_db1_flat_layout_jpeg_one_bit_labels_estimated_fov(tmp_path: Path) -> None:
    chase = tmp_path / "CHASEDB1"  # CHASEDB1.zip has no top folder: everything side by side
    for number in range(1, 15):
        for eye in "LR":
            name = f"Image_{number:02d}{eye}"
            write(Image.fromarray(fundus(number)), chase / f"{name}.jpg", quality=95)
            write(grey(vessels()).convert("1"), chase / f"{name}_1stHO.png")
            write(grey(vessels(shift=1)).convert("1"), chase / f"{name}_2ndHO.png")
    assert Image.open(chase / "Image_01L_1stHO.png").mode == "1", "precondition: 1-bit PNG, as distributed"
    train, test = load_dataset("chase_db1", "train", root=tmp_path), load_dataset("chase_db1", "test", root=tmp_path)
    assert (train.names[-1], test.names[0], len(train), len(test)) == ("Image_10R", "Image_11L", 20, 8)
    sample = test[0]
    np.testing.assert_array_equal(sample.label, vessels())
    np.testing.assert_array_equal(sample.second_label, vessels(shift=1))
    np.testing.assert_array_equal(sample.fov, estimate_fov(sample.image))


# --- HRF -------------------------------------------------------------------------------------


def make_hrf(root: Path, missing_labels: tuple[str, ...] = ()) -> None:
    """all.zip: images/*.{jpg,JPG}, manual1/*.tif (greyscale, packbits), mask/*_mask.tif (RGB, LZW)."""
    hrf = root / "HRF"
    fov = np.ones((HEIGHT, WIDTH), dtype=bool)
    fov[:, :2] = False
    for number in range(1, 16):
        for category in ("h", "g", "dr"):
            name = f"{number:02d}_{category}"
            extension = ".JPG" if category == "dr" else ".jpg"  # as in the real archive
            write(Image.fromarray(fundus(number)), hrf / "images" / f"{name}{extension}", quality=95)
            if name not in missing_labels:
                write(grey(vessels()), hrf / "manual1" / f"{name}.tif", compression="packbits")
            write(grey(fov).convert("RGB"), hrf / "mask" / f"{name}_mask.tif", compression="tiff_lzw")


def test_hrf_mixed_case_jpegs_greyscale_labels_and_rgb_tiff_masks(tmp_path: Path) -> None:
    make_hrf(tmp_path)
    assert Image.open(tmp_path / "HRF" / "mask" / "01_h_mask.tif").mode == "RGB", "precondition"
    train = load_dataset("hrf", "train", root=tmp_path)
    assert len(train) == 15 and len(load_dataset("hrf", "test", root=tmp_path)) == 30
    files = {files.name: files for files in train.files}
    assert files["01_dr"].image.name == "01_dr.JPG" and files["01_h"].image.name == "01_h.jpg"
    sample = train[train.names.index("01_dr")]
    np.testing.assert_array_equal(sample.label, vessels())
    assert sample.fov.shape == (HEIGHT, WIDTH) and not sample.fov[:, :2].any() and sample.fov[:, 2:].all()


def test_hrf_partial_download_names_missing_labels_or_skips_them(tmp_path: Path) -> None:
    make_hrf(tmp_path, missing_labels=("11_h", "12_h"))
    with pytest.raises(DatasetError, match=r"(?s)2 of 30.*11_h: missing manual1/11_h.tif.*12_h.*skip_incomplete"):
        load_dataset("hrf", "test", root=tmp_path)
    with pytest.warns(UserWarning, match="skipping 2 incomplete samples"):
        test = load_dataset("hrf", "test", root=tmp_path, skip_incomplete=True)
    assert len(test) == 28 and "11_h" not in test.names


# --- the Kaggle 512x512 set ------------------------------------------------------------------


@pytest.mark.parametrize("foreground", [255, 1])
def test_kaggle_png_masks_0_255_or_0_1_without_fov(tmp_path: Path, foreground: int) -> None:
    for part, count in (("train", 2), ("test", 1)):
        for index in range(count):
            write(Image.fromarray(fundus(index)), tmp_path / "Data" / part / "image" / f"{index}.png")
            write(grey(vessels(), foreground), tmp_path / "Data" / part / "mask" / f"{index}.png")
    assert np.asarray(Image.open(tmp_path / "Data" / "train" / "mask" / "0.png")).max() == foreground
    train = load_dataset("retina_blood_vessel", "train", root=tmp_path)
    sample = train[1]
    assert sample.name == "train_1"
    np.testing.assert_array_equal(sample.label, vessels())
    np.testing.assert_array_equal(sample.fov, estimate_fov(sample.image))
    assert sample.fov[HEIGHT // 2, WIDTH // 2] and not sample.fov[0, 0]
