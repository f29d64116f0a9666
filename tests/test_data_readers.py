"""The readers survive the file formats real datasets ship (all files are written here, in tmp_path)."""
from __future__ import annotations

import gzip
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from retina_lib.data import DatasetError, load_dataset, read_image, read_mask
from retina_lib.data.readers import ORIENTATION_TAG, image_files_in, split_extension


def vessel_pattern(height: int = 12, width: int = 10) -> np.ndarray:
    """A small bool pattern with vessels and background, not symmetric."""
    pattern = np.zeros((height, width), dtype=bool)
    pattern[2, 1:8] = True
    pattern[3:11, 6] = True
    return pattern


def colour_image(height: int = 12, width: int = 10) -> np.ndarray:
    """A smooth uint8 RGB image whose three channels differ."""
    rows, cols = np.mgrid[:height, :width]
    red = 200 * rows // height
    green = 220 * cols // width
    blue = 100 * (rows + cols) // (height + width)
    return np.stack([red, green, blue], axis=2).astype(np.uint8)


# --- labels and masks --------------------------------------------------------------------


def test_one_bit_png_label(tmp_path: Path) -> None:
    """CHASE_DB1 labels are 1-bit PNGs."""
    path = tmp_path / "Image_01L_1stHO.png"
    Image.fromarray(vessel_pattern()).convert("1").save(path)
    assert Image.open(path).mode == "1"
    mask = read_mask(path)
    assert mask.dtype == bool and mask.shape == (12, 10)
    np.testing.assert_array_equal(mask, vessel_pattern())


def test_palette_gif_with_indices_0_and_1(tmp_path: Path) -> None:
    """DRIVE's 2nd_manual GIFs store palette indices {0, 1}: binarising with == 255 would give nothing."""
    path = tmp_path / "01_manual2.gif"
    picture = Image.fromarray(vessel_pattern().astype(np.uint8), mode="P")
    picture.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    picture.save(path)
    raw = np.asarray(Image.open(path))
    assert set(np.unique(raw)) == {0, 1}, "precondition: the file holds indices 0 and 1"
    mask = read_mask(path)
    assert mask.sum() == vessel_pattern().sum() > 0
    np.testing.assert_array_equal(mask, vessel_pattern())


def test_palette_whose_index_0_is_white_is_read_by_colour(tmp_path: Path) -> None:
    """Pillow writes an all-white mask as a GIF with index 0 = white: reading indices would give nothing."""
    path = tmp_path / "all_white.gif"
    Image.fromarray(np.full((12, 10), 255, dtype=np.uint8)).save(path)
    picture = Image.open(path)
    assert picture.mode == "P" and picture.getpalette("RGB")[:3] == [255, 255, 255], "precondition"
    assert np.asarray(picture).max() == 0, "precondition: every pixel is index 0"
    assert read_mask(path).all()


def test_greyscale_png_0_255(tmp_path: Path) -> None:
    path = tmp_path / "label.png"
    Image.fromarray(vessel_pattern().astype(np.uint8) * 255).save(path)
    np.testing.assert_array_equal(read_mask(path), vessel_pattern())


def test_greyscale_gif_mask(tmp_path: Path) -> None:
    """DRIVE FOV masks are GIFs."""
    path = tmp_path / "21_training_mask.gif"
    Image.fromarray(vessel_pattern().astype(np.uint8) * 255).save(path)
    np.testing.assert_array_equal(read_mask(path), vessel_pattern())


def test_rgb_tiff_mask_with_identical_channels_becomes_2d(tmp_path: Path) -> None:
    """HRF FOV masks are RGB TIFFs with three identical channels."""
    path = tmp_path / "01_h_mask.tif"
    tifffile.imwrite(path, np.repeat(vessel_pattern()[:, :, None].astype(np.uint8) * 255, 3, axis=2),
                     photometric="rgb")
    mask = read_mask(path)
    assert mask.shape == (12, 10) and mask.dtype == bool
    np.testing.assert_array_equal(mask, vessel_pattern())


