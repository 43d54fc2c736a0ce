"""Identity settings: Argon2id cost, session lifetimes, factor policy per role, throttle limits,
WebAuthn relying party and OpenID Connect providers. Read from `[identity]` in config.toml.

Every value has a safe default and every parser refuses a value that would weaken a control
below its floor (Argon2 under OWASP's parameters, TOTP for administrators in production...):
a configuration can make rempart stricter, never quietly weaker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rempart.access.roles import Role

Factor = Literal["webauthn", "totp", "recovery"]
FACTORS: tuple[Factor, ...] = ("webauthn", "totp", "recovery")
PRIVILEGED = frozenset({Role.ADMIN, Role.SECURITY_OFFICER})

# OWASP Password Storage Cheat Sheet: Argon2id with at least m=19 MiB, t=2, p=1.
OWASP_MEMORY_KIB = 19 * 1024
OWASP_TIME_COST = 2
OWASP_PARALLELISM = 1


@dataclass(frozen=True)
class Argon2Params:
    # argon2-cffi's default, RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes.
    memory_kib: int = 64 * 1024
    time_cost: int = 3
    parallelism: int = 4

    def __post_init__(self) -> None:
        if (
            self.memory_kib < OWASP_MEMORY_KIB
            or self.time_cost < OWASP_TIME_COST
            or self.parallelism < OWASP_PARALLELISM
        ):
            raise ValueError(
                "identity.argon2 is below OWASP's floor (memory_kib >= 19456, time_cost >= 2, "
                f"parallelism >= 1): got {self}"
            )


@dataclass(frozen=True)
class ThrottleLimits:
    """Moving-window limits on sign-in attempts, shared by every process through the database.

    Sized for a hospital where thousands of staff leave through one NAT address at shift
    change: a few hundred sign-ins and tens of typos per quarter hour are normal there, while a
    credential-stuffing run makes thousands of failures.
    """

    window_seconds: int = 15 * 60
    ip_failures: int = 100
    network_failures: int = 300  # per /24 (IPv4) or /64 (IPv6)
    ip_attempts: int = 1_500
    network_attempts: int = 5_000
    account_delay_after: int = 10  # consecutive failures before the increasing delay starts
    account_lock_after: int = 100  # NIST SP 800-63B's ceiling; a security officer unlocks
    max_delay_seconds: int = 15 * 60

    def __post_init__(self) -> None:
        values = (
            self.window_seconds,
            self.ip_failures,
            self.network_failures,
            self.ip_attempts,
            self.network_attempts,
            self.account_delay_after,
            self.max_delay_seconds,
        )
        if min(values) < 1:
            raise ValueError("identity.throttle limits are positive: a limit cannot be disabled")
        if not self.account_delay_after < self.account_lock_after <= 100:
            raise ValueError("identity.throttle: account_delay_after < account_lock_after <= 100")


@dataclass(frozen=True)
class SessionLimits:
    """Idle timeout and absolute lifetime, in seconds, per role (issue #3 defaults)."""

    idle: Mapping[Role, int] = field(
        default_factory=lambda: {r: (15 * 60 if r in PRIVILEGED else 30 * 60) for r in Role}
    )
    absolute: Mapping[Role, int] = field(default_factory=lambda: dict.fromkeys(Role, 12 * 3600))
    # A second factor younger than this counts as fresh for step-up (factor changes here;
    # the access-policy issue picks its own window for its sensitive actions).
    step_up_seconds: int = 5 * 60
    challenge_seconds: int = 5 * 60  # between the password and the second factor


@dataclass(frozen=True)
class WebAuthnSettings:
    rp_id: str = "localhost"
    rp_name: str = "rempart"
    origins: tuple[str, ...] = ("http://localhost:8000", "http://127.0.0.1:8000")


@dataclass(frozen=True)
class OidcProvider:
    """One OpenID Connect identity provider, e.g. Pro Santé Connect.

    Federation replaces the password only: the account's second factor is still asked for, so a
    federated login satisfies the same role policy as a local one.
    """

    name: str
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scopes: tuple[str, ...] = ("openid",)
    acr_values: str | None = None  # sent in the request; Pro Santé Connect uses "eidas1"
    accepted_acr: tuple[str, ...] = ()  # acr claims accepted back; empty = acr_values only
    rpps_claim: str = "SubjectNameID"  # PSC: "8" + RPPS, the national professional id
    rpps_prefix: str = "8"

    def __post_init__(self) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(self.issuer)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError(f"identity.oidc.{self.name}: the issuer must be an https:// URL")
        if not (self.client_id and self.client_secret and self.redirect_uri):
            raise ValueError(f"identity.oidc.{self.name}: client_id, secret, redirect_uri needed")

    @property
    def acr_accepted(self) -> frozenset[str]:
        if self.accepted_acr:
            return frozenset(self.accepted_acr)
        return frozenset((self.acr_values or "").split())


def default_factors(role: Role, profile: str) -> frozenset[Factor]:
    """Administrators and security officers: WebAuthn only (phishing-resistant), except in the
    demo profile where TOTP and recovery codes are allowed so demos and tests can be scripted."""
    if role in PRIVILEGED and profile != "demo":
        return frozenset({"webauthn"})
    return frozenset(FACTORS)


@dataclass(frozen=True)
class IdentityConfig:
    argon2: Argon2Params = field(default_factory=Argon2Params)
    throttle: ThrottleLimits = field(default_factory=ThrottleLimits)
    sessions: SessionLimits = field(default_factory=SessionLimits)
    webauthn: WebAuthnSettings = field(default_factory=WebAuthnSettings)
    oidc: tuple[OidcProvider, ...] = ()
    # Per-role overrides of `default_factors`; checked against the profile in `factors_for`.
    factors: Mapping[Role, frozenset[Factor]] = field(default_factory=dict)

    def factors_for(self, role: Role, profile: str) -> frozenset[Factor]:
        chosen = self.factors.get(role, default_factors(role, profile))
        if role in PRIVILEGED and profile != "demo" and chosen != {"webauthn"}:
            raise ValueError(
                f"identity.factors.{role.value}: in the production profile administrators and "
                "security officers use WebAuthn only"
            )
        return chosen

    def provider(self, name: str) -> OidcProvider | None:
        return next((p for p in self.oidc if p.name == name), None)


def _ints(section: Mapping[str, Any], cls: type[Any]) -> dict[str, int]:
    known = set(cls.__dataclass_fields__)
    unknown = set(section) - known
    if unknown:
        raise ValueError(f"unknown identity settings: {sorted(unknown)}")
    return {k: int(v) for k, v in section.items()}


def _per_role(section: Mapping[str, Any]) -> dict[Role, int]:
    return {Role(k): int(v) for k, v in section.items()}


def parse_identity(data: Mapping[str, Any]) -> IdentityConfig:
    """`[identity]` from config.toml; raises ValueError with the offending key."""
    argon2 = Argon2Params(**_ints(data.get("argon2", {}), Argon2Params))
    throttle = ThrottleLimits(**_ints(data.get("throttle", {}), ThrottleLimits))
    sess = data.get("sessions", {})
    base = SessionLimits()
    sessions = SessionLimits(
        idle={**base.idle, **_per_role(sess.get("idle", {}))},
        absolute={**base.absolute, **_per_role(sess.get("absolute", {}))},
        step_up_seconds=int(sess.get("step_up_seconds", base.step_up_seconds)),
        challenge_seconds=int(sess.get("challenge_seconds", base.challenge_seconds)),
    )
    wa = data.get("webauthn", {})
    webauthn = WebAuthnSettings(
        rp_id=str(wa.get("rp_id", WebAuthnSettings.rp_id)),
        rp_name=str(wa.get("rp_name", WebAuthnSettings.rp_name)),
        origins=tuple(str(o) for o in wa.get("origins", WebAuthnSettings().origins)),
    )
    providers = []
    for name, conf in dict(data.get("oidc", {})).items():
        # The secret may stay out of the file: REMPART_OIDC_<NAME>_SECRET wins.
        secret = os.environ.get(f"REMPART_OIDC_{name.upper()}_SECRET", conf.get("client_secret"))
        providers.append(
            OidcProvider(
                name=name,
                issuer=str(conf["issuer"]),
                client_id=str(conf["client_id"]),
                client_secret=str(secret or ""),
                redirect_uri=str(conf["redirect_uri"]),
                scopes=tuple(conf.get("scopes", ("openid",))),
                acr_values=conf.get("acr_values"),
                accepted_acr=tuple(conf.get("accepted_acr", ())),
                rpps_claim=str(conf.get("rpps_claim", "SubjectNameID")),
                rpps_prefix=str(conf.get("rpps_prefix", "8")),
            )
        )
    factors: dict[Role, frozenset[Factor]] = {}
    for role, allowed in dict(data.get("factors", {})).items():
        chosen = frozenset(f for f in FACTORS if f in allowed)
        if not chosen or len(chosen) != len(set(allowed)):
            raise ValueError(f"identity.factors.{role}: choose among {FACTORS}, at least one")
        factors[Role(role)] = chosen
    return IdentityConfig(argon2, throttle, sessions, webauthn, tuple(providers), factors)
