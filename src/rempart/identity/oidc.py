"""OpenID Connect sign-in (authorization code + PKCE), e.g. with Pro Santé Connect.

Federation replaces the password, not the second factor: a valid ID token for a known RPPS
number leads to the same MFA challenge as a password, so the role's factor policy holds for
federated users too. The flow's state, nonce and PKCE verifier live in the database (one use,
10 minutes), so any server process may receive the callback.

Checked on the way back: state (single use), the token endpoint's ID token signature against
the provider's JWKS, issuer, audience, expiry, nonce, the `acr` the request asked for, and, when
the RPPS claim comes from the userinfo endpoint, that its `sub` matches the ID token's.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import insert, select, update

from rempart.context import RequestContext
from rempart.errors import ResourceNotFound, ServiceUnavailable
from rempart.identity.core import Core
from rempart.identity.errors import LoginFailed
from rempart.identity.settings import OidcProvider
from rempart.identity.tables import account, oidc_flow
from rempart.identity.throttle import subject_of

SECOND = 1_000_000
FLOW_SECONDS = 10 * 60
METADATA_SECONDS = 3600
HTTP_TIMEOUT = 10.0
ALGORITHMS = ("RS256", "PS256", "ES256")


class FederationFailed(Exception):
    """Anything wrong on the way back from the provider; the client only learns "failed"."""


def _state_hash(state: str) -> bytes:
    return hashlib.sha256(b"rempart/oidc/" + state.encode()).digest()


class OidcLogin:
    def __init__(self, core: Core, begin_second_factor: Any) -> None:
        self._core = core
        self._begin = begin_second_factor  # IdentityService.begin_second_factor
        self._metadata: dict[str, tuple[float, dict[str, Any]]] = {}

    def _provider(self, name: str) -> OidcProvider:
        provider = self._core.config.provider(name)
        if provider is None:
            raise ResourceNotFound(f"no identity provider named {name!r} is configured")
        return provider

    def _client(self, provider: OidcProvider) -> OAuth2Client:
        return OAuth2Client(
            provider.client_id,
            provider.client_secret,
            scope=" ".join(provider.scopes),
            redirect_uri=provider.redirect_uri,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT,
        )

    def metadata(self, provider: OidcProvider) -> dict[str, Any]:
        try:
            return self._fetch_metadata(provider)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"the identity provider {provider.name!r} did not answer"
            ) from exc

    def _fetch_metadata(self, provider: OidcProvider) -> dict[str, Any]:
        cached = self._metadata.get(provider.name)
        if cached and time.monotonic() - cached[0] < METADATA_SECONDS:
            return cached[1]
        url = provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
        with self._client(provider) as client:
            response = client.request("GET", url, withhold_token=True)
            response.raise_for_status()
            meta: dict[str, Any] = response.json()
            if meta.get("issuer") != provider.issuer:
                raise FederationFailed("the discovery document names another issuer")
            jwks = client.request("GET", meta["jwks_uri"], withhold_token=True)
            jwks.raise_for_status()
            meta["_jwks"] = jwks.json()
        self._metadata[provider.name] = (time.monotonic(), meta)
        return meta

    def start(self, name: str) -> str:
        """The provider's authorization URL to redirect the browser to."""
        provider = self._provider(name)
        meta = self.metadata(provider)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = generate_token(64)
        extra = {"acr_values": provider.acr_values} if provider.acr_values else {}
        with self._client(provider) as client:
            url, _ = client.create_authorization_url(
                meta["authorization_endpoint"],
                state=state,
                nonce=nonce,
                code_verifier=verifier,
                **extra,
            )
        with self._core.engine.begin() as conn:
            conn.execute(
                insert(oidc_flow).values(
                    state_hash=_state_hash(state),
                    provider=name,
                    nonce=nonce,
                    code_verifier=verifier,
                    expires=self._core.clock() + FLOW_SECONDS * SECOND,
                    used=False,
                )
            )
        return str(url)

    def callback(self, name: str, code: str, state: str, ctx: RequestContext | None) -> Any:
        """Exchanges the code, checks the ID token, finds the account by RPPS number, and
        returns the second-factor challenge (a LoginChallenge), exactly as a password would."""
        provider = self._provider(name)
        ip = ctx.ip if ctx else "local"
        self._core.throttle.check_network(ip)
        try:
            nonce, verifier = self._take_flow(name, state)
            claims = self._exchange(provider, code, nonce, verifier)
            rpps = self._rpps(provider, claims)
        except (FederationFailed, AuthlibBaseError, JoseError, ValueError, KeyError) as exc:
            self._core.throttle.failed(ip, subject_of(f"oidc:{name}"))
            self._core.record("login", "failed", ctx, detail=f"oidc:{name}: {exc}"[:200])
            raise LoginFailed() from None
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"the identity provider {name!r} did not answer") from exc
        with self._core.engine.connect() as conn:
            account_id = conn.execute(select(account.c.id).where(account.c.rpps == rpps)).scalar()
        if account_id is None:
            self._core.throttle.failed(ip, subject_of(f"oidc:{name}"))
            self._core.record("login", "failed", ctx, detail=f"oidc:{name}: no account for RPPS")
            raise LoginFailed()
        return self._begin(account_id, f"oidc:{name}", ctx)

    def _take_flow(self, name: str, state: str) -> tuple[str, str]:
        with self._core.engine.begin() as conn:
            row = conn.execute(
                update(oidc_flow)
                .where(
                    oidc_flow.c.state_hash == _state_hash(state),
                    oidc_flow.c.provider == name,
                    ~oidc_flow.c.used,
                    oidc_flow.c.expires > self._core.clock(),
                )
                .values(used=True)
                .returning(oidc_flow.c.nonce, oidc_flow.c.code_verifier)
            ).first()
        if row is None:
            raise FederationFailed("unknown, expired or replayed state")
        return str(row.nonce), str(row.code_verifier)

    def _exchange(
        self, provider: OidcProvider, code: str, nonce: str, verifier: str
    ) -> dict[str, Any]:
        meta = self.metadata(provider)
        with self._client(provider) as client:
            token = client.fetch_token(
                meta["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                code_verifier=verifier,
            )
        keys = KeySet.import_key_set(meta["_jwks"])
        decoded = jwt.decode(token["id_token"], keys, algorithms=list(ALGORITHMS))
        registry = jwt.JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": provider.issuer},
            aud={"essential": True, "value": provider.client_id},
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        registry.validate(decoded.claims)
        claims: dict[str, Any] = dict(decoded.claims)
        accepted = provider.acr_accepted
        if accepted and claims.get("acr") not in accepted:
            raise FederationFailed(f"acr {claims.get('acr')!r} is not one this server accepts")
        if provider.rpps_claim not in claims and meta.get("userinfo_endpoint"):
            with self._client(provider) as client:
                client.token = token
                info = client.get(meta["userinfo_endpoint"])
                info.raise_for_status()
                userinfo: dict[str, Any] = info.json()
            if userinfo.get("sub") != claims["sub"]:
                raise FederationFailed("userinfo is about another subject")
            claims = {**userinfo, **claims}
        return claims

    @staticmethod
    def _rpps(provider: OidcProvider, claims: dict[str, Any]) -> str:
        value = str(claims[provider.rpps_claim])
        if provider.rpps_prefix and len(value) == 11 + len(provider.rpps_prefix):
            value = value.removeprefix(provider.rpps_prefix)
        if not (value.isdigit() and len(value) == 11):
            raise FederationFailed("the RPPS claim is not an 11-digit RPPS number")
        return value
