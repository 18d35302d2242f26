"""Image files in and out: RGB float32 ``[H, W, 3]`` in [0, 1].

Input policy: the EXIF orientation is applied; grayscale, palette, CMYK,
YCbCr and Lab images are converted to RGB; transparency is composited on
white (not dropped), a colour key (PNG ``tRNS`` on an RGB or grey image) as well; 16-bit images are
scaled to 8 bits, 32-bit float images in [0, 1] (or [0, 255]) likewise, and float images holding NaN
or Inf are refused; animated and multi-page images use their
first frame; an embedded ICC colour profile is applied (the pixels converted to
sRGB; images without one are taken as sRGB); files that do not fully decode (truncated or
corrupt) are refused, JPEGs that libjpeg reports corrupt too (its warnings, from a strict decode
with ``simplejpeg``; Pillow decodes such files without a word), PostScript and EPS files always
(Pillow would run Ghostscript on an untrusted file), as are images of more than :data:`MAX_INPUT_PIXELS` pixels
(decompression bombs, checked from the header before decoding) and images whose shorter side
would be below :data:`MIN_SIZE` after resizing. Pillow's own process-wide limit
(``PIL.Image.MAX_IMAGE_PIXELS``, which this module reads but never changes) applies as well.
Outputs (PNG, JPEG, TIFF, WebP) carry an sRGB ICC profile; a format that would store another size than
the image's (ICO keeps only its fixed icon sizes) is refused before any compute
(:func:`check_output_size`). Every other format Pillow reads is accepted (PNG, JPEG, GIF, BMP, WebP,
TIFF, ...). Outputs are written to a temporary file in
the target directory and renamed into place, so a reader never sees a
partial file; the run record they carry is written and read by :mod:`nst_jax._src.record`.
"""

from __future__ import annotations

import functools
import io
import os
import pathlib
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from jax.typing import ArrayLike
from PIL import Image, ImageCms, ImageOps

from nst_jax._src.atomic import atomic_open
from nst_jax._src.record import save_options
from nst_jax.errors import NSTError, one_line

DEFAULT_SIZE = 512  # longest side of the output, pixels
MIN_SIZE = 32  # smallest side the network can process (five 2x2 poolings leave one position)
MAX_SIZE = 8192
MAX_INPUT_PIXELS = 200_000_000  # refuse decompression bombs beyond this many pixels


# Formats whose Pillow writer embeds an ICC profile.
ICC_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP")


# Formats never opened: Pillow's EPS reader runs Ghostscript on the file.
REFUSED_FORMATS = ("EPS",)
POSTSCRIPT_MAGIC = (b"%!PS", b"\xc5\xd0\xd3\xc6")
# Formats that store any RGB image up to MAX_SIZE at its own size (no probe needed).
FULL_SIZE_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP", "PPM", "TGA", "GIF", "SGI", "PCX", "QOI", "JPEG2000")
# libjpeg's warnings (a strict decode raises them) that mean the data is corrupt, as opposed to a
# feature the strict decoder lacks.
JPEG_CORRUPT = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid SOS parameters",
                "Inconsistent progression sequence", "Bogus")


class _TooLarge(Exception):
    pass


