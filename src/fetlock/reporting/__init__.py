"""Radiology reporting: reading queue, structured reports, sign-off, search."""
