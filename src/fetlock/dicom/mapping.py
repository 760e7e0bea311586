"""Horse, owner and order records as DICOM attributes.

This is the one place where Fetlock decides how an equine patient appears in
DICOM: the worklist uses it for every item, and image ingest uses it to check
or fill the Patient module of received objects.

Attributes are built as plain ``{keyword: value}`` dictionaries, with a
sequence as a list of such dictionaries, because the worklist matches
thousands of items against a query and only converts the matches to pydicom
datasets (``to_dataset``).

Veterinary rules (PS3.3 C.7.1.1, Patient module, and C.7.1.1.1.x):

* (0010,0010) Patient's Name is ``Owner-family-or-organisation^Horse``: the
  principal owner's family name (or the organisation's name) as the family
  name component and the horse's barn name as the given name component.
* (0010,0040) Patient's Sex is M, F or O; (0010,2203) Patient's Sex Neutered
  is ALTERED for a gelding, UNALTERED for a stallion, colt or rig, empty when
  not known.
* The principal owner is (0010,2297) Responsible Person with (0010,2298)
  Responsible Person Role OWNER, or (0010,2299) Responsible Organization for a
  stud, syndicate or other organisation.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from fetlock.imaging.service import PatientRecord, WorklistRecord
from fetlock.practice.models import Client, ClientKind, Horse, Sex, Species

Attributes = dict[str, Any]

# Coding scheme for Fetlock's own codes (procedures, views, breed registries).
# PS3.16 8.2 reserves designators starting "99" for private schemes.
LOCAL_SCHEME = "99FETLOCK"

SNOMED = "SCT"

# (0010,2202) Patient Species Code Sequence items. Horse and pony are Equus
# caballus (CID 7454 "Animal Taxonomic Rank Values", as shipped in pydicom 3.0).
# NOTE: the donkey and mule codes are SNOMED CT codes taken from the HL7 FHIR
# "animal-species" value set; CID 7454 lists neither, so a PACS that validates
# against it may not recognise them.
SPECIES_CODES: dict[str, tuple[str, str]] = {
    Species.HORSE: ("35354009", "Equus caballus"),
    Species.PONY: ("35354009", "Equus caballus"),
    Species.DONKEY: ("85626006", "Equus asinus"),
    Species.MULE: ("132950000", "Mule"),
}

# (Patient's Sex, Patient's Sex Neutered) for each practice sex term.
SEX_CODES: dict[str, tuple[str, str]] = {
    Sex.MARE: ("F", ""),
    Sex.FILLY: ("F", ""),
    Sex.STALLION: ("M", "UNALTERED"),
    Sex.COLT: ("M", "UNALTERED"),
    Sex.GELDING: ("M", "ALTERED"),
    # A rig is a cryptorchid: male and not castrated.
    Sex.RIG: ("M", "UNALTERED"),
}

# Type of Patient ID (0010,0022) and issuer for each kind of horse identifier.
OTHER_ID_KINDS = (
    ("microchip", "MICROCHIP", "RFID"),
    ("ueln", "UELN", "TEXT"),
    ("passport_number", "PASSPORT", "TEXT"),
)

# Person Name components may not contain these separators (PS3.5 6.2).
_PN_SEPARATORS = re.compile(r"[\^=\\]")


def fold(text: str) -> str:
    """Return ``text`` without accents, case-folded: the Patient's Name match key."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.casefold()


def pn_component(text: str | None) -> str:
    """Return ``text`` as one Person Name component, separators removed."""
    if not text:
        return ""
    return " ".join(_PN_SEPARATORS.sub(" ", text).split())


def code_item(value: str, scheme: str, meaning: str) -> Attributes:
    """Return a code sequence item with the three basic code attributes."""
    return {
        "CodeValue": value,
        "CodingSchemeDesignator": scheme,
        "CodeMeaning": meaning[:64],
    }


def local_code(text: str) -> str:
    """Return a Code Value (VR SH, 16 characters) for a local term."""
    cleaned = re.sub(r"[^A-Z0-9]+", "-", fold(text).upper()).strip("-")
    return cleaned[:16] or "UNKNOWN"


# Breed names used in British and Irish passports that CID 7480 spells
# differently (folded name -> folded CID 7480 name).
BREED_ALIASES = {"irish draught": "irish draft"}