@functools.cache
def srgb_profile_bytes() -> bytes:
    """The ICC profile outputs are tagged with (Pillow's built-in sRGB).

    Returns:
        The profile's bytes.
    """
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Opens, fully decodes and converts an image file to 8-bit sRGB.

    Args:
        path: The image file.

    Returns:
        An RGB Pillow image (its ICC profile, if any, applied).

    Raises:
        NSTError: If the path is missing, not a file, empty, not an image,
            truncated, or too large to decode safely.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise NSTError(f"{path}: no such file")
    if not path.is_file():
        raise NSTError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise NSTError(f"{path}: empty file")
    with open(path, "rb") as f:
        if f.read(4) in POSTSCRIPT_MAGIC:
            raise NSTError(f"{path}: PostScript/EPS files are not read (reading them runs Ghostscript); convert it to "
                           "PNG first")
    Image.init()
    formats = [name for name in Image.ID if name not in REFUSED_FORMATS]
    try:
        with warnings.catch_warnings():
            # The size is checked against MAX_INPUT_PIXELS below, before decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=formats) as im:
                if im.size[0] * im.size[1] > MAX_INPUT_PIXELS:
                    raise _TooLarge
                if im.format in ("JPEG", "MPO"):
                    _check_jpeg(path)
                im.seek(0)
                im.load()
                im = ImageOps.exif_transpose(im)
                return _to_srgb(im, _to_rgb(im))
    except NSTError as err:
        raise NSTError(f"{path}: {err}") from None
    except (Image.DecompressionBombError, _TooLarge):
        raise NSTError(f"{path}: image too large (more than {MAX_INPUT_PIXELS} pixels)") from None
    except Image.UnidentifiedImageError:
        raise NSTError(f"{path}: not an image file Pillow can read") from None
    except MemoryError:
        raise NSTError(f"{path}: not enough memory to decode this image") from None
    except Exception as err:  # Pillow raises many types on corrupt files
        raise NSTError(f"{path}: cannot decode image, truncated or corrupt ({one_line(err)})") from None


def _check_jpeg(path: pathlib.Path) -> None:
    """Refuses a JPEG that libjpeg decodes only with a corruption warning (Pillow silences them): a strict
    decode with ``simplejpeg``, which raises them. Without simplejpeg installed, nothing is checked."""
    try:
        import simplejpeg
    except ImportError:
        return
    try:
        simplejpeg.decode_jpeg(path.read_bytes(), strict=True)
    except (ValueError, RuntimeError) as err:
        if "Premature end" in str(err):
            raise NSTError("truncated JPEG (the file ends before its image data does), refused") from None
        if any(text in str(err) for text in JPEG_CORRUPT):
            raise NSTError(f"corrupt JPEG data, refused ({one_line(err, 80)})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGB", "L") and "transparency" in im.info:
        im = im.convert("RGBA")  # a colour key: those pixels are transparent, composited on white below
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise NSTError("its pixels are not finite (NaN or Inf); not read")
        peak = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
        im = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 or im.mode.startswith("I;16") else 255.0
        im = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _to_srgb(im: Image.Image, rgb: Image.Image) -> Image.Image:
    """``rgb`` (``im`` converted to RGB) in sRGB, by ``im``'s embedded ICC profile where it has one.

    RGB profiles convert ``rgb`` (transparency already composited), grey and CMYK profiles the
    original grey or CMYK pixels. A profile that is unreadable, already sRGB, or does not fit the
    pixels is ignored with a warning (unreadable or unfitting) or silently (sRGB).
    """
    icc = im.info.get("icc_profile")
    if not icc:
        return rgb
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if (source.profile.profile_description or "").strip().lower().startswith("srgb"):
            return rgb
        space = source.profile.xcolor_space.strip()
        pixels = {"RGB": rgb, "GRAY": im if im.mode == "L" else None, "CMYK": im if im.mode == "CMYK" else None}
        if pixels.get(space) is None:
            warnings.warn(f"ignoring an embedded {space} ICC profile on a {im.mode} image", stacklevel=4)
            return rgb
        srgb = ImageCms.ImageCmsProfile(io.BytesIO(srgb_profile_bytes()))
        out = ImageCms.profileToProfile(pixels[space], source, srgb, outputMode="RGB")
        return out if out is not None else rgb
    except (ImageCms.PyCMSError, OSError, ValueError) as err:
        warnings.warn(f"ignoring an unreadable embedded ICC profile ({one_line(err)})", stacklevel=4)
        return rgb


