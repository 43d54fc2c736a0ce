"""The record store's tables. Nothing in them is readable patient data.

- `resource`: one row per logical resource, pointing at its current version. `compartment` is the
  random id of the patient the resource belongs to (it selects the data key and lets the policy
  filter searches); it links a patient's rows together but names nobody.
- `resource_version`: every version, as one AES-256-GCM blob under the owner's data key, its
  associated data binding it to (type, id, version, owner).
- `search_index`: keyed blind indexes, HMAC(search key, type|param|token) truncated to 16 bytes.
  The parameter name is inside the HMAC, not a column, so the table does not say which field a
  digest came from.
- `data_key`: per-owner data keys, wrapped by a key-encryption key that is never in the database.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)

# Explicit constraint names keep Alembic autogenerate and `alembic check` stable on both dialects.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

resource = Table(
    "resource",
    metadata,
    Column("res_type", String(40), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("compartment", String(64), nullable=True),
    # Microseconds since the epoch, UTC: server metadata, needed for _lastUpdated and history.
    Column("last_updated", BigInteger, nullable=False),
)
Index("ix_resource_compartment", resource.c.compartment, resource.c.res_type)
Index("ix_resource_type_updated", resource.c.res_type, resource.c.last_updated)

resource_version = Table(
    "resource_version",
    metadata,
    Column("res_type", String(40), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),
)

search_index = Table(
    "search_index",
    metadata,
    Column("res_type", String(40), nullable=False),
    Column("digest", LargeBinary(16), nullable=False),
    Column("res_id", String(64), nullable=False),
    # Digest first: lookups give digest and type alike, and PostgreSQL builds this key faster
    # (migration 0005 has the figures). The key is the whole row: without a rowid SQLite
    # stores it once, not twice.
    PrimaryKeyConstraint("digest", "res_type", "res_id"),
    sqlite_with_rowid=False,
)

data_key = Table(
    "data_key",
    metadata,
    Column("owner", String(64), primary_key=True),
    Column("kek_id", String(64), nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created", BigInteger, nullable=False),
)
