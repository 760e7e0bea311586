"""Rendering real DICOM files: every kind of image comes out looking right.

The files are the public test sets installed with the dev extras: pydicom's
own, ``pydicom-data`` (large radiographs, compressed variants of the same
image) and ``deid-data`` (a DX radiograph of a cat, ultrasound).
Expected pixels are computed here from the decoded stored values, not taken
from the code under test.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG4HP41,
    ExplicitVRLittleEndian,
    generate_uid,
)

from fetlock.imaging import rendering
from fetlock.imaging.rendering import (
    RenderError,
    Window,
    decode_frame,
    frame_count,
    render_frame,
    render_thumbnail,
)

DEID_DATA = Path(__import__("deid_data").__file__).parent / "data"


def sample(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is not installed"
    return Path(path)


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def as_array(data: bytes) -> np.ndarray:
    return np.asarray(open_image(data), dtype=np.float64)


def chroma(rgb: np.ndarray) -> float:
    """Mean absolute difference between colour channels (0 for grey)."""
    return float(
        np.abs(rgb[..., 0] - rgb[..., 1]).mean()
        + np.abs(rgb[..., 1] - rgb[..., 2]).mean()
    )


def relabelled(path: Path, **changes: object) -> Dataset:
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


class TestGreyscale:
    def test_monochrome1_is_inverted_relative_to_monochrome2(self) -> None:
        path = sample("RG3_UNCR.dcm")
        as_m1 = as_array(render_frame(path, fmt="png"))
        as_m2 = as_array(
            render_frame(
                relabelled(path, PhotometricInterpretation="MONOCHROME2"), fmt="png"
            )
        )

        assert as_m1.shape == as_m2.shape == (1760, 1760)
        assert np.abs(as_m1 + as_m2 - 255.0).max() <= 1.0

    def test_monochrome1_keeps_bone_bright(self) -> None:
        # In MONOCHROME1 the lowest stored values are the whitest: bone and
        #   the unexposed border. They must render bright, open air dark.
        path = sample("RG3_UNCR.dcm")
        stored = pydicom.dcmread(path).pixel_array
        shown = as_array(render_frame(path, fmt="png"))

        low = stored <= np.percentile(stored, 5)
        high = stored >= np.percentile(stored, 95)
        assert shown[low].mean() > 200
        assert shown[high].mean() < 60

    def test_window_from_file_is_honoured(self) -> None:
        path = sample("MR_small.dcm")  # (0028,1050/1051) 600 / 1600
        stored = pydicom.dcmread(path).pixel_array.astype(np.float64)
        expected = np.clip(((stored - 599.5) / 1599.0 + 0.5) * 255.0, 0, 255)

        default = as_array(render_frame(path, fmt="png"))
        automatic = as_array(render_frame(path, window="auto", fmt="png"))

        assert np.abs(default - expected).max() <= 1.0
        assert np.abs(automatic - expected).mean() > 10.0

    def test_rescale_applies_before_the_window(self) -> None:
        path = sample("CT_small.dcm")
        ds = pydicom.dcmread(path)
        hounsfield = ds.pixel_array * float(ds.RescaleSlope) + float(
            ds.RescaleIntercept
        )
        expected = np.clip(((hounsfield - 39.5) / 399.0 + 0.5) * 255.0, 0, 255)

        shown = as_array(render_frame(path, window=Window(40, 400), fmt="png"))

        assert float(ds.RescaleIntercept) != 0.0
        assert np.abs(shown - expected).max() <= 1.0

    def test_window_as_a_pair_equals_window_object(self) -> None:
        path = sample("CT_small.dcm")
        assert render_frame(path, window=(40, 400), fmt="png") == render_frame(
            path, window=Window(40, 400), fmt="png"
        )

    def test_automatic_window_spreads_a_windowless_image(self) -> None:
        path = sample("emri_small.dcm")  # no window in the file
        shown = as_array(render_frame(path, fmt="png"))

        assert shown.std() > 30
        assert shown.min() <= 5 and shown.max() >= 250

    def test_dx_radiograph_renders_with_its_window(self) -> None:
        shown = as_array(render_thumbnail(DEID_DATA / "animals" / "cat.dcm"))

        assert max(shown.shape[:2]) == 256
        assert shown.std() > 30

    def test_modality_lut_sequence_is_applied(self) -> None:
        # Replace the file's linear Modality LUT with a square curve, then
        #   window over the LUT's whole output range.
        ds = pydicom.dcmread(sample("mlut_18.dcm"))
        item = ds.ModalityLUTSequence[0]
        first = int(item.LUTDescriptor[1])  # -2048
        curve = (np.linspace(0.0, 1.0, 4096) ** 2 * 65535).astype(np.uint16)
        item.LUTData = [int(v) for v in curve]
        stored = ds.pixel_array.astype(np.int64)
        modality = curve[np.clip(stored - first, 0, 4095)].astype(np.float64)
        expected = np.clip((modality / 65535.0) * 255.0, 0, 255)

        shown = as_array(
            render_frame(ds, window=Window(32768, 65536, "LINEAR_EXACT"), fmt="png")
        )
        assert np.abs(shown - expected).max() <= 1.0

    def test_voi_lut_sequence_is_applied(self) -> None:
        # Replace the file's linear VOI LUT with an inverted square curve.
        ds = pydicom.dcmread(sample("vlut_04.dcm"))
        curve = ((1.0 - np.linspace(0.0, 1.0, 256)) ** 2 * 65535).astype(np.uint16)
        ds.VOILUTSequence[0].LUTData = [int(v) for v in curve]
        expected = curve[ds.pixel_array].astype(np.float64) / 65535.0 * 255.0

        shown = as_array(render_frame(ds, fmt="png"))
        automatic = as_array(render_frame(ds, window="auto", fmt="png"))
        assert np.abs(shown - expected).max() <= 1.0
        assert np.abs(shown - automatic).mean() > 20


class TestColour:
    @pytest.mark.parametrize(
        "name",
        [
            "SC_ybr_full_uncompressed.dcm",
            "SC_ybr_full_422_uncompressed.dcm",
            "SC_rgb_dcmtk_+eb+cy+np.dcm",  # JPEG, YBR_FULL_422
            "SC_rgb_dcmtk_+eb+cy+n1.dcm",  # JPEG, YBR_FULL
            "SC_rgb_jpeg_gdcm.dcm",  # JPEG Lossless, RGB
            "SC_rgb_rle.dcm",
            "SC_rgb_gdcm_KY.dcm",  # JPEG 2000
            "SC_rgb_jls_lossy_line.dcm",  # JPEG-LS near-lossless
            "SC_rgb_16bit.dcm",
        ],
    )
    def test_encodings_of_the_stripes_image_match_the_rgb_original(
        self, name: str
    ) -> None:
        reference = as_array(render_frame(sample("SC_rgb.dcm"), fmt="png"))
        shown = as_array(render_frame(sample(name), fmt="png"))

        assert shown.shape == reference.shape == (100, 100, 3)
        # Lossy JPEG and YCbCr round trips differ a little, never by a hue.
        assert np.abs(shown - reference).mean() < 6.0
        assert chroma(shown) > 100

    def test_jpeg2000_ultrasound_matches_its_uncompressed_original(self) -> None:
        original = as_array(render_frame(sample("US1_UNCR.dcm"), fmt="png"))
        compressed = as_array(render_frame(sample("US1_J2KR.dcm"), fmt="png"))
        assert np.abs(original - compressed).max() <= 1.0
        assert chroma(compressed) > 5

    @pytest.mark.parametrize(
        "name", ["OBXXXX1A.dcm", "OBXXXX1A_rle.dcm", "gdcm-US-ALOKA-16.dcm"]
    )
    def test_palette_colour_has_colour(self, name: str) -> None:
        shown = as_array(render_thumbnail(sample(name)))
        assert shown.ndim == 3
        assert chroma(shown) > 3

    def test_palette_colour_follows_the_lut(self) -> None:
        path = sample("OBXXXX1A.dcm")
        ds = pydicom.dcmread(path)
        index = ds.pixel_array
        # (0028,1201) contains 16-bit entries (descriptor 256, 0, 16).
        red = np.frombuffer(ds.RedPaletteColorLookupTableData, dtype="<u2")
        first = int(ds.RedPaletteColorLookupTableDescriptor[1])
        expected_red = red[np.clip(index - first, 0, None)] / 65535.0 * 255.0

        shown = as_array(render_frame(path, fmt="png"))
        assert np.abs(shown[..., 0] - expected_red).max() <= 1.0

    def test_rgb_ultrasound_looks_like_the_decoded_frame(self) -> None:
        path = DEID_DATA / "ultrasounds" / "RGB_IMAGE.dcm"
        decoded = pydicom.dcmread(path).pixel_array
        small = (64, 48)
        expected = np.asarray(
            Image.fromarray(decoded).resize(small, Image.Resampling.BOX),
            dtype=np.float64,
        )

        thumb = open_image(render_thumbnail(path)).resize(small, Image.Resampling.BOX)
        assert np.abs(np.asarray(thumb, dtype=np.float64) - expected).mean() < 3.0

    def test_ybr_full_422_jpeg_cine_frame_has_colour(self) -> None:
        shown = as_array(render_frame(sample("examples_ybr_color.dcm"), frame=10))
        assert shown.shape == (240, 320, 3)
        assert shown.std() > 10


class TestMultiFrame:
    def test_thumbnail_shows_the_middle_frame(self) -> None:
        path = sample("emri_small.dcm")  # 10 frames
        middle = open_image(render_frame(path, frame=5, fmt="png")).resize(
            (256, 256), Image.Resampling.LANCZOS
        )
        first = open_image(render_frame(path, frame=0, fmt="png")).resize(
            (256, 256), Image.Resampling.LANCZOS
        )
        thumb = as_array(render_thumbnail(path))

        assert np.abs(thumb - np.asarray(middle, dtype=np.float64)).mean() < 4.0
        assert np.abs(thumb - np.asarray(first, dtype=np.float64)).mean() > 4.0

    def test_one_frame_of_a_large_cine_is_decoded_alone(self) -> None:
        path = DEID_DATA / "ultrasounds" / "ultrasound-multiframe.dcm"
        size = path.stat().st_size
        assert frame_count(path) == 30

        tracemalloc.start()
        try:
            thumb = render_thumbnail(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

        assert open_image(thumb).size == (256, 192)
        # 43 MB of pixel data, 1.4 MB per frame: a full decode would need
        #   the whole 43 MB; one frame needs a few.
        assert peak < size / 5, f"peak {peak} bytes for a {size}-byte file"

    def test_large_radiograph_thumbnail_memory(self) -> None:
        # 3072 x 2614 16-bit: 16 MB of stored values. Windowing in float at
        #   full size would need several times that.
        path = DEID_DATA / "animals" / "cat.dcm"
        tracemalloc.start()
        try:
            render_thumbnail(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 3 * 3072 * 2614 * 2

    def test_shrunk_thumbnail_matches_full_render(self) -> None:
        path = sample("RG1_UNCR.dcm")
        full = open_image(render_frame(path, fmt="png")).resize(
            (241, 256), Image.Resampling.LANCZOS
        )
        thumb = as_array(render_thumbnail(path))

        assert thumb.shape == (256, 241)
        assert np.abs(thumb - np.asarray(full, dtype=np.float64)).mean() < 3.0

    def test_frame_out_of_range_names_the_valid_range(self) -> None:
        with pytest.raises(RenderError, match=r"frame index 10 .* 0 to 9"):
            render_frame(sample("emri_small.dcm"), frame=10)

    def test_decode_frame_returns_stored_values(self) -> None:
        path = sample("emri_small.dcm")
        expected = pydicom.dcmread(path).pixel_array[3]
        assert np.array_equal(decode_frame(path, 3), expected)


COMPRESSED_FILES = [
    ("JPGExtended.dcm", (1024, 256)),  # JPEG Extended 12-bit
    ("JPEG-LL.dcm", (1024, 256)),  # JPEG Lossless SV1
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", (768, 1024)),
    ("MR_small_jpeg_ls_lossless.dcm", (64, 64)),
    ("JPEGLSNearLossless_16.dcm", (50, 10)),
    ("JPEG2000.dcm", (1024, 256)),
    ("MR_small_jp2klossless.dcm", (64, 64)),
    ("RG1_J2KI.dcm", (1955, 1841)),  # JPEG 2000 lossy, MONOCHROME1
    ("MR_small_RLE.dcm", (64, 64)),
    ("emri_small_RLE.dcm", (64, 64)),
    ("color3d_jpeg_baseline.dcm", (480, 640)),  # 120-frame YBR_FULL_422 JPEG
    ("US1_J2KI.dcm", (480, 640)),  # YBR_ICT
    ("MR_small_bigendian.dcm", (64, 64)),
    ("image_dfl.dcm", (512, 512)),  # deflated
]


@pytest.mark.parametrize(("name", "rows_columns"), COMPRESSED_FILES)
def test_every_transfer_syntax_renders_a_real_image(
    name: str, rows_columns: tuple[int, int]
) -> None:
    path = sample(name)
    frames = frame_count(path)
    shown = as_array(render_frame(path, frame=frames // 2, fmt="png"))

    assert shown.shape[:2] == rows_columns
    assert shown.std() > 5.0


class TestSizes:
    def test_thumbnail_longer_side_is_the_requested_size(self) -> None:
        wide = open_image(render_thumbnail(sample("JPEG2000.dcm"), size=128))
        small = open_image(render_thumbnail(sample("MR_small.dcm"), size=200))

        assert open_image(render_thumbnail(sample("CT_small.dcm"))).format == "JPEG"
        assert wide.size == (32, 128)
        assert small.size == (200, 200)

    def test_max_size_only_shrinks(self) -> None:
        large = open_image(render_frame(sample("RG1_UNCR.dcm"), max_size=500))
        small = open_image(render_frame(sample("MR_small.dcm"), max_size=500))

        assert large.size == (471, 500)
        assert small.size == (64, 64)

    def test_png_output(self) -> None:
        image = open_image(render_frame(sample("CT_small.dcm"), fmt="png"))
        assert image.format == "PNG"

    @pytest.mark.parametrize("size", [0, 8, 5000])
    def test_unreasonable_size_is_refused(self, size: int) -> None:
        with pytest.raises(RenderError, match=rf"size {size} is out of range"):
            render_thumbnail(sample("CT_small.dcm"), size=size)

    def test_unknown_format_is_refused(self) -> None:
        with pytest.raises(RenderError, match="'gif' is invalid"):
            render_frame(sample("CT_small.dcm"), fmt="gif")  # type: ignore[arg-type]

    def test_zero_window_width_is_refused(self) -> None:
        with pytest.raises(RenderError, match="window width 0"):
            render_frame(sample("CT_small.dcm"), window=(40, 0))


def _encapsulated_pdf() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = rendering.ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    return ds


def _is_placeholder(image: np.ndarray) -> bool:
    # The placeholder is a flat dark slate with light text: most pixels
    #   share one dark colour and nothing is strongly coloured.
    grey = image.mean(axis=2)
    return bool(np.median(grey) < 60 and chroma(image) < 15)


class TestPlaceholders:
    def test_pdf_and_sr_render_as_distinct_placeholders(self) -> None:
        pdf = as_array(render_thumbnail(_encapsulated_pdf(), size=200))
        sr = as_array(render_thumbnail(sample("test-SR.dcm"), size=200))

        assert pdf.shape == sr.shape == (200, 200, 3)
        assert _is_placeholder(pdf) and _is_placeholder(sr)
        assert np.abs(pdf - sr).mean() > 1.0  # different labels

    def test_render_frame_of_a_pdf_is_a_placeholder_not_an_error(self) -> None:
        assert _is_placeholder(as_array(render_frame(_encapsulated_pdf())))
        assert frame_count(_encapsulated_pdf()) == 0

    def test_undecodable_pixels_give_a_placeholder_thumbnail(self) -> None:
        thumb = as_array(
            render_thumbnail(sample("JPEG2000-embedded-sequence-delimiter.dcm"))
        )
        assert _is_placeholder(thumb)

    def test_undecodable_pixels_raise_for_render_frame(self) -> None:
        with pytest.raises(RenderError, match="cannot decode frame 0"):
            render_frame(sample("JPEG2000-embedded-sequence-delimiter.dcm"))


def _h264_endoscopy(tmp_path: Path) -> Path:
    """A Video Endoscopic Image instance holding a real H.264 stream."""
    stream = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10"]
        + ["-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "h264", "-"],
        capture_output=True,
        check=True,
    ).stdout
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "ES"
    ds.Rows, ds.Columns = 240, 320
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PlanarConfiguration = 0
    ds.NumberOfFrames = 10
    ds.PixelData = encapsulate([stream])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "endoscopy.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


class TestVideo:
    @pytest.mark.skipif(
        shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg to decode H.264"
    )
    def test_h264_clip_gets_a_poster_frame(self, tmp_path: Path) -> None:
        path = _h264_endoscopy(tmp_path)
        poster = as_array(render_thumbnail(path))

        # ffmpeg's test source is colour bars over a gradient.
        assert poster.shape == (192, 256, 3)
        assert chroma(poster) > 40
        assert not _is_placeholder(poster)

    def test_without_ffmpeg_the_clip_says_video(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        ds = pydicom.dcmread(sample("CT_small.dcm"))
        ds.file_meta.TransferSyntaxUID = MPEG4HP41
        monkeypatch.setattr(rendering.shutil, "which", lambda name: None)

        poster = as_array(render_thumbnail(ds))
        pdf = as_array(render_thumbnail(_encapsulated_pdf()))
        assert _is_placeholder(poster)
        assert np.abs(poster - pdf).mean() > 1.0
