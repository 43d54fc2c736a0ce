"""Building the audit log of a process from its settings (called once, in `wiring.py`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from rempart.audit.entry import Sealer
from rempart.audit.heads import HeadsFile, HeadSigner, load_signing_key, witnesses
from rempart.audit.log import AuditLog
from rempart.audit.settings import AuditSettings, load_audit_settings
from rempart.config import Settings
from rempart.crypto import KeyProvider


def _alert(engine: Engine) -> Any:
    from rempart.alerts import CRITICAL, raise_alert

    def alert(kind: str, message: str, details: dict[str, Any]) -> None:
        raise_alert(engine, kind, CRITICAL, message, details)

    return alert


def open_audit(
    settings: Settings, engine: Engine, provider: KeyProvider, directory_key: bytes
) -> AuditLog:
    audit_settings = load_audit_settings(settings.home)
    return AuditLog(
        engine,
        Sealer(directory_key),
        HeadSigner(load_signing_key(provider, audit_settings)),
        HeadsFile(audit_settings.heads_file),
        witnesses=witnesses(audit_settings),
        head_interval=audit_settings.head_interval_seconds,
        commit_window=audit_settings.commit_window_ms / 1000,
        alert=_alert(engine),
        retention_days=audit_settings.retention_days,
    )


__all__ = ["AuditSettings", "open_audit"]
