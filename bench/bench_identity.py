"""Identity hot paths: `authenticate` (every protected request), a throttled sign-in (429),
and the password step at the default Argon2id cost. Prints one line per figure.

Run: .venv/bin/python bench/bench_identity.py [DATABASE_URL]
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pyotp

from rempart.access.roles import Role
from rempart.bootstrap import initialise
from rempart.config import load_settings
from rempart.context import RequestContext
from rempart.identity.errors import LoginFailed, Throttled
from rempart.identity.settings import IdentityConfig
from rempart.wiring import open_services


def main(url: str | None) -> None:
    tmp = Path(tempfile.mkdtemp())
    url = url or f"sqlite:///{tmp / 'bench.sqlite3'}"
    initialise(load_settings(tmp / "home", url))
    settings = replace(load_settings(tmp / "home", url), identity=IdentityConfig())
    services = open_services(settings, pool_size=4)
    identity = services.identity
    secret = pyotp.random_base32()
    identity.create_account(
        username="bench.user",
        password="the orange lighthouse hums quietly",
        role=Role.CLINICIAN,
        display_name="Bench USER",
        totp_secret=secret,
    )
    ctx = RequestContext(ip="10.0.0.1", user_agent="bench")
    start = time.perf_counter()
    challenge = identity.login("bench.user", "the orange lighthouse hums quietly", ctx)
    login_ms = (time.perf_counter() - start) * 1000
    session = identity.verify_mfa(challenge.mfa_token, pyotp.TOTP(secret).now(), ctx=ctx)
    n = 5_000
    start = time.perf_counter()
    for _ in range(n):
        identity.authenticate(session.access_token)
    auth_us = (time.perf_counter() - start) / n * 1e6
    bad = RequestContext(ip="192.0.2.1", user_agent="bench")
    for i in range(settings.identity.throttle.ip_failures):
        with contextlib.suppress(LoginFailed):
            identity.login(f"ghost{i}", "wrong password wrong", bad)
    refused = 1_000
    start = time.perf_counter()
    for i in range(refused):
        with contextlib.suppress(Throttled):
            identity.login(f"ghost{i}", "wrong password wrong", bad)
    throttled_us = (time.perf_counter() - start) / refused * 1e6
    services.close()
    backend = url.split(":")[0]
    print(f"{backend}: authenticate {auth_us:.0f} us/call ({n} calls)")
    print(f"{backend}: throttled sign-in (429) {throttled_us:.0f} us/call ({refused} calls)")
    print(f"{backend}: password step at m=64 MiB, t=3, p=4: {login_ms:.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
