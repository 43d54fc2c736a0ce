"""Create, read, version and update resources; every call carries the policy's Decision.

The decision is checked against the row's plaintext metadata (type, compartment) *before* any
key is unwrapped or any blob decrypted, so a refused request never touches patient plaintext.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError

from rempart.access import relations
from rempart.access.decision import Decision, issued
from rempart.clock import micros_to_iso, now_micros
from rempart.crypto import BlindIndex
from rempart.errors import (
    Conflict,
    Forbidden,
    InvalidResource,
    ResourceNotFound,
    UnprocessableResource,
    VersionConflict,
)
from rempart.fhir import patient_compartment
from rempart.store.bulk import bulk_insert
from rempart.store.codec import index_digests, open_resource, seal_resource
from rempart.store.current import read_current
from rempart.store.db import autocommit
from rempart.store.keyring import DIRECTORY_OWNER, Keyring
from rempart.store.tables import resource, resource_version, search_index

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class Stored:
    """A version as served: its JSON bytes and the metadata for ETag / Location headers."""

    res_type: str
    res_id: str
    version: int
    last_updated: int
    body: bytes

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


def owner_of(compartment: str | None) -> str:
    return compartment or DIRECTORY_OWNER


def refused(decision: Decision, res_type: str, res_id: str) -> Forbidden:
    # One message for "not yours" and "does not exist", so a refusal says nothing about existence.
    del decision
    return Forbidden(f"access to {res_type}/{res_id} is not permitted")


class ResourceStore:
    def __init__(self, engine: Engine, keyring: Keyring, blind: BlindIndex) -> None:
        self.engine = engine
        self.reader = autocommit(engine)  # reads only: no transaction round trips
        self.keyring = keyring
        self.blind = blind

    # ---- reads -------------------------------------------------------------------------------

    def read(self, decision: Decision, res_type: str, res_id: str) -> Stored:
        issued(decision)  # a look-alike object never reaches a row (costs one comparison)
        with self.reader.connect() as conn:
            row, link = read_current(conn, decision, res_type, res_id)
            if row is None:
                if decision.restricted or res_type not in decision.read_types:
                    raise refused(decision, res_type, res_id)
                raise ResourceNotFound(f"{res_type}/{res_id} is not known")
            if not decision.may_read(res_type, row.compartment, conn=conn, link=link):
                raise refused(decision, res_type, res_id)
            owner = owner_of(row.compartment)
            key = self.keyring.key_for(conn, owner, create=False)
        body = open_resource(key, row.payload, res_type, res_id, row.version, owner)
        body = decision.view(res_type, body)  # what this role may see of a permitted record
        return Stored(res_type, res_id, row.version, row.last_updated, body)

    def vread(self, decision: Decision, res_type: str, res_id: str, version: int) -> Stored:
        return self._versions(decision, res_type, res_id, only=version)[0]

    def history(self, decision: Decision, res_type: str, res_id: str) -> list[Stored]:
        return self._versions(decision, res_type, res_id, only=None)

    def _versions(
        self, decision: Decision, res_type: str, res_id: str, *, only: int | None
    ) -> list[Stored]:
        issued(decision)
        link = decision.read_link()
        with self.reader.connect() as conn:
            current = conn.execute(
                select(resource.c.compartment, *([] if link is None else [link.column])).where(
                    resource.c.res_type == res_type, resource.c.res_id == res_id
                ),
                {} if link is None else link.params,
            ).first()
            if current is None:
                if decision.restricted or res_type not in decision.read_types:
                    raise refused(decision, res_type, res_id)
                raise ResourceNotFound(f"{res_type}/{res_id} is not known")
            checked = None if link is None else (link, current.care_link)
            if not decision.may_read(res_type, current.compartment, conn=conn, link=checked):
                raise refused(decision, res_type, res_id)
            query = select(
                resource_version.c.version,
                resource_version.c.owner,
                resource_version.c.last_updated,
                resource_version.c.payload,
            ).where(resource_version.c.res_type == res_type, resource_version.c.res_id == res_id)
            if only is not None:
                query = query.where(resource_version.c.version == only)
            rows = conn.execute(query.order_by(resource_version.c.version.desc())).all()
            if not rows:
                raise ResourceNotFound(f"{res_type}/{res_id} has no version {only}")
            keys = self.keyring.keys_for(conn, {r.owner for r in rows})
        return [
            Stored(
                res_type,
                res_id,
                r.version,
                r.last_updated,
                decision.view(
                    res_type,
                    open_resource(
                        keys.get(r.owner), r.payload, res_type, res_id, r.version, r.owner
                    ),
                ),
            )
            for r in rows
        ]

    def exists(self, conn: Connection, res_type: str, res_id: str) -> bool:
        return (
            conn.execute(
                select(resource.c.version).where(
                    resource.c.res_type == res_type, resource.c.res_id == res_id
                )
            ).first()
            is not None
        )

    # ---- writes ------------------------------------------------------------------------------

    def create(self, decision: Decision, body: dict[str, Any]) -> Stored:
        with self.engine.begin() as conn:
            return self.create_in(conn, decision, body, res_id=str(uuid.uuid4()))

    def update(
        self,
        decision: Decision,
        res_type: str,
        res_id: str,
        body: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> tuple[Stored, bool]:
        try:
            with self.engine.begin() as conn:
                return self.update_in(conn, decision, res_type, res_id, body, if_match=if_match)
        except DbIntegrityError:
            # Another writer inserted the same (type, id, version) first.
            raise Conflict(f"{res_type}/{res_id} was changed concurrently; retry") from None

    def check_write(
        self, conn: Connection, decision: Decision, body: dict[str, Any], *, client_id: bool
    ) -> None:
        """Refuse a write to a patient outside the decision *before* its references are
        resolved: resolving first would answer "Patient/x does not exist" (422) for an unknown
        patient and 403 for someone else's, telling a caller which patients exist.

        `client_id`: the id comes from the client (PUT). A restricted caller cannot create a
        Patient under an id of its choosing, or a PUT would tell a free id from a taken one."""
        issued(decision)
        res_type = str(body.get("resourceType"))
        # A created Patient gets a fresh server id (whatever id the body carries).
        compartment = None if res_type == "Patient" and not client_id else patient_compartment(body)
        if compartment is None:
            # Not known before resolution (a new Patient, a urn: or conditional reference):
            # create_in/update_in check it once it is, and those references reveal nothing.
            return
        # No "new Patient" rule here: the only Patient left is a PUT with a client's id.
        if not decision.may_write(res_type, compartment, conn=conn, body=body, register=False):
            raise Forbidden(f"writing {res_type} for this patient is not permitted")

    def create_in(
        self, conn: Connection, decision: Decision, body: dict[str, Any], *, res_id: str
    ) -> Stored:
        issued(decision)
        res_type = str(body["resourceType"])
        body["id"] = res_id
        compartment = patient_compartment(body)
        decision.check_body(res_type, body)
        if not decision.may_write(res_type, compartment, conn=conn, body=body):
            raise Forbidden(f"creating {res_type} for this patient is not permitted")
        stored = self._write(
            conn, res_type, res_id, body, version=1, compartment=compartment, decision=decision
        )
        return _viewed(decision, stored)

    def update_in(
        self,
        conn: Connection,
        decision: Decision,
        res_type: str,
        res_id: str,
        body: dict[str, Any],
        *,
        if_match: int | None = None,
    ) -> tuple[Stored, bool]:
        issued(decision)
        if body.get("id") != res_id:
            raise InvalidResource(
                f"the resource id ({body.get('id')!r}) must equal the id in the URL ({res_id!r})",
                expression=f"{res_type}.id",
            )
        if not ID_PATTERN.fullmatch(res_id):
            raise InvalidResource("ids are 1 to 64 letters, digits, '-' or '.'")
        current = self._current_for_update(conn, res_type, res_id)
        compartment = patient_compartment(body)
        decision.check_body(res_type, body)
        if current is None:
            # Permission before If-Match: a restricted caller must not learn that it is absent.
            if not decision.may_write(res_type, compartment, conn=conn, body=body, register=False):
                raise refused(decision, res_type, res_id)
            if if_match is not None:
                raise VersionConflict(f"{res_type}/{res_id} does not exist; If-Match cannot hold")
            stored = self._write(
                conn, res_type, res_id, body, version=1, compartment=compartment, decision=decision
            )
            return _viewed(decision, stored), True
        version, old_compartment = current
        if not decision.may_write(res_type, old_compartment, conn=conn) or not decision.may_write(
            res_type, compartment, conn=conn
        ):
            raise refused(decision, res_type, res_id)
        if if_match is not None and if_match != version:
            raise VersionConflict(
                f"{res_type}/{res_id} is at version {version}, not {if_match}; reload and retry"
            )
        if compartment != old_compartment:
            # The data key is the patient's: moving a record to another patient is a new record.
            raise UnprocessableResource(
                "a resource cannot be moved to another patient; create a new one instead"
            )
        old = self._drop_index(conn, res_type, res_id, version, owner_of(compartment))
        decision.carry_over(res_type, body, old)
        stored = self._write(
            conn,
            res_type,
            res_id,
            body,
            version=version + 1,
            compartment=compartment,
            decision=decision,
        )
        return _viewed(decision, stored), False

    def _current_for_update(
        self, conn: Connection, res_type: str, res_id: str
    ) -> tuple[int, str | None] | None:
        query = select(resource.c.version, resource.c.compartment).where(
            resource.c.res_type == res_type, resource.c.res_id == res_id
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        return None if row is None else (row.version, row.compartment)

    def _drop_index(
        self, conn: Connection, res_type: str, res_id: str, version: int, owner: str
    ) -> dict[str, Any]:
        payload = conn.execute(
            select(resource_version.c.payload).where(
                resource_version.c.res_type == res_type,
                resource_version.c.res_id == res_id,
                resource_version.c.version == version,
            )
        ).scalar_one()
        key = self.keyring.key_for(conn, owner, create=False)
        old = orjson.loads(open_resource(key, payload, res_type, res_id, version, owner))
        digests = index_digests(self.blind, res_type, res_id, old)
        conn.execute(
            delete(search_index).where(
                search_index.c.res_type == res_type,
                search_index.c.res_id == res_id,
                search_index.c.digest.in_(digests),
            )
        )
        old_body: dict[str, Any] = old
        return old_body

    def _write(
        self,
        conn: Connection,
        res_type: str,
        res_id: str,
        body: dict[str, Any],
        *,
        version: int,
        compartment: str | None,
        decision: Decision,
    ) -> Stored:
        now = now_micros()
        meta = dict(body.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = micros_to_iso(now)
        body["meta"] = meta
        owner = owner_of(compartment)
        key = self.keyring.key_for(conn, owner, create=True)
        if key is None:  # pragma: no cover - create=True always yields a key
            raise RuntimeError("data key missing")
        conn.execute(
            insert(resource_version).values(
                res_type=res_type,
                res_id=res_id,
                version=version,
                owner=owner,
                last_updated=now,
                payload=seal_resource(key, body, res_type, res_id, version, owner),
            )
        )
        if version == 1:
            conn.execute(
                insert(resource).values(
                    res_type=res_type,
                    res_id=res_id,
                    version=1,
                    compartment=compartment,
                    last_updated=now,
                )
            )
        else:
            conn.execute(
                update(resource)
                .where(resource.c.res_type == res_type, resource.c.res_id == res_id)
                .values(version=version, last_updated=now)
            )
        digests = index_digests(self.blind, res_type, res_id, body)
        bulk_insert(
            conn,
            search_index,
            ("res_type", "digest", "res_id"),
            [(res_type, d, res_id) for d in digests],
        )
        # The care-relationship index, in the same transaction as the record it comes from.
        relations.record(
            conn,
            res_type,
            res_id,
            compartment,
            body,
            replace=version > 1,
            registrant=decision.registrant,
        )
        return Stored(res_type, res_id, version, now, orjson.dumps(body))


def _viewed(decision: Decision, stored: Stored) -> Stored:
    """What the writer gets back: the version it wrote, minus what its role may not see."""
    body = decision.view(stored.res_type, stored.body)
    if body is stored.body:
        return stored
    return Stored(stored.res_type, stored.res_id, stored.version, stored.last_updated, body)
