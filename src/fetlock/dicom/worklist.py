"""Modality Worklist Information Model - FIND SCP (PS3.4 Annex K).

The SCP handles a C-FIND request in four steps:

1. Parse the identifier into (keyword, VR, value) triples and check every
   date and time value; a malformed one ends the request with status A900
   and an Error Comment, before anything is searched.
2. Turn the exact-match keys (Accession Number, Patient ID, SPS ID, station,
   modality, status, UIDs) and the combined SPS start Date/Time range into a
   database query.
3. Apply the full matching rules of PS3.4 C.2.2.2 to each candidate item in
   Python (wildcards, Patient's Name folding, sequences).
4. Return one Pending response per match, holding the requested keys plus the
   required keys of the Scheduled Procedure Step item, in the calling AE's
   character set; then a final Success without an identifier (pynetdicom
   sends it when the generator ends). A C-CANCEL stops the responses with
   status FE00.

Without a Scheduled Procedure Step Status key, only SCHEDULED items are
returned, so cancelled, started and completed orders leave the worklist.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName
from pynetdicom import evt
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityWorklistInformationFind,
)

from fetlock.config import Settings
from fetlock.dicom import mapping
from fetlock.dicom.matching import (
    DateTimeRange,
    InvalidQuery,
    date_range,
    match_item,
    match_string,
    time_range,
)
from fetlock.dicom.policy import PeerConfig
from fetlock.dicom.server import Handler, ScpContext, calling_ae_title
from fetlock.dicom.transfer import ACCEPTED_TRANSFER_SYNTAXES
from fetlock.imaging import service
from fetlock.imaging.models import ScheduledProcedureStepStatus, SpecificCharacterSet

logger = logging.getLogger(__name__)

PENDING = 0xFF00
CANCEL = 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC001

SPS_SEQUENCE = "ScheduledProcedureStepSequence"
SPS_DATE = "ScheduledProcedureStepStartDate"
SPS_TIME = "ScheduledProcedureStepStartTime"

# Pending responses between two pauses that let a C-CANCEL in (_let_peer_in).
CANCEL_CHECK_INTERVAL = 16
# Maximum wait for the queued responses to go out, and the pause after it.
SEND_DRAIN_MAX_S = 0.05
PEER_READ_PAUSE_S = 0.002

# Keys every response carries, requested or not: the R (required matching)
# keys of PS3.4 Table K.6-1, and the SPS ID and description, which are Type 1
# return keys of the single SPS item. Other keys come back only when requested.
REQUIRED_TOP_LEVEL = ("PatientName", "PatientID")
REQUIRED_SPS_ITEM = (
    "ScheduledStationAETitle",
    SPS_DATE,
    SPS_TIME,
    "Modality",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID",
)

QueryKeys = list[tuple[str, str, Any]]


def supported_contexts(settings: Settings) -> list[PresentationContext]:
    return [build_context(ModalityWorklistInformationFind, ACCEPTED_TRANSFER_SYNTAXES)]


def event_handlers(context: ScpContext) -> list[tuple[evt.EventType, Handler]]:
    # Build the breed code table now rather than during the first query.
    mapping.breed_code("warm-up")

    def on_c_find(event: evt.Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        return handle_find(context, event)

    return [(evt.EVT_C_FIND, on_c_find)]


# --------------------------------------------------------------------------
# Query parsing
# --------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    return value


def query_keys(identifier: Dataset) -> QueryKeys:
    """Return the identifier's keys as (keyword, VR, value) triples.

    A sequence value is the key list of its first item, or None when the
    sequence is empty or its item is (universal matching of the sequence).
    Group lengths, private elements and the character set are not keys.
    """
    keys: QueryKeys = []
    for elem in identifier:
        if elem.tag.element == 0 or elem.tag.is_private:
            continue
        keyword = elem.keyword or keyword_for_tag(elem.tag)
        if not keyword or keyword == "SpecificCharacterSet":
            continue
        if elem.VR == "SQ":
            items = elem.value
            nested = query_keys(items[0]) if items else []
            keys.append((keyword, "SQ", nested or None))
        else:
            keys.append((keyword, elem.VR, _plain(elem.value)))
    return keys


def _check_dates(keys: QueryKeys) -> None:
    """Raise InvalidQuery for the first malformed DA or TM value."""
    for keyword, vr, value in keys:
        if vr == "SQ" and value:
            _check_dates(value)
        elif vr == "DA" and isinstance(value, str):
            date_range(value, keyword)
        elif vr == "TM" and isinstance(value, str):
            time_range(value, keyword)


@dataclass
class WorklistQuery:
    """A parsed worklist query: database criteria plus the remaining matching."""

    keys: QueryKeys
    sps_keys: QueryKeys | None
    criteria: service.WorklistFilter
    start: DateTimeRange
    notes: list[str] = field(default_factory=list)


def _single(value: Any) -> str | None:
    """Return a value usable as an exact database criterion, else None."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or "*" in value or "?" in value or "\\" in value:
        return None
    return value


