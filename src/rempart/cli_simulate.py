"""`rempart simulate`: the attack simulator's command (issue #7)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

err = Console(stderr=True, soft_wrap=True)


def simulate(
    patients: Annotated[
        int, typer.Option(min=100, help="Patients in the simulated hospital (seeded fresh).")
    ] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: hospital and traffic.")] = 0,
    days: Annotated[
        int, typer.Option(min=1, max=365, help="Simulated days of normal clinical traffic.")
    ] = 3,
    clinicians: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Normal clinician accounts working a rota (several doctors per unit, nights, "
            "weekends, cover of a sister unit); default: the seed's one doctor per unit, "
            "at work every day.",
        ),
    ] = None,
    normal_only: Annotated[
        bool,
        typer.Option(
            "--normal-only",
            help="Play normal traffic only, every seeded account working normally, no attack "
            "(long runs measuring false alarms; passwords hashed at OWASP's Argon2id floor "
            "to keep sign-ins cheap).",
        ),
    ] = False,
    no_keys: Annotated[
        bool,
        typer.Option(
            "--no-keys",
            help="Clinicians sign in with their TOTP code only (no security key issued): what "
            "the guard does for a hospital that has not handed out keys.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the scorecard as JSON on stdout.")
    ] = False,
) -> None:
    """Seed a fresh hospital in a temporary directory, serve it on 127.0.0.1, play normal
    clinical days and attack playbooks over HTTP on a simulated clock, and score what leaked.

    Exit status 1 when a target is missed (each miss is named on stderr).
    """
    from rempart.simulate.report import render

    # The server's alert log lines (JSON, on stderr by default) would bury the progress bars and
    # the table: the simulator reads the alerts from the officer's queue instead.
    logging.getLogger("rempart.security").addHandler(logging.NullHandler())
    from rempart.simulate.runner import Hooks
    from rempart.simulate.runner import simulate as run

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )
    with progress:
        seeding = progress.add_task("seeding patients", total=patients)
        playing = progress.add_task("simulated time (‰)", total=1000)

        def simulated(fraction: float) -> None:
            progress.update(playing, completed=int(fraction * 1000))

        report = run(
            patients,
            seed,
            days,
            Hooks(seeded=lambda n: progress.advance(seeding, n), simulated=simulated),
            clinicians=clinicians,
            attacks=not normal_only,
            keys=not no_keys,
        )
        progress.update(playing, completed=1000)
    render(report, err)
    if as_json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
    if report.misses():
        raise typer.Exit(code=1)
