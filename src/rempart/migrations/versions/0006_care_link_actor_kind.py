"""care_link's actor index keyed (actor, kind, until, patient)

Revision ID: 0006_care_link_actor_kind
Revises: 0005_index_digest_first

A scope's patients are found per actor and kind with a live `until`: `actor = ? AND kind IN
(...) AND (until IS NULL OR until >= ?)`. Keyed (actor, patient, kind), the index made each
search read every link of the actor: a unit's 2,655 `visit` links for a clinician's 5 live
`stay` ones, and a table lookup for each link's `until`. Keyed (actor, kind, until, patient) it
ranges over the live links of the wanted kinds and answers from the index alone. A SQLite
`Encounter?patient=` page went from 3.3-3.7 ms to 0.56 ms (10,000 patients,
docs/benchmarks.md 2026-12-01). The read's own check goes through `ix_care_link_patient`.

On PostgreSQL the index is rebuilt under a lock that holds writes to `care_link` (seconds for
millions of links); run it in a maintenance window on a large hospital.
"""

from __future__ import annotations

from alembic import op

revision = "0006_care_link_actor_kind"
down_revision = "0005_index_digest_first"
branch_labels = None
depends_on = None


def _rekey(columns: list[str]) -> None:
    op.drop_index("ix_care_link_actor", table_name="care_link")
    op.create_index("ix_care_link_actor", "care_link", columns, unique=False)


def upgrade() -> None:
    _rekey(["actor", "kind", "until", "patient"])


def downgrade() -> None:
    _rekey(["actor", "patient", "kind"])
