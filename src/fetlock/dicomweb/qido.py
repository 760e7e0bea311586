"""QIDO-RS search over the study index (PS3.18 10.6, PS3.4 C.2.2.2).

Matching runs in SQL on the indexed columns. The page of results is then
turned into DICOM JSON with the standard return attributes (PS3.18
10.6.3.3), and counts and modalities are computed for that page only.
``includefield`` attributes that the index does not hold are read from the
stored header of a representative instance.

Matching rules (PS3.4 C.2.2.2): UIDs by list, dates and times by single
value or range, strings by single value or ``*``/``?`` wildcards. Strings
match case-sensitively except (0010,0010) Patient's Name, which matches
case- and accent-insensitively.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from fetlock.dicomweb.json_model import (
    AttributeNameError,
    JsonDataset,
    attribute,
    dataset_to_json,
    describe,
    merge,
    parse_attribute,
    tag_key,
)
from fetlock.imaging.study_models import Instance, Series, Study

logger = logging.getLogger(__name__)

Level = Literal["study", "series", "instance"]

MAX_RESULTS = 1000
"""Most results returned for one query; more give a Warning header."""

# -- tags -------------------------------------------------------------------

SpecificCharacterSet = 0x00080005
SOPClassUID = 0x00080016
SOPInstanceUID = 0x00080018
StudyDate = 0x00080020
StudyTime = 0x00080030
AccessionNumber = 0x00080050
InstanceAvailability = 0x00080056
ModalitiesInStudy = 0x00080061
Modality = 0x00080060
ReferringPhysicianName = 0x00080090
InstitutionName = 0x00080080
StudyDescription = 0x00081030
SeriesDescription = 0x0008103E
RetrieveURL = 0x00081190
PatientName = 0x00100010
PatientID = 0x00100020
PatientBirthDate = 0x00100030
PatientSex = 0x00100040
BodyPartExamined = 0x00180015
ProtocolName = 0x00181030
ViewPosition = 0x00185101
StudyInstanceUID = 0x0020000D
SeriesInstanceUID = 0x0020000E
StudyID = 0x00200010
SeriesNumber = 0x00200011
InstanceNumber = 0x00200013
Laterality = 0x00200060
ImageLaterality = 0x00200062
NumberOfStudyRelatedSeries = 0x00201206
NumberOfStudyRelatedInstances = 0x00201208
NumberOfSeriesRelatedInstances = 0x00201209
NumberOfFrames = 0x00280008
Rows = 0x00280010
Columns = 0x00280011
PhotometricInterpretation = 0x00280004
StationName = 0x00081010
Manufacturer = 0x00080070
PerformedProcedureStepStartDate = 0x00400244
PerformedProcedureStepStartTime = 0x00400245

# Attributes each level returns by default (PS3.18 10.6.3).
STUDY_DEFAULTS = (
    StudyDate,
    StudyTime,
    AccessionNumber,
    InstanceAvailability,
    ModalitiesInStudy,
    ReferringPhysicianName,
    StudyDescription,
    RetrieveURL,
    PatientName,
    PatientID,
    PatientBirthDate,
    PatientSex,
    StudyInstanceUID,
    StudyID,
    NumberOfStudyRelatedSeries,
    NumberOfStudyRelatedInstances,
)
SERIES_DEFAULTS = (
    Modality,
    SeriesDescription,
    RetrieveURL,
    StudyInstanceUID,
    SeriesInstanceUID,
    SeriesNumber,
    NumberOfSeriesRelatedInstances,
    PerformedProcedureStepStartDate,
    PerformedProcedureStepStartTime,
)
INSTANCE_DEFAULTS = (
    SOPClassUID,
    SOPInstanceUID,
    InstanceAvailability,
    RetrieveURL,
    StudyInstanceUID,
    SeriesInstanceUID,
    InstanceNumber,
    Rows,
    Columns,
    NumberOfFrames,
)


class QueryError(ValueError):
    """A query parameter that cannot be used; the message names it."""

    def __init__(self, message: str, *, field: str, value: str) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


@dataclass
class Query:
    """One QIDO-RS request, parsed.

    ``filters`` maps tags to their raw matching values; ``include`` lists
    extra return attributes, ``include_all`` is ``includefield=all``.
    """

    level: Level
    study_uid: str | None = None
    series_uid: str | None = None
    filters: dict[int, str] = field(default_factory=dict)
    include: set[int] = field(default_factory=set)
    include_all: bool = False
    limit: int = MAX_RESULTS
    offset: int = 0
    warnings: list[str] = field(default_factory=list)


def parse_query(
    level: Level,
    params: Iterable[tuple[str, str]],
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Query:
    """Parse QIDO-RS query parameters (PS3.18 8.3.4).

    Raises
    ------
    QueryError
        An unknown attribute name, a bad ``limit`` or ``offset``, or a
        malformed date or time range.
    """
    query = Query(level=level, study_uid=study_uid, series_uid=series_uid)
    for name, value in params:
        key = name.strip()
        lowered = key.lower()
        if lowered == "limit":
            query.limit = _non_negative(key, value)
            if query.limit > MAX_RESULTS:
                query.warnings.append(
                    f"limit {query.limit} exceeds the maximum of {MAX_RESULTS}; "
                    f"at most {MAX_RESULTS} results are returned"
                )
                query.limit = MAX_RESULTS
        elif lowered == "offset":
            query.offset = _non_negative(key, value)
        elif lowered == "includefield":
            for item in value.split(","):
                if item.strip().lower() == "all":
                    query.include_all = True
                elif item.strip():
                    query.include.add(_attribute(key, item))
        elif lowered == "fuzzymatching":
            if value.strip().lower() == "true":
                query.warnings.append("fuzzymatching is not supported and was ignored")
        else:
            tag = _attribute(key, key)
            if tag in (StudyDate, StudyTime):
                _check_range(tag, value)
            query.filters[tag] = value
    return query


def _non_negative(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise QueryError(
            f"{name}={value!r} is not a whole number; use 0 or more",
            field=name,
            value=value,
        )
    return number


def _attribute(name: str, text: str) -> int:
    try:
        return parse_attribute(text)
    except AttributeNameError as exc:
        raise QueryError(str(exc), field=name, value=text) from exc


_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


def _check_range(tag: int, value: str) -> None:
    pattern = _DATE if tag == StudyDate else _TIME
    example = "20240101-20241231" if tag == StudyDate else "080000-173000"
    low, sep, high = value.partition("-")
    pieces = [low, high] if sep else [low]
    if not any(pieces) or not all(p == "" or pattern.match(p) for p in pieces):
        raise QueryError(
            f"{describe(tag)} {value!r} is not a valid value or range; use "
            f"e.g. {example!r}, an open range such as {example.split('-')[0]!r}-, "
            "or a single value",
            field=describe(tag),
            value=value,
        )


# -- matching ------------------------------------------------------------------


def fold(text: str) -> str:
    """Lower-case `text` and strip accents, for Patient's Name matching."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _values(raw: str) -> list[str]:
    """Split a list of values on backslash or comma (PS3.18 8.3.4.1)."""
    return [v.strip() for v in re.split(r"[\\,]", raw) if v.strip()]


