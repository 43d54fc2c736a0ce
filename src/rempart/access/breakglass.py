"""Break-the-glass: a clinician's emergency access to a patient outside their care relationships.

`POST /access/break-glass {"patient": "Patient/<id>", "reason": "..."}` grants that clinician
that patient for a limited time (default 1 h) after a fresh second factor, with a written reason
(at least 10 characters), at most N grants per clinician per rolling 24 hours (default 5). Every
grant alerts the security officer and enters a review queue, where a security officer marks it
justified or not.

The answer is the same whether the patient exists or not (201 with the expiry), so the endpoint
cannot be used to probe for patients; the cap and the alert make such probing loud and short.
The reason is sealed under the directory key (it may describe the emergency) and bound to the
grant's id, account and patient.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from rempart.access import notify
from rempart.access.common import (
    RequestConflict,
    RequestNotFound,
    Throttled,
    audit,
    local_ref,
    require,
    require_fresh_factor,
)
from rempart.access.pdp import Principal
from rempart.access.permissions import Permission
from rempart.access.settings import (
    BREAK_GLASS_DAILY_CAP,
    BREAK_GLASS_MINUTES,
    SettingsCache,
)
from rempart.access.tables import break_glass
from rempart.audit.records import AuditSink
from rempart.clock import micros_to_iso, now_micros
from rempart.context import RequestContext
from rempart.crypto import IntegrityError, open_sealed, seal
from rempart.errors import InvalidResource
from rempart.identity.tables import account

MINUTE = 60_000_000
DAY = 86_400_000_000
MIN_REASON = 10
MAX_REASON = 1000
VERDICTS = ("justified", "unjustified")


@dataclass(frozen=True)
class Grant:
    id: str
    account_id: str
    username: str
    patient: str  # "Patient/<id>"
    reason: str
    created: str
    expires: str
    active: bool
    review: str | None
    reviewed_by: str | None


def _aad(grant_id: str, account_id: str, patient: str) -> bytes:
    return f"rempart/break-glass/{grant_id}/{account_id}/{patient}".encode()


class _CapReached(Exception):
    pass


class BreakGlass:
    def __init__(
        self, engine: Engine, key: bytes, settings: SettingsCache, audit_sink: AuditSink
    ) -> None:
        self._engine = engine
        self._key = key
        self._settings = settings
        self._audit = audit_sink

    def grant(
        self, who: Principal, ctx: RequestContext, patient_ref: str, reason: str
    ) -> tuple[str, int]:
        """(grant id, expiry in microseconds)."""
        require(who, Permission.ACCESS_BREAK_GLASS_CREATE)
        _, patient = local_ref(patient_ref.strip(), "Patient")
        text = " ".join(reason.split())
        if len(text) < MIN_REASON:
            raise InvalidResource(
                f"say why in at least {MIN_REASON} characters: the reason is reviewed",
                expression="reason",
            )
        if len(text) > MAX_REASON:
            raise InvalidResource(f"the reason is at most {MAX_REASON} characters")
        require_fresh_factor(who)
        settings = self._settings.current()
        cap = settings.get(BREAK_GLASS_DAILY_CAP)
        now = now_micros()
        grant_id = str(uuid.uuid4())
        expires = now + settings.get(BREAK_GLASS_MINUTES) * MINUTE
        try:
            with self._engine.begin() as conn:
                self._lock_account(conn, who.account_id)
                conn.execute(
                    insert(break_glass).values(
                        id=grant_id,
                        account_id=who.account_id,
                        patient=patient,
                        reason_sealed=seal(
                            self._key, text.encode(), _aad(grant_id, who.account_id, patient)
                        ),
                        created=now,
                        expires=expires,
                    )
                )
                used = conn.execute(
                    select(func.count()).where(
                        break_glass.c.account_id == who.account_id,
                        break_glass.c.created > now - DAY,
                    )
                ).scalar_one()
                if used > cap:
                    raise _CapReached  # rolls the insert back
        except _CapReached:
            audit(self._audit, who, ctx, "break-glass", "denied", patient=patient, detail="cap")
            notify.alert_officer(
                self._engine,
                "break-glass-cap",
                "a clinician hit the daily break-the-glass cap",
                {"account_id": who.account_id, "patient": patient, "cap": cap},
                warning=True,
            )
            raise Throttled(
                f"at most {cap} break-the-glass grants per 24 hours; call the security officer"
            ) from None
        audit(
            self._audit,
            who,
            ctx,
            "break-glass",
            "success",
            resource_type="Patient",
            resource_id=patient,
            patient=patient,
            reason=text,
            detail=f"grant {grant_id} until {micros_to_iso(expires)}",
        )
        notify.alert_officer(
            self._engine,
            "break-glass",
            "break-the-glass access granted; review it in GET /access/break-glass",
            {
                "grant_id": grant_id,
                "account_id": who.account_id,
                "username": who.username,
                "patient": patient,
                "expires": micros_to_iso(expires),
            },
            warning=True,
        )
        return grant_id, expires

    @staticmethod
    def _lock_account(conn: Connection, account_id: str) -> None:
        # Two grants racing past the cap: on PostgreSQL a row lock on the account serialises
        # them; SQLite has one writer at a time and the insert above comes before the count.
        if conn.dialect.name == "postgresql":
            conn.execute(select(account.c.id).where(account.c.id == account_id).with_for_update())

    # ---- the review queue --------------------------------------------------------------------

    def list(self, who: Principal, *, pending_only: bool, limit: int = 100) -> list[Grant]:
        """Security officers see the queue; a clinician sees their own grants."""
        reviewer = who.may(Permission.ACCESS_BREAK_GLASS_REVIEW)
        if not reviewer:
            require(who, Permission.ACCESS_BREAK_GLASS_CREATE)
        query = select(break_glass, account.c.username).join(
            account, account.c.id == break_glass.c.account_id
        )
        if not reviewer:
            query = query.where(break_glass.c.account_id == who.account_id)
        if pending_only:
            query = query.where(break_glass.c.review.is_(None))
        query = query.order_by(break_glass.c.created.desc()).limit(max(1, min(limit, 500)))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        now = now_micros()
        return [self._grant(r, now) for r in rows]

    def review(self, who: Principal, ctx: RequestContext, grant_id: str, verdict: str) -> Grant:
        require(who, Permission.ACCESS_BREAK_GLASS_REVIEW)
        if verdict not in VERDICTS:
            raise InvalidResource(f"the verdict is one of {', '.join(VERDICTS)}")
        now = now_micros()
        with self._engine.begin() as conn:
            done = conn.execute(
                update(break_glass)
                .where(break_glass.c.id == grant_id, break_glass.c.review.is_(None))
                .values(review=verdict, reviewed_by=who.account_id, reviewed_at=now)
            ).rowcount
            row = conn.execute(
                select(break_glass, account.c.username)
                .join(account, account.c.id == break_glass.c.account_id)
                .where(break_glass.c.id == grant_id)
            ).first()
        if row is None:
            raise RequestNotFound(f"no break-the-glass grant {grant_id}")
        if done != 1:
            raise RequestConflict(f"grant {grant_id} was already reviewed")
        audit(
            self._audit,
            who,
            ctx,
            "break-glass-review",
            "success",
            patient=row.patient,
            detail=f"grant {grant_id}: {verdict}",
        )
        if verdict == "unjustified":
            notify.alert_officer(
                self._engine,
                "break-glass-unjustified",
                "a break-the-glass access was reviewed as unjustified",
                {"grant_id": grant_id, "account_id": row.account_id, "patient": row.patient},
                warning=True,
            )
        return self._grant(row, now)

    def _grant(self, r: Any, now: int) -> Grant:
        """A grant as the API shows it (`r`: a row of break_glass joined with the username)."""
        try:
            aad = _aad(r.id, r.account_id, r.patient)
            reason = open_sealed(self._key, r.reason_sealed, aad).decode()
        except IntegrityError:
            reason = "[unreadable: the sealed reason failed its integrity check]"
        return Grant(
            id=r.id,
            account_id=r.account_id,
            username=r.username,
            patient=f"Patient/{r.patient}",
            reason=reason,
            created=micros_to_iso(r.created),
            expires=micros_to_iso(r.expires),
            active=r.expires > now,
            review=r.review,
            reviewed_by=r.reviewed_by,
        )
