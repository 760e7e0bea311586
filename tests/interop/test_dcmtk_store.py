"""DCMTK's dcmsend and storescu as the modality, against Fetlock's Storage SCP.

Every object is sent in its file's transfer syntax (``dcmsend -dn`` never
decompresses; ``storescu`` proposes the compressed syntax alone or first), and
the stored object must hold every element that was sent, pixel data included,
in that transfer syntax. DCMTK re-encodes a data set as it sends it (sequence
lengths, for one), so the byte-for-byte check of what arrives is made with
pynetdicom sending raw file bytes, in ``tests/ingest/test_storage_scp.py``.
The last test kills a real ``fetlock serve`` with SIGKILL mid-transfer.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import (
    MPEG4HP41,
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    generate_uid,
)
from sqlalchemy import select
from tests.imaging_testdata import dicom_settings, free_port
from tests.ingest.builders import DR_STATION, Clinic, build_clinic, write_instance

from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.dicom.server import DicomService
from fetlock.imaging.study_models import Instance, Study
from fetlock.jobs.models import Job
from fetlock.storage import get_blob_store

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("storescu", "dcmsend", "echoscu", "ffmpeg")),
        reason="DCMTK's storescu, dcmsend and echoscu, and ffmpeg, are needed",
    ),
]

DEID_DATA = Path(pydicom.__file__).parents[1] / "deid_data" / "data"
DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")

# SOP Class UIDs (PS3.4 B.5) of objects built here from real pixel data.
VL_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1"
VIDEO_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def _testdata(name: str) -> Path:
    found = get_testdata_file(name)
    assert found is not None, f"test file {name} is not installed"
    return Path(found)


def _base(sop_class: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Müller^Monty"
    ds.PatientID = "FL-TEST"
    ds.StudyDate = dt.date.today().strftime("%Y%m%d")
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def build_video_endoscopy(tmp_path: Path) -> Path:
    """A one-second H.264 clip from ffmpeg in a Video Endoscopic Image object."""
    stream = tmp_path / "clip.h264"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc=size=640x480:rate=25",
            "-t", "1", "-c:v", "libx264", "-profile:v", "high", "-level", "4.1",
            "-pix_fmt", "yuv420p", "-f", "h264", str(stream),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    ds = _base(VIDEO_ENDOSCOPIC, "ES")
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.Rows, ds.Columns = 480, 640
    ds.NumberOfFrames = 25
    ds.FrameTime = 40.0
    ds.CineRate = 25
    ds.FrameIncrementPointer = (0x0018, 0x1063)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([stream.read_bytes()])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "video-endoscopy.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def build_vl_endoscopic(tmp_path: Path) -> Path:
    """A still endoscopy frame: JPEG Baseline RGB pixels as VL Endoscopic."""
    path = write_instance(
        tmp_path / "vl-endoscopic.dcm", "SC_rgb_jpeg_dcmtk.dcm", Modality="ES"
    )
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = VL_ENDOSCOPIC
    ds.file_meta.MediaStorageSOPClassUID = VL_ENDOSCOPIC
    ds.save_as(path, enforce_file_format=True)
    return path


def build_pdf(tmp_path: Path) -> Path:
    """An Encapsulated PDF (PS3.3 A.45.1) holding a one-page PDF from Pillow."""
    pdf = tmp_path / "referral.pdf"
    Image.new("RGB", (200, 100), "white").save(pdf, "PDF")
    ds = _base(ENCAPSULATED_PDF, "DOC")
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "Referral letter"
    ds.BurnedInAnnotation = "YES"
    ds.ConceptNameCodeSequence = []
    content = pdf.read_bytes()
    ds.EncapsulatedDocument = content + (b"\0" if len(content) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(content)
    path = tmp_path / "referral.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def build_sr(tmp_path: Path, sop_class: str) -> Path:
    """A text report as Basic Text or Comprehensive SR (PS3.3 A.35)."""
    ds = _base(sop_class, "SR")
    ds.ValueType = "CONTAINER"
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator = "18748-4", "LN"
    title.CodeMeaning = "Diagnostic imaging report"
    ds.ConceptNameCodeSequence = [title]
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    finding = Dataset()
    finding.RelationshipType = "CONTAINS"
    finding.ValueType = "TEXT"
    name = Dataset()
    name.CodeValue, name.CodingSchemeDesignator = "121071", "DCM"
    name.CodeMeaning = "Finding"
    finding.ConceptNameCodeSequence = [name]
    finding.TextValue = "Mild remodelling of the distal border of the navicular bone."
    ds.ContentSequence = [finding]
    path = tmp_path / f"sr-{sop_class.rsplit('.', 1)[-1]}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def clinic(database: Database, settings: Settings) -> Clinic:
    return build_clinic(database, settings)


@pytest.fixture
def scp(
    settings: Settings, database: Database, clinic: Clinic
) -> Iterator[DicomService]:
    service = DicomService(dicom_settings(settings), database)
    service.start()
    yield service
    service.stop()


def _dcmsend(port: int, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["dcmsend", "-aet", DR_STATION, "-aec", "FETLOCK", "-dn", "-nh",
         "127.0.0.1", str(port), *map(str, files)],
        env=DCMTK_ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _storescu(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["storescu", "-aet", DR_STATION, "-aec", "FETLOCK", *args[:-1],
         "127.0.0.1", str(port), args[-1]],
        env=DCMTK_ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _stored(database: Database, sop_instance_uid: str) -> Instance | None:
    with database.session() as db_session:
        return db_session.execute(
            select(Instance).where(Instance.sop_instance_uid == sop_instance_uid)
        ).scalar_one_or_none()


TRAILING_PADDING = 0xFFFCFFFC


def _encoded_values(ds: Dataset) -> dict[int, object]:
    """Each element's value encoded implicit VR little endian; sequences nested.

    Comparing encoded values keeps a private element comparable when one side
    is implicit VR and decodes it as UN. Group lengths and (FFFC,FFFC) Data Set
    Trailing Padding are left out: senders drop or add them (PS3.5 7.2, 7.8).
    """
    values: dict[int, object] = {}
    for element in ds:
        if element.tag.element == 0x0000 or element.tag == TRAILING_PADDING:
            continue
        if element.VR == "SQ":
            values[int(element.tag)] = [_encoded_values(item) for item in element.value]
            continue
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, True
        write_data_element(buffer, element)
        values[int(element.tag)] = buffer.getvalue()[8:]
    return values


def _elements(path: Path) -> dict[int, object]:
    previous = pydicom.config.convert_wrong_length_to_UN
    pydicom.config.convert_wrong_length_to_UN = True
    try:
        return _encoded_values(pydicom.dcmread(path))
    finally:
        pydicom.config.convert_wrong_length_to_UN = previous


def _assert_stored_as_sent(database: Database, settings: Settings, path: Path) -> None:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    instance = _stored(database, ds.SOPInstanceUID)
    assert instance is not None, f"{path.name} was not indexed"
    assert instance.sop_class_uid == ds.SOPClassUID
    sent_syntax = ds.file_meta.TransferSyntaxUID
    if sent_syntax.is_compressed or sent_syntax.is_deflated:
        assert instance.transfer_syntax_uid == sent_syntax, "it was decompressed"
    else:
        # DCMTK may choose any accepted uncompressed context for these.
        assert not UID(instance.transfer_syntax_uid).is_compressed
    stored = get_blob_store(settings).local_path(instance.blob_key)
    assert stored is not None
    assert _elements(stored) == _elements(path), (
        f"{path.name}: the stored data set differs from the one sent"
    )


def _fresh(tmp_path: Path, source: Path | str) -> Path:
    """A copy with new UIDs: some public test files share SOP Instance UIDs."""
    name = source if isinstance(source, str) else str(source)
    return write_instance(tmp_path / "fresh" / f"{Path(name).stem}.dcm", name)


# The objects a practice meets, each in the syntax its modality sends.
def _practice_objects(tmp_path: Path) -> dict[str, Path]:
    return {
        "DX radiograph, uncompressed": _fresh(
            tmp_path, DEID_DATA / "animals" / "cat.dcm"
        ),
        "CR radiograph, JPEG 2000 lossless": _fresh(tmp_path, "RG1_J2KR.dcm"),
        "US, JPEG 2000 lossless": _fresh(tmp_path, "US1_J2KR.dcm"),
        "US, RLE": _fresh(tmp_path, "OBXXXX1A_rle.dcm"),
        "US multi-frame, JPEG Baseline": _fresh(tmp_path, "color3d_jpeg_baseline.dcm"),
        "US RGB, uncompressed": _fresh(
            tmp_path, DEID_DATA / "ultrasounds" / "RGB_IMAGE.dcm"
        ),
        "CT, explicit VR": _fresh(tmp_path, "CT_small.dcm"),
        "CT, JPEG Lossless": _fresh(tmp_path, "JPEG-LL.dcm"),
        "SC, JPEG Extended": _fresh(tmp_path, "JPGExtended.dcm"),
        "MR, JPEG-LS lossless": _fresh(tmp_path, "MR_small_jpeg_ls_lossless.dcm"),
        "SC, JPEG 2000": _fresh(tmp_path, "JPEG2000.dcm"),
        "SC, deflated": _fresh(tmp_path, "image_dfl.dcm"),
        "VL Endoscopic, JPEG Baseline": build_vl_endoscopic(tmp_path),
        "Video Endoscopic, H.264": build_video_endoscopy(tmp_path),
        "Encapsulated PDF": build_pdf(tmp_path),
        "Basic Text SR": build_sr(tmp_path, BASIC_TEXT_SR),
        "Comprehensive SR": build_sr(tmp_path, COMPREHENSIVE_SR),
    }


def test_dcmsend_stores_every_kind_of_object_exactly_as_sent(
    scp: DicomService, database: Database, settings: Settings, tmp_path: Path
) -> None:
    objects = _practice_objects(tmp_path)

    result = _dcmsend(scp.port, *objects.values())

    assert result.returncode == 0, result.stdout + result.stderr
    for kind, path in objects.items():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert _stored(database, ds.SOPInstanceUID) is not None, f"{kind} not stored"
        _assert_stored_as_sent(database, settings, path)


@pytest.mark.parametrize(
    ("proposal", "source"),
    [
        (["-xv", "+C"], "US1_J2KR.dcm"),  # J2K lossless then uncompressed, one context
        (["-xw"], "JPEG2000.dcm"),  # J2K as its own context
        (["-xs", "+C"], "JPEG-LL.dcm"),  # JPEG Lossless SV1 first
        (["-xt", "+C"], "MR_small_jpeg_ls_lossless.dcm"),
        (["-xr", "+C"], "OBXXXX1A_rle.dcm"),
        (["-xd", "+C"], "image_dfl.dcm"),
        (["-xy", "+C"], "SC_rgb_jpeg_dcmtk.dcm"),
        (["-xb", "+C"], "MR_small_bigendian.dcm"),  # retired, still accepted
    ],
)
def test_storescu_compressed_proposal_is_accepted_as_offered(
    scp: DicomService,
    database: Database,
    settings: Settings,
    tmp_path: Path,
    proposal: list[str],
    source: str,
) -> None:
    path = _fresh(tmp_path, source)

    result = _storescu(scp.port, *proposal, str(path))

    assert result.returncode == 0, result.stderr
    _assert_stored_as_sent(database, settings, path)


def test_storescu_offering_only_h264_video_is_accepted(
    scp: DicomService, database: Database, settings: Settings, tmp_path: Path
) -> None:
    path = build_video_endoscopy(tmp_path)

    result = _storescu(scp.port, "-xn", "-R", str(path))

    assert result.returncode == 0, result.stderr
    _assert_stored_as_sent(database, settings, path)
    instance = _stored(database, pydicom.dcmread(path).SOPInstanceUID)
    assert instance is not None
    assert (instance.number_of_frames, instance.rows) == (25, 480)


def test_storescu_sending_twice_succeeds_twice(
    scp: DicomService, database: Database, tmp_path: Path
) -> None:
    path = write_instance(tmp_path / "dup.dcm")

    first = _storescu(scp.port, str(path))
    second = _storescu(scp.port, str(path))

    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    with database.session() as db_session:
        assert len(db_session.execute(select(Instance)).all()) == 1


def test_storescu_gets_a_failure_for_another_object_under_a_taken_uid(
    scp: DicomService, database: Database, tmp_path: Path
) -> None:
    uids = {"study_uid": generate_uid(), "series_uid": generate_uid()}
    sop_uid = generate_uid()
    first = write_instance(tmp_path / "a.dcm", sop_uid=sop_uid, **uids)
    second = write_instance(
        tmp_path / "b.dcm", sop_uid=sop_uid, PatientName="Other^Horse", **uids
    )
    _storescu(scp.port, str(first))

    result = _storescu(scp.port, "-d", str(second))

    assert result.returncode != 0
    assert "0xc004" in result.stdout.lower() + result.stderr.lower()
    assert "SOP Instance UID taken by other data" in result.stdout + result.stderr


def test_unknown_station_is_refused_by_storescu(
    scp: DicomService, tmp_path: Path
) -> None:
    path = write_instance(tmp_path / "x.dcm")

    result = subprocess.run(
        ["storescu", "-aet", "STRANGER", "-aec", "FETLOCK", "127.0.0.1",
         str(scp.port), str(path)],
        env=DCMTK_ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode != 0
    assert "Association Rejected" in result.stderr


# -- crash during ingest ------------------------------------------------------

FETLOCK = Path(sys.executable).with_name("fetlock")
BIG_ULTRASOUND = DEID_DATA / "ultrasounds" / "ultrasound-multiframe.dcm"


class ServeProcess:
    """``fetlock serve`` in its own process, on free loopback ports."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            FETLOCK_DATA_DIR=str(self.settings.data_dir),
            FETLOCK_DATABASE_URL=self.settings.effective_database_url,
            FETLOCK_SECRET_KEY="crash-test-secret-key",
            FETLOCK_HTTP_PORT=str(self.http_port),
            FETLOCK_DICOM_PORT=str(self.dicom_port),
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(FETLOCK), "serve"], env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            echo = subprocess.run(
                ["echoscu", "-aet", DR_STATION, "-aec", "FETLOCK", "127.0.0.1",
                 str(self.dicom_port)],
                env=DCMTK_ENV, capture_output=True, timeout=10,
            )  # fmt: skip
            if echo.returncode == 0:
                return
            assert self.process.poll() is None, self.log.read_text()
            time.sleep(0.2)
        raise AssertionError(f"fetlock serve did not start:\n{self.log.read_text()}")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def serve(
    settings: Settings, database: Database, clinic: Clinic, tmp_path: Path
) -> Iterator[ServeProcess]:
    process = ServeProcess(settings, tmp_path / "serve.log")
    process.start()
    yield process
    process.stop()