def test_rgb_mask_with_different_channels_is_refused(tmp_path: Path) -> None:
    """A photograph passed as a mask must not be binarised silently."""
    path = tmp_path / "photo_as_mask.png"
    Image.fromarray(colour_image()).save(path)
    with pytest.raises(DatasetError, match="photo_as_mask.png.*different channels"):
        read_mask(path)


def test_mask_with_alpha_channel_ignores_alpha(tmp_path: Path) -> None:
    path = tmp_path / "mask_la.png"
    grey = vessel_pattern().astype(np.uint8) * 255
    Image.fromarray(np.stack([grey, np.full_like(grey, 255)], axis=2), mode="LA").save(path)
    np.testing.assert_array_equal(read_mask(path), vessel_pattern())


def ppm_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PPM")
    return buffer.getvalue()


def test_gzipped_ppm_label(tmp_path: Path) -> None:
    """STARE labels: im0001.ah.ppm.gz."""
    path = tmp_path / "im0001.ah.ppm.gz"
    path.write_bytes(gzip.compress(ppm_bytes(vessel_pattern().astype(np.uint8) * 255)))
    np.testing.assert_array_equal(read_mask(path), vessel_pattern())


# --- photographs -------------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["im0001.ppm.gz", "im0001.ppm"])
def test_ppm_image_gzipped_or_plain(tmp_path: Path, filename: str) -> None:
    """STARE images come as .ppm.gz, or as .ppm once someone gunzipped them."""
    data = ppm_bytes(colour_image())
    path = tmp_path / filename
    path.write_bytes(gzip.compress(data) if filename.endswith(".gz") else data)
    image = read_image(path)
    assert image.dtype == np.float32 and image.shape == (12, 10, 3)
    np.testing.assert_allclose(image, colour_image() / 255.0, atol=1e-6)


def test_tiff_image(tmp_path: Path) -> None:
    """DRIVE images are RGB TIFFs."""
    path = tmp_path / "21_training.tif"
    Image.fromarray(colour_image()).save(path)
    image = read_image(path)
    assert image.dtype == np.float32 and image.shape == (12, 10, 3)
    assert 0.0 <= image.min() and image.max() <= 1.0
    np.testing.assert_allclose(image, colour_image() / 255.0, atol=1e-6)


@pytest.mark.parametrize("filename", ["01_dr.JPG", "01_g.jpg"])
def test_jpeg_any_extension_case(tmp_path: Path, filename: str) -> None:
    """HRF mixes .JPG and .jpg."""
    path = tmp_path / filename
    Image.fromarray(colour_image(32, 40)).save(path, format="JPEG", quality=95)
    image = read_image(path)
    assert image.shape == (32, 40, 3) and image.dtype == np.float32
    assert np.abs(image - colour_image(32, 40) / 255.0).mean() < 0.05  # JPEG is lossy


