"""Verification SOP Class SCP (C-ECHO, PS3.4 Annex A)."""

from __future__ import annotations

import logging

from pynetdicom import evt
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from fetlock.config import Settings
from fetlock.dicom.server import Handler, ScpContext, calling_ae_title
from fetlock.dicom.transfer import ACCEPTED_TRANSFER_SYNTAXES

logger = logging.getLogger(__name__)

SUCCESS = 0x0000


def supported_contexts(settings: Settings) -> list[PresentationContext]:
    return [build_context(Verification, ACCEPTED_TRANSFER_SYNTAXES)]


def event_handlers(context: ScpContext) -> list[tuple[evt.EventType, Handler]]:
    return [(evt.EVT_C_ECHO, _on_c_echo)]


def _on_c_echo(event: evt.Event) -> int:
    logger.info("C-ECHO from %s", calling_ae_title(event.assoc))
    return SUCCESS
