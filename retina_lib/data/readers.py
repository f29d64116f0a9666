"""Decode the image and mask files that real retinal datasets actually ship.

Public datasets were made over two decades with different tools, so one
loader meets JPEG and TIFF photographs, gzipped PPM files (STARE), 1-bit PNG
labels (CHASE_DB1), palette GIFs whose index 0 is the almost-black colour
(4, 2, 4) and index 1 almost white (DRIVE's second observer), greyscale
labels with values 0 and 255, and RGB TIFF masks whose three channels are
identical (HRF). Extensions come in mixed case (HRF has both ``.jpg`` and
``.JPG``).

Everything here goes through Pillow, and every failure becomes a
:class:`DatasetError` that names the file, so a broken download is reported
where it is found instead of as a shape error deep inside PyTorch.
"""
from __future__ import annotations

import gzip
import os
import re
import warnings
from pathlib import Path
from typing import IO, Optional

import numpy as np
from PIL import Image, ImageOps

from retina_lib.errors import UserInputError

# Extensions (lower case, without ``.gz``) that the loaders accept as images or masks.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".bmp")


class DatasetError(UserInputError):
    """A dataset file or folder is missing, unreadable or inconsistent.

    The message always names the path involved and what was expected there.
    """


def split_extension(path: Path | str) -> tuple[str, str]:
    """Split a file name into (stem, lower-case extension), treating ``.ppm.gz`` as one extension.

    >>> split_extension("im0001.ah.ppm.gz")
    ('im0001.ah', '.ppm.gz')
    >>> split_extension("01_dr.JPG")
    ('01_dr', '.jpg')
    """
    name = Path(path).name
    gzipped = name.lower().endswith(".gz")
    if gzipped:
        name = name[: -len(".gz")]
    suffix = Path(name).suffix
    stem = name[: len(name) - len(suffix)]
    return stem, suffix.lower() + (".gz" if gzipped else "")


def broken_link_problem(path: Path) -> Optional[str]:
    """Why ``path`` is a symbolic link that cannot be read (dangling or a loop), or None if it is not one.

    ``Path.is_file()`` is simply False for such a link, so a folder listing
    that keeps only files would drop it without a word: a dataset would
    quietly lose a sample. Callers report this reason instead.
    """
    if not path.is_symlink():
        return None
    try:
        path.resolve(strict=True)
    except FileNotFoundError:
        return f"{path}: a symbolic link to {os.readlink(path)}, which does not exist (a dangling link)"
    except (RuntimeError, OSError):  # RuntimeError up to Python 3.12, OSError (ELOOP) from 3.13
        return f"{path}: a symbolic link that leads back to itself (a link loop), so it has no file to read"
    return None


def image_files_in(folder: Path) -> list[Path]:
    """The image files of ``folder``, sorted by name: not hidden, with one of :data:`IMAGE_EXTENSIONS`.

    Extensions match in any case, gzipped or not.

    A link named like an image that leads nowhere (dangling, or a loop)
    raises :class:`DatasetError` naming it, instead of being skipped: a
    skipped file would silently shrink the dataset.
    """
    files = []
    for path in sorted(folder.iterdir()):
        extension = split_extension(path)[1].removesuffix(".gz")
        if extension not in IMAGE_EXTENSIONS or path.name.startswith("."):
            continue
        problem = broken_link_problem(path)
        if problem is not None:
            raise DatasetError(problem + "; repair or remove the link")
        if path.is_file():
            files.append(path)
    return files


#: The most pixels an image file may have: 50 million, six times HRF's 3504 x 2336
#: (8.2 million), the largest photographs in the course. A file claiming more is
#: refused after reading its header and before decoding its pixels: a 140 KB PNG
#: can hold 12000 x 12000 pixels, which :func:`read_image` would turn into 1.6 GiB
#: of float32 (a "decompression bomb").
MAX_IMAGE_PIXELS = 50_000_000