def test_greyscale_image_becomes_three_channels(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    grey = colour_image()[:, :, 0]
    Image.fromarray(grey).save(path)
    image = read_image(path)
    assert image.shape == (12, 10, 3)
    for channel in range(3):
        np.testing.assert_allclose(image[:, :, channel], grey / 255.0, atol=1e-6)


def test_sixteen_bit_image_scaled_to_unit_range(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    values = (np.arange(120, dtype=np.uint16).reshape(12, 10) * 500)
    Image.fromarray(values).save(path)
    image = read_image(path)
    assert image.dtype == np.float32 and image.max() <= 1.0
    np.testing.assert_allclose(image[:, :, 1], values / 65535.0, atol=1e-6)


# --- broken files ------------------------------------------------------------------------


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nothing.png.*not found"):
        read_image(tmp_path / "nothing.png")


def test_not_an_image_names_path(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture")
    with pytest.raises(DatasetError, match="notes.png.*cannot decode"):
        read_image(path)


def test_truncated_jpeg_names_path(tmp_path: Path) -> None:
    """Image.open only reads the header; a cut-off file must fail while reading, with its name."""
    whole = io.BytesIO()
    Image.fromarray(colour_image(64, 64)).save(whole, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    with pytest.raises(DatasetError, match="cut.jpg"):
        read_image(path)


def test_corrupt_gzip_names_path(tmp_path: Path) -> None:
    path = tmp_path / "im0001.ppm.gz"
    path.write_bytes(gzip.compress(ppm_bytes(colour_image()))[:-20])
    with pytest.raises(DatasetError, match="im0001.ppm.gz"):
        read_image(path)


def test_split_extension_handles_gzip_and_case() -> None:
    assert split_extension("im0001.ah.ppm.gz") == ("im0001.ah", ".ppm.gz")
    assert split_extension("01_dr.JPG") == ("01_dr", ".jpg")
    assert split_extension(Path("a/b/Image_01L_1stHO.png")) == ("Image_01L_1stHO", ".png")


# --- EXIF orientation, grey masks, 12-bit data, broken links (issue 18, cases 10, 11, 12, 14) ---


#: What a viewer shows for each EXIF Orientation value, as a function of the stored pixels.
SHOWN_AS = {
    1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, k=-1), 7: lambda a: np.rot90(a, k=-1)[::-1],
    8: lambda a: np.rot90(a, k=1),
}


def save_with_orientation(array: np.ndarray, path: Path, orientation: int, **options) -> None:
    if path.suffix == ".tif":
        Image.fromarray(array).save(path, tiffinfo={ORIENTATION_TAG: orientation}, **options)
        return
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    Image.fromarray(array).save(path, exif=exif, **options)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_mask_is_turned_as_its_exif_orientation_says(tmp_path: Path, orientation: int) -> None:
    """A phone or viewer shows the label turned by its Orientation tag; the reader must turn it too."""
    path = tmp_path / "label.png"
    save_with_orientation(vessel_pattern().astype(np.uint8) * 255, path, orientation)
    assert Image.open(path).getexif().get(ORIENTATION_TAG) == orientation, "precondition: the tag was written"
    np.testing.assert_array_equal(read_mask(path), SHOWN_AS[orientation](vessel_pattern()))


@pytest.mark.parametrize("orientation", range(2, 9))
@pytest.mark.parametrize("compression", [None, "tiff_lzw"])
def test_a_tiff_with_an_orientation_tag_is_refused(tmp_path: Path, orientation: int, compression) -> None:
    """Pillow 10 turns these twice, Pillow 13 scrambles the uncompressed ones: refused, naming the file."""
    path = tmp_path / "label.tif"
    save_with_orientation(vessel_pattern().astype(np.uint8) * 255, path, orientation,
                          **({"compression": compression} if compression else {}))
    with pytest.raises(DatasetError, match=rf"label\.tif: a TIFF with an Orientation tag \({orientation}\)"):
        read_mask(path)
    with pytest.raises(DatasetError, match="Orientation tag"):
        read_image(path)


def test_a_tiff_with_orientation_1_reads_as_stored(tmp_path: Path) -> None:
    path = tmp_path / "label.tif"
    save_with_orientation(vessel_pattern().astype(np.uint8) * 255, path, 1, compression="tiff_lzw")
    np.testing.assert_array_equal(read_mask(path), vessel_pattern())


@pytest.mark.parametrize("filename", ["photo.jpg", "photo.png"])
def test_photograph_is_turned_as_its_exif_orientation_says(tmp_path: Path, filename: str) -> None:
    path = tmp_path / filename
    options = {".jpg": {"quality": 100}}.get(path.suffix, {})
    save_with_orientation(colour_image(48, 40), path, orientation=6, **options)
    image = read_image(path)
    assert image.shape == (40, 48, 3)
    np.testing.assert_allclose(image, np.rot90(colour_image(48, 40), k=-1) / 255.0, atol=0.05)


def vessel_label(size: int = 96) -> np.ndarray:
    """A label large enough for JPEG to blur: a few straight vessels of 1 to 4 pixels, about 7 % of the pixels."""
    label = np.zeros((size, size), dtype=bool)
    label[10:12, :] = True
    label[:, 30:34] = True
    label[50, 5:90] = True
    label[60:90, 70:73] = True
    return label


def test_label_saved_as_jpeg_is_cut_at_mid_grey_with_a_warning_naming_it(tmp_path: Path) -> None:
    label = vessel_label()
    path = tmp_path / "eye_label.jpg"
    Image.fromarray(label.astype(np.uint8) * 255).save(path, quality=90)
    decoded = np.asarray(Image.open(path))
    assert ((decoded > 0) & (decoded < 255)).mean() > 0.05, "precondition: JPEG made grey fringes"
    with pytest.warns(UserWarning, match=r"eye_label\.jpg.*grey.*mid-grey"):
        read = read_mask(path)
    assert abs(read.mean() - label.mean()) < 0.005, (read.mean(), label.mean())
    assert (read != label).mean() < 0.01


def test_label_resized_bilinearly_is_cut_at_mid_grey(tmp_path: Path) -> None:
    label = vessel_label()
    path = tmp_path / "resized.png"
    resized = Image.fromarray(label.astype(np.uint8) * 255).resize((140, 140), Image.BILINEAR)
    resized.save(path)
    with pytest.warns(UserWarning, match="resized.png"):
        read = read_mask(path)
    assert abs(read.mean() - label.mean()) < 0.01, (read.mean(), label.mean())


@pytest.mark.parametrize("high", [1, 255, 4095, 65535])
def test_two_valued_masks_are_read_exactly_without_warning(tmp_path: Path, high: int) -> None:
    """0/1, 0/255 and 16-bit 0/4095 or 0/65535 labels: the non-zero value is the vessel, whatever it is."""
    path = tmp_path / "label.png"
    dtype = np.uint8 if high <= 255 else np.uint16
    Image.fromarray(vessel_pattern().astype(dtype) * dtype(high)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_mask(path), vessel_pattern())


def test_a_few_grey_pixels_are_cut_at_mid_grey_without_warning(tmp_path: Path) -> None:
    label = vessel_label()
    values = label.astype(np.uint8) * 255
    values[0, 0], values[0, 1] = 127, 128  # 2 of 9216 pixels, below the 1 % that warns
    path = tmp_path / "label.png"
    Image.fromarray(values).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read = read_mask(path)
    assert not read[0, 0] and read[0, 1]
    np.testing.assert_array_equal(read[1:], label[1:])


def test_twelve_bit_data_in_a_sixteen_bit_png_is_scaled_by_4095_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "camera12.png"
    values = (np.arange(120, dtype=np.uint16).reshape(12, 10) * 34 + 49)  # 49 .. 4095
    Image.fromarray(values).save(path)
    with pytest.warns(UserWarning, match=r"camera12\.png.*12-bit.*4095"):
        image = read_image(path)
    assert image.max() == pytest.approx(1.0)
    np.testing.assert_allclose(image[:, :, 0], values / 4095.0, atol=1e-6)


def test_sixteen_bit_data_is_scaled_by_65535_without_warning(tmp_path: Path) -> None:
    path = tmp_path / "camera16.png"
    values = np.linspace(0, 40000, 120, dtype=np.uint16).reshape(12, 10)
    Image.fromarray(values).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(path)
    np.testing.assert_allclose(image[:, :, 2], values / 65535.0, atol=1e-6)


@pytest.mark.parametrize("link_target", ["missing.png", "loop.png"], ids=["dangling", "loop"])
def test_broken_image_link_in_a_folder_dataset_is_named_not_dropped(tmp_path: Path, link_target: str) -> None:
    """Four photographs, one a link that leads nowhere: the dataset must not quietly have three."""
    for split_folder in ("images", "masks"):
        (tmp_path / "train" / split_folder).mkdir(parents=True)
    for name in ("a", "b", "c", "loop"):
        Image.fromarray(vessel_pattern(32, 32).astype(np.uint8) * 255).save(tmp_path / "train" / "masks" / f"{name}.png")
    for name in ("a", "b", "c"):
        Image.fromarray(colour_image(32, 32)).save(tmp_path / "train" / "images" / f"{name}.png")
    (tmp_path / "train" / "images" / "loop.png").symlink_to(link_target)
    with pytest.raises(DatasetError, match=r"images/loop\.png: a symbolic link"):
        load_dataset("folder", "train", root=tmp_path)
    with pytest.raises(DatasetError, match=r"loop\.png: a symbolic link"):
        read_image(tmp_path / "train" / "images" / "loop.png")


def test_broken_link_named_like_a_label_is_named(tmp_path: Path) -> None:
    (tmp_path / "ok.png").write_bytes(b"")
    (tmp_path / "gone.PNG").symlink_to(tmp_path / "elsewhere" / "gone.png")
    (tmp_path / "notes.txt").symlink_to("nowhere.txt")  # not named like an image: not our business
    with pytest.raises(DatasetError, match=r"gone\.PNG: a symbolic link to .*elsewhere/gone\.png.*does not exist"):
        image_files_in(tmp_path)


# --------------------------------------------------------------------------
# Decompression bombs, 32-bit files, folders given as files
# --------------------------------------------------------------------------

def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height greyscale pixels but that holds no pixel data.

    Decoding it would fail ("cannot decode"); a refusal that says how many
    pixels it claims therefore proves the header was read and nothing more.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("width, height, claimed", [
    (8000, 8000, "8000 x 8000 = 64,000,000 pixels"),  # above the library's limit, below Pillow's
    (12000, 12000, "144,000,000 pixels"),  # Pillow warns
    (100000, 100000, "10,000,000,000 pixels"),  # Pillow refuses
])
def test_bombs_are_refused_before_decoding_naming_the_file(tmp_path: Path, width: int, height: int,
                                                           claimed: str) -> None:
    bomb = png_header_only(tmp_path / "bomb.png", width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape
        with pytest.raises(DatasetError, match=f"bomb.png: its header claims {claimed}"):
            read_image(bomb)


def test_a_gzipped_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "im0001.ppm.gz"
    with gzip.open(path, "wb") as stream:
        stream.write(b"P6\n100000 100000\n255\n")
    with pytest.raises(DatasetError, match="im0001.ppm.gz: its header claims"):
        read_image(path)


def test_a_32_bit_image_beyond_16_bits_is_refused_not_clipped(tmp_path: Path) -> None:
    values = (np.arange(64 * 64).reshape(64, 64) * 1000).astype(np.int32)
    Image.fromarray(values).save(tmp_path / "wide.tif")
    with pytest.raises(DatasetError, match="wide.tif: a 32-bit integer image with values from 0 to 4095000"):
        read_image(tmp_path / "wide.tif")
    Image.fromarray((values // 1000 * 16).astype(np.int32)).save(tmp_path / "narrow.tif")  # 0..65520: 16-bit data
    image = read_image(tmp_path / "narrow.tif")
    assert image.shape == (64, 64, 3) and image.max() == pytest.approx(65520 / 65535)


def test_a_folder_given_as_an_image_is_called_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="a folder, not an image file"):
        read_image(tmp_path)


@pytest.mark.parametrize("mode", ["1", "L"])
def test_masks_come_back_writable(tmp_path: Path, mode: str) -> None:
    """Masks are writable arrays of proper booleans (bytes 0 and 1).

    Pillow gives a 1-bit file as a read-only array whose True is the byte 255;
    skimage's skeletonize (notebook 04, section 9) crashed the kernel on it.
    """
    path = tmp_path / "label.png"
    Image.fromarray(np.eye(16, dtype=np.uint8) * 255).convert(mode).save(path)
    mask = read_mask(path)
    assert mask.dtype == bool and mask.flags.writeable
    assert set(np.unique(mask.view(np.uint8))) == {0, 1}
