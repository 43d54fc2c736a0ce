"""Sign-in throttling, in the database so every server process enforces the same limits.

Three layers, checked before any password is hashed:
- per client address and per network (/24 for IPv4, /64 for IPv6): moving windows over
  attempts and failures (`throttle_event`); over a limit the answer is 429 with Retry-After;
- per username (`login_failure`, keyed by a digest of the folded username, known or not, so
  the answers never reveal which usernames exist): after 10 consecutive failures each attempt
  waits an increasing delay, and after 100 the username is locked until a security officer
  unlocks it. Only a completed second factor resets the count.

A rejected request writes nothing, so an attacker who keeps knocking gets the window's quota
and no more: a credential-stuffing run from one network is held to `network_failures` guesses
per window, and raises one alert per window for the security officer.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from rempart.identity.errors import AccountLocked, Throttled
from rempart.identity.settings import ThrottleLimits
from rempart.identity.tables import login_failure, throttle_event

SECOND = 1_000_000
Alert = Callable[[str, str, dict[str, str | int]], None]  # kind, message, details


def network_of(ip: str) -> str:
    """The /24 or /64 an address belongs to; a non-IP peer name stands for itself."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:60]
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def subject_of(username: str) -> bytes:
    folded = unicodedata.normalize("NFKC", username).casefold().strip()
    return hashlib.sha256(b"rempart/login/" + folded.encode()).digest()


@dataclass(frozen=True)
class FailureOutcome:
    failures: int
    locked_now: bool  # this failure crossed the lock threshold


