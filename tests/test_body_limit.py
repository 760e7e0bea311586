"""JSON and form bodies over the size limit are rejected before parsing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from fetlock.auth.models import Role
from fetlock.db.session import Database
from fetlock.practice.models import Client
from fetlock.web.limits import MAX_BODY_BYTES


@pytest.fixture
def reception(login_as):  # type: ignore[no-untyped-def]
    return login_as(Role.RECEPTION, "frontdesk")


def client_count(database: Database) -> int:
    with database.session() as db_session:
        return int(db_session.execute(select(func.count(Client.id))).scalar_one())


def oversized_client_json() -> bytes:
    notes = "x" * (MAX_BODY_BYTES + 1)
    return json.dumps({"family_name": "Large", "notes": notes}).encode()


def test_declared_oversized_json_is_rejected_unread(
    reception,  # type: ignore[no-untyped-def]
    database: Database,
) -> None:
    body = oversized_client_json()

    response = reception.post(
        "/api/v1/clients",
        content=body,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413
    detail = response.json()["detail"]
    assert f"{len(body)} bytes" in detail
    assert str(MAX_BODY_BYTES) in detail
    assert client_count(database) == 0


def test_chunked_oversized_json_is_rejected(
    reception,  # type: ignore[no-untyped-def]
    database: Database,
) -> None:
    body = oversized_client_json()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = reception.post(
        "/api/v1/clients",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert f"more than {MAX_BODY_BYTES} bytes" in response.json()["detail"]
    assert client_count(database) == 0


def test_oversized_form_is_rejected(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        "/login",
        data={"username": "u" * (MAX_BODY_BYTES + 1), "password": "p"},
        follow_redirects=False,
    )

    assert response.status_code == 413


def test_json_under_limit_reaches_the_route_intact(
    reception,  # type: ignore[no-untyped-def]
    database: Database,
) -> None:
    body = json.dumps({"family_name": "Chunked", "notes": "n" * 100_000}).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = reception.post(
        "/api/v1/clients",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 201, response.text
    assert response.json()["family_name"] == "Chunked"
    assert client_count(database) == 1


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/octet-stream", "multipart/form-data; boundary=x"],
)
def test_oversized_body_of_any_type_is_rejected(
    client,  # type: ignore[no-untyped-def]
    content_type: str,
) -> None:
    response = client.post(
        "/api/v1/clients",
        content=b"x" * (MAX_BODY_BYTES + 1),
        headers={"Content-Type": content_type},
    )

    assert response.status_code == 413


def test_non_json_body_gets_422(
    reception,  # type: ignore[no-untyped-def]
    database: Database,
) -> None:
    response = reception.post(
        "/api/v1/clients",
        content=b'{"family_name": "Plain"}',
        headers={"Content-Type": "text/plain"},
    )

    assert response.status_code == 422, response.text
    assert "24 bytes that are not JSON" in response.text
    assert client_count(database) == 0


def test_stow_upload_is_not_limited(
    reception,  # type: ignore[no-untyped-def]
) -> None:
    response = reception.post(
        "/dicomweb/studies",
        content=b"x" * (MAX_BODY_BYTES + 1),
        headers={
            "Content-Type": "multipart/related; type=application/dicom; boundary=b"
        },
    )

    # Read by the STOW-RS route, which finds no DICOM part, not cut off at 413.
    assert response.status_code != 413
    assert response.status_code < 500
