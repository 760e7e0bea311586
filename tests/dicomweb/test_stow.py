"""STOW-RS: result codes, per-instance results, bytes kept, roles, audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.dicomweb.conftest import SampleStudy

from fetlock.audit.models import AuditEvent
from fetlock.auth.models import Role
from fetlock.db.session import Database
from fetlock.imaging.study_models import Instance
from fetlock.storage import LocalBlobStore

BOUNDARY = "stow-test-boundary-7d3f"
RELATED = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def body_of(*parts: tuple[str, bytes]) -> bytes:
    """A multipart/related body written by hand (RFC 2046 5.1.1)."""
    chunks = []
    for content_type, payload in parts:
        chunks.append(
            f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n".encode() + payload
        )
        chunks.append(b"\r\n")
    chunks.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(chunks)


def dicom_part(path: Path) -> tuple[str, bytes]:
    return ("application/dicom", path.read_bytes())


def post(
    client: TestClient,
    token: str,
    body: bytes,
    path: str = "/dicomweb/studies",
    content_type: str = RELATED,
):  # type: ignore[no-untyped-def]
    return client.post(
        path,
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": content_type,
            "Accept": "application/dicom+json",
        },
    )


def sequence(response_json: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = response_json.get(tag, {}).get("Value", [])
    return items


def first(item: dict[str, Any], tag: str) -> Any:
    return item[tag]["Value"][0]


@pytest.fixture
def technician(token_for) -> str:  # type: ignore[no-untyped-def]
    token: str = token_for(Role.TECHNICIAN)
    return token


def test_all_stored_is_200_with_retrieve_urls(
    client: TestClient,
    technician: str,
    sample_studies: list[SampleStudy],
    blobs: LocalBlobStore,
    database: Database,
) -> None:
    study = sample_studies[0]
    response = post(
        client, technician, body_of(*(dicom_part(i.path) for i in study.instances))
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    result = response.json()
    stored = sequence(result, "00081199")
    assert [first(item, "00081155") for item in stored] == [
        i.sop_uid for i in study.instances
    ]
    assert first(stored[0], "00081150") == study.instances[0].sop_class_uid
    assert first(stored[0], "00081190").endswith(
        f"/studies/{study.study_uid}/series/{study.instances[0].series_uid}"
        f"/instances/{study.instances[0].sop_uid}"
    )
    assert first(result, "00081190").endswith(f"/studies/{study.study_uid}")
    assert "00081198" not in result

    # Bytes are sacred: the blob is the part, byte for byte.
    with database.session() as db_session:
        keys = dict(
            (row.sop_instance_uid, row.blob_key)
            for row in db_session.execute(select(Instance)).scalars()
        )
    for instance in study.instances:
        with blobs.open(keys[instance.sop_uid]) as stored_file:
            assert stored_file.read() == instance.path.read_bytes()


def test_stored_instance_is_retrievable_unchanged(
    client: TestClient, technician: str, sample_studies: list[SampleStudy]
) -> None:
    instance = sample_studies[1].instances[0]
    assert (
        post(client, technician, body_of(dicom_part(instance.path))).status_code == 200
    )

    response = client.get(
        f"/dicomweb/studies/{instance.study_uid}/series/{instance.series_uid}"
        f"/instances/{instance.sop_uid}",
        headers={"Authorization": f"Bearer {technician}"},
    )
    assert response.content.count(instance.path.read_bytes()) == 1


def test_malformed_part_gives_202_with_a_failure(
    client: TestClient, technician: str, sample_studies: list[SampleStudy]
) -> None:
    good = sample_studies[1].instances[0]
    truncated = good.path.read_bytes()[:-500]
    response = post(
        client,
        technician,
        body_of(
            dicom_part(good.path),
            ("application/dicom", b"this is not DICOM at all"),
        ),
    )

    assert response.status_code == 202, response.text
    result = response.json()
    assert [first(i, "00081155") for i in sequence(result, "00081199")] == [
        good.sop_uid
    ]
    (failed,) = sequence(result, "00081198")
    assert first(failed, "00081197") >= 0xC000  # a "cannot understand" status
    assert "part 2" in response.headers["warning"]
    assert truncated  # the truncated case is covered below


def test_truncated_file_is_refused_and_named(
    client: TestClient, technician: str, sample_studies: list[SampleStudy]
) -> None:
    instance = sample_studies[0].by_source("MR_small.dcm")
    truncated = instance.path.read_bytes()[:-500]
    response = post(client, technician, body_of(("application/dicom", truncated)))

    assert response.status_code == 409
    (failed,) = sequence(response.json(), "00081198")
    assert first(failed, "00081155") == instance.sop_uid
    assert first(failed, "00081197") >= 0xC000
    assert "not a complete DICOM object" in response.headers["warning"]


def test_nothing_stored_is_409(
    client: TestClient, technician: str, sample_studies: list[SampleStudy]
) -> None:
    response = post(
        client,
        technician,
        body_of(
            ("application/dicom", b"garbage"), ("application/dicom", b"\x00" * 300)
        ),
    )
    assert response.status_code == 409
    assert len(sequence(response.json(), "00081198")) == 2
    assert "00081199" not in response.json()


def test_study_path_mismatch_is_a900(
    client: TestClient, technician: str, sample_studies: list[SampleStudy]
) -> None:
    mine, other = sample_studies[0].instances[0], sample_studies[1].instances[0]
    response = post(
        client,
        technician,
        body_of(dicom_part(mine.path), dicom_part(other.path)),
        path=f"/dicomweb/studies/{mine.study_uid}",
    )

    assert response.status_code == 202
    (failed,) = sequence(response.json(), "00081198")
    assert first(failed, "00081155") == other.sop_uid
    assert first(failed, "00081197") == 0xA900
    assert first(response.json(), "00081190").endswith(f"/studies/{mine.study_uid}")


def test_identical_resend_succeeds(
    client: TestClient, technician: str, sample_studies: list[SampleStudy]
) -> None:
    instance = sample_studies[1].instances[0]
    post(client, technician, body_of(dicom_part(instance.path)))
    again = post(client, technician, body_of(dicom_part(instance.path)))

    assert again.status_code == 200
    (item,) = sequence(again.json(), "00081199")
    assert first(item, "00081155") == instance.sop_uid
    assert "00081198" not in again.json()


def test_different_object_with_a_taken_uid_fails(
    client: TestClient,
    technician: str,
    sample_studies: list[SampleStudy],
    tmp_path: Path,
) -> None:
    instance = sample_studies[1].instances[0]
    post(client, technician, body_of(dicom_part(instance.path)))
    changed = pydicom.dcmread(instance.path)
    changed.PatientName = "Impostor^Horse"
    path = tmp_path / "changed.dcm"
    changed.save_as(path)

    response = post(client, technician, body_of(dicom_part(path)))
    assert response.status_code == 409
    (failed,) = sequence(response.json(), "00081198")
    assert first(failed, "00081155") == instance.sop_uid
    assert "quarantined" in response.headers["warning"]


def test_non_dicom_part_type_fails_that_part(
    client: TestClient, technician: str, sample_studies: list[SampleStudy]
) -> None:
    instance = sample_studies[1].instances[0]
    response = post(
        client,
        technician,
        body_of(dicom_part(instance.path), ("application/json", b"{}")),
    )
    assert response.status_code == 202
    (failed,) = sequence(response.json(), "00081198")
    assert first(failed, "00081197") == 0xC000
    assert "'application/json' is not application/dicom" in response.headers["warning"]


ACCEPTED_TYPES = [
    f"multipart/related; type=application/dicom; boundary={BOUNDARY}",
    f'Multipart/Related; Type="Application/DICOM"; boundary="{BOUNDARY}"',
    f'multipart/related; boundary={BOUNDARY}; type="application/dicom"',
]
REFUSED_TYPES = [
    "application/dicom",
    "application/json",
    f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}',
    f"multipart/form-data; boundary={BOUNDARY}",
]


def test_type_parameter_quoted_or_not(
    client: TestClient, technician: str, sample_studies: list[SampleStudy]
) -> None:
    body = body_of(dicom_part(sample_studies[1].instances[0].path))
    for content_type in ACCEPTED_TYPES:
        response = post(client, technician, body, content_type=content_type)
        assert response.status_code == 200, (content_type, response.text)


def test_wrong_media_type_is_415(
    client: TestClient, technician: str, sample_studies: list[SampleStudy]
) -> None:
    body = body_of(dicom_part(sample_studies[1].instances[0].path))
    for content_type in REFUSED_TYPES:
        response = post(client, technician, body, content_type=content_type)
        assert response.status_code == 415, content_type
        assert 'type=\\"application/dicom\\"' in json.dumps(response.json()["detail"])


def test_truncated_body_is_400_and_stores_nothing(
    client: TestClient,
    technician: str,
    sample_studies: list[SampleStudy],
    database: Database,
) -> None:
    instance = sample_studies[1].instances[0]
    body = body_of(dicom_part(instance.path))[:-40]
    response = post(client, technician, body)

    assert response.status_code == 422
    assert "closing boundary" in response.json()["detail"]
    with database.session() as db_session:
        assert db_session.execute(select(Instance)).first() is None


def test_missing_boundary(client: TestClient, technician: str) -> None:
    response = post(
        client,
        technician,
        b"",
        content_type='multipart/related; type="application/dicom"',
    )
    assert response.status_code == 422
    assert "boundary" in response.json()["detail"]


def test_empty_body_has_no_parts(client: TestClient, technician: str) -> None:
    response = post(client, technician, f"--{BOUNDARY}--\r\n".encode())
    assert response.status_code == 422
    assert "no parts" in response.json()["detail"]


def test_reception_may_not_store(
    client: TestClient,
    token_for,
    sample_studies: list[SampleStudy],  # type: ignore[no-untyped-def]
) -> None:
    instance = sample_studies[1].instances[0]
    response = post(
        client, token_for(Role.RECEPTION), body_of(dicom_part(instance.path))
    )
    assert response.status_code == 403


def test_upload_limit(
    app,
    client: TestClient,
    technician: str,
    sample_studies: list[SampleStudy],  # type: ignore[no-untyped-def]
) -> None:
    app.state.settings.dicomweb_max_upload_bytes = 1000
    instance = sample_studies[1].instances[0]
    response = post(client, technician, body_of(dicom_part(instance.path)))
    assert response.status_code == 422
    assert "FETLOCK_DICOMWEB_MAX_UPLOAD_BYTES" in response.json()["detail"]


def test_store_and_retrieve_are_audited(
    client: TestClient,
    technician: str,
    sample_studies: list[SampleStudy],
    database: Database,
) -> None:
    instance = sample_studies[1].instances[0]
    post(client, technician, body_of(dicom_part(instance.path)))
    client.get(
        f"/dicomweb/studies/{instance.study_uid}/metadata",
        headers={"Authorization": f"Bearer {technician}"},
    )

    with database.session() as db_session:
        actions = {
            event.action: event
            for event in db_session.execute(select(AuditEvent)).scalars()
        }
    assert "dicomweb.stow" in actions
    assert "imaging.study.viewed" in actions
    assert instance.sop_uid in json.dumps(actions["dicomweb.stow"].detail)
