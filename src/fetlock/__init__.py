"""Fetlock: equine practice management with imaging built in."""

import logging

__version__ = "0.1.0"

# Handlers are configured by the entry points only (see ``fetlock.logs``).
logging.getLogger(__name__).addHandler(logging.NullHandler())
