"""`rempart access ...`: the access policy seen from the server, by its operator.

- `notices`: the out-of-band delivery queue (one-time codes after an approved account creation
  or reset, notices of role changes). In production a mail or SMS relay reads this queue; in a
  demo the operator hands the codes over. It runs with the key file, on the server: no API
  reaches it, and no administrator sees a code.
- `requests`: the four-eyes requests and their state (read-only: deciding is done by people,
  with a second factor, through `/admin/requests/{id}/approve`).
- `policy`: the policy settings in force.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rempart.wiring import Services

access_app = typer.Typer(help="Access policy: notice delivery, four-eyes requests, settings.")


def _open(ctx: typer.Context) -> Services:
    from rempart.bootstrap import open_or_fail
    from rempart.config import load_settings

    home, database = ctx.obj  # set by the root command's --home / --database
    return open_or_fail(load_settings(home, database), pool_size=1)


@access_app.command()
def notices(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", help="Only this username's.")] = None,
    delivered: Annotated[
        bool, typer.Option("--mark-delivered", help="Mark the printed notices as delivered.")
    ] = False,
) -> None:
    """Print undelivered notices (JSON lines) for delivery to their holders, out of band."""
    from sqlalchemy import select

    from rempart.access import notify
    from rempart.identity.tables import account

    services = _open(ctx)
    try:
        account_id = None
        with services.engine.connect() as conn:
            rows = conn.execute(select(account.c.id, account.c.username)).all()
        names = {str(r.id): str(r.username) for r in rows}
        if user is not None:
            account_id = next((i for i, n in names.items() if n == user), None)
            if account_id is None:
                sys.stderr.write(f"error: no account named {user!r}\n")
                raise typer.Exit(code=2)
        found = notify.undelivered(services.engine, services.access.env.key, account_id=account_id)
        for notice in found:
            line = {"to": names.get(notice.account_id), "kind": notice.kind, **notice.body}
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        if delivered:
            notify.mark_delivered(services.engine, [n.id for n in found])
    finally:
        services.close()


@access_app.command()
def requests(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="pending, done, failed, rejected...")] = None,
) -> None:
    """List four-eyes requests (JSON lines): kind, state, summary, approvals."""
    from sqlalchemy import select

    from rempart.access.tables import access_approval, access_request

    services = _open(ctx)
    try:
        query = select(access_request).order_by(access_request.c.created)
        if status:
            query = query.where(access_request.c.status == status)
        with services.engine.connect() as conn:
            for row in conn.execute(query).all():
                votes = conn.execute(
                    select(access_approval.c.account_id, access_approval.c.verdict).where(
                        access_approval.c.request_id == row.id
                    )
                ).all()
                line = {
                    "id": row.id,
                    "kind": row.kind,
                    "status": row.status,
                    "summary": row.summary,
                    "needs": row.needs,
                    "decisions": [f"{v.verdict}:{v.account_id}" for v in votes],
                    "result": row.result,
                }
                sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    finally:
        services.close()


@access_app.command()
def policy(ctx: typer.Context) -> None:
    """The policy settings in force, with their bounds (change them through a request)."""
    from rempart.access.settings import definitions

    services = _open(ctx)
    try:
        current = services.policy.settings.current()
        for definition in sorted(definitions().values(), key=lambda d: d.key):
            value = current.get(definition)
            sys.stdout.write(
                f"{definition.key} = {value}  [{definition.low}..{definition.high}]  "
                f"{definition.doc}\n"
            )
    finally:
        services.close()
