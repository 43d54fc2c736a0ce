"""Identity settings can make rempart stricter, never weaker."""

from __future__ import annotations

from pathlib import Path

import pytest

from rempart.access.roles import Role
from rempart.config import load_settings
from rempart.identity.settings import (
    Argon2Params,
    IdentityConfig,
    ThrottleLimits,
    default_factors,
    parse_identity,
)


def test_argon2_below_owasp_is_refused() -> None:
    Argon2Params(memory_kib=19 * 1024, time_cost=2, parallelism=1)
    for weak in (
        {"memory_kib": 16 * 1024},
        {"time_cost": 1},
        {"parallelism": 0},
    ):
        with pytest.raises(ValueError, match="OWASP"):
            Argon2Params(**weak)


def test_the_default_cost_is_above_owasp() -> None:
    params = IdentityConfig().argon2
    assert (params.memory_kib, params.time_cost, params.parallelism) >= (19 * 1024, 2, 1)


def test_throttle_limits_cannot_be_switched_off() -> None:
    with pytest.raises(ValueError, match="cannot be disabled"):
        ThrottleLimits(ip_failures=0)
    with pytest.raises(ValueError, match="account_lock_after <= 100"):
        ThrottleLimits(account_lock_after=1000)


def test_factor_policy_per_role_and_profile() -> None:
    assert default_factors(Role.ADMIN, "production") == {"webauthn"}
    assert default_factors(Role.SECURITY_OFFICER, "production") == {"webauthn"}
    assert default_factors(Role.CLINICIAN, "production") >= {"webauthn", "totp"}
    assert default_factors(Role.SECRETARY, "production") >= {"webauthn", "totp"}
    assert "totp" in default_factors(Role.ADMIN, "demo")


def test_totp_for_admins_in_production_is_refused() -> None:
    config = parse_identity({"factors": {"admin": ["webauthn", "totp"]}})
    with pytest.raises(ValueError, match="WebAuthn only"):
        config.factors_for(Role.ADMIN, "production")
    assert config.factors_for(Role.ADMIN, "demo") == {"webauthn", "totp"}


def test_config_file_sets_identity(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'profile = "production"\n'
        "[identity.argon2]\nmemory_kib = 65536\ntime_cost = 4\nparallelism = 2\n"
        "[identity.throttle]\nip_failures = 40\n"
        "[identity.sessions.idle]\nclinician = 600\n"
        '[identity.webauthn]\nrp_id = "chu.example.fr"\norigins = ["https://chu.example.fr"]\n'
    )
    settings = load_settings(tmp_path)
    assert settings.identity.argon2.time_cost == 4
    assert settings.identity.throttle.ip_failures == 40
    assert settings.identity.sessions.idle[Role.CLINICIAN] == 600
    assert settings.identity.sessions.idle[Role.ADMIN] == 15 * 60
    assert settings.identity.webauthn.origins == ("https://chu.example.fr",)
    (tmp_path / "config.toml").write_text("[identity.argon2]\nmemory_kib = 1024\n")
    with pytest.raises(ValueError, match="OWASP"):
        load_settings(tmp_path)