@lru_cache(maxsize=1)
def _breed_codes() -> dict[str, tuple[str, str]]:
    """Map folded horse breed names to SNOMED CT codes of CID 7480 (Breed)."""
    table: dict[str, tuple[str, str]] = {}
    collection = codes.cid7480
    for keyword in collection.dir():
        code = getattr(collection, keyword)
        meaning = str(code.meaning)
        lowered = meaning.lower()
        if not lowered.endswith(" horse breed"):
            continue
        name = meaning[: -len(" horse breed")]
        entry = (str(code.value), meaning)
        table.setdefault(fold(name), entry)
        table.setdefault(fold(meaning), entry)
        # "Shetland pony horse breed" is also found as "Shetland".
        if fold(name).endswith(" pony"):
            table.setdefault(fold(name)[: -len(" pony")], entry)
    for alias, name in BREED_ALIASES.items():
        if name in table:
            table.setdefault(alias, table[name])
    return table


def breed_code(breed: str | None) -> tuple[str, str] | None:
    """Return (SNOMED CT code, meaning) for a horse breed name, if CID 7480 has it."""
    if not breed:
        return None
    return _breed_codes().get(fold(breed.strip()))


def _owner_name(patient: PatientRecord) -> str:
    if patient.owner_kind == ClientKind.ORGANISATION:
        return patient.owner_organisation_name or ""
    return patient.owner_family_name or ""


def patient_name(patient: PatientRecord) -> str:
    """Return (0010,0010) Patient's Name: ``Owner^Horse``, two components."""
    horse_name = patient.barn_name or patient.registered_name or ""
    return f"{pn_component(_owner_name(patient))}^{pn_component(horse_name)}"


def responsible_person(patient: PatientRecord) -> str:
    if patient.owner_kind is None or patient.owner_kind == ClientKind.ORGANISATION:
        return ""
    family = pn_component(patient.owner_family_name)
    given = pn_component(patient.owner_given_name)
    return f"{family}^{given}" if given else family


def other_patient_ids(patient: PatientRecord) -> list[Attributes]:
    """Return (0010,1002) Other Patient IDs Sequence items with their issuers."""
    items = []
    for attribute, issuer, id_type in OTHER_ID_KINDS:
        value = getattr(patient, attribute)
        if value:
            items.append(
                {
                    "PatientID": value,
                    "IssuerOfPatientID": issuer,
                    "TypeOfPatientID": id_type,
                }
            )
    if patient.registry_number:
        items.append(
            {
                "PatientID": patient.registry_number,
                "IssuerOfPatientID": (patient.registry_name or "REGISTRY")[:64],
                "TypeOfPatientID": "TEXT",
            }
        )
    return items


def breed_registrations(patient: PatientRecord) -> list[Attributes]:
    """Return (0010,2294) Breed Registration Sequence items.

    Breed registries of horses have no DICOM codes (CID 7481 lists only
    small-animal registries), so the registry is coded in Fetlock's local scheme.
    """
    if not patient.registry_number:
        return []
    registry = patient.registry_name or "Unnamed registry"
    return [
        {
            "BreedRegistrationNumber": patient.registry_number,
            "BreedRegistryCodeSequence": [
                code_item(local_code(registry), LOCAL_SCHEME, registry)
            ],
        }
    ]


def patient_record_attributes(patient: PatientRecord) -> Attributes:
    """Return the Patient module attributes of a horse and its principal owner."""
    sex, neutered = SEX_CODES.get(patient.sex or "", ("O", ""))
    species = patient.species or Species.HORSE
    species_code = SPECIES_CODES.get(species)
    breed = breed_code(patient.breed)
    organisation = (
        patient.owner_organisation_name or ""
        if patient.owner_kind == ClientKind.ORGANISATION
        else ""
    )
    person = responsible_person(patient)
    return {
        "PatientName": patient_name(patient),
        "PatientID": patient.patient_id,
        "OtherPatientIDsSequence": other_patient_ids(patient),
        "PatientBirthDate": (
            patient.date_of_birth.strftime("%Y%m%d") if patient.date_of_birth else ""
        ),
        "PatientSex": sex,
        "PatientSexNeutered": neutered,
        "PatientSpeciesDescription": Species(species).value.capitalize(),
        "PatientSpeciesCodeSequence": (
            [code_item(species_code[0], SNOMED, species_code[1])]
            if species_code
            else []
        ),
        "PatientBreedDescription": patient.breed or "",
        "PatientBreedCodeSequence": (
            [code_item(breed[0], SNOMED, breed[1])] if breed else []
        ),
        "BreedRegistrationSequence": breed_registrations(patient),
        "ResponsiblePerson": person,
        "ResponsiblePersonRole": "OWNER" if person else "",
        "ResponsibleOrganization": organisation,
    }


def patient_attributes(horse: Horse, owner: Client | None) -> Attributes:
    """Return the Patient module attributes of ``horse`` with its principal owner.

    ``owner`` is the principal owner on the day of interest, as returned first
    by ``fetlock.practice.service.owners_on``.
    """
    return patient_record_attributes(PatientRecord.from_models(horse, owner))