def open_within_pixel_limit(source: Path | IO[bytes], path: Path) -> Image.Image:
    """``Image.open(source)``, which reads only the header, refusing more than :data:`MAX_IMAGE_PIXELS` pixels.

    Pillow's own guard (``Image.MAX_IMAGE_PIXELS``, 89 million pixels: a
    warning, then an error from twice that) is a setting shared by every
    program in the process; this limit is the library's own and lower, and
    both end in the same :class:`DatasetError` naming ``path``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            picture = Image.open(source)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            claimed = re.search(r"\((\d+) pixels\)", str(error))
            raise DatasetError(_too_many_pixels(path, f"{int(claimed.group(1)):,} pixels" if claimed
                                                else "more pixels than Pillow allows")) from error
    width, height = picture.size
    if width * height > MAX_IMAGE_PIXELS:
        picture.close()
        raise DatasetError(_too_many_pixels(path, f"{width} x {height} = {width * height:,} pixels"))
    return picture


def _too_many_pixels(path: Path, claimed: str) -> str:
    return (f"{path}: its header claims {claimed}, more than the {MAX_IMAGE_PIXELS:,} this library decodes "
            f"(retina_lib.data.readers.MAX_IMAGE_PIXELS); refused before decoding, since a small file claiming "
            f"that many pixels is usually damaged or a decompression bomb")


def _open(path: Path) -> Image.Image:
    """Open and fully decode ``path`` with Pillow, unzipping ``.gz`` files first.

    ``Image.open`` only reads the header; the pixel limit is checked there
    (:func:`open_within_pixel_limit`), and calling ``load()`` here makes a
    truncated or corrupt file fail now, with its name, instead of later.
    A ``.gz`` file is decoded straight from the decompressing stream, so it
    never takes more memory than its (limited) pixels.
    """
    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"{path}: a folder, not an image file")
    link_problem = broken_link_problem(path)
    if link_problem is not None:
        raise DatasetError(link_problem)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                picture = open_within_pixel_limit(stream, path)
                picture.load()
        else:
            picture = open_within_pixel_limit(path, path)
            refuse_oriented_tiff(picture, path)
            picture.load()
        return upright(picture)
    except DatasetError:
        raise
    except (OSError, EOFError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{path}: cannot decode as an image ({error})") from error


#: EXIF/TIFF tag 274, Orientation: how the stored pixels must be turned to be shown upright.
ORIENTATION_TAG = 274
def refuse_oriented_tiff(picture: Image.Image, path: Path) -> None:
    """Refuse a TIFF whose Orientation tag asks for any turn or mirror (a value other than 1).

    Pillow's versions disagree on such files: Pillow 10 turns a TIFF while
    decoding it and leaves the tag in place, so turning it by the tag gives a
    second, wrong turn; Pillow 13 turns compressed TIFFs correctly but decodes
    an uncompressed one with a quarter turn into scrambled pixels (both seen in
    the tests). No single rule reads them right everywhere, and a wrong turn
    would be a silently misaligned photograph or label, so they are refused.
    JPEG and PNG files are turned by their tag (:func:`upright`); the real
    datasets' TIFFs carry no Orientation tag.
    """
    if picture.format == "TIFF" and picture.tag_v2.get(ORIENTATION_TAG, 1) != 1:
        raise DatasetError(f"{path}: a TIFF with an Orientation tag ({picture.tag_v2.get(ORIENTATION_TAG)}); "
                           f"Pillow's versions turn such files differently, so it is refused rather than read "
                           f"wrong. Save it turned upright (without the tag), or as PNG")


def upright(picture: Image.Image) -> Image.Image:
    """``picture`` turned the way its EXIF Orientation tag says it is shown.

    Cameras and phones store the pixels as the sensor read them and record in
    the tag (JPEG, PNG and TIFF can carry one) how to turn them; every image
    viewer applies it. Reading the pixels without it would give a vessel map
    rotated or mirrored against the photograph the user sees. The same is
    done to masks, so a label saved by the same tool still lines up.
    """
    ImageOps.exif_transpose(picture, in_place=True)  # a no-op (no copy) when there is no tag
    return picture


#: Pillow's modes for greyscale files with more than 8 bits per pixel (16-bit PNG and TIFF).
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I")
#: The bit depths a 16-bit file may really hold: cameras and scanners write 10-, 12- or
#: 14-bit data into 16-bit files, and 8-bit data is sometimes saved that way too.
STORED_BIT_DEPTHS = (8, 10, 12, 14, 16)


class BitDepthWarning(UserWarning):
    """A 16-bit file holds data of fewer bits (12-bit, say) and is scaled by that depth's white level."""


