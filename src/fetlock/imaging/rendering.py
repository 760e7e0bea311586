"""Render stored DICOM instances as JPEG or PNG thumbnails and previews.

One entry point per use: :func:`render_thumbnail` for the chart and the
DICOMweb ``/thumbnail`` resources, :func:`render_frame` for ``/rendered``.
Both read only what they need: the header, then the one frame being shown,
so a 100 MB cine costs one decoded frame, not fifty.

The greyscale pipeline follows PS3.3 C.11 and PS3.4 N.2: stored values go
through the Modality LUT or rescale, then the VOI LUT or window (from the
file, the caller, or a percentile window when the file has none), then the
Presentation LUT Shape; MONOCHROME1 is inverted so that bone stays white.
Colour images are converted to RGB (palette colour through its LUTs, YCbCr
through pydicom's decoders). Objects without pixels (Encapsulated PDF,
Structured Reports, video we cannot decode) get a labelled placeholder
picture rather than an error, so every instance has something to show.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, cast

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, pixel_array
from pydicom.uid import (
    HEVCM10P51,
    HEVCMP51,
    MPEG2MPHL,
    MPEG2MPML,
    MPEG4HP41,
    MPEG4HP41BD,
    MPEG4HP42STEREO,
    MPEG4HP422D,
    MPEG4HP423D,
    UID,
    DeflatedExplicitVRLittleEndian,
)

logger = logging.getLogger(__name__)

RenderSource = str | os.PathLike[str] | BinaryIO | Dataset
"""A path to a DICOM file, an open binary file positioned anywhere, or a
dataset already read."""

ImageFormat = Literal["jpeg", "png"]

VIDEO_TRANSFER_SYNTAXES = frozenset(
    {
        MPEG2MPML,
        MPEG2MPHL,
        MPEG4HP41,
        MPEG4HP41BD,
        MPEG4HP422D,
        MPEG4HP423D,
        MPEG4HP42STEREO,
        HEVCMP51,
        HEVCM10P51,
    }
)
"""Transfer syntaxes whose pixel data is one encapsulated video stream
(PS3.5 8.2.5 to 8.2.8)."""

ENCAPSULATED_PDF_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.1")
ENCAPSULATED_CDA_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.2")
SR_SOP_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
"""Every Structured Report storage SOP Class (and Key Object Selection)
sits under this arc (PS3.4 Annex B.5)."""

JPEG_QUALITY = 85
"""JPEG quality for rendered output: visually clean at a fraction of PNG's
size."""

VIDEO_PREFIX_BYTES = 16 * 1024 * 1024
"""At most this many bytes of an encapsulated video stream are handed to
ffmpeg to decode its first frame; the poster needs only the start."""

FFMPEG_TIMEOUT_SECONDS = 30.0

_PERCENTILE_SAMPLES = 1_000_000
"""The automatic window looks at about this many pixels, evenly spread."""

_AUTO_PERCENTILES = (0.5, 99.5)


class RenderError(ValueError):
    """The object cannot be rendered as requested (frame number out of range,
    invalid window or size, or undecodable pixel data)."""


@dataclass(frozen=True)
class Window:
    """A VOI window in modality units (after rescale), PS3.3 C.11.2.1.2.

    Attributes
    ----------
    center, width:
        (0028,1050) Window Center and (0028,1051) Window Width.
    function:
        (0028,1056) VOI LUT Function: ``LINEAR``, ``LINEAR_EXACT`` or
        ``SIGMOID``.
    """

    center: float
    width: float
    function: str = "LINEAR"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.width)):
            raise RenderError(
                f"window center {self.center!r} or width {self.width!r} is not a "
                "finite number; pass e.g. Window(center=40, width=400)"
            )
        if self.width <= 0 or (self.function == "LINEAR" and self.width < 1):
            raise RenderError(
                f"window width {self.width!r} is too small; (0028,1051) Window "
                "Width must be at least 1 (greater than 0 for LINEAR_EXACT)"
            )
        if self.function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            raise RenderError(
                f"VOI LUT Function {self.function!r} is not one of LINEAR, "
                "LINEAR_EXACT or SIGMOID"
            )


WindowChoice = Window | tuple[float, float] | Literal["auto"] | None
"""``None``: the file's VOI LUT or window, else automatic. ``"auto"``: the
percentile window even when the file has one. A :class:`Window` or a
``(center, width)`` pair: exactly that window."""


# -- public API -------------------------------------------------------------


def render_thumbnail(source: RenderSource, size: int = 256) -> bytes:
    """Return a JPEG whose longer side is `size` pixels.

    Multi-frame images show their middle frame; objects without pixel data
    or with undecodable pixel data show a labelled placeholder. Raises
    RenderError only for an out-of-range `size`.

    Parameters
    ----------
    source:
        Path, open binary file, or :class:`~pydicom.dataset.Dataset`.
    size:
        Length of the longer side of the output, in pixels (16 to 2048).
    """
    _check_size("size", size)
    header = _read_header(source)
    try:
        kind = _classify(header)
        if kind.placeholder is not None:
            return _encode(_placeholder(kind.placeholder, size), "jpeg")
        if kind.is_video:
            return _encode(_fit(_video_poster(source, header, size), size), "jpeg")
        index = _frame_count(header) // 2
        image = _render_image(source, header, index, None, target=size)
        return _encode(_fit(image, size, enlarge=True), "jpeg")
    except Exception:
        # A failed thumbnail must not fail the job that requested it, so log
        # the object's ids and show a placeholder instead.
        logger.exception(
            "thumbnail rendering failed for SOP Instance %s",
            header.get("SOPInstanceUID", "?"),
        )
        return _encode(_placeholder("No preview", size), "jpeg")


def render_frame(
    source: RenderSource,
    frame: int = 0,
    *,
    window: WindowChoice = None,
    max_size: int | None = None,
    fmt: ImageFormat = "jpeg",
) -> bytes:
    """Return one frame rendered for display, as JPEG or PNG bytes.

    Parameters
    ----------
    source:
        Path, open binary file, or :class:`~pydicom.dataset.Dataset`.
    frame:
        Zero-based frame index (WADO-RS frame numbers start at 1; subtract
        one before calling).
    window:
        See :data:`WindowChoice`. Ignored for colour images.
    max_size:
        If given, the image is scaled down (never up) so that neither side
        exceeds it.
    fmt:
        ``"jpeg"`` or ``"png"``.

    Raises
    ------
    RenderError
        `frame` is out of range, the format is unknown, or the pixel data
        cannot be decoded. Objects without pixels render as placeholders.
    """
    if fmt not in ("jpeg", "png"):
        raise RenderError(f"image format {fmt!r} is invalid; use jpeg or png")
    if max_size is not None:
        _check_size("max_size", max_size)
    header = _read_header(source)
    kind = _classify(header)
    if kind.placeholder is not None:
        return _encode(_placeholder(kind.placeholder, max_size or 512), fmt)
    if kind.is_video:
        poster = _video_poster(source, header, max_size or 1024)
        return _encode(_fit(poster, max_size) if max_size else poster, fmt)

    frames = _frame_count(header)
    if not 0 <= frame < frames:
        raise RenderError(
            f"frame index {frame} is out of range; this object has {frames} "
            f"frame(s), so use 0 to {frames - 1}"
        )
    image = _render_image(source, header, frame, window, target=max_size)
    if max_size is not None:
        image = _fit(image, max_size)
    return _encode(image, fmt)


def frame_count(source: RenderSource) -> int:
    """Return the number of frames in `source` (1 for single-frame images,
    0 for objects without pixel data)."""
    header = _read_header(source)
    kind = _classify(header)
    if kind.placeholder is not None:
        return 0
    return _frame_count(header)


def decode_frame(source: RenderSource, frame: int = 0) -> np.ndarray:
    """Return the stored values of one zero-based frame, decoded.

    Colour data comes back as RGB (pydicom converts YCbCr); no LUT or
    window is applied. Used for WADO-RS uncompressed frame retrieval.
    """
    header = _read_header(source)
    frames = _frame_count(header)
    if not 0 <= frame < frames:
        raise RenderError(
            f"frame index {frame} is out of range; this object has {frames} "
            f"frame(s), so use 0 to {frames - 1}"
        )
    return _decode(source, header, frame)


# -- reading ------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    placeholder: str | None = None
    is_video: bool = False


def _read_header(source: RenderSource) -> Dataset:
    """Read everything except the pixel data; a dataset is returned as it is."""
    if isinstance(source, Dataset):
        return source
    if hasattr(source, "read"):
        f = cast(BinaryIO, source)
        f.seek(0)
        return dcmread(f, stop_before_pixels=True, force=True)
    return dcmread(Path(source), stop_before_pixels=True, force=True)


def _read_full(source: str | os.PathLike[str] | BinaryIO) -> Dataset:
    if hasattr(source, "read"):
        f = cast(BinaryIO, source)
        f.seek(0)
        return dcmread(f, force=True)
    return dcmread(Path(source), force=True)


def _transfer_syntax(header: Dataset) -> UID | None:
    file_meta = getattr(header, "file_meta", None)
    value = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    return UID(value) if value else None


def _classify(header: Dataset) -> _Kind:
    SOPClassUID = str(header.get("SOPClassUID", ""))
    if SOPClassUID == ENCAPSULATED_PDF_STORAGE:
        return _Kind(placeholder="PDF report")
    if SOPClassUID == ENCAPSULATED_CDA_STORAGE:
        return _Kind(placeholder="CDA document")
    if SOPClassUID.startswith(SR_SOP_CLASS_PREFIX):
        return _Kind(placeholder="Structured report")
    if _transfer_syntax(header) in VIDEO_TRANSFER_SYNTAXES:
        return _Kind(is_video=True)
    if "Rows" not in header or "Columns" not in header:
        modality = str(header.get("Modality", "")) or "DICOM object"
        return _Kind(placeholder=f"{modality} (no image)")
    return _Kind()


def _frame_count(header: Dataset) -> int:
    try:
        return max(1, int(header.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _decode(source: RenderSource, header: Dataset, index: int) -> np.ndarray:
    """Decode one frame, reading only that frame from a file source.

    NOTE: JPEG 2000 frames are decoded at full resolution even for a
    thumbnail; openjpeg could decode a reduced resolution level in a
    fraction of the time (see docs/benchmarks.md).
    """
    try:
        if isinstance(source, Dataset):
            return pixel_array(source, index=index)
        if _transfer_syntax(header) == DeflatedExplicitVRLittleEndian:
            # pydicom's frame reader cannot seek inside a deflated stream;
            #   these files are rare and small, so inflate the whole dataset.
            return pixel_array(_read_full(source), index=index)
        if hasattr(source, "read"):
            return pixel_array(cast(BinaryIO, source), index=index)
        return pixel_array(Path(source), index=index)
    except Exception as exc:
        raise RenderError(
            f"cannot decode frame {index} of the pixel data: {exc}; the transfer "
            "syntax may need a decoder plugin that is not installed"
        ) from exc


# -- pixel pipeline -----------------------------------------------------------


def _render_image(
    source: RenderSource,
    header: Dataset,
    index: int,
    window: WindowChoice,
    target: int | None = None,
) -> Image.Image:
    """Render one frame; with `target`, shrink first to about twice that size."""
    arr = _decode(source, header, index)
    samples = int(header.get("SamplesPerPixel") or 1)
    photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2"))
    if target is not None:
        arr = _shrink(arr, target, average=photometric != "PALETTE COLOR")

    # Colour: with raw=False pydicom returns RGB for every YCbCr variant,
    #   converting native data itself and JPEG/J2K data in the codec.
    if samples == 3 or arr.ndim == 3:
        return Image.fromarray(_rgb_to_uint8(arr, header), mode="RGB")
    if photometric == "PALETTE COLOR":
        return Image.fromarray(_palette_to_uint8(arr, header), mode="RGB")

    grey = _greyscale_to_unit(arr, _frame_view(header, index), window)
    return Image.fromarray(np.round(grey * 255.0).astype(np.uint8), mode="L")


def _shrink(arr: np.ndarray, target: int, *, average: bool) -> np.ndarray:
    """Reduce `arr` by a whole factor so its longer side stays >= 2 * `target`.

    The LUT and window pipeline then works on a few hundred thousand pixels
    rather than millions. Blocks are averaged and rounded back to the
    stored dtype, so LUTs still index correctly; palette indices cannot be
    averaged and are subsampled instead (`average` False).
    """
    factor = max(arr.shape[0], arr.shape[1]) // (2 * target)
    if factor < 2:
        return arr
    if not average:
        return arr[::factor, ::factor]
    rows = arr.shape[0] // factor * factor
    columns = arr.shape[1] // factor * factor
    blocks = arr[:rows, :columns].reshape(
        rows // factor, factor, columns // factor, factor, *arr.shape[2:]
    )
    mean = blocks.mean(axis=(1, 3), dtype=np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        return np.round(mean).astype(arr.dtype)
    return mean.astype(arr.dtype)


def _greyscale_to_unit(
    arr: np.ndarray, view: Dataset, window: WindowChoice
) -> np.ndarray:
    """Stored values to display values in [0, 1] (PS3.4 N.2.1)."""

    # Modality LUT or Rescale Slope/Intercept (PS3.3 C.11.1).
    values = np.asarray(apply_modality_lut(arr, view), dtype=np.float32)

    # VOI: the caller's window, the file's VOI LUT or window, or automatic.
    chosen = _caller_window(window)
    if chosen is not None:
        out = _apply_window(values, chosen)
    elif window != "auto" and view.get("VOILUTSequence"):
        out = _apply_voi_lut_sequence(values, view)
    elif window != "auto" and (file_window := _file_window(view)) is not None:
        out = _apply_window(values, file_window)
    else:
        out = _apply_window(values, _auto_window(values))

    # MONOCHROME1 and an INVERSE Presentation LUT Shape both mean that low
    #   values are white (PS3.3 C.7.6.3.1.2, C.11.6.1.2); they are one
    #   inversion, not two.
    photometric = str(view.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "MONOCHROME1" or view.get("PresentationLUTShape") == "INVERSE":
        out = 1.0 - out
    return out


def _caller_window(window: WindowChoice) -> Window | None:
    if window is None or window == "auto":
        return None
    if isinstance(window, Window):
        return window
    if isinstance(window, tuple) and len(window) == 2:
        return Window(center=float(window[0]), width=float(window[1]))
    raise RenderError(
        f"window {window!r} is invalid; pass None, 'auto', a Window or a "
        "(center, width) pair"
    )


def _first_number(value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            return float(cast(float, value))
        items = list(cast(list[float], value))
        return float(items[0]) if items else None
    except (TypeError, ValueError):
        return None


def _file_window(view: Dataset) -> Window | None:
    center = _first_number(view.get("WindowCenter"))
    width = _first_number(view.get("WindowWidth"))
    if center is None or width is None:
        return None
    function = str(view.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    try:
        return Window(center=center, width=width, function=function)
    except RenderError:
        # Tolerant reading: an invalid window in the file falls back to auto.
        return None


def _apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """PS3.3 C.11.2.1.2: map modality values to [0, 1]."""
    c, w = window.center, window.width
    if window.function == "SIGMOID":
        out = 1.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
    elif window.function == "LINEAR_EXACT":
        out = (values - c) / w + 0.5
    else:
        out = (values - (c - 0.5)) / (w - 1.0) + 0.5 if w > 1 else values - c + 0.5
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _apply_voi_lut_sequence(values: np.ndarray, view: Dataset) -> np.ndarray:
    """PS3.3 C.11.2.1.1: the first VOI LUT, scaled by its output range."""
    item = view.VOILUTSequence[0]
    bits = int(item.LUTDescriptor[2])
    mapped = apply_voi(np.round(values).astype(np.int64), view, index=0)
    top = float(2**bits - 1)
    # Tolerant reading: some files declare 16 output bits while the LUT
    #   reaches only 10 or 12, so scale to what the LUT can produce.
    lut_max = float(np.max(mapped)) if mapped.size else 0.0
    if 0 < lut_max < (top + 1) / 2:
        top = float(2 ** math.ceil(math.log2(lut_max + 1)) - 1)
    return np.clip(mapped.astype(np.float32) / top, 0.0, 1.0)


def _auto_window(values: np.ndarray) -> Window:
    """Return a window spanning the 0.5th to 99.5th percentile of the values."""
    flat = values.reshape(-1)
    step = max(1, flat.size // _PERCENTILE_SAMPLES)
    sample = flat[::step]
    lo, hi = (float(v) for v in np.percentile(sample, _AUTO_PERCENTILES))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        return Window(center=lo, width=1.0)
    return Window(center=(lo + hi) / 2.0 + 0.5, width=hi - lo + 1.0)


def _frame_view(header: Dataset, index: int) -> Dataset:
    """Return the header with the frame's functional-group values on top.

    Enhanced multi-frame objects keep rescale and window in (5200,9229)
    Shared and (5200,9230) Per-Frame Functional Groups (PS3.3 C.7.6.16);
    the pipeline wants them where single-frame objects keep them.
    """
    shared = header.get("SharedFunctionalGroupsSequence")
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if not shared and not per_frame:
        return header
    view = Dataset()
    if hasattr(header, "file_meta"):
        view.file_meta = header.file_meta
    for element in header.group_dataset(0x0028):
        view.add(element)
    groups = [shared[0] if shared else None]
    if per_frame and index < len(per_frame):
        groups.append(per_frame[index])
    for group in groups:
        if group is None:
            continue
        for sequence in ("PixelValueTransformationSequence", "FrameVOILUTSequence"):
            if group.get(sequence):
                for element in group[sequence].value[0]:
                    view.add(element)
    return view


def _rgb_to_uint8(arr: np.ndarray, header: Dataset) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    bits = int(header.get("BitsStored") or arr.dtype.itemsize * 8)
    scaled = arr.astype(np.float64) / float(2**bits - 1) * 255.0
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _palette_to_uint8(arr: np.ndarray, header: Dataset) -> np.ndarray:
    rgb = apply_color_lut(arr, header)[..., :3]
    if rgb.dtype == np.uint8:
        return rgb
    # 16-bit palette entries; some writers declare 16 bits but fill 8.
    top = 65535.0 if int(rgb.max()) > 255 else 255.0
    return np.round(rgb.astype(np.float64) / top * 255.0).astype(np.uint8)


# -- video --------------------------------------------------------------------


def _video_poster(source: RenderSource, header: Dataset, size: int) -> Image.Image:
    """Return the first frame of an encapsulated video, or a "Video" placeholder."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return _placeholder("Video", size)
    try:
        stream = b"".join(_video_stream_prefix(source))
        result = subprocess.run(
            [ffmpeg, "-v", "error", "-i", "pipe:0", "-frames:v", "1"]
            + ["-f", "image2pipe", "-vcodec", "png", "pipe:1"],
            input=stream,
            capture_output=True,
            timeout=FFMPEG_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0 or not result.stdout:
            logger.warning(
                "ffmpeg could not decode a poster frame for SOP Instance %s: %s",
                header.get("SOPInstanceUID", "?"),
                result.stderr.decode(errors="replace").strip()[:300],
            )
            return _placeholder("Video", size)
        image = Image.open(io.BytesIO(result.stdout))
        image.load()
        return image.convert("RGB")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        logger.exception(
            "video poster failed for SOP Instance %s",
            header.get("SOPInstanceUID", "?"),
        )
        return _placeholder("Video", size)


def _video_stream_prefix(source: RenderSource) -> Iterator[bytes]:
    """Yield the start of the encapsulated stream, fragment by fragment."""
    if isinstance(source, Dataset):
        data = source.get("PixelData")
        if data is None:
            return
        buffer: BinaryIO = io.BytesIO(cast(bytes, data))
        yield from _bounded_fragments(buffer)
        return
    f = _open_at_pixel_data(source)
    try:
        yield from _bounded_fragments(f)
    finally:
        if not hasattr(source, "read"):
            f.close()


def _bounded_fragments(buffer: BinaryIO) -> Iterator[bytes]:
    total = 0
    for fragment in generate_fragments(buffer):
        yield fragment
        total += len(fragment)
        if total >= VIDEO_PREFIX_BYTES:
            return


@dataclass(frozen=True)
class PixelDataLocation:
    """Where the value of the pixel data element starts in a file.

    ``length`` is None for encapsulated (undefined length) pixel data, whose
    value starts with the Basic Offset Table item (PS3.5 A.4).
    """

    tag: int
    VR: str
    offset: int
    length: int | None
    transfer_syntax: UID

    @property
    def is_encapsulated(self) -> bool:
        return self.length is None


_PIXEL_DATA_TAGS = {0x7FE00008: "OF", 0x7FE00009: "OD", 0x7FE00010: "OW"}


def locate_pixel_data(f: BinaryIO) -> tuple[Dataset, PixelDataLocation | None]:
    """Read the header of the file `f` and find its pixel data value.

    Returns the header (everything before the pixel data) and the location,
    or None when the object has no pixel data. `f` is left at the value.

    Raises
    ------
    RenderError
        The file is deflated (no byte offsets exist) or the element after the
        header is cut short.
    """
    f.seek(0)
    header = dcmread(f, stop_before_pixels=True, force=True)
    syntax = _transfer_syntax(header)
    if syntax is None or syntax == DeflatedExplicitVRLittleEndian:
        raise RenderError(
            f"transfer syntax {syntax!r} has no byte offsets for its pixel data; "
            "read the whole dataset instead"
        )
    endian = "<" if syntax.is_little_endian else ">"
    raw = f.read(8)
    if len(raw) < 8:
        return header, None
    group, element = struct.unpack(f"{endian}HH", raw[:4])
    tag = (group << 16) | element
    if tag not in _PIXEL_DATA_TAGS:
        return header, None
    if syntax.is_implicit_VR:
        (length,) = struct.unpack(f"{endian}L", raw[4:8])
        VR = _PIXEL_DATA_TAGS[tag]
        if tag == 0x7FE00010 and int(header.get("BitsAllocated") or 16) <= 8:
            VR = "OB"
    else:
        VR = raw[4:6].decode("ascii", errors="replace")
        more = f.read(4)
        if len(more) < 4:
            raise RenderError("the pixel data element header is cut short")
        (length,) = struct.unpack(f"{endian}L", more)
    return header, PixelDataLocation(
        tag=tag,
        VR=VR,
        offset=f.tell(),
        length=None if length == 0xFFFFFFFF else length,
        transfer_syntax=syntax,
    )


def _open_at_pixel_data(source: str | os.PathLike[str] | BinaryIO) -> BinaryIO:
    """Return a file positioned at the encapsulated pixel data value."""
    f = cast(BinaryIO, source) if hasattr(source, "read") else open(source, "rb")  # noqa: SIM115
    _, location = locate_pixel_data(f)
    if location is None or not location.is_encapsulated:
        raise RenderError("no encapsulated (7FE0,0010) Pixel Data after the header")
    return f


# -- output -------------------------------------------------------------------


def _check_size(name: str, value: int) -> None:
    if not isinstance(value, int) or not 16 <= value <= 4096:
        raise RenderError(
            f"{name} {value!r} is out of range; use a whole number of pixels "
            "from 16 to 4096"
        )


def _fit(image: Image.Image, size: int, *, enlarge: bool = False) -> Image.Image:
    """Scale so the longer side is `size` (down always, up if `enlarge`)."""
    width, height = image.size
    longest = max(width, height)
    if longest == size or (longest < size and not enlarge):
        return image
    scale = size / longest
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _encode(image: Image.Image, fmt: ImageFormat) -> bytes:
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, format="PNG", optimize=False)
    else:
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _placeholder(label: str, size: int) -> Image.Image:
    """Draw a dark square with `label` centred in it."""
    image = Image.new("RGB", (size, size), (38, 42, 48))
    draw = ImageDraw.Draw(image)
    font_size = max(10, size // max(8, len(label) + 2))
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.load_default(
            size=font_size
        )
    except (OSError, TypeError):
        font = ImageFont.load_default()
    draw.rectangle(
        (size // 16, size // 16, size - size // 16, size - size // 16),
        outline=(120, 128, 140),
        width=max(1, size // 128),
    )
    draw.text((size / 2, size / 2), label, fill=(230, 232, 236), font=font, anchor="mm")
    return image
