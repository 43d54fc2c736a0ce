"""`rempart guard status`: what the guard enforces in this installation (every setting with
its bounds and whether an approved request changed it), how many decoys it knows, and the
containments still open. Read-only: settings change through a `guard-settings` request, an
account is released by a security officer (`POST /security/accounts/{id}/unlock`)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from sqlalchemy import func, select

guard_app = typer.Typer(help="The access guard: settings, decoys, open containments.")
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]


@guard_app.command()
def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The guard's settings (defaults, bounds, current values), decoys and open containments."""
    from rempart.access.settings import definitions
    from rempart.bootstrap import open_or_fail
    from rempart.config import load_settings
    from rempart.guard.settings import guard_keys
    from rempart.guard.tables import guard_containment

    home, database = ctx.obj
    services = open_or_fail(load_settings(home, database), pool_size=1)
    try:
        current = services.policy.settings.current()
        defs = definitions()
        settings = [
            {
                "key": key,
                "value": current.get(defs[key]),
                "default": defs[key].default,
                "low": defs[key].low,
                "high": defs[key].high,
                "doc": defs[key].doc,
            }
            for key in guard_keys()
        ]
        c = guard_containment.c
        with services.engine.connect() as conn:
            open_rows = conn.execute(
                select(c.level, func.count()).where(c.released_at.is_(None)).group_by(c.level)
            ).all()
        doc: dict[str, Any] = {
            "decoys": services.guard.decoys.count(),
            "open_containments": {r[0]: int(r[1]) for r in open_rows},
            "timezone": services.guard.config.timezone,
            "webhook": bool(services.guard.config.webhook_url),
            "syslog": bool(services.guard.config.syslog),
            "settings": settings,
            "unit_thresholds": services.guard.units.listing(current),
        }
    finally:
        services.close()
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    sys.stdout.write(
        f"decoys: {doc['decoys']}; open containments: {doc['open_containments'] or 'none'}; "
        f"timezone {doc['timezone']}; webhook {'on' if doc['webhook'] else 'off'}; "
        f"syslog {'on' if doc['syslog'] else 'off'}\n"
    )
    for s in settings:
        mark = "" if s["value"] == s["default"] else f"  (default {s['default']})"
        sys.stdout.write(f"{s['key']} = {s['value']}  [{s['low']}..{s['high']}]{mark}\n")
    for unit, limits in doc["unit_thresholds"].items():
        sys.stdout.write(f"unit {unit}: clinician patients {limits} (short, hour, day)\n")