def _wildcard_condition(
    column: InstrumentedAttribute[Any], value: str, dialect: str
) -> ColumnElement[bool]:
    """Single-value or wildcard match, case-sensitive on every database.

    NOTE: the one dialect-specific construct of DICOMweb. SQLite's LIKE
    ignores ASCII case, so SQLite gets GLOB (case-sensitive); PostgreSQL's
    LIKE is case-sensitive already.
    """
    if "*" not in value and "?" not in value:
        return column == value
    if dialect == "sqlite":
        pattern = "".join(f"[{c}]" if c in "[]" else c for c in value)
        return column.op("GLOB")(pattern)
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = escaped.replace("*", "%").replace("?", "_")
    return column.like(like, escape="\\")


def _range_condition(
    column: InstrumentedAttribute[Any], value: str
) -> ColumnElement[bool]:
    low, sep, high = value.partition("-")
    if not sep:
        return column == low
    conditions = []
    if low:
        conditions.append(column >= low)
    if high:
        # A range's upper date includes the whole day (YYYYMMDD sorts first).
        conditions.append(column <= high + "\uffff")
    return and_(*conditions)


def _wildcard_regex(char: str) -> str:
    if char == "*":
        return ".*"
    if char == "?":
        return "."
    return re.escape(char)


def _name_matches(pattern: str, name: str | None) -> bool:
    regex = "".join(_wildcard_regex(c) for c in fold(pattern))
    return re.fullmatch(regex, fold(name or ""), flags=re.DOTALL) is not None


