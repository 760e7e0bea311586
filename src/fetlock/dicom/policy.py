"""Which DICOM peers may associate, and the per-peer settings that apply.

The configured remote modalities (``RemoteAE`` rows) are read from the database
on every association, so a station added on the admin page is accepted at once
and two Fetlock nodes over one database agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.imaging.models import RemoteAE, SpecificCharacterSet


@dataclass(frozen=True)
class PeerConfig:
    """Settings that apply to one calling AE for the length of an association.

    ``configured`` is False for a caller admitted only because the practice
    allows any AE title; such a caller gets the defaults.
    """

    ae_title: str
    configured: bool
    modality: str | None = None
    character_set: str = SpecificCharacterSet.UTF8
    restrict_worklist_to_own_ae: bool = False


class AssociationPolicy:
    """Decide whether a calling AE title is accepted, and with which settings."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database

    def peer(self, calling_ae_title: str) -> PeerConfig | None:
        """Return the caller's configuration, or None when it must be rejected.

        AE titles compare without leading and trailing spaces (PS3.5 6.2: the
        spaces of an AE value are not significant).
        """
        ae_title = calling_ae_title.strip()
        with self.database.session() as db_session:
            remote = db_session.execute(
                select(RemoteAE).where(
                    RemoteAE.ae_title == ae_title, RemoteAE.active.is_(True)
                )
            ).scalar_one_or_none()
            if remote is not None:
                return PeerConfig(
                    ae_title=ae_title,
                    configured=True,
                    modality=remote.modality,
                    character_set=remote.character_set,
                    restrict_worklist_to_own_ae=remote.restrict_worklist_to_own_ae,
                )
        if self.settings.dicom_allow_any_ae:
            return PeerConfig(ae_title=ae_title, configured=False)
        return None
