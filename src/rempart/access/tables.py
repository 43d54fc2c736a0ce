"""The access package's tables. None holds a name, a code or a note in clear.

- `care_link`: the care-relationship index, written in the same transaction as the resource it
  is derived from (Encounter, CareTeam, Patient). Opaque ids only: which actor (a Practitioner,
  a unit Organization/Location, or an account) is related to which patient compartment, how
  (`kind`) and until which day. `docs/security.md` says what this reveals.
- `unit_parent`: the directory's hierarchy (a unit is part of an establishment; a Location is
  managed by a unit), from Organization/Location writes, so a membership of an establishment
  covers its units.
- `unit_membership`: which account works in which unit or establishment (four-eyes to add).
- `break_glass`: time-boxed emergency grants; the reason is sealed under the directory key.
- `access_request`, `access_approval`: four-eyes requests; payloads sealed.
- `user_notice`: messages to one account, delivered out of band (activation codes, resets).
- `account_activation`: one-time codes (SHA-256 digests) that set a password or a factor.
- `access_setting`: policy settings changed through approved requests only.
- `export_member`: the patient ids of an approved cohort export.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from rempart.store.tables import metadata

care_link = Table(
    "care_link",
    metadata,
    Column("source_type", String(40), primary_key=True),
    Column("source_id", String(64), primary_key=True),
    # "participant" | "stay" | "visit" | "team" | "gp" | "registrant" (see access/relations.py)
    Column("kind", String(16), primary_key=True),
    # "Practitioner/<id>", "Organization/<id>", "Location/<id>" or "Account/<id>"
    Column("actor", String(80), primary_key=True),
    Column("patient", String(64), nullable=False),
    # Microseconds (UTC, rounded up to the next midnight) after which the link only counts
    # within the care window; NULL while the encounter or team is ongoing.
    Column("until", BigInteger, nullable=True),
)
# A search's scope: an actor's live links of some kinds, answered from the index alone (its
# patients). The check of one read (is this patient linked to this actor?) starts from the
# patient's few links.
Index(
    "ix_care_link_actor",
    care_link.c.actor,
    care_link.c.kind,
    care_link.c.until,
    care_link.c.patient,
)
Index("ix_care_link_patient", care_link.c.patient)

unit_parent = Table(
    "unit_parent",
    metadata,
    Column("child", String(80), primary_key=True),
    Column("parent", String(80), primary_key=True),
)
Index("ix_unit_parent_parent", unit_parent.c.parent)

unit_membership = Table(
    "unit_membership",
    metadata,
    Column("account_id", String(36), primary_key=True),
    Column("unit", String(80), primary_key=True),
    Column("created", BigInteger, nullable=False),
    Column("request_id", String(36), nullable=True),  # the approved request; NULL for the seed
)

break_glass = Table(
    "break_glass",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), nullable=False),
    Column("patient", String(64), nullable=False),
    Column("reason_sealed", LargeBinary, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("reviewed_at", BigInteger, nullable=True),
    Column("reviewed_by", String(36), nullable=True),
    Column("review", String(16), nullable=True),  # "justified" | "unjustified"
)
Index("ix_break_glass_grant", break_glass.c.account_id, break_glass.c.patient)
Index("ix_break_glass_created", break_glass.c.account_id, break_glass.c.created)

access_request = Table(
    "access_request",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(40), nullable=False),
    # pending -> approved (executed) | failed | rejected | expired
    Column("status", String(16), nullable=False),
    Column("requested_by", String(36), nullable=False),
    Column("requester_role", String(32), nullable=False),
    # The account the request acts on, if any: it may never approve its own change.
    Column("target_account", String(36), nullable=True),
    Column("payload_sealed", LargeBinary, nullable=False),
    Column("summary", String(300), nullable=False),  # what the approvers see in a list
    Column("needs", String(100), nullable=False),  # comma-separated roles that must approve
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("decided_at", BigInteger, nullable=True),
    Column("result", String(300), nullable=True),
    Column("touched", BigInteger, nullable=False),  # written first by an approval: a row lock
)
Index("ix_access_request_status", access_request.c.status, access_request.c.created)

access_approval = Table(
    "access_approval",
    metadata,
    Column("request_id", String(36), primary_key=True),
    Column("account_id", String(36), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("verdict", String(16), nullable=False),  # "approve" | "reject"
    Column("comment", String(500), nullable=True),
    Column("at", BigInteger, nullable=False),
)

user_notice = Table(
    "user_notice",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), nullable=False, index=True),
    Column("kind", String(40), nullable=False),
    Column("body_sealed", LargeBinary, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("delivered", BigInteger, nullable=True),
)

account_activation = Table(
    "account_activation",
    metadata,
    Column("digest", LargeBinary(32), primary_key=True),
    Column("account_id", String(36), nullable=False, index=True),
    Column("purpose", String(16), nullable=False),  # "enrol" | "password" | "factor"
    Column("request_id", String(36), nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("used", Boolean, nullable=False, default=False),
)

access_setting = Table(
    "access_setting",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("changed", BigInteger, nullable=False),
    Column("request_id", String(36), nullable=False),
)

export_member = Table(
    "export_member",
    metadata,
    Column("export_id", String(36), primary_key=True),
    Column("patient", String(64), primary_key=True),
)

cohort_export = Table(
    "cohort_export",
    metadata,
    Column("id", String(36), primary_key=True),  # the approved request's id
    Column("recipient", String(36), nullable=False),
    Column("types", String(400), nullable=False),  # comma-separated resource types
    Column("identified", Boolean, nullable=False),  # False: pseudonymised (the default)
    Column("patients", Integer, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("downloaded", BigInteger, nullable=True),  # one download, then it is spent
)