class Throttle:
    def __init__(
        self, engine: Engine, limits: ThrottleLimits, clock: Callable[[], int], alert: Alert
    ) -> None:
        self._engine = engine
        self._limits = limits
        self._clock = clock
        self._alert = alert
        self._window = limits.window_seconds * SECOND

    def delay_seconds(self, failures: int) -> int:
        """0 under the threshold, then 1, 2, 4... seconds, capped."""
        over = failures - self._limits.account_delay_after
        if over < 0:
            return 0
        return int(min(self._limits.max_delay_seconds, 2 ** min(over, 30)))

    # ---- before the password is checked ----------------------------------------------------

    def admit(self, ip: str, subject: bytes) -> None:
        """Raises Throttled or AccountLocked, or records the attempt and lets it through."""
        now = self._clock()
        ip_scope, net_scope = scopes_of(ip)
        limits = {
            (ip_scope, "a"): self._limits.ip_attempts,
            (ip_scope, "f"): self._limits.ip_failures,
            (net_scope, "a"): self._limits.network_attempts,
            (net_scope, "f"): self._limits.network_failures,
        }
        with self._engine.begin() as conn:
            counts = self._counts(conn, (ip_scope, net_scope), ("a", "f"), now)
            for key, limit in limits.items():
                if counts.get(key, 0) >= limit:
                    raise Throttled(self._retry_after(conn, *key, limit, now))
            self._check_subject(conn, subject, now)
            conn.execute(
                insert(throttle_event),
                [{"scope": s, "kind": "a", "at": now, "subject": None} for s in scopes_of(ip)],
            )
        if secrets.randbelow(200) == 0:
            self.prune()

    def _check_subject(self, conn: Connection, subject: bytes, now: int) -> None:
        row = conn.execute(select(login_failure).where(login_failure.c.subject == subject)).first()
        if row is None:
            return
        if row.locked:
            raise AccountLocked()
        if row.failures < self._limits.account_delay_after:
            return
        if row.next_allowed > now:
            raise Throttled(-(-(row.next_allowed - now) // SECOND))
        # Book the next delay before checking: of a burst of parallel guesses, one gets through.
        booked = conn.execute(
            update(login_failure)
            .where(
                login_failure.c.subject == subject,
                login_failure.c.next_allowed == row.next_allowed,
            )
            .values(next_allowed=now + self.delay_seconds(row.failures + 1) * SECOND)
        ).rowcount
        if booked != 1:
            raise Throttled(1)

    def check_network(self, ip: str) -> None:
        """For the second step: an address over its failure quota cannot keep guessing codes."""
        now = self._clock()
        ip_scope, net_scope = scopes_of(ip)
        with self._engine.connect() as conn:
            counts = self._counts(conn, (ip_scope, net_scope), ("f",), now)
            for scope, limit in (
                (ip_scope, self._limits.ip_failures),
                (net_scope, self._limits.network_failures),
            ):
                if counts.get((scope, "f"), 0) >= limit:
                    raise Throttled(self._retry_after(conn, scope, "f", limit, now))

    def _counts(
        self, conn: Connection, scopes: tuple[str, ...], kinds: tuple[str, ...], now: int
    ) -> dict[tuple[str, str], int]:
        rows = conn.execute(
            select(throttle_event.c.scope, throttle_event.c.kind, func.count())
            .where(
                throttle_event.c.scope.in_(scopes),
                throttle_event.c.kind.in_(kinds),
                throttle_event.c.at > now - self._window,
            )
            .group_by(throttle_event.c.scope, throttle_event.c.kind)
        ).all()
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def _retry_after(self, conn: Connection, scope: str, kind: str, limit: int, now: int) -> int:
        # The window frees a slot when the limit-th most recent event leaves it.
        at = conn.execute(
            select(throttle_event.c.at)
            .where(
                throttle_event.c.scope == scope,
                throttle_event.c.kind == kind,
                throttle_event.c.at > now - self._window,
            )
            .order_by(throttle_event.c.at.desc())
            .limit(1)
            .offset(limit - 1)
        ).scalar()
        return -(-((at or now) + self._window - now) // SECOND)

    # ---- after the outcome is known ---------------------------------------------------------

    def failed(self, ip: str, subject: bytes) -> FailureOutcome:
        now = self._clock()
        scopes = scopes_of(ip)
        with self._engine.begin() as conn:
            conn.execute(
                insert(throttle_event),
                [{"scope": s, "kind": "f", "at": now, "subject": subject[:8]} for s in scopes],
            )
            outcome = self._count_failure(conn, subject, now)
            alerts = self._stuffing_alerts(conn, scopes, now)
        for scope, failures, usernames in alerts:
            self._alert(
                "credential-stuffing",
                f"{failures} failed sign-ins for {usernames} different usernames from {scope} "
                f"in {self._limits.window_seconds // 60} minutes; further attempts from there "
                "are refused until the window passes",
                {"scope": scope, "failures": failures, "usernames": usernames},
            )
        return outcome

    def _count_failure(self, conn: Connection, subject: bytes, now: int) -> FailureOutcome:
        # One atomic upsert, so concurrent failures each count (no lost update, no race on the
        # first insert); exactly one of them sees the lock threshold.
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        first = dialect_insert(login_failure).values(
            subject=subject, failures=1, last_failure=now, next_allowed=now, locked=False
        )
        upsert = first.on_conflict_do_update(
            index_elements=[login_failure.c.subject],
            set_={"failures": login_failure.c.failures + 1, "last_failure": now},
        ).returning(login_failure.c.failures, login_failure.c.locked)
        failures, was_locked = conn.execute(upsert).one()
        locked = bool(was_locked) or failures >= self._limits.account_lock_after
        conn.execute(
            update(login_failure)
            .where(login_failure.c.subject == subject)
            .values(next_allowed=now + self.delay_seconds(failures) * SECOND, locked=locked)
        )
        return FailureOutcome(int(failures), locked and not was_locked)

    def _stuffing_alerts(
        self, conn: Connection, scopes: tuple[str, str], now: int
    ) -> list[tuple[str, int, int]]:
        counts = self._counts(conn, scopes, ("f", "x"), now)
        found = []
        for scope, limit in zip(
            scopes, (self._limits.ip_failures, self._limits.network_failures), strict=True
        ):
            failures = counts.get((scope, "f"), 0)
            if failures < limit or counts.get((scope, "x"), 0):
                continue
            usernames = conn.execute(
                select(func.count(func.distinct(throttle_event.c.subject))).where(
                    throttle_event.c.scope == scope,
                    throttle_event.c.kind == "f",
                    throttle_event.c.at > now - self._window,
                )
            ).scalar_one()
            # The marker keeps it to one alert per scope and window.
            conn.execute(insert(throttle_event).values(scope=scope, kind="x", at=now))
            found.append((scope, failures, int(usernames)))
        return found

    def succeeded(self, subject: bytes) -> None:
        """A completed second factor: the consecutive-failure count starts again."""
        with self._engine.begin() as conn:
            conn.execute(
                delete(login_failure).where(
                    login_failure.c.subject == subject, ~login_failure.c.locked
                )
            )

    def unlock(self, subject: bytes) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(login_failure).where(login_failure.c.subject == subject))

    def is_locked(self, subject: bytes) -> bool:
        with self._engine.connect() as conn:
            return bool(
                conn.execute(
                    select(login_failure.c.locked).where(login_failure.c.subject == subject)
                ).scalar()
            )

    def prune(self) -> None:
        cutoff = self._clock() - self._window - 60 * SECOND
        with self._engine.begin() as conn:
            conn.execute(delete(throttle_event).where(throttle_event.c.at < cutoff))


def scopes_of(ip: str) -> tuple[str, str]:
    return f"ip:{ip[:60]}", f"net:{network_of(ip)}"
