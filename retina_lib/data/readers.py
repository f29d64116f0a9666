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
import re
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

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


def is_image_file(path: Path) -> bool:
    """True for files with one of :data:`IMAGE_EXTENSIONS`, in any case, gzipped or not."""
    extension = split_extension(path)[1].removesuffix(".gz")
    return path.is_file() and not path.name.startswith(".") and extension in IMAGE_EXTENSIONS


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
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                picture = open_within_pixel_limit(stream, path)
                picture.load()
        else:
            picture = open_within_pixel_limit(path, path)
            picture.load()
    except DatasetError:
        raise
    except (OSError, EOFError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{path}: cannot decode as an image ({error})") from error
    return picture


def read_image(path: Path | str) -> np.ndarray:
    """Read a photograph as an H x W x 3 float32 RGB array with values in [0, 1].

    8-bit files are divided by 255 and 16-bit greyscale files by 65535.
    Greyscale photographs are repeated into three channels and an alpha
    channel is dropped, so every model sees the same input layout.
    """
    picture = _open(Path(path))
    if picture.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(picture, dtype=np.float32)
        low, high = float(grey.min()), float(grey.max())
        if low < 0 or high > 65535:  # a 32-bit file ("I") whose white level cannot be known
            raise DatasetError(f"{path}: a 32-bit integer image with values from {low:.0f} to {high:.0f}, "
                               f"outside the 16-bit range 0..65535, so its white level is unknown; "
                               f"save it as an 8-bit or 16-bit image")
        return np.repeat(grey[:, :, None] / 65535.0, 3, axis=2)
    if picture.mode not in ("RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "YCbCr"):
        raise DatasetError(f"{path}: unsupported image mode {picture.mode!r}; expected an 8-bit RGB or greyscale image")
    rgb = np.asarray(picture.convert("RGB"), dtype=np.float32)
    return rgb / 255.0


def read_mask(path: Path | str) -> np.ndarray:
    """Read a binary mask (vessel label or field of view) as an H x W bool array.

    A pixel is True where the decoded value is above zero, so labels stored
    as 0/255, 0/1 or 1-bit all work; testing ``== 255`` would silently give
    an empty label for the 0/1 ones. Palette images (GIFs) are read by the
    colour each index stands for, see :func:`_read_palette_mask`.

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
    return values > 0


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