_STUDY_COLUMNS: dict[int, InstrumentedAttribute[Any]] = {
    PatientID: Study.dicom_patient_id,
    AccessionNumber: Study.dicom_accession_number,
    StudyDescription: Study.study_description,
    StudyID: Study.study_id,
    InstitutionName: Study.institution_name,
}
_SERIES_COLUMNS: dict[int, InstrumentedAttribute[Any]] = {
    Modality: Series.modality,
    SeriesDescription: Series.series_description,
    BodyPartExamined: Series.body_part_examined,
    ProtocolName: Series.protocol_name,
    StationName: Series.station_name,
    Manufacturer: Series.manufacturer,
    Laterality: Series.laterality,
}
_INSTANCE_COLUMNS: dict[int, InstrumentedAttribute[Any]] = {
    SOPClassUID: Instance.sop_class_uid,
    ViewPosition: Instance.view_position,
    ImageLaterality: Instance.image_laterality,
    PhotometricInterpretation: Instance.photometric_interpretation,
}
_LEVEL_RANK = {"study": 0, "series": 1, "instance": 2}


def _apply_filters(
    statement: Select, query: Query, dialect: str
) -> tuple[Select, str | None]:
    """Add a WHERE clause per filter; return the Patient's Name pattern apart.

    Filters on attributes of a lower level than the query's (for example
    Modality in a study query, other than ModalitiesInStudy) are ignored with
    a warning, as PS3.4 C.2.2.1 allows only keys of the queried level and
    above.
    """
    rank = _LEVEL_RANK[query.level]
    name_pattern: str | None = None
    for tag, raw in query.filters.items():
        value = raw.strip()
        if value in ("", "*"):
            continue  # universal match
        if tag == PatientName:
            name_pattern = value
        elif tag == StudyInstanceUID:
            statement = statement.where(Study.study_instance_uid.in_(_values(value)))
        elif tag == StudyDate:
            statement = statement.where(_range_condition(Study.study_date, value))
        elif tag == StudyTime:
            statement = statement.where(_range_condition(Study.study_time, value))
        elif tag in _STUDY_COLUMNS:
            statement = statement.where(
                _wildcard_condition(_STUDY_COLUMNS[tag], value, dialect)
            )
        elif tag == ModalitiesInStudy:
            statement = statement.where(
                select(Series.id)
                .where(Series.study_id == Study.id, Series.modality.in_(_values(value)))
                .exists()
            )
        elif rank >= 1 and tag == SeriesInstanceUID:
            statement = statement.where(Series.series_instance_uid.in_(_values(value)))
        elif rank >= 1 and tag == SeriesNumber:
            statement = statement.where(Series.series_number == _int_value(tag, value))
        elif rank >= 1 and tag in _SERIES_COLUMNS:
            statement = statement.where(
                or_(
                    *(
                        _wildcard_condition(_SERIES_COLUMNS[tag], v, dialect)
                        for v in _values(value)
                    )
                )
                if tag == Modality
                else _wildcard_condition(_SERIES_COLUMNS[tag], value, dialect)
            )
        elif rank >= 2 and tag == SOPInstanceUID:
            statement = statement.where(Instance.sop_instance_uid.in_(_values(value)))
        elif rank >= 2 and tag == InstanceNumber:
            statement = statement.where(
                Instance.instance_number == _int_value(tag, value)
            )
        elif rank >= 2 and tag in _INSTANCE_COLUMNS:
            statement = statement.where(
                _wildcard_condition(_INSTANCE_COLUMNS[tag], value, dialect)
            )
        else:
            query.warnings.append(
                f"{describe(tag)} is not supported for matching at the "
                f"{query.level} level and was ignored"
            )
    return statement, name_pattern


