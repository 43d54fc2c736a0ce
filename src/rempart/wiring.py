"""Everything a process needs, built in one place from Settings (the CLI and the API share it)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from rempart.access.execute import Env as AccessEnv
from rempart.access.pdp import Policy
from rempart.access.service import AccessService
from rempart.audit.factory import open_audit
from rempart.audit.log import AuditLog
from rempart.config import Settings
from rempart.crypto import BlindIndex, KeyProvider, load_key_provider
from rempart.guard.engine import Guard
from rempart.guard.factory import open_guard
from rempart.guard.service import GuardService
from rempart.guard.sink import GuardedSink
from rempart.identity.service import IdentityService
from rempart.service.bundles import BundleService
from rempart.service.records import RecordService
from rempart.store.db import make_engine, reads_on_loop
from rempart.store.keyring import DIRECTORY_OWNER, SEARCH_OWNER, Keyring
from rempart.store.migrate import is_current
from rempart.store.repository import ResourceStore


class NotInitialised(RuntimeError):
    """The database schema is missing or older than this code: run `rempart init`."""


@dataclass
class Services:
    settings: Settings
    engine: Engine
    provider: KeyProvider
    keyring: Keyring
    store: ResourceStore
    audit: AuditLog  # the AuditSink every package records through (issue #5)
    identity: IdentityService
    policy: Policy
    records: RecordService
    bundles: BundleService
    access: AccessService  # break-the-glass, four-eyes requests, exports (issue #4)
    guard: Guard  # scores every access before its data leaves (issue #7); no switch turns it off
    security: GuardService  # the security officer's alerts, containments, releases

    # Reads (and vreads) run on the event loop (`store.db.reads_on_loop`); set once here.
    reads_inline: bool = False

    def close(self) -> None:
        self.guard.close()  # drains the alert webhook queue
        self.audit.close()  # flushes and signs a final tree head
        self.engine.dispose()
        close = getattr(self.provider, "close", None)  # PKCS#11: release this process's login
        if close is not None:
            close()


def open_provider(settings: Settings) -> KeyProvider:
    """The key provider, checked: a missing or unreadable key stops the process here."""
    provider = load_key_provider(
        settings.key_provider, settings.home, **settings.key_provider_options
    )
    provider.check()
    return provider


def open_services(settings: Settings, *, pool_size: int = 10) -> Services:
    provider = open_provider(settings)
    engine = make_engine(settings.database_url, pool_size=pool_size)
    if not is_current(engine):
        engine.dispose()
        raise NotInitialised(
            f"the database at {settings.database_url} is not initialised or not up to date; "
            "run `rempart init` first"
        )
    keyring = Keyring(engine, provider)
    store = ResourceStore(engine, keyring, BlindIndex(keyring.ensure(SEARCH_OWNER)))
    policy = Policy(engine)
    audit = open_audit(settings, engine, provider, keyring.ensure(DIRECTORY_OWNER))
    # Every service records through the guard: reads, searches, bundles, writes, refusals,
    # break-the-glass, sign-ins (the audit routes keep the bare log: they serve the log itself).
    guard = open_guard(settings, engine, keyring, policy.settings)
    guarded = GuardedSink(audit, guard)
    identity = IdentityService(
        engine,
        keyring.ensure(DIRECTORY_OWNER),
        audit=guarded,
        config=settings.identity,
        profile=settings.profile,
    )
    access_env = AccessEnv(
        engine, identity, store, keyring, keyring.ensure(DIRECTORY_OWNER), policy.settings, audit
    )
    return Services(
        settings=settings,
        engine=engine,
        provider=provider,
        keyring=keyring,
        store=store,
        audit=audit,
        identity=identity,
        policy=policy,
        records=RecordService(
            store,
            policy,
            guarded,
            default_count=settings.search_default_count,
            max_count=settings.search_max_count,
        ),
        bundles=BundleService(store, policy, guarded),
        access=AccessService(access_env, guarded),
        guard=guard,
        security=GuardService(engine, guard, identity, guarded),
        reads_inline=reads_on_loop(engine, settings.reads_on_event_loop),
    )
