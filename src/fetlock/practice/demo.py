"""Demo owners, horses, ownership, visits and notes.

Everything here is fixed data: the same practice every time, apart from the
visit times, which are placed relative to the moment of seeding so that one
horse is in hospital now.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy.orm import Session

from fetlock.audit.service import Actor
from fetlock.auth.models import User
from fetlock.config import Settings
from fetlock.db.base import utcnow
from fetlock.practice import service
from fetlock.practice.models import Client, ClientKind, Horse, VisitKind

DEMO_ACTOR = Actor(name="demo")


class DemoClient(NamedTuple):
    key: str
    kind: ClientKind
    title: str | None
    given_name: str | None
    family_name: str | None
    organisation_name: str | None
    town: str
    postcode: str
    phone: str


# key | title | given name | family name or organisation | town | postcode | phone
# (no title and no given name: an organisation)
CLIENT_TABLE = """
muller      | Mrs  | Anna     | Müller                          | Newmarket        | CB8 7AA  | 01638 555101
munoz       | Mr   | José     | Muñoz                           | Lambourn         | RG17 8QA | 01488 555102
oconnell    | Ms   | Siobhán  | O'Connell                       | Cheltenham       | GL54 5AB | 01242 555103
lefevre     | Mr   | François | Lefèvre                         | Malton           | YO17 6AA | 01653 555104
hollis      | Mrs  | Margaret | Hollis                          | Stow-on-the-Wold | GL54 1AA | 01451 555105
pritchard   | Mr   | David    | Pritchard                       | Abergavenny      | NP7 5AA  | 01873 555106
sondergaard | Dr   | Ingrid   | Søndergaard                     | Hungerford       | RG17 0AA | 01488 555107
dubois      | Mrs  | Chloé    | Dubois                          | Marlborough      | SN8 1AA  | 01672 555108
ashworth    | Mr   | Tom      | Ashworth                        | Middleham        | DL8 4AA  | 01969 555109
carrington  | Miss | Emily    | Carrington                      | Badminton        | GL9 1AA  | 01454 555110
llewellyn   | Mrs  | Rhian    | Llewellyn                       | Brecon           | LD3 7AA  | 01874 555111
akesson     | Mr   | Björn    | Åkesson                         | Wantage          | OX12 8AA | 01235 555112
fairweather | Mrs  | Helen    | Fairweather                     | Tetbury          | GL8 8AA  | 01666 555113
patel       | Mr   | Raj      | Patel                           | Epsom            | KT18 5AA | 01372 555114
ballyhale   |      |          | Ballyhale Stud                  | Newmarket        | CB8 9BB  | 01638 555201
oakridge    |      |          | Oakridge Racing Syndicate       | Lambourn         | RG17 7BB | 01488 555202
meadowbank  |      |          | Meadowbank Livery Yard          | Cirencester      | GL7 5BB  | 01285 555203
whitethorn  |      |          | Whitethorn Eventing Partnership | Badminton        | GL9 1BB  | 01454 555204
glenmore    |      |          | Glenmore Polo Club              | Midhurst         | GU29 9BB | 01730 555205
"""  # noqa: E501


def _rows(table: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.split("|")]
        for line in table.strip().splitlines()
    ]


def _clients() -> list[DemoClient]:
    clients = []
    for key, title, given, name, town, postcode, phone in _rows(CLIENT_TABLE):
        person = bool(title or given)
        clients.append(
            DemoClient(
                key=key,
                kind=ClientKind.PERSON if person else ClientKind.ORGANISATION,
                title=title or None,
                given_name=given or None,
                family_name=name if person else None,
                organisation_name=None if person else name,
                town=town,
                postcode=postcode,
                phone=phone,
            )
        )
    return clients


class DemoHorse(NamedTuple):
    barn_name: str
    registered_name: str | None
    species: str
    breed: str
    sex: str
    colour: str
    foaled: int
    owners: tuple[tuple[str, int], ...]
    ueln: bool = False


# barn name | registered name | species | breed | sex | colour | foaled |
# owners (client key and percentage) | UELN when the horse has one
HORSE_TABLE = """
Monty   | Ballyhale Monarch       | horse  | Irish Sport Horse   | gelding  | bay      | 2014 | muller 100                       | UELN
Storm   | Oakridge Tempest        | horse  | Thoroughbred        | gelding  | dark bay | 2018 | oakridge 50, muller 30, munoz 20 |
Pickle  |                         | pony   | Shetland            | mare     | skewbald | 2011 | hollis 100                       |
Bramble | Llanarth Bramble        | pony   | Welsh Section A     | gelding  | grey     | 2016 | llewellyn 100                    |
Jasper  |                         | donkey | Donkey              | gelding  | grey dun | 2009 | fairweather 100                  |
Mabel   |                         | mule   | Mule                | mare     | brown    | 2012 | pritchard 100                    |
Duke    | Whitethorn Duke of Avon | horse  | Irish Draught       | gelding  | chestnut | 2013 | whitethorn 100                   | UELN
Bella   | Ballyhale Belle Étoile  | horse  | Thoroughbred        | mare     | bay      | 2015 | ballyhale 100                    |
Pepper  |                         | pony   | Connemara           | mare     | dun      | 2017 | carrington 100                   |
Archie  | Meadowbank Archer       | horse  | Cob                 | gelding  | piebald  | 2012 | meadowbank 100                   |
Rosie   |                         | horse  | Hanoverian          | mare     | chestnut | 2016 | sondergaard 100                  | UELN
Flynn   | Kilkenny Flight         | horse  | Irish Sport Horse   | gelding  | bay      | 2015 | oconnell 100                     |
Biscuit |                         | pony   | New Forest          | gelding  | bay      | 2010 | hollis 100                       |
Zephyr  | Oakridge Zephyr         | horse  | Thoroughbred        | colt     | grey     | 2022 | oakridge 100                     |
Luna    |                         | horse  | Andalusian          | mare     | grey     | 2014 | munoz 100                        |
Rio     | Glenmore Rio            | horse  | Argentine Polo Pony | mare     | bay      | 2016 | glenmore 100                     |
Tango   | Glenmore Tango          | horse  | Argentine Polo Pony | gelding  | chestnut | 2015 | glenmore 100                     |
Hector  |                         | horse  | Shire               | gelding  | black    | 2011 | ashworth 100                     |
Willow  | Dubois Saule            | horse  | Selle Français      | mare     | chestnut | 2017 | dubois 100                       | UELN
Marcel  | Lefèvre Marcel          | horse  | Selle Français      | gelding  | bay      | 2013 | lefevre 100                      |
Nutmeg  |                         | pony   | Dartmoor            | mare     | brown    | 2015 | carrington 50, hollis 50         |
Odin    | Åkesson Odin            | horse  | Swedish Warmblood   | stallion | bay      | 2012 | akesson 100                      | UELN
Sable   | Ballyhale Sable         | horse  | Thoroughbred        | filly    | black    | 2023 | ballyhale 100                    |
Rocket  | Oakridge Rocket Man     | horse  | Thoroughbred        | gelding  | bay      | 2019 | oakridge 60, patel 40            |
Clover  |                         | pony   | Welsh Section B     | mare     | palomino | 2014 | llewellyn 100                    |
Barney  |                         | horse  | Cob                 | gelding  | skewbald | 2008 | meadowbank 100                   |
Ruby    | Whitethorn Ruby Tuesday | horse  | Irish Sport Horse   | mare     | chestnut | 2016 | whitethorn 100                   |
Otto    |                         | horse  | Trakehner           | gelding  | bay      | 2014 | sondergaard 100                  |
Fudge   |                         | pony   | Shetland            | gelding  | chestnut | 2013 | fairweather 100                  |
Magnus  |                         | horse  | Clydesdale          | gelding  | bay      | 2010 | ashworth 100                     |
Skye    | Highland Skye           | pony   | Highland            | mare     | dun      | 2012 | oconnell 100                     |
Dash    | Ballyhale Dasher        | horse  | Thoroughbred        | colt     | chestnut | 2021 | ballyhale 100                    |
Juno    |                         | horse  | Dutch Warmblood     | mare     | bay      | 2015 | dubois 100                       |
Teddy   |                         | donkey | Donkey              | gelding  | brown    | 2015 | pritchard 100                    |
Merlin  | Meadowbank Merlin       | horse  | Welsh Section D     | gelding  | grey     | 2011 | meadowbank 100                   |
Poppy   |                         | pony   | Exmoor              | mare     | brown    | 2018 | hollis 100                       |
Blaze   | Oakridge Blaze          | horse  | Thoroughbred        | rig      | chestnut | 2019 | oakridge 100                     |
Whisper |                         | horse  | Arab                | mare     | grey     | 2013 | patel 100                        |
Cassius | Lefèvre Cassius         | horse  | Lusitano            | stallion | grey     | 2016 | lefevre 50, munoz 50             |
Hazel   |                         | horse  | Irish Draught       | mare     | bay      | 2012 | carrington 100                   |
"""  # noqa: E501


def _horses() -> list[DemoHorse]:
    horses = []
    for barn, registered, species, breed, sex, colour, foaled, owners, ueln in _rows(
        HORSE_TABLE
    ):
        shares = tuple(
            (key, int(percent) * 100)
            for key, percent in (owner.split() for owner in owners.split(","))
        )
        horses.append(
            DemoHorse(
                barn_name=barn,
                registered_name=registered or None,
                species=species,
                breed=breed,
                sex=sex,
                colour=colour,
                foaled=int(foaled),
                owners=shares,
                ueln=ueln == "UELN",
            )
        )
    return horses


# Ownership in the demo starts on this date, except where history is shown.
OWNED_FROM = dt.date(2021, 1, 1)

# Storm moved from the stud to the syndicate: shows ownership history.
STORM_SYNDICATED_ON = dt.date(2023, 4, 1)


def _microchip(index: int) -> str:
    return f"826041{(index + 1) * 7919:09d}"


def _ueln(index: int) -> str:
    return f"826002{(index + 1) * 104729:09d}"


def seed_practice(
    db_session: Session, settings: Settings, users: dict[str, User]
) -> None:
    """Create the demo clients, horses, owners, visits and SOAP notes."""
    clients = _seed_clients(db_session)
    horses = _seed_horses(db_session, clients)
    _seed_visits(db_session, settings, users, horses)


def _seed_clients(db_session: Session) -> dict[str, Client]:
    clients: dict[str, Client] = {}
    for c in _clients():
        clients[c.key] = service.create_client(
            db_session,
            DEMO_ACTOR,
            kind=c.kind.value,
            title=c.title,
            given_name=c.given_name,
            family_name=c.family_name,
            organisation_name=c.organisation_name,
            email=f"{c.key}@example.com",
            phone=c.phone,
            address_line1=f"{len(c.key)} Paddock Lane",
            town=c.town,
            postcode=c.postcode,
            country="United Kingdom",
        )
    return clients


def _seed_horses(db_session: Session, clients: dict[str, Client]) -> dict[str, Horse]:
    horses: dict[str, Horse] = {}
    for index, h in enumerate(_horses()):
        horse = service.create_horse(
            db_session,
            DEMO_ACTOR,
            barn_name=h.barn_name,
            registered_name=h.registered_name,
            species=h.species,
            breed=h.breed,
            sex=h.sex,
            colour=h.colour,
            foaling_year=h.foaled,
            microchip=_microchip(index),
            ueln=_ueln(index) if h.ueln else None,
            passport_number=f"GBR-{h.foaled}-{index + 1:05d}",
        )
        shares = [service.ShareInput(clients[key].id, share) for key, share in h.owners]
        if h.barn_name == "Storm":
            service.set_owners_from(
                db_session,
                DEMO_ACTOR,
                horse,
                OWNED_FROM,
                [service.ShareInput(clients["ballyhale"].id, 10000)],
            )
            service.set_owners_from(
                db_session, DEMO_ACTOR, horse, STORM_SYNDICATED_ON, shares
            )
        else:
            service.set_owners_from(db_session, DEMO_ACTOR, horse, OWNED_FROM, shares)
        horses[h.barn_name] = horse
    return horses


class DemoVisit(NamedTuple):
    horse: str
    kind: VisitKind
    days_ago: float
    vet: str
    location: str | None
    reason: str
    # (subjective, objective, assessment, plan, signed)
    notes: tuple[tuple[str, str, str, str, bool], ...] = ()
    discharged_after_days: float | None = None


VISITS = (
    DemoVisit(
        "Storm",
        VisitKind.ADMISSION,
        1.5,
        "vet",
        "Hospital box 4",
        "Colic, referred by yard",
        (
            (
                "Off feed overnight, pawing and rolling at 05:00.",
                "HR 56, RR 20, T 37.9 °C. Reduced gut sounds left side. "
                "Rectal: distended small intestine.",
                "Small-intestinal colic, surgical lesion not yet excluded.",
                "IV fluids, flunixin, repeat ultrasound in 4 h, abdominal radiographs.",
                True,
            ),
            (
                "Comfortable after fluids, passing droppings.",
                "HR 44. Improved gut sounds.",
                "Responding to medical management.",
                "Continue fluids overnight, reintroduce hay in small amounts.",
                False,
            ),
        ),
    ),
    DemoVisit(
        "Monty",
        VisitKind.AMBULATORY,
        40,
        "vet2",
        "Müller farm, Newmarket",
        "Lameness left fore",
        (
            (
                "Lame LF for 3 days after hunting.",
                "Grade 3/5 LF lameness on the straight, "
                "positive hoof testers at the toe.",
                "Sub-solar abscess LF.",
                "Poultice, pare out, review in 3 days; radiograph if no improvement.",
                True,
            ),
        ),
    ),
    DemoVisit(
        "Monty",
        VisitKind.OUTPATIENT,
        10,
        "vet2",
        None,
        "Lameness work-up, radiographs LF foot",
        (
            (
                "Lameness persisted after abscess drained.",
                "Grade 2/5 LF. Positive to palmar digital nerve block.",
                "Suspected navicular region pain.",
                "Radiographs LF foot: lateromedial, dorsopalmar, skyline views.",
                True,
            ),
        ),
    ),
    DemoVisit(
        "Pickle",
        VisitKind.AMBULATORY,
        20,
        "vet3",
        "Hollis paddocks, Stow",
        "Laminitis check",
        (
            (
                "Reluctant to walk on hard ground since the grass flush.",
                "Bounding digital pulses both fore, shifting weight.",
                "Acute laminitis, both fore feet.",
                "Box rest on deep shavings, soak hay, pain relief; "
                "radiographs both fore.",
                True,
            ),
        ),
    ),
    DemoVisit(
        "Bella",
        VisitKind.AMBULATORY,
        60,
        "vet",
        "Ballyhale Stud, Newmarket",
        "Pre-breeding examination",
        (
            (
                "Maiden mare for covering this season.",
                "Ultrasound: 35 mm follicle right ovary, no uterine fluid.",
                "Suitable for covering.",
                "Re-scan in 48 h.",
                True,
            ),
        ),
    ),
    DemoVisit(
        "Luna",
        VisitKind.OUTPATIENT,
        5,
        "vet2",
        None,
        "Pre-purchase examination, five-stage",
        (),
    ),
    DemoVisit(
        "Duke",
        VisitKind.ADMISSION,
        30,
        "vet3",
        "Hospital box 2",
        "Wound, right hind cannon",
        (
            (
                "Caught in wire in the field.",
                "15 cm laceration RH cannon, extensor tendon sheath "
                "not involved on ultrasound.",
                "Superficial laceration.",
                "Debride and suture under standing sedation, antibiotics 5 days.",
                True,
            ),
        ),
        discharged_after_days=3,
    ),
    DemoVisit(
        "Jasper",
        VisitKind.AMBULATORY,
        90,
        "vet3",
        "Fairweather smallholding, Tetbury",
        "Dental and vaccination",
        (),
    ),
)


def _seed_visits(
    db_session: Session,
    settings: Settings,
    users: dict[str, User],
    horses: dict[str, Horse],
) -> None:
    now = utcnow().replace(second=0, microsecond=0)
    for v in VISITS:
        vet = users[v.vet]
        started_at = now - dt.timedelta(days=v.days_ago)
        discharged_at = (
            started_at + dt.timedelta(days=v.discharged_after_days)
            if v.discharged_after_days is not None
            else None
        )
        actor = Actor(name=vet.username, user_id=vet.id)
        visit = service.create_visit(
            db_session,
            actor,
            horses[v.horse],
            kind=v.kind,
            started_at=started_at,
            discharged_at=discharged_at,
            attending_vet_id=vet.id,
            location=v.location,
            reason=v.reason,
        )
        for subjective, objective, assessment, plan, signed in v.notes:
            note = service.create_note(
                db_session,
                actor,
                visit,
                author_id=vet.id,
                subjective=subjective,
                objective=objective,
                assessment=assessment,
                plan=plan,
            )
            if signed:
                signed_at = started_at + dt.timedelta(hours=2)
                service.sign_note(
                    db_session, actor, note, signer_id=vet.id, at=min(signed_at, now)
                )
