"""Viewer settings, read from ``FETLOCK_VIEWER_*`` environment variables.

They belong to the practice running this Fetlock: which outside viewers its
staff can open a study in, and what the browser viewer asks the DICOMweb
service for.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Placeholders an external viewer URL template may use; each value is
# percent-encoded when substituted.
PLACEHOLDERS = (
    "StudyInstanceUID",
    "AccessionNumber",
    "PatientID",
    "dicomweb_url",
    "origin",
)
EXTERNAL_SCHEMES = ("http", "https", "weasis")

# Weasis' own URI scheme (weasis://?$dicom:rs ...) loading one study from a
# DICOMweb service; the command is the percent-encoded query.
# NOTE: Weasis sends no Fetlock session, so the link works only where
# /dicomweb accepts it, e.g. behind a proxy that authenticates; an API token
# header (--header) would have to be added to the template by hand.
DEFAULT_WEASIS_TEMPLATE = (
    "weasis://?%24dicom%3Ars+--url+%22{dicomweb_url}%22"
    "+-r+%22studyUID%3D{StudyInstanceUID}%22"
)

# Ask WADO-RS (PS3.18 8.7.3.5) for uncompressed frames as JPEG-LS lossless,
# and for compressed ones in their stored form (transfer-syntax=*). Either
# way the browser decodes them exactly, and no raw pixels cross the network.
DEFAULT_FRAME_ACCEPT = (
    'multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.80, '
    'multipart/related; type="application/octet-stream"; transfer-syntax=*'
)


def check_url_template(variable: str, value: str) -> str:
    """Return ``value`` if it is a usable external viewer URL template.

    Raises ``ValueError`` naming the variable, the value and the fix.
    """
    if not value:
        return value
    scheme = urlsplit(value).scheme
    if scheme not in EXTERNAL_SCHEMES:
        raise ValueError(
            f"{variable}={value!r} has the scheme {scheme!r}; an external viewer "
            f"URL starts with one of {', '.join(s + '://' for s in EXTERNAL_SCHEMES)}"
        )
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(value) if name]
    except ValueError as exc:
        raise ValueError(
            f"{variable}={value!r} is not a valid template ({exc}); write "
            "placeholders as {StudyInstanceUID} and a literal brace as {{ or }}"
        ) from exc
    unknown = sorted(set(fields) - set(PLACEHOLDERS))
    if unknown:
        raise ValueError(
            f"{variable}={value!r} uses {', '.join('{' + u + '}' for u in unknown)}, "
            f"which Fetlock does not fill; use only "
            f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
        )
    return value


class ViewerSettings(BaseSettings):
    """Viewer configuration. Each field maps to ``FETLOCK_VIEWER_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FETLOCK_VIEWER_", extra="ignore")

    ohif_url_template: str = Field(
        default="",
        description=(
            "URL of the practice's OHIF viewer for one study, e.g. "
            "https://ohif.example.org/viewer?StudyInstanceUIDs={StudyInstanceUID}; "
            "empty hides the link. OHIF must be configured with Fetlock's "
            "/dicomweb as its data source, and FETLOCK_DICOMWEB_CORS_ORIGINS must "
            "allow its origin."
        ),
    )
    weasis_url_template: str = Field(
        default=DEFAULT_WEASIS_TEMPLATE,
        description=(
            "weasis:// URL that opens one study in Weasis through Fetlock's "
            "DICOMweb; empty hides the link."
        ),
    )
    frame_accept: str = Field(
        default=DEFAULT_FRAME_ACCEPT,
        description=(
            "Accept header the browser viewer sends for WADO-RS frames. The "
            "default takes each frame in its stored form, compressed or not."
        ),
    )
    render_mode: Literal["auto", "gpu", "cpu"] = Field(
        default="auto",
        description=(
            "Cornerstone rendering: auto (WebGL where the browser has a GPU; "
            "Cornerstone's CPU renderer where WebGL itself is drawn in "
            "software, which is slower), or force gpu or cpu. A page can "
            "override it with ?render=cpu."
        ),
    )

    @field_validator("ohif_url_template")
    @classmethod
    def _check_ohif(cls, value: str) -> str:
        return check_url_template("FETLOCK_VIEWER_OHIF_URL_TEMPLATE", value)

    @field_validator("weasis_url_template")
    @classmethod
    def _check_weasis(cls, value: str) -> str:
        return check_url_template("FETLOCK_VIEWER_WEASIS_URL_TEMPLATE", value)

    @field_validator("frame_accept")
    @classmethod
    def _check_accept(cls, value: str) -> str:
        if not re.match(r"^\s*multipart/related\s*;", value):
            raise ValueError(
                f"FETLOCK_VIEWER_FRAME_ACCEPT={value!r} is not a multipart/related "
                "media type; WADO-RS frames are multipart (PS3.18 8.7.3.5), e.g. "
                f"{DEFAULT_FRAME_ACCEPT!r}"
            )
        return value


@lru_cache
def get_viewer_settings() -> ViewerSettings:
    """Return the process's viewer settings, read once from the environment."""
    return ViewerSettings()
