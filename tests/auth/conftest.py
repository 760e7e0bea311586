"""Fixtures for the account tests."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from fetlock.auth import service as auth_service


@pytest.fixture
def quick_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash passwords with the cheapest Argon2 parameters, for tests that log in
    many times; ``TestPasswords`` keeps the production parameters."""
    monkeypatch.setattr(
        auth_service,
        "_hasher",
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
