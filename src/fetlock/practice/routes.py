"""Practice routes: the JSON API (``api.py``) and the pages (``pages.py``).

Role rules for both are in ``fetlock.practice.deps``.
"""

from fastapi import APIRouter

from fetlock.practice import api, pages

router = APIRouter()
router.include_router(api.router)
router.include_router(pages.router)