def wide_grey_white_level(values: np.ndarray, path: Path) -> int:
    """The white level of a 16-bit greyscale file: 2**bits - 1 for the fewest bits that hold its values.

    A 16-bit PNG holding 12-bit camera data never goes above 4095; divided by
    65535 it would peak at 0.062, a nearly black photograph that the network
    would read as no vessels at all. The file does not say how many bits are
    real (Pillow does not read PNG's optional sBIT chunk), so the depth is
    inferred from the largest value, and a :class:`BitDepthWarning` naming
    the file says when it is not 16. Values outside 0..65535 (a 32-bit file)
    have no known white level and raise :class:`DatasetError`.
    """
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > 65535:
        raise DatasetError(f"{path}: a 32-bit integer image with values from {low} to {high}, "
                           f"outside the 16-bit range 0..65535, so its white level is unknown; "
                           f"save it as an 8-bit or 16-bit image")
    bits = next(depth for depth in STORED_BIT_DEPTHS if high <= 2 ** depth - 1)
    if bits < 16:
        warnings.warn(f"{path}: a 16-bit file whose values go up to {high} only, read as {bits}-bit data "
                      f"(white = {2 ** bits - 1}) rather than divided by 65535, which would make it nearly black",
                      BitDepthWarning, stacklevel=3)
    return 2 ** bits - 1


