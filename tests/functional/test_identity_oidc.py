"""OpenID Connect sign-in against a local provider shaped like Pro Santé Connect (served over
real HTTP by uvicorn): authorization code + PKCE, acr_values, the RPPS claim mapped to a
practitioner account, and the role's second factor still required."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from rempart.access.roles import Role
from rempart.identity.settings import OidcProvider
from tests.live_server import serve
from tests.unit.identity.harness import Stack, User, bearer, build_stack
from tests.unit.identity.oidc_provider import CLIENT_ID, CLIENT_SECRET, LocalProvider

CALLBACK = "http://127.0.0.1/auth/oidc/psc/callback"
RPPS = "10101234567"


@pytest.fixture
def idp() -> Iterator[LocalProvider]:
    provider = LocalProvider(redirect_uri=CALLBACK)
    with serve(provider.app()) as base:
        provider.issuer = base
        yield provider


@pytest.fixture
def stack(database_url: str, tmp_path: Path, idp: LocalProvider) -> Iterator[Stack]:
    config = OidcProvider(
        name="psc",
        issuer=idp.issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=CALLBACK,
        scopes=("openid", "scope_all"),
        acr_values="eidas1",
    )
    yield from build_stack(database_url, tmp_path, oidc=(config,))


def _federated(stack: Stack, idp: LocalProvider, sub: str = "psc-user-1", rpps: str = RPPS) -> Any:
    idp.user = {"sub": sub, "SubjectNameID": f"8{rpps}", "given_name": "Inès"}
    start = stack.client().get("/auth/oidc/psc/start", follow_redirects=False)
    assert start.status_code == 302, start.text
    at_idp = httpx.get(start.headers["location"], follow_redirects=False, timeout=10)
    assert at_idp.status_code == 302, at_idp.text
    back = urlsplit(at_idp.headers["location"])
    return stack.client().get(f"{back.path}?{back.query}")


def _doctor(stack: Stack) -> User:
    return stack.user(Role.CLINICIAN, rpps=RPPS, practitioner="Practitioner/psc-doctor")


def test_federated_login_then_the_second_factor(stack: Stack, idp: LocalProvider) -> None:
    doctor = _doctor(stack)
    response = _federated(stack, idp)
    assert response.status_code == 200, response.text
    challenge = response.json()
    assert challenge["mfa_required"] is True
    assert "totp" in challenge["methods"]
    # What the provider saw: PKCE S256, a nonce, and the acr the hospital asked for.
    request = idp.seen_requests[-1]
    assert request["code_challenge_method"] == "S256"
    assert len(request["code_challenge"]) == 43
    assert request["acr_values"] == "eidas1"
    assert request["nonce"]
    # The challenge token alone is not a session.
    assert (
        stack.client().get("/fhir/Organization", headers=bearer(challenge["mfa_token"])).status_code
        == 401
    )
    session = stack.client().post(
        "/auth/mfa", json={"mfa_token": challenge["mfa_token"], "code": doctor.code()}
    )
    assert session.status_code == 200
    principal = stack.identity.authenticate(session.json()["access_token"])
    assert principal.account_id == doctor.account_id
    assert principal.practitioner == "Practitioner/psc-doctor"


def test_replayed_state_wrong_acr_nonce_key_or_unknown_rpps_fail(
    stack: Stack, idp: LocalProvider
) -> None:
    _doctor(stack)
    first = stack.client().get("/auth/oidc/psc/start", follow_redirects=False)
    idp.user = {"sub": "psc-user-1", "SubjectNameID": f"8{RPPS}"}
    at_idp = httpx.get(first.headers["location"], follow_redirects=False, timeout=10)
    back = urlsplit(at_idp.headers["location"])
    assert stack.client().get(f"{back.path}?{back.query}").status_code == 200
    # The same callback again: the state is single use.
    assert stack.client().get(f"{back.path}?{back.query}").status_code == 401
    # A forged state.
    code = parse_qs(back.query)["code"][0]
    forged = stack.client().get(f"{back.path}?code={code}&state=made-up")
    assert forged.status_code == 401
    bodies = {forged.text}
    for knob, value in (
        ("acr_override", "eidas0"),
        ("nonce_override", "someone-elses-nonce"),
        ("sign_with_other_key", True),
    ):
        setattr(idp, knob, value)
        response = _federated(stack, idp)
        assert response.status_code == 401, knob
        bodies.add(response.text)
        setattr(idp, knob, None if knob != "sign_with_other_key" else False)
    stranger = _federated(stack, idp, sub="psc-user-2")
    unknown = _federated(stack, idp, sub="psc-user-3", rpps="99999999999")
    assert stranger.status_code == 200  # same RPPS, other subject: the RPPS number decides
    bodies.add(unknown.text)
    assert unknown.status_code == 401
    assert len(bodies) == 1, "every refusal is the same answer"


def test_a_federated_admin_in_production_still_needs_a_security_key(
    stack: Stack, idp: LocalProvider
) -> None:
    admin = stack.user(Role.ADMIN, rpps=RPPS)
    response = _federated(stack, idp)
    assert response.status_code == 200
    challenge = response.json()
    assert challenge["methods"] == []  # no key yet: TOTP is not enough for an administrator
    refused = stack.client().post(
        "/auth/mfa", json={"mfa_token": challenge["mfa_token"], "code": admin.code()}
    )
    assert refused.status_code == 401
