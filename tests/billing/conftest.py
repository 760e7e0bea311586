"""Billing fixtures; the builders behind them live in ``factories``."""

from .factories import actor, place_order, syndicate, vet

__all__ = ["actor", "place_order", "syndicate", "vet"]