def read_image(path: Path | str) -> np.ndarray:
    """Read a photograph as an H x W x 3 float32 RGB array with values in [0, 1].

    8-bit files are divided by 255. 16-bit greyscale files are divided by the
    white level of the bit depth they really hold (65535 for 16-bit data,
    4095 for 12-bit data, ...: see :func:`wide_grey_white_level`).
    Greyscale photographs are repeated into three channels and an alpha
    channel is dropped, so every model sees the same input layout.
    """
    path = Path(path)
    picture = _open(path)
    if picture.mode in WIDE_GREY_MODES:
        grey = np.asarray(picture, dtype=np.float32)
        white = wide_grey_white_level(grey, path)
        return np.repeat(grey[:, :, None] / float(white), 3, axis=2)
    if picture.mode not in ("RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "YCbCr"):
        raise DatasetError(f"{path}: unsupported image mode {picture.mode!r}; expected an 8-bit RGB or greyscale image")
    rgb = np.asarray(picture.convert("RGB"), dtype=np.float32)
    return rgb / 255.0


def read_mask(path: Path | str) -> np.ndarray:
    """Read a binary mask (vessel label or field of view) as an H x W bool array.

    Values become True/False by :func:`binarise_mask_values`: a mask with
    two values (0/255, 0/1, 1-bit, 0/4095, ...) is read exactly; one with
    grey levels is cut at mid-grey, with a :class:`GreyMaskWarning` naming
    the file when many pixels are grey. Palette images (GIFs) are read by
    the colour each index stands for, see :func:`_read_palette_mask`.

    Masks stored as RGB (HRF's field-of-view TIFFs) must have three identical
    channels; anything else is probably a photograph passed by mistake and
    raises :class:`DatasetError`. An alpha channel is ignored.
    """
    path = Path(path)
    picture = _open(path)
    if picture.mode in ("P", "PA"):
        return _read_palette_mask(picture, path)
    values = np.asarray(picture)
    if picture.mode in ("LA", "RGBA"):
        values = values[..., :-1]  # drop the alpha channel
    if values.ndim == 3:
        channels = values.shape[2]
        if channels > 1 and not all(np.array_equal(values[..., 0], values[..., c]) for c in range(1, channels)):
            raise DatasetError(
                f"{path}: a mask must be single-channel or have identical colour channels, "
                f"but this {picture.mode} image has different channels (is it a photograph?)"
            )
        values = values[..., 0]
    if values.ndim != 2:
        raise DatasetError(f"{path}: expected a 2-D mask, decoded an array of shape {values.shape}")
    if values.dtype == bool:
        # A 1-bit file. Pillow's array is read-only and stores True as the byte 255, which
        # code that indexes by the raw bytes (skimage's skeletonize) reads out of bounds:
        # compare the bytes, which gives a fresh array of proper 0/1 booleans.
        return values.view(np.uint8) != 0
    return binarise_mask_values(values, picture.mode in WIDE_GREY_MODES, path)


#: A mask in which more than this share of pixels is neither black (0) nor white
#: gets a :class:`GreyMaskWarning`: 1 %. The real CHASE_DB1 and HRF labels and masks
#: have none; CHASE_DB1's Image_01L label saved as JPEG (quality 90) has 6.9 %, resized
#: bilinearly 5.1 %.
GREY_MASK_WARNING_SHARE = 0.01


class GreyMaskWarning(UserWarning):
    """A mask holds many grey pixels (saved as JPEG, or resized), so it was cut at mid-grey."""


def binarise_mask_values(values: np.ndarray, wide_grey: bool, path: Path) -> np.ndarray:
    """True/False from the decoded values of a greyscale mask (``wide_grey``: a 16-bit file).

    * Two values at most (0/255, 0/1, 0/4095 or a single value): the
      non-zero one is foreground. This keeps 0/1 labels, which a cut at
      mid-grey would read as empty.
    * More values: foreground where the value is at least half of the
      white level (128 of 255; for a 16-bit file see
      :func:`wide_grey_white_level`). A label saved as JPEG (quality 90) or resized
      bilinearly has faint grey fringes around every vessel; counting every
      value above 0 made CHASE_DB1's Image_01L 11.2 % vessel instead of its
      7.0 %, the cut gives 7.0 %. When more than
      :data:`GREY_MASK_WARNING_SHARE` of the pixels are neither 0 nor
      white a :class:`GreyMaskWarning` names the file, since such a
      label has lost detail that no cut brings back.

    A floating-point mask with grey levels has no known white level and
    raises :class:`DatasetError`.
    """
    levels = np.unique(values)
    if len(levels) <= 2 and levels[0] == 0 or len(levels) == 1:
        return values > 0
    if not np.issubdtype(values.dtype, np.integer):
        raise DatasetError(f"{path}: a floating-point mask with {len(levels)} different values has no known "
                           f"white level; save it as an 8-bit mask with 0 for background and 255 for foreground")
    white = wide_grey_white_level(values, path) if wide_grey else 255
    grey_share = float(((values > 0) & (values < white)).mean())
    if grey_share > GREY_MASK_WARNING_SHARE:
        warnings.warn(f"{path}: {grey_share:.1%} of the mask's pixels are grey (neither 0 nor {white}), as in a "
                      f"label saved as JPEG or resized; read as foreground where at least {(white + 1) // 2} "
                      f"(mid-grey). Save masks as PNG with 0 and {white} only", GreyMaskWarning, stacklevel=3)
    return values >= (white + 1) // 2


#: A palette colour whose mean of R, G and B (0-255) is at most this is dark: background.
PALETTE_DARK = 64
#: A palette colour whose mean of R, G and B is at least this is bright: foreground.
#: Colours in between could be either, so a mask that uses one is refused.
PALETTE_BRIGHT = 192


def _read_palette_mask(picture: Image.Image, path: Path) -> np.ndarray:
    """Read a palette (mode "P" or "PA") mask by the brightness of the colour of each index.

    In a palette image each pixel holds an *index* into a table of colours,
    and the index numbers mean nothing by themselves. DRIVE's
    ``test/2nd_manual/*_manual2.gif`` use index 0 = (4, 2, 4) and index 1 =
    (252, 254, 252); Pillow saves an all-white mask with the single index
    0 = white. So what counts is the colour: an index whose colour is dark
    (mean of R, G, B at most 64) is background, a bright one (at least 192)
    is vessel or field of view. A colour in between (mid grey, pure red,
    ...) could be either, so the mask is refused with a
    :class:`DatasetError` naming the index and its colour, instead of being
    guessed. Only the indices that pixels use are looked at.
    """
    indices = np.asarray(picture)
    if indices.ndim == 3:  # mode "PA": index and alpha; the alpha is ignored
        indices = indices[..., 0]
    palette = np.asarray(picture.getpalette("RGB") or [], dtype=np.float64).reshape(-1, 3)
    used = np.unique(indices)
    if used.max() >= len(palette):
        raise DatasetError(f"{path}: palette mask uses index {int(used.max())} but its palette has only "
                           f"{len(palette)} colours")
    brightness = palette[used].mean(axis=1)
    ambiguous = (brightness > PALETTE_DARK) & (brightness < PALETTE_BRIGHT)
    if ambiguous.any():
        described = ", ".join(f"index {int(index)} = {tuple(int(c) for c in palette[index])}"
                              for index in used[ambiguous])
        raise DatasetError(
            f"{path}: palette mask with colours that are neither dark (mean of R, G, B <= "
            f"{PALETTE_DARK}, background) nor bright (>= {PALETTE_BRIGHT}, "
            f"foreground): {described}; save the mask as greyscale with 0 for background and 255 for foreground"
        )
    foreground = np.zeros(len(palette), dtype=bool)
    foreground[used] = brightness >= PALETTE_BRIGHT
    return foreground[indices]
