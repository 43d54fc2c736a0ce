"""How a normal user's refusals are counted: every refusal, and the episodes (a locked account
refused at each sign-in for days is one false containment episode, not one per sign-in)."""

from __future__ import annotations

import random

import httpx

from rempart import clock
from rempart.identity.settings import SessionLimits
from rempart.simulate.actor import Actor
from rempart.simulate.engine import Sim
from rempart.simulate.leaks import PatientIndex
from rempart.simulate.normal import Worker
from rempart.simulate.world import Credentials, World

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def _worker(server: dict[str, bool]) -> tuple[Sim, Worker]:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/login":
            if server["locked"]:
                return httpx.Response(423, json={"resourceType": "OperationOutcome"})
            return httpx.Response(200, json={"mfa_token": "m"})
        if request.url.path == "/auth/mfa":
            return httpx.Response(200, json={"access_token": "t"})
        if server["suspend"]:
            server["suspend"] = False
            return httpx.Response(401, json={"resourceType": "OperationOutcome"})
        return httpx.Response(200, json={"resourceType": "Bundle", "entry": []})

    world = World(patients=[], accounts=[], units=[], establishments=[])
    client = httpx.Client(transport=httpx.MockTransport(handle), base_url="http://sim")
    creds = Credentials("dr.x", "pw", SECRET, "clinician", None, None)
    actor = Actor("dr.x", creds, client, PatientIndex(world))
    sim = Sim(world, actor.index, None, "", None, random.Random(0), SessionLimits())  # type: ignore[arg-type]
    return sim, Worker(actor)


def test_a_lock_is_one_episode_however_many_sign_ins_it_refuses() -> None:
    server = {"locked": True, "suspend": False}
    sim, worker = _worker(server)
    for _ in range(5):
        assert worker.call(sim, "GET", "/fhir/Encounter") is None
    assert [cause for _, cause in worker.containments] == ["sign-in refused"] * 5
    assert worker.incidents == 1
    server["locked"] = False  # a security officer unlocked the account
    reply = worker.call(sim, "GET", "/fhir/Encounter")
    assert reply is not None
    assert reply.ok
    assert worker.incidents == 1


def test_each_suspension_after_normal_service_is_a_new_episode() -> None:
    server = {"locked": False, "suspend": False}
    sim, worker = _worker(server)
    with clock.SimulatedTime() as time:
        for _ in range(2):
            time.advance(120)  # a new TOTP step for each new sign-in
            server["suspend"] = True  # the session is revoked; the person signs in again
            reply = worker.call(sim, "GET", "/fhir/Encounter")
            assert reply is not None
            assert reply.ok
    assert [cause for _, cause in worker.containments] == ["HTTP 401", "HTTP 401"]
    assert worker.incidents == 2
