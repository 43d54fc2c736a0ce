"""Where rempart keeps its state, and the few settings a hospital may change.

`--home` (or REMPART_HOME) holds `config.toml`, the key file and, by default, the SQLite database.
Settings are read once per process; nothing here turns a security control off.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rempart.identity.settings import IdentityConfig, parse_identity

Profile = Literal["production", "demo"]
ReadsOnLoop = Literal["auto", "yes", "no"]
READS_ON_LOOP: tuple[ReadsOnLoop, ...] = ("auto", "yes", "no")

CONFIG_FILE = "config.toml"
DEFAULT_HOME = Path("rempart-data")


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    # "demo" is set only by `rempart seed`/`rempart demo`; it relaxes nothing in the store, it only
    # lets later identity rules accept TOTP for administrators, and says so on every admin response.
    profile: Profile = "production"
    key_provider: str = "file"
    key_provider_options: dict[str, str] = field(default_factory=dict)
    max_body_bytes: int = 8 * 1024 * 1024  # 8 MiB: a large transaction Bundle, not a dump
    search_default_count: int = 20
    search_max_count: int = 200
    access_token_seconds: int = 15 * 60
    mfa_token_seconds: int = 5 * 60
    # Argon2id cost, session lifetimes per role, factor policy per role, sign-in throttling,
    # WebAuthn relying party, OpenID Connect providers: `[identity]` (rempart.identity.settings).
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    # Reads (and vreads) run on the server's event loop rather than in its thread pool:
    # "auto" when the database answers from this machine (SQLite, or PostgreSQL on a loopback
    # address or a Unix socket), "yes" or "no" to decide (store/db.py, `reads_on_loop`).
    reads_on_event_loop: ReadsOnLoop = "auto"

    @property
    def key_file(self) -> Path:
        return self.home / "keys.json"


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{(home / 'rempart.sqlite3').resolve()}"


def load_settings(home: Path | None = None, database_url: str | None = None) -> Settings:
    """Settings from arguments, then environment, then `config.toml` in the home directory."""
    home = (home or Path(os.environ.get("REMPART_HOME", DEFAULT_HOME))).resolve()
    data: dict[str, object] = {}
    path = home / CONFIG_FILE
    if path.is_file():
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    url = (
        database_url or os.environ.get("REMPART_DATABASE_URL") or str(data.get("database_url", ""))
    )
    profile = str(data.get("profile", "production"))
    if profile not in ("production", "demo"):
        raise ValueError(f"{path}: profile must be 'production' or 'demo', not {profile!r}")
    provider = data.get("key_provider", {})
    provider_opts = (
        {str(k): str(v) for k, v in provider.items()} if isinstance(provider, dict) else {}
    )
    on_loop = str(data.get("reads_on_event_loop", "auto"))
    if on_loop not in READS_ON_LOOP:
        raise ValueError(
            f"{path}: reads_on_event_loop must be one of {', '.join(READS_ON_LOOP)}, "
            f"not {on_loop!r}"
        )
    identity_data = data.get("identity", {})
    identity = parse_identity(identity_data if isinstance(identity_data, dict) else {})
    return Settings(
        home=home,
        database_url=url or sqlite_url(home),
        profile="demo" if profile == "demo" else "production",
        key_provider=provider_opts.pop("kind", "file"),
        key_provider_options=provider_opts,
        identity=identity,
        reads_on_event_loop=on_loop,
    )


def write_config(settings: Settings) -> None:
    """Write the profile (and a non-default database URL) so later commands agree with `init`."""
    lines = [
        "# rempart configuration; see README.md",
        f'profile = "{settings.profile}"',
    ]
    if settings.database_url != sqlite_url(settings.home):
        lines.append(f'database_url = "{settings.database_url}"')
    lines.append("")
    lines.append("[key_provider]")
    lines.append(f'kind = "{settings.key_provider}"')
    lines.extend(f'{k} = "{v}"' for k, v in sorted(settings.key_provider_options.items()))
    (settings.home / CONFIG_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def set_profile(home: Path, profile: Profile) -> None:
    """Switch the profile of an existing config.toml, keeping every other line a hospital wrote
    (its `[identity]`, `[guard]`... sections)."""
    path = home / CONFIG_FILE
    text = path.read_text(encoding="utf-8")
    # Top-level keys come before the first table header.
    head, sep, rest = ("", "[", text[1:]) if text.startswith("[") else text.partition("\n[")
    kept = [ln for ln in head.splitlines() if not ln.replace(" ", "").startswith("profile=")]
    kept.insert(1 if kept and kept[0].startswith("#") else 0, f'profile = "{profile}"')
    body = "\n".join(kept).rstrip("\n") + "\n"
    path.write_text(body + ("\n[" + rest if sep else ""), encoding="utf-8")
