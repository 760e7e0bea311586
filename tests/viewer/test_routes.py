"""The viewer page, its JSON API, the offline manifest and the service worker."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select
from tests.viewer.studydata import (
    ACTOR,
    StudyStore,
    cat_radiograph,
    radiograph_copy,
    ultrasound_clip,
    ultrasound_copy,
)

from fetlock.audit.models import AuditEvent
from fetlock.auth.models import Role
from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.practice import service as practice
from fetlock.practice.models import Horse
from fetlock.viewer import routes as viewer_routes
from fetlock.viewer.settings import ViewerSettings

SMALL = (64, 48)


@pytest.fixture
def store(settings: Settings, database: Database, database_url: str):  # type: ignore[no-untyped-def]
    study_store = StudyStore(database_url, settings.data_dir)
    yield study_store
    study_store.close()


def _horse(database: Database, name: str) -> Horse:
    with database.session() as db_session:
        horse = practice.create_horse(db_session, ACTOR, barn_name=name)
        db_session.flush()
        db_session.expunge(horse)
        return horse


def _radiograph_study(
    store: StudyStore,
    tmp_path: Path,
    horse: Horse,
    *,
    date: str,
    body_part: str,
    views: tuple[str, ...] = ("LF-LM",),
    calibrated: bool = True,
) -> str:
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = [
        radiograph_copy(
            cat_radiograph(),
            tmp_path / f"{study_uid}-{n}.dcm",
            horse,
            study_uid=study_uid,
            series_uid=series_uid,
            study_date=date,
            description=f"{body_part.title()} radiographs",
            body_part=body_part,
            view=view,
            instance_number=n,
            calibrated=calibrated,
            crop=SMALL,
        )
        for n, view in enumerate(views, start=1)
    ]
    return store.store(paths, horse).StudyInstanceUID


@pytest.fixture
def blaze(database: Database) -> Horse:
    return _horse(database, "Blaze")


@pytest.fixture
def studies(store: StudyStore, tmp_path: Path, blaze: Horse) -> dict[str, str]:
    """Blaze: a foot study now, a foot prior, an older stifle study, a clip."""
    us_uid = generate_uid()
    ultrasound_copy(
        ultrasound_clip(),
        tmp_path / "us.dcm",
        blaze,
        study_uid=us_uid,
        study_date="20240105",
    )
    store.store([tmp_path / "us.dcm"], blaze)
    return {
        "current": _radiograph_study(
            store,
            tmp_path,
            blaze,
            date="20250310",
            body_part="HOOF",
            views=("LF-LM", "LF-DP"),
        ),
        "stifle": _radiograph_study(
            store, tmp_path, blaze, date="20241201", body_part="STIFLE"
        ),
        "foot_prior": _radiograph_study(
            store, tmp_path, blaze, date="20230601", body_part="HOOF", calibrated=False
        ),
        "ultrasound": us_uid,
    }


def _config(html: str) -> dict[str, object]:
    match = re.search(
        r'<script type="application/json" id="viewer-config">(.*?)</script>',
        html,
        re.S,
    )
    assert match, "viewer page has no #viewer-config"
    config: dict[str, object] = json.loads(match.group(1))
    return config


class TestViewerPage:
    def test_open__renders_study_horse_and_priors_same_region_first(
        self, login_as, studies: dict[str, str], blaze: Horse
    ) -> None:
        vet = login_as(Role.VETERINARIAN)
        response = vet.get(f"/viewer/studies/{studies['current']}")
        assert response.status_code == 200, response.text
        config = _config(response.text)
        assert config["study"]["studyInstanceUID"] == studies["current"]  # type: ignore[index]
        assert config["study"]["bodyParts"] == ["HOOF"]  # type: ignore[index]
        assert config["horse"] == {
            "id": blaze.id,
            "name": "Blaze",
            "patientId": blaze.patient_id,
            "chartUrl": f"/horses/{blaze.id}",
        }
        priors = [p["studyInstanceUID"] for p in config["priors"]]  # type: ignore[attr-defined]
        # The foot prior first (same region), then the rest newest first.
        assert priors == [
            studies["foot_prior"],
            studies["stifle"],
            studies["ultrasound"],
        ]
        assert config["priors"][0]["sameRegion"] is True  # type: ignore[index]
        assert config["keyImages"] is None
        assert f'href="/horses/{blaze.id}"' in response.text

    def test_open__names_first_frame_to_prefetch(
        self, login_as, studies: dict[str, str]
    ) -> None:
        vet = login_as(Role.VETERINARIAN)
        uid = studies["current"]
        config = _config(vet.get(f"/viewer/studies/{uid}").text)
        metadata = vet.get(
            f"/dicomweb/studies/{uid}/metadata",
            headers={"Accept": "application/dicom+json"},
        ).json()
        # InstanceNumber (0020,0013) 1 is the image the viewer opens on.
        (first,) = [ds for ds in metadata if ds["00200013"]["Value"] == [1]]
        series = first["0020000E"]["Value"][0]
        sop = first["00080018"]["Value"][0]

        assert config["firstFrameUrl"] == (
            f"/dicomweb/studies/{uid}/series/{series}/instances/{sop}/frames/1"
        )
        frame = vet.get(
            str(config["firstFrameUrl"]),
            headers={"Accept": 'multipart/related; type="application/octet-stream"'},
        )
        assert frame.status_code == 200

    def test_open__writes_audit_event_with_horse(
        self, login_as, studies: dict[str, str], blaze: Horse, database: Database
    ) -> None:
        vet = login_as(Role.VETERINARIAN, "dr_audit")
        vet.get(f"/viewer/studies/{studies['current']}?compare={studies['foot_prior']}")
        with database.session() as db_session:
            events = (
                db_session.execute(
                    select(AuditEvent).where(AuditEvent.action == "study.view")
                )
                .scalars()
                .all()
            )
            assert [(e.actor_name, e.object_id, e.horse_id) for e in events] == [
                ("dr_audit", studies["current"], blaze.id)
            ]
            assert json.loads(events[0].detail) == {
                "via": "viewer",
                "compare": studies["foot_prior"],
            }

    def test_open__radiologist_gets_key_image_api(
        self, login_as, studies: dict[str, str]
    ) -> None:
        radiologist = login_as(Role.RADIOLOGIST)
        config = _config(radiologist.get(f"/viewer/studies/{studies['current']}").text)
        key_images = config["keyImages"]
        assert isinstance(key_images, dict)
        assert re.fullmatch(r"/api/v1/studies/\d+/reports", key_images["reportsUrl"])
        assert len(key_images["instanceIds"]) == 2

    def test_open__reception_is_rejected(
        self, login_as, studies: dict[str, str]
    ) -> None:
        reception = login_as(Role.RECEPTION)
        response = reception.get(f"/viewer/studies/{studies['current']}")
        assert response.status_code == 403

    def test_open__unknown_study_is_404_naming_the_uid(self, login_as) -> None:
        vet = login_as(Role.VETERINARIAN)
        response = vet.get("/viewer/studies/1.2.3.4")
        assert response.status_code == 404
        body = response.json()
        assert "1.2.3.4" in body["detail"]
        assert body["errors"][0]["field"] == "StudyInstanceUID"

    def test_open__malformed_uid_is_422(self, login_as) -> None:
        vet = login_as(Role.VETERINARIAN)
        response = vet.get("/viewer/studies/1.2.abc")
        assert response.status_code == 422
        assert "is not a UID" in response.json()["detail"]

    def test_compare__study_of_another_horse_is_rejected(
        self, login_as, studies: dict[str, str], store, tmp_path, database
    ) -> None:
        other = _horse(database, "Whisper")
        foreign = _radiograph_study(
            store, tmp_path, other, date="20240101", body_part="HOOF"
        )
        vet = login_as(Role.VETERINARIAN)
        response = vet.get(f"/viewer/studies/{studies['current']}?compare={foreign}")
        assert response.status_code == 422
        assert response.json()["errors"][0] == {
            "field": "compare",
            "value": foreign,
            "message": response.json()["detail"],
        }

    def test_open__bad_render_mode_is_422(
        self, login_as, studies: dict[str, str]
    ) -> None:
        vet = login_as(Role.VETERINARIAN)
        response = vet.get(f"/viewer/studies/{studies['current']}?render=vulkan")
        assert response.status_code == 422
        assert "render='vulkan'" in response.json()["detail"]


class TestExternalViewers:
    def test_links__fill_templates_with_encoded_values(
        self, app, login_as, studies: dict[str, str]
    ) -> None:
        app.dependency_overrides[viewer_routes._viewer_settings] = lambda: (
            ViewerSettings(
                ohif_url_template=(
                    "https://ohif.example.org/viewer?StudyInstanceUIDs="
                    "{StudyInstanceUID}"
                )
            )
        )
        vet = login_as(Role.VETERINARIAN)
        body = vet.get(f"/api/v1/viewer/studies/{studies['current']}").json()
        links = {link["name"]: link["url"] for link in body["external_viewers"]}
        assert links["OHIF"] == (
            "https://ohif.example.org/viewer?StudyInstanceUIDs=" + studies["current"]
        )
        assert links["Weasis"] == (
            "weasis://?%24dicom%3Ars+--url+%22http%3A%2F%2F127.0.0.1%2Fdicomweb%22"
            f"+-r+%22studyUID%3D{studies['current']}%22"
        )

    @pytest.mark.parametrize(
        ("template", "message"),
        [
            ("ftp://viewer/{StudyInstanceUID}", "has the scheme 'ftp'"),
            ("https://viewer/{StudyUID}", "uses {StudyUID}"),
            ("https://viewer/{StudyInstanceUID", "is not a valid template"),
        ],
    )
    def test_settings__bad_template_names_variable_value_and_fix(
        self, template: str, message: str
    ) -> None:
        with pytest.raises(ValueError) as raised:
            ViewerSettings(ohif_url_template=template)
        text = str(raised.value)
        assert "FETLOCK_VIEWER_OHIF_URL_TEMPLATE" in text
        assert message in text
        assert template in text

    def test_settings__frame_accept_must_be_multipart(self) -> None:
        with pytest.raises(ValueError, match="is not a multipart/related"):
            ViewerSettings(frame_accept="image/jpeg")


class TestOfflineManifest:
    def test_manifest__lists_every_frame_thumbnail_and_size(
        self, login_as, studies: dict[str, str], blaze: Horse
    ) -> None:
        vet = login_as(Role.VETERINARIAN)
        current = vet.get(
            f"/api/v1/viewer/studies/{studies['current']}/offline-manifest"
        ).json()
        assert current["horse_id"] == blaze.id
        assert current["metadata"] == f"/dicomweb/studies/{studies['current']}/metadata"
        assert len(current["frames"]) == 2
        assert all(f.endswith("/frames/1") for f in current["frames"])
        assert len(current["thumbnails"]) == 2
        assert current["size_bytes"] > 2 * SMALL[0] * SMALL[1] * 2

        clip = vet.get(
            f"/api/v1/viewer/studies/{studies['ultrasound']}/offline-manifest"
        ).json()
        frame_numbers = [int(f.rsplit("/", 1)[1]) for f in clip["frames"]]
        assert len(frame_numbers) > 1
        assert frame_numbers == list(range(1, len(frame_numbers) + 1))

    def test_manifest__needs_login(self, client, studies: dict[str, str]) -> None:
        response = client.get(
            f"/api/v1/viewer/studies/{studies['current']}/offline-manifest"
        )
        assert response.status_code == 401


class TestServiceWorker:
    def test_sw__served_from_root_with_precache_list(self, client) -> None:
        if not (viewer_routes.VIEWER_BUILD_DIR / "sw.js").exists():
            pytest.skip("viewer not built: run `make install` with Node.js and npm")
        response = client.get("/sw.js")
        assert response.status_code == 200
        assert response.headers["service-worker-allowed"] == "/"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["content-type"].startswith("application/javascript")
        match = re.search(r"self.__FETLOCK_PRECACHE = (\[.*?\]);", response.text)
        assert match
        precache = json.loads(match.group(1))
        assert "/static/fetlock.js" in precache
        assert viewer_routes.viewer_assets()["script"] in precache
        assert any(url.endswith(".wasm") for url in precache)
        assert "/static/viewer/sw.js" not in precache

    def test_sw__missing_build_is_404(self, client, monkeypatch, tmp_path) -> None:
        monkeypatch.setattr(viewer_routes, "VIEWER_BUILD_DIR", tmp_path / "none")
        response = client.get("/sw.js")
        assert response.status_code == 404
        assert "not built" in response.text
