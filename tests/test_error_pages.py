"""Browsers get an HTML error page; API callers get JSON naming the problem."""

from fastapi.testclient import TestClient

from fetlock.auth.models import Role


def test_missing_horse_page_is_html_404(login_as) -> None:  # type: ignore[no-untyped-def]
    vet = login_as(Role.VETERINARIAN)
    response = vet.get("/horses/987654", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "987654" in response.text


def test_missing_horse_api_is_json_404(login_as) -> None:  # type: ignore[no-untyped-def]
    vet = login_as(Role.VETERINARIAN)
    response = vet.get("/api/v1/horses/987654", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert "987654" in response.json()["detail"]


def test_anonymous_page_redirects_to_login(client: TestClient) -> None:
    response = client.get("/horses/1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/horses/1"


def test_id_beyond_integer_range_is_422(login_as) -> None:  # type: ignore[no-untyped-def]
    vet = login_as(Role.VETERINARIAN)
    response = vet.get("/api/v1/horses/99999999999999999999")
    assert response.status_code == 422
    assert "out of range" in response.json()["detail"]


def test_nul_character_in_search_is_not_500(login_as) -> None:  # type: ignore[no-untyped-def]
    vet = login_as(Role.VETERINARIAN)
    response = vet.get("/api/v1/horses", params={"q": "a\x00b"})
    assert response.status_code in (200, 422)


def test_huge_value_is_not_echoed_whole(login_as) -> None:  # type: ignore[no-untyped-def]
    vet = login_as(Role.VETERINARIAN)
    huge = "X" * 20_000

    response = vet.get("/api/v1/reports/search", params={"limb": huge})

    assert response.status_code == 422
    assert len(response.content) < 5_000
    (error,) = response.json()["errors"]
    assert error["field"] == "limb"
    assert error["value"].endswith("… (20000 characters)")
    assert error["message"].startswith("limb 'XXX")
    assert "use one of" in error["message"], "the advice at the end is kept"


def test_huge_value_in_validation_error_is_cut(login_as) -> None:  # type: ignore[no-untyped-def]
    vet = login_as(Role.VETERINARIAN)

    response = vet.get("/api/v1/horses/" + "9" * 50_000)

    assert response.status_code == 422
    assert len(response.content) < 5_000


def test_form_sent_without_session_returns_to_its_page(client: TestClient) -> None:
    response = client.post(
        "/visits/1/notes",
        data={"subjective": "quiet"},
        headers={"Accept": "text/html", "Referer": "http://127.0.0.1/horses/3?tab=2"},
        follow_redirects=False,
    )

    assert response.status_code == 303
    assert response.headers["location"] == (
        "/login?expired=1&next=/horses/3%3Ftab%3D2%26restore-form%3D1"
    )
    login = client.get(response.headers["location"])
    assert 'value="/horses/3?tab=2&amp;restore-form=1"' in login.text
    assert "Your session ended" in login.text


def test_form_from_another_site_returns_home(client: TestClient) -> None:
    response = client.post(
        "/visits/1/notes",
        headers={"Accept": "text/html", "Referer": "https://elsewhere.example/x"},
        follow_redirects=False,
    )

    assert response.headers["location"] == (
        "/login?expired=1&next=/%3Frestore-form%3D1"
    )


def test_thousands_of_bad_rows_get_a_short_answer(login_as) -> None:  # type: ignore[no-untyped-def]
    vet = login_as(Role.VETERINARIAN)
    rows = [{"client_id": "x" * 50, "share": "y"} for _ in range(2_000)]

    response = vet.put(
        "/api/v1/horses/1/ownership",
        json={"effective_from": "2026-01-01", "owners": rows},
    )

    assert response.status_code == 422
    assert len(response.content) < 20_000
    body = response.json()
    assert len(body["errors"]) == 20
    assert body["detail"].endswith("more errors")


def test_long_text_inside_a_short_list_is_cut(login_as) -> None:  # type: ignore[no-untyped-def]
    vet = login_as(Role.VETERINARIAN)

    response = vet.put(
        "/api/v1/horses/1/ownership",
        json={"effective_from": "2026-01-01", "owners": ["x" * 5_000]},
    )

    assert response.status_code == 422
    assert len(response.content) < 5_000


def test_long_field_names_and_nested_lists_are_cut(login_as) -> None:  # type: ignore[no-untyped-def]
    vet = login_as(Role.VETERINARIAN)
    owners = [
        {"client_id": 1, "share": 1, "k" * 20_000: 1},
        [["x" * 100] * 50] * 50,
    ]

    response = vet.put(
        "/api/v1/horses/1/ownership",
        json={"effective_from": "2026-01-01", "owners": owners},
    )

    assert response.status_code == 422
    assert len(response.content) < 10_000


def test_favicon_is_an_svg_not_404(client: TestClient) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.text.startswith("<svg")

    login_page = client.get("/login")
    assert '<link rel="icon" href="/static/favicon.svg"' in login_page.text
