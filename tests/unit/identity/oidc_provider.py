"""A local OpenID Connect provider for the tests, shaped like Pro Santé Connect: authorization
code with PKCE (S256 only), client_secret_basic, RS256 ID tokens, `acr` echoed from
`acr_values`, and the RPPS number ("8" + RPPS in `SubjectNameID`) served by userinfo only.

It signs the "user" in without a screen: the test sets `provider.user` first. Knobs let a test
make it misbehave (wrong acr, wrong nonce, another signing key).
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "rempart-test"
CLIENT_SECRET = "test-secret-" + "x" * 20


@dataclass
class LocalProvider:
    issuer: str = ""
    redirect_uri: str = ""
    user: dict[str, Any] = field(default_factory=dict)
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, private=True))
    other_key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, private=True))
    acr_override: str | None = None
    nonce_override: str | None = None
    sign_with_other_key: bool = False
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen_requests: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()
        self.key_id = "k1"

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "acr_values_supported": ["eidas1"],
            }

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            return {"keys": [self.key.as_dict(private=False, kid=self.key_id)]}

        @app.get("/authorize")
        def authorize(request: Request) -> RedirectResponse:
            q = dict(request.query_params)
            self.seen_requests.append(q)
            if (
                q.get("client_id") != CLIENT_ID
                or q.get("redirect_uri") != self.redirect_uri
                or q.get("response_type") != "code"
                or q.get("code_challenge_method") != "S256"
                or not q.get("code_challenge")
            ):
                raise HTTPException(400, "bad authorization request")
            code = secrets.token_urlsafe(16)
            self.codes[code] = {
                "challenge": q["code_challenge"],
                "nonce": q.get("nonce"),
                "acr": q.get("acr_values"),
                "user": dict(self.user),
            }
            target = f"{self.redirect_uri}?{urlencode({'code': code, 'state': q['state']})}"
            return RedirectResponse(target, status_code=302)

        @app.post("/token")
        async def token(request: Request, authorization: str = Header("")) -> JSONResponse:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            grant_type = form.get("grant_type", "")
            code = form.get("code", "")
            code_verifier = form.get("code_verifier", "")
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if authorization != f"Basic {expected}":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            grant = self.codes.pop(code, None)
            if grant_type != "authorization_code" or grant is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            if create_s256_code_challenge(code_verifier) != grant["challenge"]:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            now = int(time.time())
            claims = {
                "iss": self.issuer,
                "aud": CLIENT_ID,
                "sub": grant["user"]["sub"],
                "iat": now,
                "exp": now + 300,
                "nonce": self.nonce_override or grant["nonce"],
                "acr": self.acr_override or grant["acr"],
            }
            key = self.other_key if self.sign_with_other_key else self.key
            id_token = jwt.encode({"alg": "RS256", "kid": self.key_id}, claims, key)
            access = secrets.token_urlsafe(16)
            self.tokens[access] = grant["user"]
            return JSONResponse(
                {"access_token": access, "token_type": "Bearer", "id_token": id_token}
            )

        @app.get("/userinfo")
        def userinfo(authorization: str = Header("")) -> dict[str, Any]:
            user = self.tokens.get(authorization.removeprefix("Bearer "))
            if user is None:
                raise HTTPException(401, "bad token")
            return user

        return app
