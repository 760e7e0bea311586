"""Settings validation names the variable, the value and the fix."""

import pytest
from pydantic import ValidationError

from fetlock.config import Settings


def test_timezone_invalid_names_value() -> None:
    with pytest.raises(ValidationError) as excinfo:
        Settings(timezone="Mars/Olympus")
    message = str(excinfo.value)
    assert "FETLOCK_TIMEZONE='Mars/Olympus'" in message
    assert "Europe/London" in message


def test_uid_root_gets_trailing_dot() -> None:
    assert Settings(uid_root="1.2.3").uid_root == "1.2.3."


@pytest.mark.parametrize("root", ["1.2.abc.", "1." * 20])
def test_uid_root_invalid_rejected(root: str) -> None:
    with pytest.raises(ValidationError, match="FETLOCK_UID_ROOT"):
        Settings(uid_root=root)


@pytest.mark.parametrize("title", ["", "A" * 17, "BAD\\AE"])
def test_ae_title_invalid_rejected(title: str) -> None:
    with pytest.raises(ValidationError, match="FETLOCK_DICOM_AE_TITLE"):
        Settings(dicom_ae_title=title)


def test_masked_hides_secret_and_password() -> None:
    settings = Settings(
        secret_key="s3cret-value",
        database_url="postgresql+psycopg://fetlock:hunter2@127.0.0.1/fetlock",
    )
    masked = settings.masked()
    assert masked["secret_key"] == "***"
    assert "hunter2" not in str(masked)
    assert "s3cret-value" not in str(masked)


def test_secret_key_generated_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path)
    first = settings.effective_secret_key()
    assert len(first) >= 32
    assert Settings(data_dir=tmp_path).effective_secret_key() == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
