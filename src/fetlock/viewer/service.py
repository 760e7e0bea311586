"""What the viewer shows around a study: its horse, its priors, outside viewers.

No HTTP here: routes turn these into the viewer page and its JSON API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from fetlock.imaging.study_models import Instance, Series, Study
from fetlock.practice.models import Horse
from fetlock.viewer.settings import ViewerSettings
from fetlock.web.errors import DomainError, NotFound

UID_CHARACTERS = frozenset("0123456789.")
UID_MAX = 64


@dataclass(frozen=True)
class StudyCard:
    """One study as the viewer lists it."""

    StudyInstanceUID: str
    StudyDate: str | None
    StudyDescription: str | None
    AccessionNumber: str | None
    modalities: list[str]
    body_parts: list[str]
    instance_count: int
    frame_count: int
    size_bytes: int
    same_region: bool = False

    @property
    def viewer_url(self) -> str:
        return f"/viewer/studies/{self.StudyInstanceUID}"

    def as_config(self) -> dict[str, object]:
        """The shape the TypeScript viewer reads (frontend/src/config.ts)."""
        return {
            "studyInstanceUID": self.StudyInstanceUID,
            "studyDate": self.StudyDate,
            "studyDescription": self.StudyDescription,
            "accessionNumber": self.AccessionNumber,
            "modalities": self.modalities,
            "bodyParts": self.body_parts,
            "viewerUrl": self.viewer_url,
            "sameRegion": self.same_region,
            "instanceCount": self.instance_count,
        }


@dataclass(frozen=True)
class ViewerContext:
    """A study, its horse and the horse's other studies, priors first by region."""

    study: Study
    card: StudyCard
    horse: Horse | None
    priors: list[StudyCard] = field(default_factory=list)


def check_study_uid(value: str, field_name: str = "StudyInstanceUID") -> str:
    """Return ``value`` if it is a syntactically valid UID (PS3.5 9.1)."""
    if not value or len(value) > UID_MAX or not set(value) <= UID_CHARACTERS:
        raise DomainError(
            f"(0020,000D) Study Instance UID {value!r} is not a UID; a UID has at "
            "most 64 digits and dots, such as 1.2.826.0.1.3680043.8.498.1",
            field=field_name,
            value=value,
        )
    return value


def get_study(db_session: Session, study_uid: str) -> Study:
    """Return the indexed study with this Study Instance UID, or raise NotFound."""
    check_study_uid(study_uid)
    study = db_session.execute(
        select(Study)
        .where(Study.study_instance_uid == study_uid)
        .options(selectinload(Study.series))
    ).scalar_one_or_none()
    if study is None:
        raise NotFound(
            f"no study with (0020,000D) Study Instance UID {study_uid} is stored; "
            "open it from the horse's chart, or check that the modality sent it",
            field="StudyInstanceUID",
            value=study_uid,
        )
    return study


def _cards(db_session: Session, studies: list[Study]) -> dict[int, StudyCard]:
    """Summaries of several studies with two queries, not one per study."""
    ids = [s.id for s in studies]
    if not ids:
        return {}
    counts = {
        study_id: (instances, frames, size)
        for study_id, instances, frames, size in db_session.execute(
            select(
                Instance.study_id,
                func.count(Instance.id),
                func.coalesce(func.sum(func.coalesce(Instance.number_of_frames, 1)), 0),
                func.coalesce(func.sum(Instance.size_bytes), 0),
            )
            .where(Instance.study_id.in_(ids))
            .group_by(Instance.study_id)
        )
    }
    series_rows = db_session.execute(
        select(Series.study_id, Series.modality, Series.body_part_examined).where(
            Series.study_id.in_(ids)
        )
    ).all()
    cards = {}
    for study in studies:
        modalities = sorted({m for sid, m, _ in series_rows if sid == study.id and m})
        body_parts = sorted(
            {b.upper() for sid, _, b in series_rows if sid == study.id and b}
        )
        instances, frames, size = counts.get(study.id, (0, 0, 0))
        cards[study.id] = StudyCard(
            StudyInstanceUID=study.study_instance_uid,
            StudyDate=study.study_date,
            StudyDescription=study.study_description,
            AccessionNumber=study.dicom_accession_number,
            modalities=modalities,
            body_parts=body_parts,
            instance_count=int(instances),
            frame_count=int(frames),
            size_bytes=int(size),
        )
    return cards


def _prior_order(current: StudyCard, prior: StudyCard) -> tuple[int, str]:
    # Same body part first, then the most recent.
    same = bool(set(current.body_parts) & set(prior.body_parts))
    return (0 if same else 1, _negated(prior.StudyDate or ""))


def _negated(date: str) -> str:
    """Sort key that puts later DA values (YYYYMMDD) first."""
    return "".join(chr(0x7F - ord(c)) for c in date)


