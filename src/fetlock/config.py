"""Typed settings, read from ``FETLOCK_*`` environment variables.

Every setting is documented where it is defined. ``Settings.masked()`` gives the
effective configuration with secrets hidden, for the startup log.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Root under which Fetlock allocates UIDs when none is configured. It is the
# pydicom root, which ``pydicom.uid.generate_uid`` uses by default.
DEFAULT_UID_ROOT = "1.2.826.0.1.3680043.8.498."
DEFAULT_PRACTICE_NAME = "Fetlock Equine Practice"


class Settings(BaseSettings):
    """Fetlock configuration. Each field maps to ``FETLOCK_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FETLOCK_", extra="ignore")

    data_dir: Path = Field(
        default=Path("var"),
        description="Directory for the SQLite database and the local blob store.",
    )
    database_url: str = Field(
        default="",
        description=(
            "SQLAlchemy URL of the database. Empty means SQLite at "
            "<data_dir>/fetlock.sqlite3. PostgreSQL: "
            "postgresql+psycopg://user@host:5432/dbname."
        ),
    )
    secret_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Key that signs CSRF tokens. Empty means a random key is generated "
            "and kept in <data_dir>/secret_key."
        ),
    )
    http_host: str = Field(default="127.0.0.1", description="Web listener address.")
    http_port: int = Field(default=8000, description="Web listener TCP port.")
    dicom_ae_title: str = Field(
        default="FETLOCK", description="AE title of Fetlock's DICOM service."
    )
    dicom_host: str = Field(default="127.0.0.1", description="DICOM listener address.")
    dicom_port: int = Field(default=11112, description="DICOM listener TCP port.")
    dicom_enabled: bool = Field(
        default=True, description="Start the DICOM service with `fetlock serve`."
    )
    dicom_allow_any_ae: bool = Field(
        default=False,
        description=(
            "Accept associations from calling AE titles that are not configured "
            "as modalities."
        ),
    )
    codec_process: bool = Field(
        default=True,
        description=(
            "Decode and encode images for jobs (thumbnails, JPEG-LS copies) and "
            "rendered images in a child process, so the codecs do not hold up "
            "DICOM and web requests. False runs them in the server's own process "
            "and saves the child's memory."
        ),
    )
    dicom_log_datasets: bool = Field(
        default=False,
        description="Log whole DICOM datasets at DEBUG level (contains patient data).",
    )
    timezone: str = Field(
        default="Europe/London",
        description="Practice time zone (IANA name) for display and DICOM dates.",
    )
    uid_root: str = Field(
        default=DEFAULT_UID_ROOT,
        description="UID root for Study Instance UIDs and other generated UIDs.",
    )
    currency: str = Field(default="GBP", description="ISO 4217 currency code.")
    practice_name: str = Field(
        default=DEFAULT_PRACTICE_NAME,
        description="Practice name on the letterhead of reports and invoices.",
    )
    practice_address: str = Field(
        default="",
        description=(
            "Practice postal address for the letterhead; commas separate the "
            "printed lines."
        ),
    )
    practice_phone: str = Field(default="", description="Letterhead telephone.")
    practice_email: str = Field(default="", description="Letterhead email address.")
    session_hours: int = Field(
        default=12, description="Login session lifetime, in hours."
    )
    login_max_failures: int = Field(
        default=5,
        description="Failed logins per user name, from any address, before lock-out.",
    )
    login_lockout_minutes: int = Field(
        default=15, description="Window and lock-out period for failed logins."
    )
    secure_cookies: bool = Field(
        default=False,
        description="Mark cookies Secure; enable when served over HTTPS.",
    )
    dicomweb_cors_origins: str = Field(
        default="",
        description=(
            "Comma-separated origins (e.g. https://viewer.example.org) whose "
            "browser pages may call /dicomweb, for an external OHIF viewer. "
            "Empty allows none; '*' allows any."
        ),
    )
    dicomweb_max_upload_bytes: int = Field(
        default=4 * 1024**3,
        description="Largest STOW-RS request body accepted, in bytes.",
    )

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"FETLOCK_TIMEZONE={value!r} is not an IANA time zone; "
                "use a name such as 'Europe/London' or 'America/New_York'"
            ) from exc
        return value

    @field_validator("uid_root")
    @classmethod
    def _check_uid_root(cls, value: str) -> str:
        if not value.endswith("."):
            value += "."
        stem = value[:-1]
        if len(value) > 32 or not all(p.isdigit() for p in stem.split(".")):
            raise ValueError(
                f"FETLOCK_UID_ROOT={value!r} is not a valid UID root; use dotted "
                "digits of at most 32 characters, such as '1.2.826.0.1.3680043.8.498.'"
            )
        return value

    @field_validator("dicom_ae_title")
    @classmethod
    def _check_ae_title(cls, value: str) -> str:
        if not value or len(value) > 16 or "\\" in value:
            raise ValueError(
                f"FETLOCK_DICOM_AE_TITLE={value!r} is invalid; an AE title has "
                "1 to 16 characters and no backslash"
            )
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fetlock.sqlite3').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def dicomweb_cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.dicomweb_cors_origins.split(",") if o.strip()]

    def effective_secret_key(self) -> str:
        """Return the configured secret, or one kept in the data directory."""
        configured = self.secret_key.get_secret_value()
        if configured:
            return configured
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        path.write_text(key)
        path.chmod(0o600)
        return key

    def masked(self) -> dict[str, object]:
        """Return the effective settings for logging, with secrets hidden."""
        values = self.model_dump()
        values["secret_key"] = "***" if self.secret_key.get_secret_value() else ""
        values["database_url"] = _mask_url_password(self.effective_database_url)
        return values


def _mask_url_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@lru_cache
def get_settings() -> Settings:
    """Return the process settings, read once from the environment."""
    return Settings()