def _partly_received(staging: Path, sent: Path) -> bool:
    """True while less than half of ``sent`` has arrived in a C-STORE file."""
    return any(
        0 < path.stat().st_size < sent.stat().st_size // 2
        for path in staging.glob("c-store-*.dcm")
    )


def _wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_sigkill_mid_transfer_then_retry_succeeds_and_no_job_is_lost(
    serve: ServeProcess, database: Database, settings: Settings, tmp_path: Path
) -> None:
    big = tmp_path / "big-us.dcm"
    shutil.copy(BIG_ULTRASOUND, big)
    staging = get_blob_store(settings).staging
    sop_uid = pydicom.dcmread(big, stop_before_pixels=True).SOPInstanceUID

    # Kill the server while the 43 MB object is still arriving.
    sender = subprocess.Popen(
        ["storescu", "-aet", DR_STATION, "-aec", "FETLOCK", "127.0.0.1",
         str(serve.dicom_port), str(big)],
        env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip

    _wait_for(lambda: _partly_received(staging, big), 30, "the transfer to start")
    serve.kill()
    sender.wait(60)

    assert sender.returncode != 0, "the modality must see the transfer fail"
    assert _stored(database, sop_uid) is None, "a half-received object was indexed"
    assert list(staging.glob("c-store-*.dcm")), "the partial file should be there"

    # Restart; the modality's retry succeeds and the leftover is cleaned up.
    serve.start()
    assert not list(staging.glob("c-store-*.dcm"))
    retry = _storescu(serve.dicom_port, str(big))
    assert retry.returncode == 0, retry.stderr
    _assert_stored_as_sent(database, settings, big)

    # Kill again as soon as the next study is acknowledged, before its
    # thumbnail job can have finished; after restart the job still runs.
    second = write_instance(tmp_path / "after.dcm", "RG1_UNCR.dcm")
    assert _storescu(serve.dicom_port, str(second)).returncode == 0
    serve.kill()
    serve.start()
    study_uid = pydicom.dcmread(second, stop_before_pixels=True).StudyInstanceUID

    def has_thumbnail() -> bool:
        with database.session() as db_session:
            study = db_session.execute(
                select(Study).where(Study.study_instance_uid == study_uid)
            ).scalar_one()
            return study.thumbnail_blob_key is not None

    _wait_for(has_thumbnail, 60, "the thumbnail after restart")
    with database.session() as db_session:
        left = db_session.execute(
            select(Job).where(Job.name == "thumbnail", Job.state != "pending")
        ).all()
    assert left == []


def test_killed_modality_leaves_no_partial_file(
    scp: DicomService, settings: Settings, database: Database, tmp_path: Path
) -> None:
    big = tmp_path / "big-us.dcm"
    shutil.copy(BIG_ULTRASOUND, big)
    staging = get_blob_store(settings).staging
    sop_uid = pydicom.dcmread(big, stop_before_pixels=True).SOPInstanceUID
    # Small PDUs keep the 43 MB transfer going for seconds, long enough to
    # catch it half-way.
    sender = subprocess.Popen(
        ["storescu", "-aet", DR_STATION, "-aec", "FETLOCK", "--max-send-pdu",
         "4096", "127.0.0.1", str(scp.port), str(big)],
        env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    _wait_for(lambda: _partly_received(staging, big), 30, "the transfer to start")
    # The modality loses power: its connection drops without an A-ABORT.
    sender.kill()
    sender.wait(30)

    _wait_for(
        lambda: not list(staging.glob("c-store-*.dcm")),
        10,
        "the partial file to be deleted",
    )
    assert _stored(database, sop_uid) is None
    retry = _storescu(scp.port, str(big))
    assert retry.returncode == 0, retry.stderr
    _assert_stored_as_sent(database, settings, big)
    assert not list(staging.glob("c-store-*.dcm"))
