"""One simulated person at a keyboard: a real HTTP client with its own source address.

Each actor talks to the server over TCP with httpx, from its own loopback address (127.x.y.z),
so the server's per-address and per-network sign-in throttling sees a hospital LAN, patients at
home and attackers elsewhere, as it would in production. An actor holds what its person holds:
a password and a TOTP secret (staff at work, an attacker with an infostealer's haul), a security
key (the clinicians: `softkey.py`, issued at the start of a run; never the attackers), or only
a bearer token (a session hijacked by real-time phishing). Every exchange is logged with the
simulated time, and every response is scanned for patient data (`leaks.py`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pyotp

from rempart import clock
from rempart.simulate.leaks import Ledger, PatientIndex
from rempart.simulate.softkey import SoftKey
from rempart.simulate.world import Credentials

REFUSED = frozenset({401, 403, 423, 429})
TOTP_STEP = 30


@dataclass(frozen=True)
class Reply:
    status: int
    doc: Any
    text: str
    step_up: bool  # the server asks for a fresh second factor

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Exchange:
    at: int  # simulated microseconds
    method: str
    path: str
    status: int
    canary: bool  # a request this actor is entitled to: its refusal means "cut off"
    step_up: bool
    wall: float = 0.0  # real seconds the exchange took (to find where a run spends its time)


def _step_up_demanded(status: int, text: str, headers: httpx.Headers) -> bool:
    if status not in (401, 403):
        return False
    lowered = text[:2000].lower()
    challenge = headers.get("www-authenticate", "").lower()
    return (
        "step-up" in lowered
        or "step_up" in lowered
        or "insufficient_user_authentication" in challenge
    )


@dataclass
class Actor:
    name: str
    creds: Credentials
    client: httpx.Client
    index: PatientIndex
    holds_password: bool = True
    holds_totp: bool = True
    key: SoftKey | None = None  # the account's security key, if it has one
    holds_key: bool = True  # whether this actor has it in hand (an attacker does not)
    token: str | None = None
    # Each person's own random stream: one actor's choices do not shift another's.
    rng: random.Random = field(default_factory=random.Random)
    log: list[Exchange] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)
    logins: int = 0
    step_ups: int = 0
    _last_step: int = -1
    _last_request: int = 0
    _session_started: int = 0

    @property
    def requests(self) -> int:
        return len(self.log)

    # ---- plain exchanges -------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        canary: bool = False,
        auth: bool = True,
        content_type: str = "application/json",
    ) -> Reply:
        headers = {"User-Agent": f"rempart-simulator ({self.creds.role})"}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        content = None
        if body is not None:
            content = orjson.dumps(body)
            headers["Content-Type"] = content_type
        at = clock.now_micros()
        began = time.perf_counter()
        response = self.client.request(
            method, path, params=params, content=content, headers=headers
        )
        text = response.text
        doc: Any = None
        if text and text[:1] in "{[":
            try:
                doc = orjson.loads(text)
            except orjson.JSONDecodeError:
                doc = None
        step_up = _step_up_demanded(response.status_code, text, response.headers)
        wall = time.perf_counter() - began
        self.log.append(Exchange(at, method, path, response.status_code, canary, step_up, wall))
        self._last_request = at
        if 200 <= response.status_code < 300 and text:
            self.ledger.add(self.index.in_response(text, doc), at)
        return Reply(response.status_code, doc, text, step_up)

    # ---- factors ---------------------------------------------------------------------------

    def _totp_code(self) -> str | None:
        """The code of the current step, or of the next one if this step's code was used; the
        server accepts one step of drift either way and each step once."""
        current = int(clock.now_seconds() // TOTP_STEP)
        step = max(current, self._last_step + 1)
        if step > current + 1:
            return None
        self._last_step = step
        return str(pyotp.TOTP(self.creds.totp_secret, interval=TOTP_STEP).at(step * TOTP_STEP))

    def holds_totp_step(self, other: Actor) -> None:
        """`other` (the same person, elsewhere) used a TOTP code: each is accepted once."""
        self._last_step = max(self._last_step, other._last_step)

    def _key_in_hand(self) -> SoftKey | None:
        return self.key if self.holds_key else None

    def login(self) -> bool:
        """Password, then the security key if in hand, else TOTP; False if the server refuses
        either (or no code is usable yet)."""
        if not self.holds_password:
            return False
        self.token = None
        first = self.call(
            "POST",
            "/auth/login",
            body={"username": self.creds.username, "password": self.creds.password},
            auth=False,
        )
        if not first.ok or not isinstance(first.doc, dict):
            return False
        key, options = self._key_in_hand(), first.doc.get("webauthn")
        body: dict[str, Any] = {"mfa_token": first.doc.get("mfa_token", "")}
        if key is not None and options:
            body["webauthn"] = key.assertion(options)
        else:
            code = self._totp_code() if self.holds_totp else None
            if code is None:
                return False
            body["code"] = code
        second = self.call("POST", "/auth/mfa", body=body, auth=False)
        if not second.ok or not isinstance(second.doc, dict):
            return False
        self.token = str(second.doc["access_token"])
        self.logins += 1
        self._session_started = clock.now_micros()
        return True

    def step_up(self) -> bool:
        """The security key if in hand and the server offers it, else a TOTP code."""
        if self.token is None:
            return False
        key = self._key_in_hand()
        if key is not None:
            offered = self.call("POST", "/auth/step-up/options")
            options = offered.doc.get("webauthn") if isinstance(offered.doc, dict) else None
            if options:
                body = {"webauthn": key.assertion(options)}
                reply = self.call("POST", "/auth/step-up", body=body)
                if reply.ok:
                    self.step_ups += 1
                return reply.ok
        if not self.holds_totp:
            return False
        code = self._totp_code()
        if code is None:
            return False
        reply = self.call("POST", "/auth/step-up", body={"code": code})
        if reply.ok:
            self.step_ups += 1
        return reply.ok

    def enrol_key(self) -> SoftKey | None:
        """Signs in with the TOTP code, registers a new security key, signs out: the key, or
        None if the server refused (the IT desk issuing badges before the run)."""
        if not self.login():
            return None
        options = self.call("POST", "/auth/factors/webauthn/options")
        key = SoftKey()
        done = (
            self.call(
                "POST",
                "/auth/factors/webauthn",
                body={"credential": key.register(options.doc), "label": "badge"},
            )
            if options.ok and isinstance(options.doc, dict)
            else options
        )
        self.logout()
        return key if done.ok else None

    def logout(self) -> None:
        if self.token is not None:
            self.call("POST", "/auth/logout")
            self.token = None

    def session_stale(self, idle_seconds: int, absolute_seconds: int) -> bool:
        """Would the session have timed out by now (the person's app would show the login)?"""
        if self.token is None:
            return True
        now = clock.now_micros()
        margin = 60 * clock.SECOND
        return (
            now - self._last_request > idle_seconds * clock.SECOND - margin
            or now - self._session_started > absolute_seconds * clock.SECOND - margin
        )

    # ---- being cut off ---------------------------------------------------------------------

    def recover(self, reply: Reply) -> bool:
        """What the person does when refused: pass the factor again if asked and able, sign in
        again if the session is gone and they hold the password. True if it worked."""
        if reply.step_up:
            return self.step_up()
        if reply.status == 401:
            return self.login()
        return False

    def probe(self, canary: Callable[[Actor], Reply]) -> bool:
        """Is the server still serving this actor? A request it is entitled to, after trying to
        recover once. False means contained."""
        reply = canary(self)
        if reply.ok:
            return True
        if reply.status in REFUSED and self.recover(reply):
            return canary(self).ok
        return False
