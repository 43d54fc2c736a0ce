"""The `[audit]` table of config.toml. Nothing here can turn auditing off.

[audit]
retention_days = 365          # never under 183 (CSP R.6113-9-2: six months at least)
head_interval_seconds = 5     # a signed tree head at least this often while records arrive
heads_file = "audit-heads.jsonl"   # relative to the home directory
witness_syslog = "/dev/log"   # optional: also send each head to syslog (path or host:port)
witness_url = "https://..."   # optional: also POST each head (JSON) to this URL
commit_window_ms = 8          # under load, the longest a read waits to share a commit (0 to 20)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from rempart.config import CONFIG_FILE

MIN_RETENTION_DAYS = 183  # six months, rounded up: the legal floor
DEFAULT_RETENTION_DAYS = 365
HEADS_FILE = "audit-heads.jsonl"
SIGNING_KEY_FILE = "audit-signing.key"


@dataclass(frozen=True)
class AuditSettings:
    home: Path
    retention_days: int = DEFAULT_RETENTION_DAYS
    head_interval_seconds: float = 5.0
    heads_file_name: str = HEADS_FILE
    witness_syslog: str | None = None
    witness_url: str | None = None
    commit_window_ms: float = 8.0

    @property
    def heads_file(self) -> Path:
        return self.home / self.heads_file_name

    @property
    def signing_key_file(self) -> Path:
        return self.home / SIGNING_KEY_FILE


def load_audit_settings(home: Path) -> AuditSettings:
    path = home / CONFIG_FILE
    data: dict[str, object] = {}
    if path.is_file():
        with path.open("rb") as fh:
            section = tomllib.load(fh).get("audit", {})
        if not isinstance(section, dict):
            raise ValueError(f"{path}: [audit] must be a table")
        data = section
    retention = _number(data, "retention_days", DEFAULT_RETENTION_DAYS, path)
    if retention < MIN_RETENTION_DAYS:
        raise ValueError(
            f"{path}: audit retention_days = {retention} is under the legal minimum of six "
            f"months ({MIN_RETENTION_DAYS} days)"
        )
    interval = float(_number(data, "head_interval_seconds", 5, path))
    if not 0.05 <= interval <= 60:
        raise ValueError(f"{path}: audit head_interval_seconds must be between 0.05 and 60")
    window = float(_number(data, "commit_window_ms", 8, path))
    if not 0 <= window <= 20:
        raise ValueError(f"{path}: audit commit_window_ms must be between 0 and 20")
    heads = str(data.get("heads_file", HEADS_FILE))
    syslog = data.get("witness_syslog")
    url = data.get("witness_url")
    if url is not None and not str(url).startswith(("https://", "http://")):
        raise ValueError(f"{path}: audit witness_url must be an http(s) URL")
    return AuditSettings(
        home=home,
        retention_days=int(retention),
        head_interval_seconds=interval,
        heads_file_name=heads,
        witness_syslog=str(syslog) if syslog else None,
        witness_url=str(url) if url else None,
        commit_window_ms=window,
    )


def _number(data: dict[str, object], name: str, default: float, path: Path) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{path}: audit {name} must be a number")
    return value
