"""What the guard's four-eyes request kinds do once approved (`rempart.access.kinds`):

- `guard-settings`: several `guard.*` settings at once (thresholds, windows, working hours,
  responses, per-unit thresholds `guard.unit.<unit id>.patients_*`, see units.py), each
  checked against its bounds, so no approved change turns the guard off;
- `plant-decoys`: new decoy patients for a real deployment: realistic synthetic identities
  (the seed's generator) stored like any patient, with no care relationship, registered as
  keyed tags only. Neither the request, its result nor any notice names them: an approver who
  learnt the ids could avoid them.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sqlalchemy import Engine, insert, update

from rempart.access import settings as policy
from rempart.access.pdp import system_decision
from rempart.access.tables import access_setting
from rempart.clock import now_micros
from rempart.errors import InvalidResource
from rempart.guard import settings as _guard_settings  # noqa: F401  (registers guard.* keys)
from rempart.guard.decoys import GUARD_OWNER, Decoys
from rempart.guard.units import check_unit_value, is_unit_key
from rempart.store.keyring import Keyring
from rempart.store.repository import ResourceStore

# Elements a decoy keeps from a generated Patient: an identity, nothing that points into a
# directory the deployment does not have, and no identifier that could collide with a real one.
_KEEP = ("resourceType", "active", "name", "telecom", "gender", "birthDate", "address")


def check_guard_values(values: dict[str, int]) -> dict[str, int]:
    if not values:
        raise InvalidResource("name at least one guard setting")
    out: dict[str, int] = {}
    for key, raw in values.items():
        if not key.startswith("guard."):
            raise InvalidResource(f"{key} is not a guard setting (use change-setting)")
        out[key] = check_unit_value(key, raw) if is_unit_key(key) else policy.check_value(key, raw)
    return out


def apply_guard_values(
    engine: Engine, cache: policy.SettingsCache, values: dict[str, int], request_id: str
) -> str:
    checked = check_guard_values(values)
    now = now_micros()
    with engine.begin() as conn:
        for key, value in sorted(checked.items()):
            done = conn.execute(
                update(access_setting)
                .where(access_setting.c.key == key)
                .values(value=str(value), changed=now, request_id=request_id)
            ).rowcount
            if done == 0:
                conn.execute(
                    insert(access_setting).values(
                        key=key, value=str(value), changed=now, request_id=request_id
                    )
                )
    cache.invalidate()
    return "; ".join(f"{k} = {v}" for k, v in sorted(checked.items()))


def decoy_patients(count: int) -> list[dict[str, Any]]:
    """`count` realistic Patient resources from the synthetic generator, with a random seed."""
    from rempart.seed import generate

    hospital = generate(count, secrets.randbelow(2**31))
    out = []
    for index in range(count):
        generated = hospital.patient_resources(index)[0]
        patient = {k: generated[k] for k in _KEEP if k in generated}
        patient["id"] = str(uuid.uuid4())
        out.append(patient)
    return out


def plant_decoys(
    engine: Engine, store: ResourceStore, keyring: Keyring, count: int, request_id: str
) -> str:
    decoys = Decoys(engine, keyring.ensure(GUARD_OWNER))
    decision = system_decision(f"decoy patients planted by approved request {request_id}")
    patients = decoy_patients(count)
    with engine.begin() as conn:
        for patient in patients:
            store.create_in(conn, decision, patient, res_id=patient["id"])
        planted = decoys.plant(conn, [p["id"] for p in patients], request_id)
    return f"{planted} decoy patients planted (their ids are not shown)"
