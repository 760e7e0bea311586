"""Practice rules: ownership shares, Patient IDs, search, visits, SOAP notes."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fetlock.audit.models import AuditEvent
from fetlock.audit.service import Actor
from fetlock.auth.models import User
from fetlock.practice import service
from fetlock.practice.models import (
    FULL_SHARE,
    Client,
    Horse,
    NoteStatus,
    Ownership,
    VisitKind,
    fold,
)
from fetlock.web.errors import Conflict, DomainError, NotFound

from .conftest import OWNED_FROM

UTC = dt.UTC


def _shares(owners: list[tuple[Client, int]]) -> list[tuple[str, int]]:
    return [(client.display_name, share) for client, share in owners]


class TestOwnership:
    def test_set_owners_from__keeps_history(
        self,
        db_session: Session,
        actor: Actor,
        owners: dict[str, Client],
        horse_owned_by_muller: Horse,
    ) -> None:
        horse = horse_owned_by_muller
        syndicated = dt.date(2023, 4, 1)
        service.set_owners_from(
            db_session,
            actor,
            horse,
            syndicated,
            [
                service.ShareInput(owners["oakridge"].id, 5000),
                service.ShareInput(owners["muller"].id, 3000),
                service.ShareInput(owners["munoz"].id, 2000),
            ],
        )

        assert _shares(service.owners_on(db_session, horse, dt.date(2023, 3, 31))) == [
            ("Anna Müller", FULL_SHARE)
        ]
        assert _shares(service.owners_on(db_session, horse, syndicated)) == [
            ("Oakridge Racing Syndicate", 5000),
            ("Anna Müller", 3000),
            ("José Muñoz", 2000),
        ]
        assert service.owners_on(db_session, horse, dt.date(2021, 12, 31)) == []
        history = service.ownership_history(db_session, horse)
        assert [(r.effective_from, r.effective_to, r.share) for r in history] == [
            (OWNED_FROM, syndicated, 10000),
            (syndicated, None, 5000),
            (syndicated, None, 3000),
            (syndicated, None, 2000),
        ]

    def test_set_owners_from__95_percent_rejected(
        self,
        db_session: Session,
        actor: Actor,
        owners: dict[str, Client],
        horse_owned_by_muller: Horse,
    ) -> None:
        horse = horse_owned_by_muller
        with pytest.raises(DomainError) as raised:
            service.set_owners_from(
                db_session,
                actor,
                horse,
                dt.date(2024, 6, 1),
                [
                    service.ShareInput(owners["muller"].id, 5000),
                    service.ShareInput(owners["munoz"].id, 4500),
                ],
            )
        assert "2024-06-01" in raised.value.message
        assert "95%" in raised.value.message
        assert "100%" in raised.value.message
        assert raised.value.field == "owners"
        # Nothing changed: Anna still owns the whole horse, one row only.
        assert len(service.ownership_history(db_session, horse)) == 1
        assert _shares(service.owners_on(db_session, horse, dt.date(2025, 1, 1))) == [
            ("Anna Müller", FULL_SHARE)
        ]

    @pytest.mark.parametrize(
        ("shares", "field", "fragment"),
        [
            ([], "owners", "at least one owner"),
            ([("muller", 0)], "owners.0.share", "out of range"),
            ([("muller", 12000)], "owners.0.share", "out of range"),
            ([("muller", 5000), ("muller", 5000)], "owners.1.client_id", "twice"),
        ],
    )
    def test_set_owners_from__bad_shares_name_the_field(
        self,
        db_session: Session,
        actor: Actor,
        owners: dict[str, Client],
        horse_owned_by_muller: Horse,
        shares: list[tuple[str, int]],
        field: str,
        fragment: str,
    ) -> None:
        with pytest.raises(DomainError) as raised:
            service.set_owners_from(
                db_session,
                actor,
                horse_owned_by_muller,
                dt.date(2024, 1, 1),
                [service.ShareInput(owners[k].id, s) for k, s in shares],
            )
        assert raised.value.field == field
        assert fragment in raised.value.message

    def test_set_owners_from__unknown_client_is_named(
        self, db_session: Session, actor: Actor, horse_owned_by_muller: Horse
    ) -> None:
        with pytest.raises(DomainError, match="client 999999 does not exist"):
            service.set_owners_from(
                db_session,
                actor,
                horse_owned_by_muller,
                dt.date(2024, 1, 1),
                [service.ShareInput(999999, FULL_SHARE)],
            )

    def test_set_owners_from__earlier_date_replaces_later_rows(
        self,
        db_session: Session,
        actor: Actor,
        owners: dict[str, Client],
        horse_owned_by_muller: Horse,
    ) -> None:
        horse = horse_owned_by_muller
        later = dt.date(2024, 1, 1)
        service.set_owners_from(
            db_session,
            actor,
            horse,
            later,
            [service.ShareInput(owners["munoz"].id, FULL_SHARE)],
        )
        # A back-dated change is refused while a later change exists ...
        with pytest.raises(Conflict) as raised:
            service.set_owners_from(
                db_session,
                actor,
                horse,
                dt.date(2023, 1, 1),
                [service.ShareInput(owners["oakridge"].id, FULL_SHARE)],
            )
        assert "2024-01-01" in raised.value.message
        assert _shares(service.owners_on(db_session, horse, later)) == [
            ("José Muñoz", FULL_SHARE)
        ]
        # ... and supersedes it once the caller confirms.
        service.set_owners_from(
            db_session,
            actor,
            horse,
            dt.date(2023, 1, 1),
            [service.ShareInput(owners["oakridge"].id, FULL_SHARE)],
            replace_later=True,
        )
        assert _shares(service.owners_on(db_session, horse, later)) == [
            ("Oakridge Racing Syndicate", FULL_SHARE)
        ]
        assert _shares(service.owners_on(db_session, horse, dt.date(2022, 6, 1))) == [
            ("Anna Müller", FULL_SHARE)
        ]

    def test_check_shares__names_the_period_and_the_sum(self) -> None:
        rows = [
            Ownership(
                client_id=1,
                share=6000,
                effective_from=dt.date(2020, 1, 1),
                effective_to=None,
            ),
            Ownership(
                client_id=2,
                share=4000,
                effective_from=dt.date(2020, 1, 1),
                effective_to=dt.date(2021, 1, 1),
            ),
        ]
        with pytest.raises(DomainError) as raised:
            service.check_shares(rows)
        assert raised.value.message.startswith("from 2021-01-01 onwards")
        assert "60%" in raised.value.message

    def test_check_shares__gap_after_ownership_is_refused(self) -> None:
        rows = [
            Ownership(
                client_id=1,
                share=FULL_SHARE,
                effective_from=dt.date(2020, 1, 1),
                effective_to=dt.date(2021, 1, 1),
            ),
            Ownership(
                client_id=2,
                share=FULL_SHARE,
                effective_from=dt.date(2022, 1, 1),
                effective_to=None,
            ),
        ]
        with pytest.raises(DomainError, match="from 2021-01-01 until 2022-01-01"):
            service.check_shares(rows)

    def test_many_changes_keep_every_date_at_100_percent(
        self,
        db_session: Session,
        actor: Actor,
        owners: dict[str, Client],
        horse_owned_by_muller: Horse,
    ) -> None:
        # A fixed seed: the same 25 back- and forward-dated changes every run.
        rng = random.Random(20240601)
        clients = list(owners.values())
        for _ in range(25):
            day = OWNED_FROM + dt.timedelta(days=rng.randrange(0, 1500))
            chosen = rng.sample(clients, rng.randint(1, 3))
            cuts = sorted(rng.sample(range(1, FULL_SHARE), len(chosen) - 1))
            shares = [
                b - a for a, b in zip([0, *cuts], [*cuts, FULL_SHARE], strict=True)
            ]
            service.set_owners_from(
                db_session,
                actor,
                horse_owned_by_muller,
                day,
                [
                    service.ShareInput(c.id, s)
                    for c, s in zip(chosen, shares, strict=True)
                ],
                replace_later=True,
            )
            history = service.ownership_history(db_session, horse_owned_by_muller)
            service.check_shares(history)
            for row in history:
                in_force = service.owners_on(
                    db_session, horse_owned_by_muller, row.effective_from
                )
                assert sum(s for _c, s in in_force) == FULL_SHARE

    def test_ownership_change_is_audited_with_horse_id(
        self, db_session: Session, horse_owned_by_muller: Horse
    ) -> None:
        events = db_session.execute(
            select(AuditEvent).where(AuditEvent.action == "ownership.change")
        ).scalars()
        assert [e.horse_id for e in events] == [horse_owned_by_muller.id]


class TestHorses:
    def test_patient_ids_are_allocated_once_in_sequence(
        self, db_session: Session, actor: Actor
    ) -> None:
        first = service.create_horse(db_session, actor, barn_name="One")
        second = service.create_horse(db_session, actor, barn_name="Two")
        assert first.patient_id.startswith("FL")
        assert len(first.patient_id) == 8
        assert int(second.patient_id[2:]) == int(first.patient_id[2:]) + 1

    def test_patient_id_is_not_reused_after_a_rollback(
        self, db_session: Session, actor: Actor
    ) -> None:
        kept = service.create_horse(db_session, actor, barn_name="Kept")
        db_session.commit()
        # A horse whose creation is abandoned never reaches the database...
        nested = db_session.begin_nested()
        service.create_horse(db_session, actor, barn_name="Abandoned")
        nested.rollback()
        # ...and the next horse still gets a fresh number.
        later = service.create_horse(db_session, actor, barn_name="Later")
        assert later.patient_id != kept.patient_id
        assert int(later.patient_id[2:]) > int(kept.patient_id[2:])

    def test_update_horse__patient_id_cannot_change(
        self, db_session: Session, actor: Actor, horse_owned_by_muller: Horse
    ) -> None:
        with pytest.raises(DomainError, match="permanent") as raised:
            service.update_horse(
                db_session, actor, horse_owned_by_muller, patient_id="FL999999"
            )
        assert raised.value.field == "patient_id"

    def test_get_horse__unknown_id_is_named(self, db_session: Session) -> None:
        with pytest.raises(NotFound, match="horse 424242 does not exist"):
            service.get_horse(db_session, 424242)

    def test_update_horse__records_changed_fields(
        self, db_session: Session, actor: Actor, horse_owned_by_muller: Horse
    ) -> None:
        service.update_horse(
            db_session, actor, horse_owned_by_muller, colour="bay", breed="Cob"
        )
        event = db_session.execute(
            select(AuditEvent).where(AuditEvent.action == "horse.update")
        ).scalar_one()
        assert event.horse_id == horse_owned_by_muller.id
        assert '"breed"' in event.detail
        assert '"colour"' in event.detail


class TestSearch:
    def test_fold__removes_accents_and_case(self) -> None:
        assert fold("  MÜLLER  Muñoz ") == "muller munoz"
        # ø and æ are letters of their own in Unicode, not a base letter + accent.
        assert fold("Søndergaard Ærø") == "sondergaard aero"
        assert fold("Straße") == "strasse"

    @pytest.mark.parametrize(
        "query",
        [
            "monty",
            "MONARCH",
            "Muller",
            "müller",
            "anna",
            "826041000012345",
            "0000123",
            "826002000098765",
            "mont mull",
        ],
    )
    def test_search_horses__finds_by_name_owner_chip_ueln(
        self, db_session: Session, horse_owned_by_muller: Horse, query: str
    ) -> None:
        found = service.search_horses(db_session, query)
        assert [h.id for h in found] == [horse_owned_by_muller.id]

    def test_search_horses__by_patient_id(
        self, db_session: Session, horse_owned_by_muller: Horse
    ) -> None:
        found = service.search_horses(
            db_session, horse_owned_by_muller.patient_id.lower()
        )
        assert [h.id for h in found] == [horse_owned_by_muller.id]

    @pytest.mark.parametrize("query", ["munoz", "zebra", "monty zebra", "%", "_"])
    def test_search_horses__no_false_matches(
        self, db_session: Session, horse_owned_by_muller: Horse, query: str
    ) -> None:
        assert service.search_horses(db_session, query) == []

    def test_search_horses__accented_query_matches_plain_name(
        self, db_session: Session, actor: Actor
    ) -> None:
        horse = service.create_horse(db_session, actor, barn_name="Cafe Creme")
        assert [h.id for h in service.search_horses(db_session, "Café Crème")] == [
            horse.id
        ]

    def test_search_clients__accent_insensitive(
        self, db_session: Session, owners: dict[str, Client]
    ) -> None:
        found = service.search_clients(db_session, "MUNOZ")
        assert [c.id for c in found] == [owners["munoz"].id]

    def test_search_key_follows_renames(
        self, db_session: Session, actor: Actor, owners: dict[str, Client]
    ) -> None:
        service.update_client(db_session, actor, owners["munoz"], family_name="Núñez")
        assert service.search_clients(db_session, "munoz") == []
        assert [c.id for c in service.search_clients(db_session, "nunez")] == [
            owners["munoz"].id
        ]


class TestClients:
    def test_create_client__person_without_family_name_is_refused(
        self, db_session: Session, actor: Actor
    ) -> None:
        with pytest.raises(DomainError) as raised:
            service.create_client(db_session, actor, kind="person", given_name="Jo")
        assert raised.value.field == "family_name"
        assert db_session.execute(select(func.count(Client.id))).scalar_one() == 0

    def test_create_client__organisation_needs_a_name(
        self, db_session: Session, actor: Actor
    ) -> None:
        with pytest.raises(DomainError) as raised:
            service.create_client(db_session, actor, kind="organisation")
        assert raised.value.field == "organisation_name"

    def test_horses_of_client(
        self,
        db_session: Session,
        owners: dict[str, Client],
        horse_owned_by_muller: Horse,
    ) -> None:
        held = service.horses_of_client(
            db_session, owners["muller"], dt.date(2024, 1, 1)
        )
        assert [(h.id, s) for h, s in held] == [(horse_owned_by_muller.id, 10000)]
        assert (
            service.horses_of_client(db_session, owners["muller"], dt.date(2020, 1, 1))
            == []
        )


class TestDicomIdentity:
    def test_gelding_with_person_owner(
        self, db_session: Session, horse_owned_by_muller: Horse
    ) -> None:
        ident = service.dicom_identity(
            db_session, horse_owned_by_muller, dt.date(2024, 1, 1)
        )
        assert ident.PatientID == horse_owned_by_muller.patient_id
        assert ident.PatientName == "Müller^Monty"
        assert (ident.PatientSex, ident.PatientSexNeutered) == ("M", "ALTERED")
        assert ident.ResponsiblePerson == "Müller^Anna"
        assert ident.ResponsibleOrganization == ""
        assert ident.PatientSpeciesDescription == "Horse"
        issuers = {o.IssuerOfPatientID: o.PatientID for o in ident.OtherPatientIDs}
        assert issuers == {
            "MICROCHIP": "826041000012345",
            "UELN": "826002000098765",
            "PASSPORT": "GBR-2014-00001",
        }

    def test_syndicate_with_largest_share_names_the_patient(
        self,
        db_session: Session,
        actor: Actor,
        owners: dict[str, Client],
    ) -> None:
        horse = service.create_horse(
            db_session, actor, barn_name="Storm^Cloud", species="horse", sex="mare"
        )
        service.set_owners_from(
            db_session,
            actor,
            horse,
            OWNED_FROM,
            [
                service.ShareInput(owners["muller"].id, 3000),
                service.ShareInput(owners["oakridge"].id, 5000),
                service.ShareInput(owners["munoz"].id, 2000),
            ],
        )
        ident = service.dicom_identity(db_session, horse, dt.date(2024, 1, 1))
        # Two components only: a caret in the barn name must not add a third.
        assert ident.PatientName == "Oakridge Racing Syndicate^Storm Cloud"
        assert ident.ResponsibleOrganization == "Oakridge Racing Syndicate"
        assert (ident.PatientSex, ident.PatientSexNeutered) == ("F", "")

    def test_horse_without_owner_or_sex(
        self, db_session: Session, actor: Actor
    ) -> None:
        horse = service.create_horse(db_session, actor, barn_name="Stray")
        ident = service.dicom_identity(db_session, horse)
        assert ident.PatientName == "^Stray"
        assert ident.PatientSex == "O"
        assert ident.OtherPatientIDs == ()


class TestVisits:
    def test_current_visit__open_admission_wins(
        self, db_session: Session, actor: Actor, horse_owned_by_muller: Horse
    ) -> None:
        admitted = dt.datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
        admission = service.create_visit(
            db_session,
            actor,
            horse_owned_by_muller,
            kind=VisitKind.ADMISSION,
            started_at=admitted,
        )
        at = dt.datetime(2024, 5, 3, 9, 0, tzinfo=UTC)
        assert service.current_visit(db_session, horse_owned_by_muller, at) is admission
        before = dt.datetime(2024, 4, 30, 9, 0, tzinfo=UTC)
        assert service.current_visit(db_session, horse_owned_by_muller, before) is None

    def test_current_visit__outpatient_only_on_its_day(
        self, db_session: Session, actor: Actor, horse_owned_by_muller: Horse
    ) -> None:
        visit = service.create_visit(
            db_session,
            actor,
            horse_owned_by_muller,
            kind="outpatient",
            started_at=dt.datetime(2024, 5, 1, 9, 0, tzinfo=UTC),
        )
        same_day = dt.datetime(2024, 5, 1, 16, 0, tzinfo=UTC)
        next_day = dt.datetime(2024, 5, 2, 9, 0, tzinfo=UTC)
        assert service.current_visit(db_session, horse_owned_by_muller, same_day) is (
            visit
        )
        assert service.current_visit(db_session, horse_owned_by_muller, next_day) is (
            None
        )

    def test_open_or_create_visit__reuses_then_creates(
        self, db_session: Session, actor: Actor, horse_owned_by_muller: Horse
    ) -> None:
        at = dt.datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
        first = service.open_or_create_visit(
            db_session, actor, horse_owned_by_muller, at
        )
        again = service.open_or_create_visit(
            db_session, actor, horse_owned_by_muller, at + dt.timedelta(hours=2)
        )
        tomorrow = service.open_or_create_visit(
            db_session, actor, horse_owned_by_muller, at + dt.timedelta(days=1)
        )
        assert again.id == first.id
        assert tomorrow.id != first.id
        assert first.kind == VisitKind.OUTPATIENT

    def test_discharge_before_admission_is_refused(
        self, db_session: Session, actor: Actor, horse_owned_by_muller: Horse
    ) -> None:
        admitted = dt.datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
        visit = service.create_visit(
            db_session,
            actor,
            horse_owned_by_muller,
            kind="admission",
            started_at=admitted,
        )
        with pytest.raises(DomainError, match="before admission") as raised:
            service.discharge(
                db_session, actor, visit, admitted - dt.timedelta(hours=1)
            )
        assert raised.value.field == "discharged_at"
        assert visit.discharged_at is None

    def test_ambulatory_visit_needs_a_location(
        self, db_session: Session, actor: Actor, horse_owned_by_muller: Horse
    ) -> None:
        with pytest.raises(DomainError) as raised:
            service.create_visit(
                db_session,
                actor,
                horse_owned_by_muller,
                kind="ambulatory",
                started_at=dt.datetime(2024, 5, 1, tzinfo=UTC),
            )
        assert raised.value.field == "location"

    def test_unknown_visit_kind_is_named(
        self, db_session: Session, actor: Actor, horse_owned_by_muller: Horse
    ) -> None:
        with pytest.raises(DomainError, match="'house call' is unknown"):
            service.create_visit(
                db_session,
                actor,
                horse_owned_by_muller,
                kind="house call",
                started_at=dt.datetime(2024, 5, 1, tzinfo=UTC),
            )


class TestNotes:
    @pytest.fixture
    def visit(self, db_session: Session, actor: Actor, horse_owned_by_muller: Horse):  # type: ignore[no-untyped-def]
        return service.create_visit(
            db_session,
            actor,
            horse_owned_by_muller,
            kind="outpatient",
            started_at=dt.datetime(2024, 5, 1, 9, tzinfo=UTC),
        )

    def test_sign__records_sha256_and_freezes_the_note(
        self, db_session: Session, actor: Actor, vet: User, visit
    ) -> None:  # type: ignore[no-untyped-def]
        note = service.create_note(
            db_session, actor, visit, author_id=vet.id, subjective="Lame LF"
        )
        service.sign_note(db_session, actor, note, signer_id=vet.id)
        assert note.status == NoteStatus.SIGNED
        assert note.content_sha256 is not None and len(note.content_sha256) == 64
        assert service.verify_note(note)

        with pytest.raises(Conflict, match="signed and cannot be changed"):
            service.update_note(db_session, actor, note, subjective="Sound")
        with pytest.raises(Conflict, match="already signed"):
            service.sign_note(db_session, actor, note, signer_id=vet.id)
        assert note.subjective == "Lame LF"

    def test_verify_note__detects_changed_content(
        self, db_session: Session, actor: Actor, vet: User, visit
    ) -> None:  # type: ignore[no-untyped-def]
        note = service.create_note(
            db_session, actor, visit, author_id=vet.id, plan="Box rest"
        )
        service.sign_note(db_session, actor, note, signer_id=vet.id)
        note.plan = "Turn out"  # as if someone edited the row behind our back
        assert not service.verify_note(note)

    def test_addendum__only_to_a_signed_note(
        self, db_session: Session, actor: Actor, vet: User, visit
    ) -> None:  # type: ignore[no-untyped-def]
        draft = service.create_note(
            db_session, actor, visit, author_id=vet.id, assessment="Abscess"
        )
        with pytest.raises(Conflict, match="still a draft"):
            service.create_note(
                db_session, actor, visit, author_id=vet.id, addendum_to=draft
            )
        service.sign_note(db_session, actor, draft, signer_id=vet.id)
        addendum = service.create_note(
            db_session,
            actor,
            visit,
            author_id=vet.id,
            addendum_to=draft,
            assessment="Correction: bruise, not abscess",
        )
        service.sign_note(db_session, actor, addendum, signer_id=vet.id)
        assert addendum.addendum_to_id == draft.id
        assert draft.assessment == "Abscess"

    def test_sign__empty_note_is_refused(
        self, db_session: Session, actor: Actor, vet: User, visit
    ) -> None:  # type: ignore[no-untyped-def]
        note = service.create_note(db_session, actor, visit, author_id=vet.id)
        with pytest.raises(DomainError, match="is empty"):
            service.sign_note(db_session, actor, note, signer_id=vet.id)
        assert note.status == NoteStatus.DRAFT

    def test_note_events_carry_the_horse_id(
        self, db_session: Session, actor: Actor, vet: User, visit
    ) -> None:  # type: ignore[no-untyped-def]
        note = service.create_note(
            db_session, actor, visit, author_id=vet.id, objective="HR 40"
        )
        service.update_note(db_session, actor, note, objective="HR 44")
        service.sign_note(db_session, actor, note, signer_id=vet.id)
        events = db_session.execute(
            select(AuditEvent.action, AuditEvent.horse_id).where(
                AuditEvent.object_type == "soap_note"
            )
        ).all()
        assert [(a, h) for a, h in events] == [
            ("note.create", visit.horse_id),
            ("note.update", visit.horse_id),
            ("note.sign", visit.horse_id),
        ]


class TestUniqueIdentifiers:
    def test_duplicate_microchip_is_rejected(
        self, db_session: Session, actor: Actor
    ) -> None:
        first = service.create_horse(
            db_session, actor, barn_name="Monty", microchip="826041000007919"
        )
        with pytest.raises(Conflict) as raised:
            service.create_horse(
                db_session, actor, barn_name="Copy", microchip="826041000007919"
            )
        assert first.patient_id in raised.value.message
        assert raised.value.field == "microchip"

    def test_horse_may_keep_its_own_microchip(
        self, db_session: Session, actor: Actor
    ) -> None:
        horse = service.create_horse(
            db_session, actor, barn_name="Monty", microchip="826041000007919"
        )
        service.update_horse(
            db_session, actor, horse, microchip="826041000007919", colour="bay"
        )
        assert horse.colour == "bay"
