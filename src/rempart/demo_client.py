"""A tiny HTTP client for the demo: logs in through the public API like any user would."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pyotp


def _post(url: str, body: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own server
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        parsed: dict[str, Any] = json.loads(response.read())
        return parsed


def login_with_credentials(base_url: str, credentials: Path, username: str) -> str:
    accounts = json.loads(credentials.read_text(encoding="utf-8"))["accounts"]
    account = next((a for a in accounts if a["username"] == username), None)
    if account is None:
        raise KeyError(f"{username} is not in {credentials}")
    challenge = _post(
        f"{base_url}/auth/login", {"username": username, "password": account["password"]}
    )
    code = pyotp.TOTP(account["totp_secret"]).now()
    session = _post(f"{base_url}/auth/mfa", {"mfa_token": challenge["mfa_token"], "code": code})
    return str(session["access_token"])
