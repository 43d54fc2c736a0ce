"""`rempart audit ...` and `rempart breach-report`: the audit log from the operator's shell.

rempart audit verify [--json] [--trust-key PEM]...   exit 0 intact, 1 tampered (names the
                                                      first bad position), 2 cannot run
rempart audit prove inclusion SEQ [--tree-size N]    RFC 9162 inclusion proof (JSON)
rempart audit prove consistency OLD [NEW]            RFC 9162 consistency proof (JSON)
rempart audit check-proof FILE [--public-key PEM]    check a proof offline, as an auditor
rempart audit heads [--limit N] | public-key | sign
rempart breach-report --user NAME [--since ISO] [--until ISO] [--json]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rempart.config import Settings, load_settings

audit_app = typer.Typer(
    help="The tamper-evident audit log: verify it, prove records, show signed heads.",
    no_args_is_help=True,
)
prove_app = typer.Typer(help="RFC 9162 proofs for external auditors.", no_args_is_help=True)
audit_app.add_typer(prove_app, name="prove")
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def _settings(ctx: typer.Context) -> Settings:
    home, database = ctx.obj
    return load_settings(home, database)


def _out(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")


@audit_app.command("verify")
def verify(
    ctx: typer.Context,
    as_json: JsonOpt = False,
    trust_key: Annotated[
        list[Path] | None,
        typer.Option(
            help="Also trust heads signed by this Ed25519 public key (PEM): a key "
            "used before a rotation."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(min=1, max=32, help="Processes for logs over two million records."),
    ] = min(4, os.cpu_count() or 1),
) -> None:
    """Recompute the Merkle tree and check every signed head (database and heads file)."""
    from rempart.alerts import CRITICAL, raise_alert
    from rempart.audit.heads import HeadVerifier, load_public_key
    from rempart.audit.verify import verify_log
    from rempart.bootstrap import open_or_fail

    svc = open_or_fail(_settings(ctx), pool_size=2)
    try:
        extra = [load_public_key(p) for p in trust_key or []]
        verifier = HeadVerifier(svc.audit.signer.public, *extra)
        report = verify_log(svc.engine, verifier, svc.audit.heads_file, workers=workers)
        if not report.ok:
            first = report.problems[0]
            raise_alert(
                svc.engine,
                "audit-log-tampered",
                CRITICAL,
                f"audit verify failed at position {report.first_bad_position}: {first.message}",
                {"first_bad_position": report.first_bad_position, "kind": first.kind},
            )
    finally:
        svc.close()
    if as_json:
        _out(report.to_json())
    elif report.ok:
        err.print(
            f"[green]audit log intact[/]: {report.pruned_below + report.records} records "
            f"({report.records} checked, pruned below {report.pruned_below}), "
            f"{report.heads_in_database} heads in the database, {report.heads_in_file} in the "
            f"heads file, latest signed size {report.latest_signed_size}, "
            f"{report.unsigned_tail} records after it, {report.seconds:.1f} s"
        )
    else:
        err.print(
            f"[bold red]audit log TAMPERED[/]: first bad position {report.first_bad_position}"
        )
        for problem in report.problems:
            err.print(f"  [{problem.kind}] {problem.message}")
    if not report.ok:
        raise typer.Exit(code=1)


@prove_app.command("inclusion")
def prove_inclusion(
    ctx: typer.Context,
    seq: Annotated[int, typer.Argument(min=0, help="The record's position (AuditEvent id).")],
    tree_size: Annotated[
        int | None, typer.Option(min=1, help="A signed head's size (default: the latest).")
    ] = None,
) -> None:
    """Prove that record SEQ is in the tree of a signed head."""
    from rempart.audit.proofs import inclusion_proof

    _out(_with_services(ctx, lambda svc: inclusion_proof(svc.engine, seq, tree_size)))


@prove_app.command("consistency")
def prove_consistency(
    ctx: typer.Context,
    old: Annotated[int, typer.Argument(min=1, help="The older signed head's size.")],
    new: Annotated[int | None, typer.Argument(min=1, help="The newer (default: latest).")] = None,
) -> None:
    """Prove that the tree at OLD is a prefix of the tree at NEW (nothing rewritten)."""
    from rempart.audit.proofs import consistency_proof

    _out(_with_services(ctx, lambda svc: consistency_proof(svc.engine, old, new)))


@audit_app.command("check-proof")
def check_proof(
    ctx: typer.Context,
    proof: Annotated[Path, typer.Argument(help="A proof printed by `audit prove`.")],
    public_key: Annotated[
        Path | None, typer.Option(help="PEM public key (default: this installation's).")
    ] = None,
) -> None:
    """Check a proof and the signatures of its heads, as an outside auditor would."""
    from rempart.audit.check import check_proof_document
    from rempart.audit.heads import load_public_key

    try:
        doc = json.loads(proof.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        err.print(f"[bold red]error:[/] cannot read {proof}: {exc}")
        raise typer.Exit(code=2) from None
    if public_key is not None:
        key = load_public_key(public_key)
    else:
        key = _with_services(ctx, lambda svc: svc.audit.signer.public)
    ok, message = check_proof_document(doc, key)
    err.print(("[green]valid[/]: " if ok else "[bold red]INVALID[/]: ") + message)
    if not ok:
        raise typer.Exit(code=1)


@audit_app.command("heads")
def heads(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first.")] = 10,
) -> None:
    """The latest signed tree heads (JSON lines)."""
    from rempart.audit.proofs import recent_heads

    for head in _with_services(ctx, lambda svc: recent_heads(svc.engine, limit)):
        sys.stdout.write(json.dumps(head.to_json(), sort_keys=True) + "\n")


@audit_app.command("public-key")
def public_key_cmd(ctx: typer.Context) -> None:
    """The Ed25519 public key that verifies the heads (PEM): give it to your auditors."""
    sys.stdout.write(_with_services(ctx, lambda svc: svc.audit.signer.public_pem()))


@audit_app.command("sign")
def sign(ctx: typer.Context) -> None:
    """Sign a tree head now (the server does it every few seconds on its own)."""

    def run(svc: Any) -> Any:
        head = svc.audit.sign_now()
        return head.to_json() if head is not None else {"tree_size": 0}

    _out(_with_services(ctx, run))


def breach_report(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="The account's username.")],
    since: Annotated[str | None, typer.Option(help="ISO date or dateTime (inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="ISO date or dateTime (exclusive).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every patient whose data an account reached: first and last access, count, types."""
    from rempart.audit.query import instant
    from rempart.audit.service import AuditService
    from rempart.audit.who import Directory
    from rempart.context import RequestContext

    def run(svc: Any) -> dict[str, Any]:
        service = AuditService(svc.audit, Directory(svc.store, svc.policy, lambda _id: None))
        lo, hi = instant(since, "--since"), instant(until, "--until")
        report: dict[str, Any] = service.breach_report(
            None, RequestContext.local("breach-report"), user, lo, hi
        )
        return report

    report = _with_services(ctx, run)
    if as_json:
        _out(report)
        return
    table = Table(title=f"patients reached by {user}")
    for column in ("patient", "first access", "last access", "accesses", "resource types"):
        table.add_column(column)
    for p in report["patients"]:
        table.add_row(
            p["patient"],
            p["first_access"],
            p["last_access"],
            str(p["accesses"]),
            ", ".join(p["resource_types"]),
        )
    Console(soft_wrap=True).print(table)
    err.print(f"{len(report['patients'])} patients")


def record_operator_action(services: Any, action: str, detail: str) -> None:
    """The operator's own bulk commands (import) leave a trace too: one record per run."""
    from rempart.audit.records import AuditRecord

    services.audit.record(
        AuditRecord(
            action=action,
            outcome="success",
            ip="local",
            user_agent=f"rempart-cli/{action}",
            detail=detail[:2000],
        )
    )


def _with_services(ctx: typer.Context, fn: Any) -> Any:
    from rempart.bootstrap import open_or_fail
    from rempart.errors import RempartError

    svc = open_or_fail(_settings(ctx), pool_size=2)
    try:
        return fn(svc)
    except RempartError as exc:
        err.print(f"[bold red]error:[/] {exc.message}")
        raise typer.Exit(code=2) from None
    finally:
        svc.close()
