"""The index of received images: studies, series and SOP instances.

The DICOM objects themselves live in the blob store, byte for byte as
received. These rows describe them (PS3.3 C.7.2.1, C.7.3.1, C.12.1) and
record where each one is kept. A study is linked to a horse and, usually, to the
imaging order it answers. A study that matched no order waits in the
reconciliation queue (``horse_id`` is None) until staff attach it; the
attributes the modality sent are kept unchanged beside the link.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fetlock.db.base import Base, UTCDateTime, utcnow
from fetlock.imaging.models import AE_TITLE_MAX, CS_MAX, SH_MAX, UI_MAX

# PS3.5 6.2: LO allows 64 characters, PN 64 per component group (three groups).
LO_MAX = 64
PN_MAX = 200
# Blob keys are relative paths such as dicom/<study>/<series>/<sop>.dcm.
BLOB_KEY_MAX = 255


class LinkMethod(enum.StrEnum):
    """The way a study came to be attached to its horse and order."""

    ACCESSION_NUMBER = "accession_number"
    STUDY_INSTANCE_UID = "study_instance_uid"
    STAFF = "staff"


class Study(Base):
    """One DICOM study (PS3.3 C.7.2.1) as received, and its link to the chart.

    The ``dicom_*`` columns keep the patient and request attributes exactly as
    the first instance carried them. ``horse_id`` and ``order_id`` are the
    practice's link, set automatically by (0008,0050) Accession Number or
    (0020,000D) Study Instance UID, or by staff from the reconciliation queue.
    ``unmatched_reason`` gives the reason a study is waiting there.
    """

    __tablename__ = "imaging_study"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(UI_MAX), unique=True)
    horse_id: Mapped[int | None] = mapped_column(ForeignKey("horse.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("imaging_order.id"), index=True
    )

    # Attributes as received (PS3.3 C.7.1.1, C.7.2.1).
    dicom_patient_id: Mapped[str | None] = mapped_column(String(LO_MAX))
    dicom_patient_name: Mapped[str | None] = mapped_column(String(PN_MAX))
    dicom_accession_number: Mapped[str | None] = mapped_column(
        String(LO_MAX), index=True
    )
    study_date: Mapped[str | None] = mapped_column(String(8))
    study_time: Mapped[str | None] = mapped_column(String(16))
    study_description: Mapped[str | None] = mapped_column(String(LO_MAX))
    study_id: Mapped[str | None] = mapped_column(String(SH_MAX))
    institution_name: Mapped[str | None] = mapped_column(String(LO_MAX))
    source_ae_title: Mapped[str | None] = mapped_column(String(AE_TITLE_MAX))

    # The practice's link and the reconciliation queue.
    link_method: Mapped[str | None] = mapped_column(String(32))
    linked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    linked_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    unmatched_reason: Mapped[str | None] = mapped_column(Text)

    # Representative thumbnail, written by the ``thumbnail`` job.
    thumbnail_blob_key: Mapped[str | None] = mapped_column(String(BLOB_KEY_MAX))
    thumbnail_sop_instance_uid: Mapped[str | None] = mapped_column(String(UI_MAX))

    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    series: Mapped[list[Series]] = relationship(
        back_populates="study", order_by="Series.id"
    )

    @property
    def in_reconciliation(self) -> bool:
        return self.horse_id is None


class Series(Base):
    """One series (PS3.3 C.7.3.1) of a study."""

    __tablename__ = "imaging_series"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("imaging_study.id"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(UI_MAX), unique=True)
    modality: Mapped[str | None] = mapped_column(String(CS_MAX))
    body_part_examined: Mapped[str | None] = mapped_column(String(CS_MAX))
    laterality: Mapped[str | None] = mapped_column(String(CS_MAX))
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str | None] = mapped_column(String(LO_MAX))
    protocol_name: Mapped[str | None] = mapped_column(String(LO_MAX))
    station_name: Mapped[str | None] = mapped_column(String(SH_MAX))
    manufacturer: Mapped[str | None] = mapped_column(String(LO_MAX))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(
        back_populates="series", order_by="Instance.instance_number"
    )


class Instance(Base):
    """One SOP instance (PS3.3 C.12.1) and the blob that contains its bytes.

    ``sha256`` is the digest of the stored file; ``size_bytes`` its length.
    ``view_label`` is the first of (0054,0220) View Code Sequence code meaning
    and (0018,1400) Acquisition Device Processing Description that the
    instance carries, which is where plate software usually names the view.
    """

    __tablename__ = "imaging_instance"
    __table_args__ = (Index("ix_imaging_instance_study_received", "study_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("imaging_study.id"))
    series_id: Mapped[int] = mapped_column(ForeignKey("imaging_series.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(UI_MAX), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(UI_MAX))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(UI_MAX))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    view_position: Mapped[str | None] = mapped_column(String(CS_MAX))
    image_laterality: Mapped[str | None] = mapped_column(String(CS_MAX))
    view_label: Mapped[str | None] = mapped_column(String(LO_MAX))
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    pixel_spacing: Mapped[str | None] = mapped_column(String(64))
    imager_pixel_spacing: Mapped[str | None] = mapped_column(String(64))
    photometric_interpretation: Mapped[str | None] = mapped_column(String(CS_MAX))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(BLOB_KEY_MAX))
    source_ae_title: Mapped[str | None] = mapped_column(String(AE_TITLE_MAX))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    series: Mapped[Series] = relationship(back_populates="instances")

    @property
    def is_image(self) -> bool:
        return bool(self.rows and self.columns)


class QuarantinedObject(Base):
    """An object refused because its SOP Instance UID is already stored.

    Its bytes are kept under ``blob_key`` for inspection; the stored instance
    with that UID is never replaced.
    """

    __tablename__ = "imaging_quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(UI_MAX), index=True)
    study_instance_uid: Mapped[str | None] = mapped_column(String(UI_MAX))
    reason: Mapped[str] = mapped_column(Text)
    blob_key: Mapped[str] = mapped_column(String(BLOB_KEY_MAX))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    source_ae_title: Mapped[str | None] = mapped_column(String(AE_TITLE_MAX))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