def viewer_context(db_session: Session, study_uid: str) -> ViewerContext:
    """Return a study with its horse and priors (other studies of the horse)."""
    study = get_study(db_session, study_uid)
    horse = db_session.get(Horse, study.horse_id) if study.horse_id else None
    others: list[Study] = []
    if horse is not None:
        others = list(
            db_session.execute(
                select(Study).where(Study.horse_id == horse.id, Study.id != study.id)
            ).scalars()
        )
    cards = _cards(db_session, [study, *others])
    card = cards[study.id]
    priors = []
    for other in others:
        prior = cards[other.id]
        same = bool(set(card.body_parts) & set(prior.body_parts))
        priors.append(StudyCard(**{**prior.__dict__, "same_region": same}))
    priors.sort(key=lambda p: _prior_order(card, p))
    return ViewerContext(study=study, card=card, horse=horse, priors=priors)


def check_prior(context: ViewerContext, prior_uid: str | None) -> str | None:
    """Return ``prior_uid`` if it names one of the horse's other studies."""
    if not prior_uid:
        return None
    check_study_uid(prior_uid, "compare")
    if not any(p.StudyInstanceUID == prior_uid for p in context.priors):
        raise DomainError(
            f"compare={prior_uid} is not another study of this horse; pick one "
            "of the priors listed beside the viewer",
            field="compare",
            value=prior_uid,
        )
    return prior_uid


@dataclass(frozen=True)
class ExternalLink:
    name: str
    url: str


def external_links(
    settings: ViewerSettings, study: Study, horse: Horse | None, origin: str
) -> list[ExternalLink]:
    """Fill the practice's outside viewer templates for one study.

    ``origin`` is the scheme, host and port the browser reached Fetlock at;
    every value is percent-encoded as it is substituted.
    """
    values = {
        "StudyInstanceUID": study.study_instance_uid,
        "AccessionNumber": study.dicom_accession_number or "",
        "PatientID": horse.patient_id if horse else (study.dicom_patient_id or ""),
        "dicomweb_url": f"{origin}/dicomweb",
        "origin": origin,
    }
    encoded = {key: quote(value, safe="") for key, value in values.items()}
    links = []
    for name, template in (
        ("OHIF", settings.ohif_url_template),
        ("Weasis", settings.weasis_url_template),
    ):
        if template:
            links.append(ExternalLink(name, template.format(**encoded)))
    return links


def offline_manifest(
    db_session: Session, study: Study, dicomweb_root: str = "/dicomweb"
) -> dict[str, object]:
    """Every URL the viewer stores to open a study offline, with sizes.

    The metadata, each frame of each image instance (PS3.18 10.4.1.1.3) and
    each thumbnail. ``size_bytes`` is the stored size of the instances: an
    upper bound for what the frames take, used to check the device budget.
    """
    rows = db_session.execute(
        select(Instance, Series.series_instance_uid)
        .join(Series, Series.id == Instance.series_id)
        .where(Instance.study_id == study.id)
        .order_by(Series.id, Instance.instance_number, Instance.id)
    ).all()
    base = f"{dicomweb_root}/studies/{study.study_instance_uid}"
    frames: list[str] = []
    thumbnails: list[str] = []
    size = 0
    for instance, series_uid in rows:
        size += instance.size_bytes
        if not instance.is_image:
            continue
        url = f"{base}/series/{series_uid}/instances/{instance.sop_instance_uid}"
        count = max(1, instance.number_of_frames or 1)
        frames.extend(f"{url}/frames/{n}" for n in range(1, count + 1))
        thumbnails.append(f"{url}/thumbnail")
    return {
        "StudyInstanceUID": study.study_instance_uid,
        "horse_id": study.horse_id,
        "metadata": f"{base}/metadata",
        "frames": frames,
        "thumbnails": thumbnails,
        "size_bytes": size,
        "viewer_url": f"/viewer/studies/{study.study_instance_uid}",
    }


def first_frame_url(
    db_session: Session, study: Study, dicomweb_root: str = "/dicomweb"
) -> str | None:
    """WADO-RS URL of the frame the viewer opens a study on, or None.

    The viewer shows the first image of the lowest-numbered series, by
    instance number, in the order the study metadata lists them (series,
    then instance, as stored). A different pick only wastes the prefetch.
    """
    row = db_session.execute(
        select(Series.series_instance_uid, Instance.sop_instance_uid)
        .join(Series, Series.id == Instance.series_id)
        .where(
            Instance.study_id == study.id,
            Instance.rows > 0,
            Instance.columns > 0,
        )
        .order_by(
            # The viewer sorts a missing number as 0, and ties keep the
            # metadata's order (numbered first, then by id).
            func.coalesce(Series.series_number, 0),
            Series.series_number.is_(None),
            Series.id,
            func.coalesce(Instance.instance_number, 0),
            Instance.instance_number.is_(None),
            Instance.id,
        )
        .limit(1)
    ).first()
    if row is None:
        return None
    series_uid, sop_uid = row
    return (
        f"{dicomweb_root}/studies/{study.study_instance_uid}/series/{series_uid}"
        f"/instances/{sop_uid}/frames/1"
    )


def key_image_ids(db_session: Session, study: Study) -> dict[str, int]:
    """Instance ids by SOP Instance UID: how the reporting API names images."""
    return {
        sop: instance_id
        for sop, instance_id in db_session.execute(
            select(Instance.sop_instance_uid, Instance.id).where(
                Instance.study_id == study.id
            )
        )
    }
