"""The scorecard: the JSON the issue specifies, the targets, and a Rich table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

MAX_STAFF_LEAK = 25
TABLE_WIDTH = 160
CONTAIN_SECONDS = 60.0
FALSE_CONTAINMENTS_PER_1000 = 1.0
ZERO_LEAK_ATTACKERS = ("admin", "patient", "database")


@dataclass(frozen=True)
class PlaybookResult:
    name: str
    attacker: str
    kind: str  # "admin" | "clinician" | "secretary" | "patient" | "database"
    records_leaked: int
    requests: int
    contained: bool
    seconds_to_containment: float | None
    alerts: int
    scrape: bool  # the containment target applies
    alert_kinds: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "attacker": self.attacker,
            "records_leaked": self.records_leaked,
            "requests": self.requests,
            "contained": self.contained,
            "seconds_to_containment": self.seconds_to_containment,
            "alerts": self.alerts,
        }


@dataclass
class Report:
    patients: int
    playbooks: list[PlaybookResult]
    clinician_days: int
    false_containments: int
    false_alerts: int
    false_alert_kinds: Counter[str] = field(default_factory=Counter)
    false_containment_causes: Counter[str] = field(default_factory=Counter)
    false_containment_incidents: int = 0  # refusals of one episode counted once (normal.py)
    step_ups_demanded: int = 0
    normal_requests: int = 0
    wall_seconds: float = 0.0
    seed_seconds: float = 0.0
    alert_source: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "patients": self.patients,
            "playbooks": [p.as_json() for p in self.playbooks],
            "normal_traffic": {
                "clinician_days": self.clinician_days,
                "false_containments": self.false_containments,
                "false_alerts": self.false_alerts,
            },
        }

    def misses(self) -> list[str]:
        """Every target this run missed, in words."""
        out: list[str] = []
        for p in self.playbooks:
            if p.kind in ZERO_LEAK_ATTACKERS and p.records_leaked > 0:
                out.append(f"{p.name}: {p.records_leaked} records leaked (target 0)")
            if p.kind in ("clinician", "secretary") and p.records_leaked > MAX_STAFF_LEAK:
                out.append(
                    f"{p.name}: {p.records_leaked} out-of-scope records leaked "
                    f"(target at most {MAX_STAFF_LEAK})"
                )
            if p.scrape and not p.contained:
                out.append(f"{p.name}: not contained (target: within {CONTAIN_SECONDS:.0f} s)")
            elif (
                p.scrape
                and p.seconds_to_containment is not None
                and p.seconds_to_containment > CONTAIN_SECONDS
            ):
                out.append(
                    f"{p.name}: contained after {p.seconds_to_containment:.0f} simulated s "
                    f"(target {CONTAIN_SECONDS:.0f} s)"
                )
        days = max(self.clinician_days, 1)
        if self.false_containments * 1000 >= FALSE_CONTAINMENTS_PER_1000 * days:
            out.append(
                f"normal traffic: {self.false_containments} false containments in "
                f"{self.clinician_days} clinician-days (target under 1 per 1,000)"
            )
        return out


def render(report: Report, console: Console) -> None:
    table = Table(title=f"rempart simulate: {report.patients:,} patients")
    for column in ("playbook", "attacker", "leaked", "requests", "contained", "after (s)"):
        table.add_column(column, justify="right" if column in ("leaked", "requests") else "left")
    table.add_column("alerts")
    for p in report.playbooks:
        after = "-" if p.seconds_to_containment is None else f"{p.seconds_to_containment:.1f}"
        kinds = Counter(p.alert_kinds)
        alerts = f"{p.alerts}" + (
            " (" + ", ".join(f"{k} ×{n}" for k, n in kinds.most_common()) + ")" if kinds else ""
        )
        contained = "yes" if p.contained else ("n/a (offline)" if p.kind == "database" else "no")
        table.add_row(
            p.name, p.attacker, str(p.records_leaked), str(p.requests), contained, after, alerts
        )
    if console.width < TABLE_WIDTH:  # a pipe or a log file: do not fold the table into 80 columns
        console = Console(file=console.file, width=TABLE_WIDTH, soft_wrap=True)
    if report.playbooks:  # none in a run of normal traffic only
        console.print(table)
    false_kinds = ", ".join(f"{k} ×{n}" for k, n in report.false_alert_kinds.most_common())
    console.print(
        f"normal traffic: {report.clinician_days} clinician-days, "
        f"{report.normal_requests:,} requests, {report.false_containments} false containments "
        f"({report.false_containment_incidents} episodes), "
        f"{report.false_alerts} alerts about normal accounts"
        + (f" ({false_kinds})" if false_kinds else "")
        + f", {report.step_ups_demanded} fresh-factor demands passed"
    )
    for cause, n in report.false_containment_causes.most_common():
        console.print(f"  false containment ×{n}: {cause}")
    console.print(
        f"seeding {report.seed_seconds:.0f} s, whole run {report.wall_seconds:.0f} s (wall clock); "
        f"alerts read from {report.alert_source}"
    )
    misses = report.misses()
    if misses:
        console.print("[bold red]targets missed:[/]")
        for miss in misses:
            console.print(f"  - {miss}")
    else:
        console.print("[bold green]every target met[/]")
