"""A syndicate horse from order to invoices, cancellation and a missed charge.

Storm belongs to three owners, 50/30/20. An imaging order placed through the
imaging service is charged at once and drafted as three invoices; a second
order cancelled before acquisition is reversed with visible credit lines;
a study that arrives with no order lands on the missed-charge report and is
charged from it in one click.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy.orm import Session

from fetlock.audit.service import Actor
from fetlock.auth.models import Role, User
from fetlock.auth.service import create_user
from fetlock.billing import charges as charging
from fetlock.billing import fees, missed
from fetlock.billing import invoices as invoicing
from fetlock.billing.models import ChargeKind
from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.imaging import reconcile
from fetlock.imaging import service as imaging
from fetlock.imaging.ingest import store_instance
from fetlock.imaging.models import RemoteAE
from fetlock.imaging.schemas import OrderCreate
from fetlock.imaging.study_models import Study
from fetlock.practice import service as practice
from fetlock.practice.models import ClientKind
from fetlock.storage.local import get_blob_store

from .factories import make_client


def _owners_and_horse(db_session: Session, actor: Actor) -> tuple[list[int], int]:
    syndicate = practice.create_client(
        db_session,
        actor,
        kind=ClientKind.ORGANISATION,
        organisation_name="Oakridge Racing Syndicate",
    )
    second = make_client(db_session, actor, "Müller")
    third = make_client(db_session, actor, "Muñoz")
    horse = practice.create_horse(db_session, actor, barn_name="Storm")
    practice.set_owners_from(
        db_session,
        actor,
        horse,
        dt.date(2024, 1, 1),
        [
            practice.ShareInput(syndicate.id, 5000),
            practice.ShareInput(second.id, 3000),
            practice.ShareInput(third.id, 2000),
        ],
    )
    return [syndicate.id, second.id, third.id], horse.id


def _unscheduled_image(path: Path) -> Path:
    """A real DICOM image with fresh UIDs, no accession and no known patient."""
    source = get_testdata_file("CT_small.dcm")
    assert source is not None, "pydicom's test file CT_small.dcm is not installed"
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "DX"
    ds.AccessionNumber = ""
    ds.PatientID = "YARD-07"
    ds.StudyDescription = "Left fore, taken at the yard"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_syndicate_horse_order_cancel_and_missed_charge(
    database: Database, settings: Settings, tmp_path: Path
) -> None:
    with database.session() as db_session:
        vet: User = create_user(
            db_session,
            username="scenario-vet",
            full_name="Dr Scenario",
            role=Role.VETERINARIAN,
            password="correct-horse-battery",
        )
        actor = Actor(name=vet.username, user_id=vet.id)
        owner_ids, horse_id = _owners_and_horse(db_session, actor)
        imaging.ensure_catalog(db_session)
        db_session.add(
            RemoteAE(ae_title="BARNDR", host="127.0.0.1", port=104, modality="DX")
        )

        # Order a fetlock series with one view beyond the standard set.
        order = imaging.create_order(
            db_session,
            actor,
            settings,
            horse_id,
            OrderCreate(
                procedure_code="RAD-FET",
                limb="LF",
                views=[
                    "LF-LM",
                    "LF-DPa",
                    "LF-D45L-PaMO",
                    "LF-D45M-PaLO",
                    "LF-FLM",
                    "LF-D65Pr-PaDiO",
                ],
            ),
            default_clinician_id=vet.id,
        )
        charges = charging.charges_for_order(db_session, order.id)
        assert [(c.fee_code, c.quantity) for c in charges] == [
            ("RAD-FET", 1),
            ("RAD-VIEW", 1),
        ]
        charged = sum(c.total for c in charges)
        visit_id = order.visit_id

    # Three draft invoices, one per owner, adding up to the charge.
    with database.session() as db_session:
        drafts = invoicing.drafts_for_visit(db_session, visit_id)
        assert [d.client_id for d in drafts] == owner_ids
        assert [{line.share for line in d.lines} for d in drafts] == [
            {5000},
            {3000},
            {2000},
        ]
        assert sum(d.total for d in drafts) == charged
        assert [d.total for d in drafts] == [6300, 3780, 2520]

    # A second order, cancelled before any image: reversed with credit lines.
    with database.session() as db_session:
        hock = imaging.create_order(
            db_session,
            actor,
            settings,
            horse_id,
            OrderCreate(procedure_code="RAD-HOCK", limb="LH", visit_id=visit_id),
            default_clinician_id=vet.id,
        )
        imaging.cancel_order(db_session, actor, hock, reason="farrier visit first")
        hock_lines = charging.charges_for_order(db_session, hock.id)
        assert [c.kind for c in hock_lines] == [
            ChargeKind.PROCEDURE,
            ChargeKind.REVERSAL,
        ]
        assert hock_lines[1].amount == -hock_lines[0].amount
        drafts = invoicing.drafts_for_visit(db_session, visit_id)
        assert sum(d.total for d in drafts) == charged
        credit_lines = [
            line
            for d in drafts
            for line in d.lines
            if line.description.startswith("Reversal")
        ]
        assert len(credit_lines) == 3
        assert all(line.amount < 0 for line in credit_lines)

    # A study received with no order waits in reconciliation and is listed.
    blobs = get_blob_store(settings)
    result = store_instance(
        database,
        _unscheduled_image(tmp_path / "yard.dcm"),
        blobs=blobs,
        actor=Actor(name="dicom:YARDDR", source_ae_title="YARDDR"),
    )
    assert result.ok, result
    today = dt.datetime.now(settings.zone).date()
    with database.session() as db_session:
        report = missed.missed_charges(db_session, today, today, settings=settings)
        assert [i.category for i in report.items] == ["unbilled_study"]
        item = report.items[0]
        assert item.blocked is not None
        assert "reconciliation" in item.blocked
        rad_gen = fees.get_fee(db_session, "RAD-GEN")
        assert item.estimated_value == rad_gen.unit_price + rad_gen.view_price
        assert report.total == item.estimated_value

        # Staff attach it to Storm without an order; now it can be charged.
        study = db_session.get(Study, item.study_id)
        assert study is not None
        reconcile.attach(
            db_session, study, horse_id=horse_id, order_id=None, actor=actor
        )
    with database.session() as db_session:
        report = missed.missed_charges(db_session, today, today, settings=settings)
        assert report.items[0].blocked is None
        posted = missed.charge_study(
            db_session, actor, report.items[0].study_id or 0, settings=settings
        )
        assert sum(c.amount for c in posted) == report.total
        assert (
            missed.missed_charges(db_session, today, today, settings=settings).items
            == []
        )
        # The study's charge joins the visit of that day and its drafts.
        assert posted[0].visit_id == visit_id
        drafts = invoicing.drafts_for_visit(db_session, visit_id)
        assert [d.client_id for d in drafts] == owner_ids
        assert sum(d.total for d in drafts) == charged + sum(c.total for c in posted)