def _int_value(tag: int, value: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise QueryError(
            f"{describe(tag)} {value!r} is not a whole number",
            field=describe(tag),
            value=value,
        ) from exc


# -- searching -----------------------------------------------------------------

HeaderReader = Callable[[str], Dataset | None]
"""Return the stored header (no pixel data) of an instance by blob key."""


@dataclass
class SearchResult:
    datasets: list[JsonDataset]
    warnings: list[str]


def search(
    db_session: Session,
    query: Query,
    *,
    base_url: str,
    read_header: HeaderReader,
) -> SearchResult:
    """Run `query` and return its page of results as DICOM JSON."""
    dialect = db_session.get_bind().dialect.name
    if query.level == "study":
        datasets = _search_studies(db_session, query, base_url, read_header, dialect)
    elif query.level == "series":
        datasets = _search_series(db_session, query, base_url, read_header, dialect)
    else:
        datasets = _search_instances(db_session, query, base_url, read_header, dialect)
    return SearchResult(datasets, query.warnings)


def _page(
    db_session: Session,
    statement: Select,
    query: Query,
    name_pattern: str | None,
) -> list[Any]:
    """Apply offset and limit, filtering Patient's Name in Python first.

    NOTE: the index keeps Patient's Name as received, with no folded
    column, so a name filter reads every candidate row's name before paging.
    That is fine for a practice's tens of thousands of studies.
    """
    if name_pattern is None:
        return list(
            db_session.execute(statement.offset(query.offset).limit(query.limit))
        )
    rows = [
        row
        for row in db_session.execute(statement)
        if _name_matches(name_pattern, row.Study.dicom_patient_name)
    ]
    return rows[query.offset : query.offset + query.limit]


def _search_studies(
    db_session: Session,
    query: Query,
    base_url: str,
    read_header: HeaderReader,
    dialect: str,
) -> list[JsonDataset]:
    statement = select(Study).order_by(
        Study.study_date.desc(), Study.study_time.desc(), Study.id.desc()
    )
    if query.study_uid:
        statement = statement.where(Study.study_instance_uid == query.study_uid)
    statement, name_pattern = _apply_filters(statement, query, dialect)
    studies = [row.Study for row in _page(db_session, statement, query, name_pattern)]
    if not studies:
        return []

    ids = [s.id for s in studies]
    series_counts = _pairs(
        db_session.execute(
            select(Series.study_id, func.count(Series.id))
            .where(Series.study_id.in_(ids))
            .group_by(Series.study_id)
        )
    )
    instance_counts = _pairs(
        db_session.execute(
            select(Instance.study_id, func.count(Instance.id))
            .where(Instance.study_id.in_(ids))
            .group_by(Instance.study_id)
        )
    )
    modalities: dict[int, set[str]] = {}
    for study_id, modality in db_session.execute(
        select(Series.study_id, Series.modality)
        .where(Series.study_id.in_(ids), Series.modality.is_not(None))
        .distinct()
    ):
        if modality:
            modalities.setdefault(study_id, set()).add(modality)

    results = []
    for study in studies:
        values = merge(
            _study_attributes(study, base_url),
            attribute(ModalitiesInStudy, sorted(modalities.get(study.id, ())), "CS"),
            attribute(NumberOfStudyRelatedSeries, series_counts.get(study.id, 0), "IS"),
            attribute(
                NumberOfStudyRelatedInstances, instance_counts.get(study.id, 0), "IS"
            ),
        )
        results.append(
            _with_included(
                db_session, values, query, read_header, Instance.study_id == study.id
            )
        )
    return results


def _search_series(
    db_session: Session,
    query: Query,
    base_url: str,
    read_header: HeaderReader,
    dialect: str,
) -> list[JsonDataset]:
    statement = (
        select(Series, Study)
        .join(Study, Study.id == Series.study_id)
        .order_by(Study.id, Series.series_number.is_(None), Series.series_number)
        .order_by(Series.id)
    )
    if query.study_uid:
        statement = statement.where(Study.study_instance_uid == query.study_uid)
    statement, name_pattern = _apply_filters(statement, query, dialect)
    rows = _page(db_session, statement, query, name_pattern)
    if not rows:
        return []

    ids = [row.Series.id for row in rows]
    counts = _pairs(
        db_session.execute(
            select(Instance.series_id, func.count(Instance.id))
            .where(Instance.series_id.in_(ids))
            .group_by(Instance.series_id)
        )
    )
    results = []
    for row in rows:
        values = merge(
            _study_attributes(row.Study, base_url) if query.study_uid is None else {},
            _series_attributes(row.Series, row.Study, base_url),
            attribute(
                NumberOfSeriesRelatedInstances, counts.get(row.Series.id, 0), "IS"
            ),
        )
        results.append(
            _with_included(
                db_session,
                values,
                query,
                read_header,
                Instance.series_id == row.Series.id,
            )
        )
    return results


def _search_instances(
    db_session: Session,
    query: Query,
    base_url: str,
    read_header: HeaderReader,
    dialect: str,
) -> list[JsonDataset]:
    statement = (
        select(Instance, Series, Study)
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Instance.study_id)
        .order_by(Study.id, Series.series_number.is_(None), Series.series_number)
        .order_by(
            Series.id,
            Instance.instance_number.is_(None),
            Instance.instance_number,
            Instance.id,
        )
    )
    if query.study_uid:
        statement = statement.where(Study.study_instance_uid == query.study_uid)
    if query.series_uid:
        statement = statement.where(Series.series_instance_uid == query.series_uid)
    statement, name_pattern = _apply_filters(statement, query, dialect)
    rows = _page(db_session, statement, query, name_pattern)

    results = []
    for row in rows:
        values = merge(
            _study_attributes(row.Study, base_url) if query.study_uid is None else {},
            _series_attributes(row.Series, row.Study, base_url)
            if query.series_uid is None
            else {},
            _instance_attributes(row.Instance, row.Series, row.Study, base_url),
        )
        results.append(
            _with_included(
                db_session,
                values,
                query,
                read_header,
                Instance.id == row.Instance.id,
            )
        )
    return results


