"""Process start-up shared by the commands: initialise a home, open services or say why not."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import typer
import uvicorn
from rich.console import Console

from rempart.config import (
    CONFIG_FILE,
    Profile,
    Settings,
    load_settings,
    set_profile,
    write_config,
)
from rempart.crypto import CryptoError
from rempart.crypto.providers import provision_key_provider
from rempart.store.db import make_engine
from rempart.store.migrate import upgrade
from rempart.wiring import NotInitialised, Services, open_services

err = Console(stderr=True, soft_wrap=True)  # messages carry paths: never wrap them


def initialise(settings: Settings, *, profile: Profile | None = None) -> bool:
    """Create what is missing (home, key file, config, schema); returns True if the home was new."""
    created = not settings.home.exists()
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The key file, or the first KEK on the HSM token (its PIN from pin_env / pin_file).
    provision_key_provider(settings.key_provider, settings.home, **settings.key_provider_options)
    config_path = settings.home / CONFIG_FILE
    if not config_path.exists():
        write_config(replace(settings, profile=profile or settings.profile))
    elif profile is not None and profile != settings.profile:
        set_profile(settings.home, profile)
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return created


def open_or_fail(settings: Settings, *, pool_size: int = 10) -> Services:
    """Services, or a clear message and exit code 2 (missing key, wrong mode, no schema...)."""
    try:
        return open_services(settings, pool_size=pool_size)
    except (CryptoError, NotInitialised) as exc:
        err.print(f"[bold red]rempart cannot start:[/] {exc}")
        raise typer.Exit(code=2) from None


def default_workers(settings: Settings) -> int:
    """Two processes (one on a single core), on either database. On SQLite this used to be
    one: the second process's writers slept in SQLite's busy handler (p99 429 ms at 8
    connections). Since the hot writers queue on a file lock (store/writegate.py), two
    processes serve twice what one does at a shorter tail (2026-11-30, quiet, 8 connections:
    1,784 against 930 req/s, p99 9.4 against 14.6 ms; docs/benchmarks.md)."""
    del settings  # the same on both backends now
    return max(1, min(2, os.cpu_count() or 1))


def run_server(settings: Settings, *, host: str, port: int, workers: int) -> None:
    # Open once here so a missing key or schema stops us before any worker starts.
    open_or_fail(settings, pool_size=1).close()
    os.environ["REMPART_HOME"] = str(settings.home)
    os.environ["REMPART_DATABASE_URL"] = settings.database_url
    err.print(f"rempart serving FHIR R4 on http://{host}:{port}/fhir ({settings.profile} profile)")
    uvicorn.run(
        "rempart.api.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
    )


def demo_banner(home: Path, credentials: Path, port: int) -> str:
    base = f"http://127.0.0.1:{port}"
    first_clinician = _first_user(credentials, "clinician")
    return (
        f"\n[bold]rempart demo[/] (synthetic hospital; demo profile)\n"
        f"  URL:          {base}/fhir  (API docs: {base}/docs)\n"
        f"  credentials:  {credentials}  (synthetic demo accounts, TOTP secrets included)\n"
        f"  data:         {home}\n\n"
        f"  try (in another terminal, from this folder):\n"
        f'  curl -s -H "Authorization: Bearer $(.venv/bin/rempart login --user '
        f'{first_clinician} --credentials {credentials} --url {base})" '
        f"'{base}/fhir/Patient?_count=3'\n"
    )


def _first_user(credentials: Path, role: str) -> str:
    import json

    try:
        accounts = json.loads(credentials.read_text(encoding="utf-8"))["accounts"]
        return str(next(a["username"] for a in accounts if a["role"] == role))
    except (OSError, KeyError, StopIteration, ValueError):
        return "<username>"


__all__ = ["initialise", "load_settings", "open_or_fail", "run_server"]
