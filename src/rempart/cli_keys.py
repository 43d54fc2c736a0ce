"""`rempart keys ...`: key-encryption key status and rotation.

Crypto-shredding has no command here on purpose: it is reached only through the four-eyes
approval flow ("erase-patient").
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from rempart.config import Settings, load_settings
from rempart.crypto import KeyProvider

keys_app = typer.Typer(help="Key-encryption keys: status and rotation.", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)


def _settings(ctx: typer.Context) -> Settings:
    # The root command's --home / --database, stored by its callback.
    root = ctx.find_root()
    home, database = root.obj if root.obj is not None else (None, None)
    return load_settings(home, database)


def _open(settings: Settings) -> tuple[Engine, KeyProvider]:
    """The key provider and the database, nothing else: key management needs no accounts,
    audit log or policy, and must work when those are what is being repaired."""
    from rempart.crypto import CryptoError
    from rempart.store.db import make_engine
    from rempart.store.migrate import is_current
    from rempart.wiring import open_provider

    try:
        provider = open_provider(settings)
    except CryptoError as exc:
        err.print(f"[bold red]rempart cannot open its keys:[/] {exc}")
        raise typer.Exit(code=2) from None
    engine = make_engine(settings.database_url, pool_size=2)
    if not is_current(engine):
        _close(engine, provider)
        err.print(
            f"[bold red]rempart cannot open its keys:[/] the database at {settings.database_url} "
            "is not initialised or not up to date; run `rempart init` first"
        )
        raise typer.Exit(code=2)
    return engine, provider


def _close(engine: Engine, provider: KeyProvider) -> None:
    engine.dispose()
    close = getattr(provider, "close", None)
    if close is not None:
        close()


@keys_app.command()
def status(ctx: typer.Context) -> None:
    """Which KEKs the provider holds and how many data keys each one wraps."""
    from rempart.store.rotation import keys_per_kek

    engine, provider = _open(_settings(ctx))
    try:
        current = provider.current_kek_id()
        held = provider.kek_ids()
        counts = keys_per_kek(engine)
    finally:
        _close(engine, provider)
    for kek_id in sorted(set(held) | set(counts)):
        mark = " (current)" if kek_id == current else ""
        where = "" if kek_id in held else "  NOT HELD BY THE PROVIDER: these keys are unreadable"
        typer.echo(f"{kek_id}{mark}: {counts.get(kek_id, 0)} data keys{where}")


@keys_app.command()
def rotate(
    ctx: typer.Context,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Keys per transaction.")] = 500,
    settle_seconds: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Wait between creating the KEK and the final sweep (default: the provider's "
            "propagation delay plus a margin). Lower only if no server is running.",
        ),
    ] = None,
    pause_seconds: Annotated[
        float, typer.Option(min=0.0, help="Pause between batches, to yield to a busy server.")
    ] = 0.0,
) -> None:
    """Create a new KEK, re-wrap every data key under it online, then retire the old KEKs.

    Servers keep running: no record is re-encrypted, and the old KEK is retired only after a
    final sweep finds no data key left under it.
    """
    from rempart.crypto import CryptoError
    from rempart.store.rotation import SETTLE_SECONDS, keys_per_kek, rotate

    engine, provider = _open(_settings(ctx))
    try:
        total = sum(keys_per_kek(engine).values())
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
        ) as bar:
            task = bar.add_task("re-wrapping data keys", total=total)
            report = rotate(
                engine,
                provider,
                batch_size=batch_size,
                settle_seconds=SETTLE_SECONDS if settle_seconds is None else settle_seconds,
                pause_seconds=pause_seconds,
                progress=lambda n: bar.advance(task, n),
            )
    except CryptoError as exc:
        err.print(f"[bold red]rotation failed:[/] {exc}")
        raise typer.Exit(code=1) from None
    finally:
        _close(engine, provider)
    err.print(
        f"new KEK {report.new_kek}: {report.rewrapped} data keys re-wrapped in {report.sweeps} "
        f"sweeps; retired {', '.join(report.retired) or 'none'}"
    )
    if report.kept:
        err.print(
            f"[bold red]kept[/] {', '.join(report.kept)}: {len(report.failed_owners)} data keys "
            f"failed to unwrap (see the security alerts); the old KEK stays until they are resolved"
        )
        raise typer.Exit(code=1)


# ---- `rempart init` options choosing the key provider ------------------------------------------

ProviderOpt = Annotated[
    str | None,
    typer.Option(
        "--key-provider",
        help="Where the key-encryption keys live: 'file' (default, keys.json in the data "
        "directory) or 'pkcs11' (an HSM).",
    ),
]
LibraryOpt = Annotated[
    str | None,
    typer.Option(help="PKCS#11 module of the HSM, e.g. /usr/lib/softhsm/libsofthsm2.so."),
]
TokenOpt = Annotated[str | None, typer.Option(help="Label of the HSM token holding the KEKs.")]
PinEnvOpt = Annotated[
    str | None,
    typer.Option(
        help="Environment variable holding the token's user PIN (default REMPART_PKCS11_PIN). "
        "The PIN is never written to config.toml."
    ),
]
PinFileOpt = Annotated[
    str | None,
    typer.Option(help="File (mode 0600) holding the user PIN, instead of --pkcs11-pin-env."),
]
PrefixOpt = Annotated[
    str | None, typer.Option(help="Label prefix of rempart's KEKs on the token (rempart-kek).")
]


def choose_key_provider(
    settings: Settings,
    kind: str | None,
    *,
    library: str | None,
    token: str | None,
    pin_env: str | None,
    pin_file: str | None,
    key_prefix: str | None,
) -> Settings:
    """Settings with the provider chosen on the command line (ValueError if inconsistent).

    A home keeps the provider it was initialised with: switching would leave every data key
    wrapped under KEKs the new provider does not hold.
    """
    from dataclasses import replace

    from rempart.config import CONFIG_FILE
    from rempart.crypto.providers import PIN_ENV_DEFAULT

    pkcs11_given = any(v is not None for v in (library, token, pin_env, pin_file, key_prefix))
    if kind is None:
        if pkcs11_given:
            raise ValueError("the --pkcs11-* options need --key-provider pkcs11")
        return settings
    if kind not in ("file", "pkcs11"):
        raise ValueError(f"--key-provider must be 'file' or 'pkcs11', not {kind!r}")
    options: dict[str, str] = {}
    if kind == "pkcs11":
        if not library or not token:
            raise ValueError("--key-provider pkcs11 needs --pkcs11-library and --pkcs11-token")
        if pin_env and pin_file:
            raise ValueError("give the PIN's source once: --pkcs11-pin-env or --pkcs11-pin-file")
        options = {"library_path": library, "token_label": token}
        if pin_file:
            options["pin_file"] = str(Path(pin_file).resolve())
        else:
            options["pin_env"] = pin_env or PIN_ENV_DEFAULT
        if key_prefix:
            options["key_label_prefix"] = key_prefix
    elif pkcs11_given:
        raise ValueError("the --pkcs11-* options go with --key-provider pkcs11")
    if (settings.home / CONFIG_FILE).exists() and (
        kind != settings.key_provider or options != settings.key_provider_options
    ):
        raise ValueError(
            f"{settings.home} is already initialised with the {settings.key_provider!r} key "
            f"provider ({settings.home / CONFIG_FILE}); changing it would make the stored data "
            f"keys unreadable, so it is refused"
        )
    return replace(settings, key_provider=kind, key_provider_options=options)