def _pairs(rows: Iterable[Any]) -> dict[Any, Any]:
    return {key: value for key, value in rows}


# -- return attributes ---------------------------------------------------------


def study_url(base_url: str, study: Study) -> str:
    return f"{base_url}/studies/{study.study_instance_uid}"


def series_url(base_url: str, series: Series, study: Study) -> str:
    return f"{study_url(base_url, study)}/series/{series.series_instance_uid}"


def instance_url(
    base_url: str, instance: Instance, series: Series, study: Study
) -> str:
    return (
        f"{series_url(base_url, series, study)}/instances/{instance.sop_instance_uid}"
    )


def _study_attributes(study: Study, base_url: str) -> JsonDataset:
    return merge(
        attribute(SpecificCharacterSet, "ISO_IR 192", "CS"),
        attribute(StudyDate, study.study_date, "DA"),
        attribute(StudyTime, study.study_time, "TM"),
        attribute(AccessionNumber, study.dicom_accession_number, "SH"),
        attribute(InstanceAvailability, "ONLINE", "CS"),
        attribute(ReferringPhysicianName, None, "PN"),
        attribute(StudyDescription, study.study_description, "LO"),
        attribute(RetrieveURL, study_url(base_url, study), "UR"),
        attribute(PatientName, study.dicom_patient_name, "PN"),
        attribute(PatientID, study.dicom_patient_id, "LO"),
        attribute(PatientBirthDate, None, "DA"),
        attribute(PatientSex, None, "CS"),
        attribute(StudyInstanceUID, study.study_instance_uid, "UI"),
        attribute(StudyID, study.study_id, "SH"),
        attribute(InstitutionName, study.institution_name, "LO"),
    )


