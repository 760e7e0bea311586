"""Practice pages and JSON API: clients, horses, ownership, visits, notes."""

from fastapi import APIRouter

router = APIRouter()