def parse_query(
    identifier: Dataset, peer: PeerConfig, zone: dt.tzinfo
) -> WorklistQuery:
    """Parse and check a worklist identifier; raise InvalidQuery if malformed."""
    keys = query_keys(identifier)
    _check_dates(keys)
    top = {keyword: value for keyword, _, value in keys}
    sps_keys: QueryKeys | None = None
    for keyword, _, value in keys:
        if keyword == SPS_SEQUENCE:
            sps_keys = value
    sps = {keyword: value for keyword, _, value in sps_keys or []}

    # Combined SPS start Date and Time (PS3.4 C.2.2.2.5.1).
    start = DateTimeRange(
        date_range(str(sps.get(SPS_DATE) or ""), SPS_DATE),
        time_range(str(sps.get(SPS_TIME) or ""), SPS_TIME),
    )
    criteria = service.WorklistFilter()
    low, high = start.bounds()
    if low is not None:
        criteria.start_from = low.replace(tzinfo=zone).astimezone(dt.UTC)
    if high is not None:
        criteria.start_to = high.replace(tzinfo=zone).astimezone(dt.UTC)

    station = sps.get("ScheduledStationAETitle")
    if _single(station):
        criteria.station_ae_titles = [str(station).strip()]
    elif not str(station or "").strip("* ") and peer.restrict_worklist_to_own_ae:
        criteria.station_ae_titles = [peer.ae_title]
    criteria.modality = _single(sps.get("Modality"))
    criteria.sps_id = _single(sps.get("ScheduledProcedureStepID"))
    status = _single(sps.get("ScheduledProcedureStepStatus"))
    if status:
        criteria.statuses = [status]
    elif str(sps.get("ScheduledProcedureStepStatus") or "").strip():
        criteria.statuses = [s.value for s in ScheduledProcedureStepStatus]
    criteria.accession_number = _single(top.get("AccessionNumber"))
    criteria.patient_id = _single(top.get("PatientID"))
    criteria.requested_procedure_id = _single(top.get("RequestedProcedureID"))
    uids = str(top.get("StudyInstanceUID") or "").strip()
    if uids:
        criteria.study_instance_uids = [
            u.strip() for u in uids.split("\\") if u.strip()
        ]
    return WorklistQuery(keys=keys, sps_keys=sps_keys, criteria=criteria, start=start)


# --------------------------------------------------------------------------
# Matching and responses
# --------------------------------------------------------------------------

_SKIP = frozenset({SPS_DATE, SPS_TIME})


def matches(query: WorklistQuery, item: mapping.Attributes) -> bool:
    if not match_item(query.keys, item, skip=_SKIP):
        return False
    for step in item.get(SPS_SEQUENCE, []):
        local = dt.datetime.strptime(step[SPS_DATE] + step[SPS_TIME], "%Y%m%d%H%M%S")
        if query.start.contains(local):
            return True
    return False


def _project(keys: QueryKeys | None, item: mapping.Attributes) -> mapping.Attributes:
    """Return the requested keys of ``item``; unknown keys come back empty."""
    if keys is None:
        return dict(item)
    out: mapping.Attributes = {}
    for keyword, vr, value in keys:
        if vr == "SQ":
            entries = item.get(keyword) or []
            if value:
                entries = [
                    _project(value, entry)
                    for entry in entries
                    if match_item(value, entry, skip=_SKIP)
                ]
            out[keyword] = [dict(e) for e in entries]
        else:
            out[keyword] = item.get(keyword)
    return out


def response_attributes(
    query: WorklistQuery, item: mapping.Attributes
) -> mapping.Attributes:
    """Return the response identifier's attributes for one matching item."""
    out = _project(query.keys, item)
    for keyword in REQUIRED_TOP_LEVEL:
        out.setdefault(keyword, item.get(keyword))
    steps = item.get(SPS_SEQUENCE, [])
    requested_steps = out.get(SPS_SEQUENCE)
    if requested_steps is None:
        requested_steps = [{} for _ in steps]
    for full, given in zip(steps, requested_steps, strict=False):
        for keyword in REQUIRED_SPS_ITEM:
            given.setdefault(keyword, full.get(keyword))
    out[SPS_SEQUENCE] = requested_steps
    return out


# Characters outside Latin-1 whose decomposition gives no Latin letter.
_LATIN1_FALLBACK = str.maketrans(
    {"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Œ": "OE", "œ": "oe", "ı": "i", "Ŀ": "L"}
)


