"""A deterministic synthetic French hospital group as FHIR R4 resources (plain dicts).

    hospital = generate(patients=10_000, seed=0)
    load(hospital.directory())
    for batch in hospital.patient_batches(batch_size=500):
        load(batch)

Everything is synthetic (Faker ``fr_FR`` pools, test-NIR OID, fiction phone numbers,
``example.*`` e-mail domains) and reproducible from (patients, seed, as_of).
"""

from rempart.seed.accounts import SeedAccount
from rempart.seed.hospital import DEFAULT_AS_OF, Hospital, generate
from rempart.seed.nir import is_valid_nir, nir_key

__all__ = ["DEFAULT_AS_OF", "Hospital", "SeedAccount", "generate", "is_valid_nir", "nir_key"]