def resized_size(size_wh: tuple[int, int], size: int) -> tuple[int, int]:
    """``(W, H)`` of an image of ``size_wh`` resized so that its longest side is ``size`` (aspect kept)."""
    w, h = size_wh
    scale = size / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def header_shape(path: str | os.PathLike[str], size: int) -> tuple[int, int, int] | None:
    """The shape an image will have once loaded at a size, read from its header alone (nothing decoded).

    Args:
        path: The image file.
        size: The longest side it is loaded at (:func:`load_image`).

    Returns:
        ``(H, W, 3)``, EXIF rotation included; None where the header cannot be read (loading the file
        then says why).
    """
    try:
        with Image.open(path, formats=[name for name in Image.ID if name not in REFUSED_FORMATS]) as im:
            w, h = im.size
            if im.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated a quarter turn
                w, h = h, w
    except Exception:  # noqa: BLE001 - any fault is reported by the load itself
        return None
    new_w, new_h = resized_size((w, h), size)
    return new_h, new_w, 3


def resize_longest(im: Image.Image, size: int) -> Image.Image:
    """Resizes so the longest side is ``size`` pixels (Lanczos), keeping the aspect ratio.

    Raises:
        NSTError: If the shorter side would fall below :data:`MIN_SIZE`.
    """
    w, h = im.size
    new = resized_size(im.size, size)
    if min(new) < MIN_SIZE:
        raise NSTError(f"image {w}x{h} at size {size} would be {new[0]}x{new[1]}, "
                       f"smaller than the {MIN_SIZE} px the network needs")
    return im if new == (w, h) else im.resize(new, Image.LANCZOS)


def load_image(path: str | os.PathLike[str], size: int | None = None) -> npt.NDArray[np.float32]:
    """Reads an image as ``[H, W, 3]`` float32 RGB in [0, 1], optionally resized to a longest side.

    Changes no process-wide state (Pillow's ``Image.MAX_IMAGE_PIXELS`` included); see the
    module's docstring for what is accepted and how.

    Args:
        path: The image file; every format Pillow reads.
        size: The longest side after resizing (Lanczos, aspect kept), or None for the file's size.

    Returns:
        ``[H, W, 3]`` float32 sRGB in [0, 1] (a NumPy array: every nst_jax function takes it).

    Raises:
        NSTError: For a missing, unreadable, truncated or too large file, or a too small image.
    """
    im = open_image(path)
    if size is not None:
        im = resize_longest(im, size)
    elif min(im.size) < MIN_SIZE:
        raise NSTError(f"{path}: image {im.size[0]}x{im.size[1]} is smaller than {MIN_SIZE} px")
    return np.asarray(im, dtype=np.float32) / 255.0


