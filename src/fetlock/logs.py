"""Logging set-up, called by the command-line entry points only."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)
    # pynetdicom logs every PDU at INFO; its summaries are enough for operators.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # fpdf2's font subsetting logs every table it prunes at INFO.
    logging.getLogger("fontTools").setLevel(logging.WARNING)