def patient_dataset(horse: Horse, owner: Client | None) -> Dataset:
    """Return the Patient module of ``horse`` as a pydicom Dataset."""
    return to_dataset(patient_attributes(horse, owner))


def dicom_date_time(value: dt.datetime, zone: dt.tzinfo) -> tuple[str, str]:
    """Return (DA, TM) strings of ``value`` in the practice time zone."""
    local = value.astimezone(zone)
    return local.strftime("%Y%m%d"), local.strftime("%H%M%S")


def person_name(full_name: str | None) -> str:
    """Return a user's display name as a PN value, family name first."""
    if not full_name:
        return ""
    parts = full_name.split()
    titles = {"dr", "dr.", "prof", "prof.", "mr", "mrs", "ms", "miss"}
    prefix = ""
    if len(parts) > 1 and parts[0].lower() in titles:
        prefix = parts.pop(0)
    if len(parts) == 1:
        return pn_component(parts[0]) + ("^^^" + prefix if prefix else "")
    family = pn_component(parts[-1])
    given = pn_component(" ".join(parts[:-1]))
    return f"{family}^{given}" + (f"^^{prefix}" if prefix else "")


def scheduled_step_attributes(record: WorklistRecord, zone: dt.tzinfo) -> Attributes:
    """Return one (0040,0100) Scheduled Procedure Step Sequence item."""
    start_date, start_time = dicom_date_time(record.scheduled_start, zone)
    return {
        "ScheduledStationAETitle": record.station_ae_title or "",
        "ScheduledProcedureStepStartDate": start_date,
        "ScheduledProcedureStepStartTime": start_time,
        "Modality": record.modality,
        "ScheduledPerformingPhysicianName": "",
        "ScheduledProcedureStepDescription": record.description,
        "ScheduledStationName": record.station_name or "",
        "ScheduledProcedureStepLocation": "",
        "ScheduledProtocolCodeSequence": [
            code_item(code, LOCAL_SCHEME, description)
            for code, description in record.views
        ],
        "PreMedication": "",
        "ScheduledProcedureStepID": record.sps_id,
        "RequestedContrastAgent": "",
        "ScheduledProcedureStepStatus": record.sps_status,
        "CommentsOnTheScheduledProcedureStep": ", ".join(c for c, _ in record.views),
    }


def worklist_item(record: WorklistRecord, zone: dt.tzinfo) -> Attributes:
    """Return every attribute of one Modality Worklist item (PS3.4 Table K.6-1)."""
    clinician = person_name(record.clinician_name)
    item: Attributes = {
        # Imaging Service Request
        "AccessionNumber": record.accession_number,
        "RequestingPhysician": clinician,
        "ReferringPhysicianName": clinician,
        # Requested Procedure
        "StudyInstanceUID": record.study_instance_uid,
        "RequestedProcedureID": record.requested_procedure_id,
        "RequestedProcedureDescription": record.description,
        "RequestedProcedureCodeSequence": [
            code_item(record.procedure_code, LOCAL_SCHEME, record.procedure_name)
        ],
        "RequestedProcedurePriority": record.priority,
        "PatientTransportArrangements": "",
        "ReasonForTheRequestedProcedure": (record.clinical_history or "")[:64],
        "ReferencedStudySequence": [],
        # Visit
        "AdmissionID": str(record.visit_id),
        "CurrentPatientLocation": (record.visit_location or "")[:64],
        "ReferencedPatientSequence": [],
        # Patient medical
        "PatientState": "",
        "MedicalAlerts": "",
        "Allergies": "",
        "SpecialNeeds": "",
        "AdditionalPatientHistory": record.clinical_history or "",
        "ConfidentialityConstraintOnPatientDataDescription": "",
        "PatientWeight": "",
        # Scheduled Procedure Step: one item per worklist entry
        "ScheduledProcedureStepSequence": [scheduled_step_attributes(record, zone)],
    }
    item.update(patient_record_attributes(record.patient))
    return item


@lru_cache(maxsize=512)
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"{keyword!r} is not a DICOM keyword in pydicom's dictionary")
    return tag, dictionary_VR(tag)


def to_dataset(attributes: Attributes) -> Dataset:
    """Convert an attribute dictionary (sequences as lists) to a pydicom Dataset.

    None or an empty string gives a zero-length element. Elements are built
    from a cached (tag, VR) per keyword, because the worklist converts
    hundreds of items per query.
    """
    ds = Dataset()
    for keyword, value in attributes.items():
        tag, vr = _tag_and_vr(keyword)
        if isinstance(value, list):
            value = [to_dataset(item) for item in value]
        elif value == "" and vr != "SQ":
            value = None
        elif value is None and vr == "SQ":
            value = []
        ds.add(DataElement(tag, vr, value))
    return ds