def to_uint8(image: ArrayLike) -> npt.NDArray[np.uint8]:
    """``[H, W, 3]`` float in [0, 1] (clipped) to uint8.

    Args:
        image: Float pixels in [0, 1].

    Returns:
        uint8 pixels, rounded.
    """
    return (np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def image_format(path: str | os.PathLike[str]) -> str | None:
    """Pillow's format for a path's extension, case-insensitive.

    Args:
        path: A file name; only its extension is read.

    Returns:
        The format's name (``"PNG"``, ``"JPEG"``, ...), or None for an extension Pillow does not know.
    """
    return Image.registered_extensions().get(pathlib.Path(path).suffix.lower())


def check_output_path(path: str | os.PathLike[str]) -> pathlib.Path:
    """Checks that an image can be written at ``path`` before any compute is spent, by writing a tiny one
    of the same format to a temporary file in the same directory.

    Args:
        path: Where the image will go; the format follows the extension.

    Returns:
        ``path`` as a ``pathlib.Path``.

    Raises:
        NSTError: If the directory is missing or unwritable, the path is a
            directory, or Pillow has no writer for the extension or cannot write RGB in that format.
    """
    if os.fspath(path).endswith(os.sep) or pathlib.Path(path).is_dir():
        raise NSTError(f"{path} names a directory; give an image file name (e.g. {pathlib.Path(path) / 'out.png'})")
    path = pathlib.Path(path)
    fmt = image_format(path)
    if fmt is None or fmt not in Image.SAVE:
        raise NSTError(f"{path}: unknown image format {path.suffix.lower() or '(no extension)'!r}; "
                       "use e.g. .png or .jpg")
    parent = path.parent if str(path.parent) else pathlib.Path(".")
    if not parent.is_dir():
        raise NSTError(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NSTError(f"{path}: directory {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise NSTError(f"{path}: exists and is not writable")
    _probe(path, parent, fmt)
    return path


def _probe(path: pathlib.Path, parent: pathlib.Path, fmt: str) -> None:
    """Writes a tiny RGB image of the format to a temporary file in ``parent`` (removed after).

    Raises:
        NSTError: If Pillow cannot write RGB images in that format (e.g. XBM, MSP).
        OSError: If the directory refuses the file (disk full, permission): a fault of the system.
    """
    with tempfile.TemporaryFile(dir=parent, prefix=".nst-jax-probe") as f:
        try:
            Image.new("RGB", (16, 16), (128, 64, 32)).save(f, format=fmt)
        except (OSError, ValueError, KeyError, TypeError) as err:
            if isinstance(err, OSError) and err.errno is not None:
                raise
            raise NSTError(f"{path}: cannot write RGB images as {fmt} ({one_line(err)}); use e.g. .png or .jpg") \
                from None


def check_output_size(path: str | os.PathLike[str], shape: tuple[int, ...]) -> None:
    """Checks that ``path``'s format stores an image of ``shape`` at that size, before any compute: formats
    other than :data:`FULL_SIZE_FORMATS` are probed with a blank image in memory.

    Args:
        path: Where the image will go; the format follows the extension.
        shape: ``(H, W, ...)`` of the image.

    Raises:
        NSTError: If the format would store another size (ICO keeps its fixed icon sizes only).
    """
    fmt = image_format(path)
    h, w = int(shape[0]), int(shape[1])
    if fmt is None or fmt in FULL_SIZE_FORMATS:
        return
    buf = io.BytesIO()
    try:
        Image.new("RGB", (w, h)).save(buf, format=fmt)
        buf.seek(0)
        with Image.open(buf) as im:
            stored = im.size
    except (OSError, ValueError, KeyError, TypeError, SyntaxError) as err:
        raise NSTError(f"{path}: cannot write a {w}x{h} image as {fmt} ({one_line(err)}); use e.g. .png") from None
    if stored != (w, h):
        raise NSTError(f"{path}: {fmt} cannot hold a {w}x{h} image (it would store {stored[0]}x{stored[1]}); "
                       "use e.g. .png or .jpg")


def save_image(path: str | os.PathLike[str], image: ArrayLike, *, record: Mapping[str, Any] | None = None,
               replace: bool = True) -> None:
    """Writes ``[H, W, 3]`` RGB in [0, 1] atomically (temporary file + rename).

    Args:
        path: Destination; the format follows the extension.
        image: ``[H, W, 3]`` float RGB, clipped to [0, 1].
        record: JSON-able run record stored in the file (:mod:`nst_jax._src.record`): a PNG ``iTXt``
            chunk, or the comment of a JPEG; other formats carry none.
        replace: Replace an existing file at ``path``; if False a file found there is kept and the
            image goes beside it (:func:`nst_jax._src.atomic.place_new`).

    The file carries an sRGB ICC profile where the format takes one (PNG, JPEG, TIFF, WebP).

    Raises:
        NSTError: If the extension is no image format, or the record does not fit the format.
        nst_jax.errors.OutputExists: With ``replace=False``, if ``path`` exists.
    """
    path = pathlib.Path(path)
    fmt = image_format(path)
    if fmt is None:
        raise NSTError(f"{path}: unknown image format {path.suffix.lower() or '(no extension)'!r}")
    options = save_options(record, fmt)
    if fmt in ICC_FORMATS:
        options = {**options, "icc_profile": srgb_profile_bytes()}
    with atomic_open(path, replace=replace) as f:
        Image.fromarray(to_uint8(image), "RGB").save(f, format=fmt, **options)
