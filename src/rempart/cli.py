"""The `rempart` command line: init, serve, demo, seed, import, login."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rempart.cli_access import access_app
from rempart.cli_audit import audit_app, breach_report
from rempart.cli_guard import guard_app
from rempart.cli_identity import identity_app
from rempart.cli_keys import (
    LibraryOpt,
    PinEnvOpt,
    PinFileOpt,
    PrefixOpt,
    ProviderOpt,
    TokenOpt,
    choose_key_provider,
    keys_app,
)
from rempart.cli_simulate import simulate
from rempart.config import Settings, load_settings
from rempart.crypto import CryptoError

app = typer.Typer(
    help="rempart: a FHIR R4 patient-record server that a stolen account cannot empty.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(identity_app, name="identity")
app.add_typer(access_app, name="access")
app.add_typer(guard_app, name="guard")
app.command("breach-report")(breach_report)
app.command("simulate")(simulate)
err = Console(stderr=True, soft_wrap=True)  # messages carry paths: never wrap them

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", envvar="REMPART_HOME", help="Data directory (default ./rempart-data)."),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="REMPART_DATABASE_URL",
        help="Database URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/rempart "
        "(default: SQLite in the data directory).",
    ),
]


@app.callback()
def main(ctx: typer.Context, home: HomeOpt = None, database: DbOpt = None) -> None:
    ctx.obj = (home, database)


def _settings(ctx: typer.Context) -> Settings:
    home, database = ctx.obj
    return load_settings(home, database)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )


@app.command()
def init(
    ctx: typer.Context,
    key_provider: ProviderOpt = None,
    pkcs11_library: LibraryOpt = None,
    pkcs11_token: TokenOpt = None,
    pkcs11_pin_env: PinEnvOpt = None,
    pkcs11_pin_file: PinFileOpt = None,
    pkcs11_key_prefix: PrefixOpt = None,
) -> None:
    """Create the data directory, the key file (or HSM key) and the schema. Safe to run again."""
    from rempart.bootstrap import initialise

    try:
        settings = choose_key_provider(
            _settings(ctx),
            key_provider,
            library=pkcs11_library,
            token=pkcs11_token,
            pin_env=pkcs11_pin_env,
            pin_file=pkcs11_pin_file,
            key_prefix=pkcs11_key_prefix,
        )
        created = initialise(settings)
    except (CryptoError, OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    err.print(f"rempart home: {settings.home} ({'created' if created else 'already initialised'})")
    err.print(f"database: {_safe_url(settings.database_url)} (schema up to date)")


@app.command()
def seed(
    ctx: typer.Context,
    patients: Annotated[int, typer.Option(min=1, help="How many patients.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same hospital.")] = 0,
    credentials_out: Annotated[
        Path | None, typer.Option(help="Write the demo accounts (with secrets) to this JSON file.")
    ] = None,
) -> None:
    """Seed a synthetic French hospital (Faker fr_FR; nothing real). Sets the demo profile."""
    from rempart.bootstrap import initialise, open_or_fail
    from rempart.ingest.seeding import AlreadySeeded, seed_hospital

    settings = _settings(ctx)
    initialise(settings, profile="demo")
    services = open_or_fail(load_settings(settings.home, ctx.obj[1]))
    try:
        with _progress() as bar:
            task = bar.add_task("seeding patients", total=patients)
            report = seed_hospital(
                services,
                patients=patients,
                seed=seed,
                credentials_out=credentials_out,
                progress=lambda n: bar.advance(task, n),
            )
    except AlreadySeeded as exc:
        raise _fail(str(exc)) from None
    finally:
        services.close()
    err.print(
        f"seeded {report.patients} patients, {report.resources} resources, "
        f"{report.accounts} accounts"
    )
    if credentials_out:
        err.print(f"credentials (demo only): {credentials_out}")


@app.command("import")
def import_(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="NDJSON files, Bundle JSON files, folders.")],
) -> None:
    """Import FHIR R4 resources; prints a JSON summary of what was imported and rejected."""
    from rempart.bootstrap import open_or_fail
    from rempart.ingest.files import expand, read
    from rempart.ingest.importer import import_items

    services = open_or_fail(_settings(ctx))
    files = expand(paths)
    try:
        # Every resource is held in memory until it is stored: millions of objects, which
        # each full collection of the cyclic GC would walk again (2 of the 2.8 s of reading
        # 104,788 resources). JSON makes no cycles: the reading runs without the GC, and what
        # it read is frozen out of later collections.
        gc.disable()
        try:
            items = [item for path in files for item in read(path)]
        finally:
            gc.freeze()
            gc.enable()
        with _progress() as bar:
            task = bar.add_task("importing resources", total=len(items))
            summary = import_items(services.store, items, progress=lambda n: bar.advance(task, n))
        from rempart.cli_audit import record_operator_action

        record_operator_action(services, "import", f"{len(files)} files: {summary.as_json()}")
    finally:
        services.close()
    sys.stdout.write(json.dumps(summary.as_json(), ensure_ascii=False, indent=2) + "\n")
    if summary.rejected and not summary.imported:
        raise typer.Exit(code=1)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Server processes (default: 2, or 1 on a single core)."),
    ] = None,
) -> None:
    """Serve the FHIR API (refuses to start without its key or an up-to-date schema)."""
    from rempart.bootstrap import default_workers, run_server

    settings = _settings(ctx)
    chosen = workers or default_workers(settings)
    run_server(settings, host=host, port=port, workers=chosen)


@app.command()
def demo(
    ctx: typer.Context,
    patients: Annotated[int, typer.Option(min=1, help="Patients to seed the first time.")] = 2000,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Initialise, seed a 2,000-patient hospital once, and serve it on 127.0.0.1."""
    from rempart.bootstrap import default_workers, demo_banner, run_server

    settings = _settings(ctx)
    credentials = settings.home / "credentials.json"
    if not credentials.exists():
        ctx.invoke(seed, ctx=ctx, patients=patients, seed=0, credentials_out=credentials)
    err.print(demo_banner(settings.home, credentials, port))
    served = load_settings(settings.home, ctx.obj[1])
    run_server(served, host="127.0.0.1", port=port, workers=default_workers(served))


@app.command()
def login(
    user: Annotated[str, typer.Option(help="Username from the credentials file.")],
    credentials: Annotated[Path, typer.Option(help="The demo credentials file.")] = Path(
        "rempart-data/credentials.json"
    ),
    url: Annotated[str, typer.Option(help="Server base URL.")] = "http://127.0.0.1:8000",
) -> None:
    """Demo helper: log in over HTTP (password + TOTP from the demo file), print the token."""
    from rempart.demo_client import login_with_credentials

    try:
        token = login_with_credentials(url, credentials, user)
    except (OSError, KeyError, ValueError) as exc:
        raise _fail(str(exc)) from None
    sys.stdout.write(token + "\n")


def _safe_url(url: str) -> str:
    # Never print a database password.
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}@{host}"
    return url


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUTF8", "1")
    app()
