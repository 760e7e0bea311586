"""PDF rendering of the practice's documents: invoices, signed reports.

Each module lays out plain values handed to it by its domain's service; none
of them reads the database.
"""
