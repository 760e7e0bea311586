"""Billing fixtures; the builders behind them live in ``factories``."""

from .factories import actor, place_order_fixture, syndicate, vet

__all__ = ["actor", "place_order_fixture", "syndicate", "vet"]
