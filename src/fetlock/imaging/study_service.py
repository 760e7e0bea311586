"""Reading the study index: a horse's studies, their views, the queue.

Views received are matched to the views ordered (``OrderView.code`` such as
``LF-LM``) by the names modalities put in the image headers: the
(0054,0220) View Code Sequence meaning or (0018,1400) Acquisition Device
Processing Description (``Instance.view_label``), the series description or
protocol name, or (0018,5101) View Position. Names compare without case,
spaces or punctuation, so ``LF LM``, ``lf-lm`` and ``LFLM`` are one view. A
bare projection (``LM``) names an ordered view only when no other ordered
view has that projection.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from fetlock.db.base import utcnow
from fetlock.imaging.models import ImagingOrder, OrderView
from fetlock.imaging.study_models import Instance, Series, Study

# A study whose last image arrived this recently is shown as still arriving.
RECEIVING_WINDOW_S = 10.0

_NOT_ALNUM = re.compile(r"[^A-Z0-9]")


def _norm(text: str | None) -> str:
    return _NOT_ALNUM.sub("", (text or "").upper())


@dataclass
class ViewComparison:
    """Ordered views against the views found in a study's images.

    ``received`` lists ordered view codes with at least one image, and
    ``missing`` the ordered codes with none. ``extra`` lists the names of
    images that match no ordered view (``"unnamed image"`` when an image names
    no view).
    """

    ordered: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return bool(self.ordered) and not self.missing


@dataclass(frozen=True)
class _ImageNames:
    """The names one image gives its view, most specific first."""

    names: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.names[0] if self.names else "unnamed image"


def _image_names(instance: Instance, series: Series) -> _ImageNames:
    candidates = (
        instance.view_label,
        series.series_description,
        series.protocol_name,
        instance.view_position,
    )
    return _ImageNames(tuple(c.strip() for c in candidates if c and c.strip()))


def compare_views(
    ordered_views: Sequence[OrderView], images: Iterable[_ImageNames]
) -> ViewComparison:
    """Match images to ordered views; see the module docstring for the rules."""
    projections = Counter(_norm(v.projection) for v in ordered_views)
    keys: list[tuple[OrderView, set[str]]] = []
    for view in ordered_views:
        names = {_norm(view.code)}
        if view.limb:
            names.add(_norm(view.limb + view.projection))
        if projections[_norm(view.projection)] == 1:
            names.add(_norm(view.projection))
        keys.append((view, names))

    counts: Counter[str] = Counter()
    extra: list[str] = []
    for image in images:
        normalised = [_norm(n) for n in image.names]
        matched = [v for v, names in keys if any(n in names for n in normalised)]
        if not matched:
            extra.append(image.label)
            continue
        # Fill the first ordered view not yet seen; a retake counts again.
        target = next((v for v in matched if counts[v.code] == 0), matched[0])
        counts[target.code] += 1

    ordered = [v.code for v in ordered_views]
    return ViewComparison(
        ordered=ordered,
        received=[c for c in ordered if counts[c]],
        missing=[c for c in ordered if not counts[c]],
        extra=extra,
        counts=dict(counts),
    )


def _images_of(db_session: Session, study_ids: Sequence[int]) -> list[_ImageNames]:
    rows = db_session.execute(
        select(Instance, Series)
        .join(Series, Series.id == Instance.series_id)
        .where(Instance.study_id.in_(study_ids), Instance.rows.is_not(None))
        .order_by(Instance.id)
    ).all()
    return [_image_names(instance, series) for instance, series in rows]


def order_view_comparison(db_session: Session, order: ImagingOrder) -> ViewComparison:
    """Views ordered against views received, over every study of the order."""
    study_ids = list(
        db_session.execute(select(Study.id).where(Study.order_id == order.id)).scalars()
    )
    images = _images_of(db_session, study_ids) if study_ids else []
    return compare_views(order.views, images)


@dataclass
class StudySummary:
    """One study as the chart and the queue show it."""

    study: Study
    order: ImagingOrder | None
    modalities: list[str]
    body_parts: list[str]
    series_count: int
    instance_count: int
    frame_count: int
    views: ViewComparison
    view_labels: list[str]
    receiving: bool
    # Images stored after the study's last final report or addendum was
    # signed, which no signed text covers yet.
    images_after_report: int = 0

    @property
    def date(self) -> dt.date | None:
        value = self.study.study_date
        if value and len(value) == 8 and value.isdigit():
            try:
                return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
            except ValueError:
                return None
        return None


def summarise(db_session: Session, studies: Sequence[Study]) -> list[StudySummary]:
    """Counts, modalities and views for each study, in a few queries."""
    if not studies:
        return []
    ids = [s.id for s in studies]
    series_rows = db_session.execute(
        select(Series.study_id, Series.modality, Series.body_part_examined).where(
            Series.study_id.in_(ids)
        )
    ).all()
    counts = {
        study_id: (n, frames or 0)
        for study_id, n, frames in db_session.execute(
            select(
                Instance.study_id,
                func.count(Instance.id),
                func.sum(func.coalesce(Instance.number_of_frames, 1)),
            )
            .where(Instance.study_id.in_(ids))
            .group_by(Instance.study_id)
        ).all()
    }
    order_ids = {s.order_id for s in studies if s.order_id is not None}
    orders = {
        o.id: o
        for o in db_session.execute(
            select(ImagingOrder).where(ImagingOrder.id.in_(order_ids))
        )
        .unique()
        .scalars()
    }
    after_report = _images_after_report(db_session, ids)
    now = utcnow()
    summaries = []
    for study in studies:
        own_series = [row for row in series_rows if row.study_id == study.id]
        images = _images_of(db_session, [study.id])
        order = orders.get(study.order_id) if study.order_id else None
        views = compare_views(order.views if order else [], images)
        n, frames = counts.get(study.id, (0, 0))
        summaries.append(
            StudySummary(
                study=study,
                order=order,
                modalities=sorted({r.modality for r in own_series if r.modality}),
                body_parts=sorted(
                    {r.body_part_examined for r in own_series if r.body_part_examined}
                ),
                series_count=len(own_series),
                instance_count=n,
                frame_count=frames,
                views=views,
                view_labels=sorted({i.label for i in images if i.names}),
                receiving=(now - study.last_received_at).total_seconds()
                < RECEIVING_WINDOW_S,
                images_after_report=after_report.get(study.id, 0),
            )
        )
    return summaries


def _images_after_report(db_session: Session, study_ids: list[int]) -> dict[int, int]:
    """Count, per study, the images stored after its last report was signed."""
    rows = db_session.execute(late_images(study_ids)).all()
    return {row.study_id: int(row.images) for row in rows}


def late_images(
    study_ids: Sequence[int] | None = None,
) -> Select[int, int, dt.datetime]:
    """Select the studies with images stored after their last signed report.

    Each row has ``study_id``, ``images`` (how many) and
    ``first_received_at``. A signed addendum moves the cut-off, so the images
    before it no longer count. Objects without pixels (presentation states,
    key-object selections, reports) carry no (0028,0010) Rows and are not
    counted.
    """
    from fetlock.reporting.models import Report, ReportKind, ReportStatus

    # Reports signed in Fetlock only: an outside report's time is when it was
    # received, and no addendum can follow it.
    signed = select(
        Report.study_id, func.max(Report.signed_at).label("signed_at")
    ).where(
        Report.status == ReportStatus.FINAL,
        Report.signed_at.is_not(None),
        Report.kind != ReportKind.EXTERNAL,
    )
    if study_ids is not None:
        signed = signed.where(Report.study_id.in_(study_ids))
    last_signed = signed.group_by(Report.study_id).subquery()
    return (
        select(
            Instance.study_id.label("study_id"),
            func.count(Instance.id).label("images"),
            func.min(Instance.received_at).label("first_received_at"),
        )
        .join(last_signed, last_signed.c.study_id == Instance.study_id)
        .where(
            Instance.received_at > last_signed.c.signed_at,
            Instance.rows.is_not(None),
        )
        .group_by(Instance.study_id)
    )


def studies_for_horse(db_session: Session, horse_id: int) -> list[Study]:
    """Return the horse's studies, newest first."""
    return list(
        db_session.execute(
            select(Study)
            .where(Study.horse_id == horse_id)
            .order_by(Study.received_at.desc(), Study.id.desc())
        ).scalars()
    )


def reconciliation_queue(db_session: Session, *, limit: int = 200) -> list[Study]:
    """Studies that matched no order and wait for staff, oldest first."""
    return list(
        db_session.execute(
            select(Study)
            .where(Study.horse_id.is_(None))
            .order_by(Study.received_at, Study.id)
            .limit(limit)
        ).scalars()
    )


def count_waiting(db_session: Session) -> int:
    return int(
        db_session.execute(
            select(func.count()).select_from(Study).where(Study.horse_id.is_(None))
        ).scalar_one()
    )
