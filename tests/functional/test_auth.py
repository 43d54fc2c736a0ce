"""The minimum login: password then TOTP, bearer tokens, single-use codes, logout."""

from __future__ import annotations

import statistics
import time

from tests.functional.conftest import Hospital, login, totp_code


def test_login_needs_a_second_factor_then_gives_a_bearer_token(hospital: Hospital) -> None:
    account = hospital.account("clinician", 1)
    token = login(hospital.client, account)
    response = hospital.client.get(
        "/fhir/Patient", params={"_count": 1}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.json()["resourceType"] == "Bundle"


def test_password_alone_opens_nothing(hospital: Hospital) -> None:
    account = hospital.account("admin", 1)
    challenge = hospital.client.post(
        "/auth/login", json={"username": account["username"], "password": account["password"]}
    ).json()
    # The challenge token is not a session.
    response = hospital.client.get(
        "/fhir/Practitioner", headers={"Authorization": f"Bearer {challenge['mfa_token']}"}
    )
    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unknown_user_and_wrong_password_look_the_same(hospital: Hospital) -> None:
    known = hospital.account("secretary", 1)["username"]
    durations: dict[str, list[float]] = {"known": [], "unknown": []}
    bodies = set()
    for _ in range(5):
        for label, username in (("known", known), ("unknown", "nobody.here")):
            start = time.perf_counter()
            response = hospital.client.post(
                "/auth/login", json={"username": username, "password": "wrong password 123456"}
            )
            durations[label].append(time.perf_counter() - start)
            assert response.status_code == 401
            bodies.add(response.text)
    assert len(bodies) == 1, "the answer must not say which part was wrong"
    # Both paths run Argon2: neither is a fast reject.
    ratio = statistics.median(durations["unknown"]) / statistics.median(durations["known"])
    assert 0.5 < ratio < 2.0, durations


def test_a_totp_code_is_accepted_once(hospital: Hospital) -> None:
    account = hospital.account("patient", 4)
    client = hospital.client
    creds = {"username": account["username"], "password": account["password"]}
    code = totp_code(account["totp_secret"])
    first = client.post("/auth/login", json=creds).json()["mfa_token"]
    assert client.post("/auth/mfa", json={"mfa_token": first, "code": code}).status_code == 200
    second = client.post("/auth/login", json=creds).json()["mfa_token"]
    replay = client.post("/auth/mfa", json={"mfa_token": second, "code": code})
    assert replay.status_code == 401


def test_wrong_codes_burn_the_challenge(hospital: Hospital) -> None:
    account = hospital.account("patient", 3)
    client = hospital.client
    creds = {"username": account["username"], "password": account["password"]}
    challenge = client.post("/auth/login", json=creds).json()["mfa_token"]
    for _ in range(5):
        assert (
            client.post("/auth/mfa", json={"mfa_token": challenge, "code": "000000"}).status_code
            == 401
        )
    good = totp_code(account["totp_secret"])
    assert client.post("/auth/mfa", json={"mfa_token": challenge, "code": good}).status_code == 401


def test_fhir_requires_a_bearer_token(hospital: Hospital) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer not-a-token"}):
        response = hospital.client.get("/fhir/Patient", headers=headers)
        assert response.status_code == 401
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_logout_revokes_the_token(hospital: Hospital) -> None:
    account = hospital.account("clinician", 2)
    token = login(hospital.client, account)
    headers = {"Authorization": f"Bearer {token}"}
    assert hospital.client.get("/fhir/Organization", headers=headers).status_code == 200
    assert hospital.client.post("/auth/logout", headers=headers).status_code == 200
    assert hospital.client.get("/fhir/Organization", headers=headers).status_code == 401


def test_malformed_login_bodies_get_a_clean_400(hospital: Hospital) -> None:
    client = hospital.client
    cases = [
        client.post(
            "/auth/login", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
        client.post("/auth/login", json={"username": "x"}),
        client.post("/auth/login", json={"username": "x" * 500, "password": "y"}),
        client.post("/auth/login", json={"username": "x", "password": "y", "admin": True}),
        client.post("/auth/mfa", json={"mfa_token": "x", "code": "1" * 40}),
    ]
    for response in cases:
        assert response.status_code == 400, response.text
        assert response.json()["resourceType"] == "OperationOutcome"


def test_the_demo_profile_says_so_on_every_admin_response(hospital: Hospital) -> None:
    response = hospital.client.get("/fhir/Organization", headers=hospital.headers("admin"))
    assert response.status_code == 200
    assert "demo profile" in response.headers["rempart-demo-mode"]
    assert "TOTP" in response.headers["rempart-demo-mode"]