def to_latin1(text: str) -> str:
    """Return ``text`` using only Latin-1 characters.

    Characters Latin-1 has are kept ("Müller" stays). Others lose their
    accents ("Dvořák" becomes "Dvorák"), a few letters without a
    decomposition are spelled out ("Łódź" becomes "Lódz"), and anything else
    outside Latin-1 becomes "?".
    """
    try:
        text.encode("latin-1")
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for char in text.translate(_LATIN1_FALLBACK):
        try:
            char.encode("latin-1")
            out.append(char)
            continue
        except UnicodeEncodeError:
            pass
        base = "".join(
            c
            for c in unicodedata.normalize("NFKD", char)
            if not unicodedata.combining(c)
        )
        try:
            base.encode("latin-1")
            out.append(base or "?")
        except UnicodeEncodeError:
            out.append("?")
    return "".join(out)


def _recode(attributes: mapping.Attributes, convert: Any) -> mapping.Attributes:
    out: mapping.Attributes = {}
    for keyword, value in attributes.items():
        if isinstance(value, list):
            out[keyword] = [_recode(item, convert) for item in value]
        elif isinstance(value, str):
            out[keyword] = convert(value)
        else:
            out[keyword] = value
    return out


def build_response(attributes: mapping.Attributes, character_set: str) -> Dataset:
    """Return the response Dataset, declaring and using ``character_set``."""
    if character_set == SpecificCharacterSet.LATIN1:
        attributes = _recode(attributes, to_latin1)
    ds = mapping.to_dataset(attributes)
    ds.SpecificCharacterSet = character_set
    return ds


def find_items(context: ScpContext, query: WorklistQuery) -> list[mapping.Attributes]:
    """Return the attributes of every worklist item matching ``query``."""
    zone = context.settings.zone
    today = dt.datetime.now(zone).date()
    results = []
    name_query = next(
        (v for k, _, v in query.keys if k == "PatientName" and isinstance(v, str)), ""
    )
    with context.database.session() as db_session:
        records = service.worklist_records(
            db_session, query.criteria, day=today, with_views=False
        )
        # Patient's Name is the one common key the database cannot match
        # (folding), so it narrows the records before views are read and
        # whole items are built.
        if name_query.strip(" *"):
            records = [
                r
                for r in records
                if match_string(
                    name_query, mapping.patient_name(r.patient), person_name=True
                )
            ]
        records = service.add_views(db_session, records)
    for record in records:
        item = mapping.worklist_item(record, zone)
        if matches(query, item):
            results.append(item)
    return results


def _failure(status: int, comment: str, tag: int | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    if tag is not None:
        ds.OffendingElement = [tag]
    return ds


def handle_find(
    context: ScpContext, event: evt.Event
) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """Handle one MWL C-FIND request (see the module docstring for the steps)."""
    ae_title = calling_ae_title(event.assoc)
    peer = context.peer_for(event.assoc)

    # 1. Parse and check the identifier.
    try:
        identifier = event.identifier
        query = parse_query(identifier, peer, context.settings.zone)
    except InvalidQuery as exc:
        logger.warning("MWL C-FIND from %s rejected: %s", ae_title, exc)
        yield _failure(IDENTIFIER_DOES_NOT_MATCH, exc.comment, exc.tag), None
        return
    except Exception:
        logger.exception(
            "MWL C-FIND from %s: the identifier could not be decoded", ae_title
        )
        yield _failure(UNABLE_TO_PROCESS, "identifier could not be decoded"), None
        return

    # 2-3. Search and match.
    try:
        items = find_items(context, query)
    except InvalidQuery as exc:
        logger.warning("MWL C-FIND from %s rejected: %s", ae_title, exc)
        yield _failure(IDENTIFIER_DOES_NOT_MATCH, exc.comment, exc.tag), None
        return
    except Exception:
        logger.exception("MWL C-FIND from %s failed while searching", ae_title)
        yield (
            _failure(UNABLE_TO_PROCESS, "worklist search failed; see server log"),
            None,
        )
        return
    logger.info("MWL C-FIND from %s: %d matches", ae_title, len(items))

    # 4. One Pending response per match; pynetdicom adds the final Success.
    for number, item in enumerate(items):
        if number and number % CANCEL_CHECK_INTERVAL == 0:
            _let_peer_in(event)
        if event.is_cancelled:
            logger.info("MWL C-FIND from %s cancelled by the modality", ae_title)
            yield CANCEL, None
            return
        yield (
            PENDING,
            build_response(response_attributes(query, item), peer.character_set),
        )


def _let_peer_in(event: evt.Event) -> None:
    """Wait until the queued responses are sent, so that a C-CANCEL can be read.

    pynetdicom 3's DUL thread reads the peer's PDUs only while it has nothing
    queued to send, and responses are built faster than they are sent, so
    without a pause a C-CANCEL is read only after the last response.
    """
    outgoing = event.assoc.dul.to_provider_queue
    deadline = time.monotonic() + SEND_DRAIN_MAX_S
    while not outgoing.empty() and time.monotonic() < deadline:
        time.sleep(0.0005)
    # Once its queue is empty the DUL reads the socket; give it the GIL to
    # read and decode a C-CANCEL that is already there.
    time.sleep(PEER_READ_PAUSE_S)