def _series_attributes(series: Series, study: Study, base_url: str) -> JsonDataset:
    return merge(
        attribute(SpecificCharacterSet, "ISO_IR 192", "CS"),
        attribute(Modality, series.modality, "CS"),
        attribute(SeriesDescription, series.series_description, "LO"),
        attribute(RetrieveURL, series_url(base_url, series, study), "UR"),
        attribute(StudyInstanceUID, study.study_instance_uid, "UI"),
        attribute(SeriesInstanceUID, series.series_instance_uid, "UI"),
        attribute(SeriesNumber, series.series_number, "IS"),
        attribute(BodyPartExamined, series.body_part_examined, "CS"),
        attribute(PerformedProcedureStepStartDate, None, "DA"),
        attribute(PerformedProcedureStepStartTime, None, "TM"),
    )


def _instance_attributes(
    instance: Instance, series: Series, study: Study, base_url: str
) -> JsonDataset:
    return merge(
        attribute(SpecificCharacterSet, "ISO_IR 192", "CS"),
        attribute(SOPClassUID, instance.sop_class_uid, "UI"),
        attribute(SOPInstanceUID, instance.sop_instance_uid, "UI"),
        attribute(InstanceAvailability, "ONLINE", "CS"),
        attribute(RetrieveURL, instance_url(base_url, instance, series, study), "UR"),
        attribute(StudyInstanceUID, study.study_instance_uid, "UI"),
        attribute(SeriesInstanceUID, series.series_instance_uid, "UI"),
        attribute(InstanceNumber, instance.instance_number, "IS"),
        attribute(Rows, instance.rows, "US"),
        attribute(Columns, instance.columns, "US"),
        attribute(NumberOfFrames, instance.number_of_frames, "IS"),
        attribute(PhotometricInterpretation, instance.photometric_interpretation, "CS"),
    )


def _with_included(
    db_session: Session,
    values: JsonDataset,
    query: Query,
    read_header: HeaderReader,
    instance_filter: ColumnElement[bool],
) -> JsonDataset:
    """Add ``includefield`` attributes missing from the index, from a header."""
    missing = [tag for tag in sorted(query.include) if tag_key(tag) not in values]
    if not missing and not query.include_all:
        return values
    blob_key = db_session.execute(
        select(Instance.blob_key)
        .where(instance_filter)
        .order_by(Instance.instance_number.is_(None), Instance.instance_number)
        .order_by(Instance.id)
        .limit(1)
    ).scalar_one_or_none()
    header = read_header(blob_key) if blob_key else None
    if header is None:
        # Requested but unknown: present without a value (PS3.18 10.6.3.3).
        return merge(values, *(attribute(tag) for tag in missing))
    from_header = dataset_to_json(header)
    if query.include_all:
        return merge(from_header, values)
    extra: list[JsonDataset] = []
    for tag in missing:
        key = tag_key(tag)
        extra.append({key: from_header[key]} if key in from_header else attribute(tag))
    return merge(values, *extra)


def read_stored_header(open_blob: Callable[[str], Any]) -> HeaderReader:
    """Return a HeaderReader over a blob store's ``open``."""

    def reader(blob_key: str) -> Dataset | None:
        try:
            with open_blob(blob_key) as stream:
                return dcmread(stream, stop_before_pixels=True)
        except Exception:
            logger.exception("cannot read the stored header of blob %s", blob_key)
            return None

    return reader
