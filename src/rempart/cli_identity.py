"""`rempart identity ...`: the operator's levers on an account, run on the server with the key
file (the API equivalents belong to the security officer, through approvals)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy import select

if TYPE_CHECKING:
    from rempart.wiring import Services

identity_app = typer.Typer(help="Accounts: unlock, end sessions, reset factors, enrolment codes.")
UserOpt = Annotated[str, typer.Option("--user", help="The account's username.")]
ByOpt = Annotated[str, typer.Option("--by", help="Who asks (recorded in the audit log).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")]


def _account_id(ctx: typer.Context, username: str) -> tuple[Services, str]:
    from rempart.bootstrap import open_or_fail
    from rempart.config import load_settings
    from rempart.identity.tables import account

    home, database = ctx.obj  # set by the root command's --home / --database
    services = open_or_fail(load_settings(home, database), pool_size=1)
    with services.engine.connect() as conn:
        found = conn.execute(select(account.c.id).where(account.c.username == username)).scalar()
    if found is None:
        services.close()
        sys.stderr.write(f"error: no account named {username!r}\n")
        raise typer.Exit(code=2)
    return services, str(found)


@identity_app.command()
def unlock(ctx: typer.Context, user: UserOpt, by: ByOpt, reason: ReasonOpt) -> None:
    """Unlock an account locked after 100 failed sign-ins (or by a security officer)."""
    services, account_id = _account_id(ctx, user)
    try:
        services.identity.unlock(account_id, by, reason)
        closed = services.security.release_by_operator(account_id, by, reason)  # the guard's
    finally:
        services.close()
    sys.stderr.write(f"{user}: unlocked ({closed} guard containments closed)\n")


@identity_app.command("revoke-sessions")
def revoke_sessions(ctx: typer.Context, user: UserOpt, by: ByOpt) -> None:
    """End every session of the account; it takes effect on their next request."""
    services, account_id = _account_id(ctx, user)
    try:
        count = services.identity.revoke_all_sessions(account_id, by=by)
    finally:
        services.close()
    sys.stderr.write(f"{user}: {count} sessions revoked\n")


@identity_app.command("enrol-code")
def enrol_code(ctx: typer.Context, user: UserOpt, by: ByOpt, reset: bool = False) -> None:
    """Print a one-time code (72 h) with which the holder registers a new second factor.
    With --reset, every existing factor is removed first (lost key or phone)."""
    services, account_id = _account_id(ctx, user)
    try:
        if reset:
            services.identity.reset_factors(account_id, by=by)
        code = services.identity.issue_enrolment_code(account_id, by=by)
    finally:
        services.close()
    sys.stdout.write(code + "\n")
