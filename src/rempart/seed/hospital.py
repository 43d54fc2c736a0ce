"""The public entry point: ``generate(patients, seed)`` returns a ``Hospital``."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from datetime import date
from functools import lru_cache

from rempart.seed.accounts import PatientHolder, SeedAccount, build_accounts
from rempart.seed.clinical import Chronic, Records, build_encounter, condition, encounter_days
from rempart.seed.codes import JSON
from rempart.seed.coverage import build_coverages
from rempart.seed.directory import Directory, build_directory
from rempart.seed.documents import death_certificate
from rempart.seed.history import allergies, care_team, chronic_treatments, pick_chronic
from rempart.seed.patients import PatientContext, build_patient
from rempart.seed.pools import Pools, build_pools
from rempart.seed.rand import derive_int, new_id, rng_for

# Reference date of the synthetic record ("today" for the generator). Fixed rather than
# date.today() so that the same (patients, seed) always gives byte-identical resources.
DEFAULT_AS_OF = date(2026, 11, 1)
PATIENT_ACCOUNTS = 5
# About one patient in 500 is a decoy (honeytoken): an ordinary-looking record that no clinician
# has a reason to open, so any access to it is suspicious.
DECOY_ONE_IN = 500

_pools = lru_cache(maxsize=4)(build_pools)  # Faker pools are the slow part of construction


class Hospital:
    """A synthetic French hospital group. Resources are plain FHIR R4 dicts.

    Ingest ``directory()`` first, then ``patient_batches()``. Within a batch, references only
    point to the directory or to resources earlier in the same batch, so sequential PUTs (ids
    are client-assigned) never leave a dangling reference. Patient ``i`` depends only on
    (seed, patients, as_of, i): batches can be generated in any order or in parallel processes.
    """

    def __init__(self, patients: int, seed: int = 0, as_of: date = DEFAULT_AS_OF) -> None:
        if patients < 0:
            raise ValueError("patients must be >= 0")
        self.patients = patients
        self.seed = seed
        self.as_of = as_of
        self._pools: Pools = _pools(seed)
        if patients > self._pools.capacity:
            raise ValueError(f"at most {self._pools.capacity} patients (unique NIRs) per seed")
        self._directory: Directory = build_directory(seed, patients, self._pools)
        self.accounts: list[SeedAccount] = build_accounts(
            seed, self._pools, self._directory, self._account_holders()
        )

    def directory(self) -> list[JSON]:
        """Organizations (establishments, units, payers), Locations, Practitioners (hospital
        doctors and GPs), PractitionerRoles. A fresh copy on every call."""
        return copy.deepcopy(list(self._directory.resources))

    def patient_batches(
        self, batch_size: int = 500, start: int = 0, stop: int | None = None
    ) -> Iterator[list[JSON]]:
        """Resources of patients [start, stop), ``batch_size`` patients per list."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        stop = self.patients if stop is None else min(stop, self.patients)
        for first in range(max(start, 0), stop, batch_size):
            batch: list[JSON] = []
            for index in range(first, min(first + batch_size, stop)):
                batch.extend(self.patient_resources(index))
            yield batch

    def decoy_patient_ids(self) -> list[str]:
        """Ids of the decoy patients (included in patient_batches like any other)."""
        return [self._patient_id(i) for i in range(self.patients) if self._is_decoy(i)]

    def _is_decoy(self, index: int) -> bool:
        return derive_int(self.seed, "decoy", index) % DECOY_ONE_IN == 0

    def _patient_id(self, index: int) -> str:
        return new_id(rng_for(self.seed, "patient", index))

    def _account_holders(self) -> list[PatientHolder]:
        holders: list[PatientHolder] = []
        for index in range(self.patients):
            if len(holders) == PATIENT_ACCOUNTS:
                break
            ctx = self.patient_context(index)
            if ctx.death is None and ctx.age >= 18 and not ctx.decoy:
                holders.append(PatientHolder(ctx.id, ctx.given, ctx.family))
        return holders

    def patient_context(self, index: int) -> PatientContext:
        """Identity facts of patient ``index`` (age, death, names...), e.g. to pick test users."""
        return self._generate(index)[0]

    def patient_resources(self, index: int) -> list[JSON]:
        """All resources of patient ``index``, Patient first, in a safe ingest order."""
        return self._generate(index)[1]

    def _generate(self, index: int) -> tuple[PatientContext, list[JSON]]:
        if not 0 <= index < self.patients:
            raise IndexError(index)
        seed, as_of, directory = self.seed, self.as_of, self._directory
        rng = rng_for(seed, "patient", index)
        patient_id = new_id(rng)  # first draw, so _patient_id() can recompute it cheaply
        ctx, patient = build_patient(
            rng,
            index=index,
            patient_id=patient_id,
            pools=self._pools,
            directory=directory,
            as_of=as_of,
            decoy=self._is_decoy(index),
        )
        records = Records()
        chronic: list[Chronic] = []
        for diagnosis, onset in pick_chronic(rng, ctx, as_of):
            resource = condition(
                rng,
                ctx,
                diagnosis,
                category="problem-list-item",
                onset=onset,
                active=True,
                recorder=ctx.gp.id,
            )
            records.conditions.append(resource)
            chronic.append(Chronic(diagnosis, resource["id"], onset))
        coverages = build_coverages(rng, ctx, directory, as_of, [c.diagnosis for c in chronic])

        for day in encounter_days(rng, ctx, as_of):
            build_encounter(rng, ctx, directory, records, day=day, as_of=as_of, chronic=chronic)
        # About half of deaths in France happen in hospital: then a last stay ends in death.
        died_in_hospital = (
            ctx.death is not None and ctx.death - ctx.birth > 15 and rng.random() < 0.5
        )
        if died_in_hospital and ctx.death is not None:
            day = ctx.death - rng.randint(1, 10)
            build_encounter(
                rng,
                ctx,
                directory,
                records,
                day=day,
                as_of=as_of,
                chronic=chronic,
                enc_class="IMP",
                died=True,
            )
        chronic_treatments(rng, ctx, records, chronic, as_of)
        allergies(rng, ctx, records, as_of)
        care_team(rng, ctx, directory, records, chronic)
        if ctx.death is not None:
            records.documents.append(
                self._death_certificate(rng, ctx, records, died_in_hospital, chronic)
            )
        return ctx, [
            patient,
            *coverages,
            *records.encounters,
            *records.conditions,
            *records.allergies,
            *records.medications,
            *records.observations,
            *records.documents,
            *records.care_teams,
        ]

    def _death_certificate(
        self,
        rng: random.Random,
        ctx: PatientContext,
        records: Records,
        in_hospital: bool,
        chronic: list[Chronic],
    ) -> JSON:
        cause = chronic[0].diagnosis if chronic else None
        if in_hospital:
            # Written by the doctor of the last stay, filed with that encounter.
            unit, doctor = records.seen[-1]
            establishment = self._directory.establishments[unit.establishment]
            return death_certificate(
                rng,
                ctx,
                author=(doctor.id, f"{doctor.given} {doctor.family.upper()}"),
                custodian_id=establishment.org_id,
                place=f"au {establishment.name}",
                cause=cause,
                encounter_id=records.encounters[-1]["id"],
            )
        gp = ctx.gp  # died at home: the médecin traitant certifies, a copy joins the record
        return death_certificate(
            rng,
            ctx,
            author=(gp.id, f"{gp.given} {gp.family.upper()}"),
            custodian_id=self._directory.establishments[0].org_id,
            place="à son domicile",
            cause=cause,
            encounter_id=None,
        )


def generate(patients: int, seed: int = 0, *, as_of: date = DEFAULT_AS_OF) -> Hospital:
    """A deterministic synthetic hospital: same arguments, byte-identical resources."""
    return Hospital(patients, seed, as_of)
