"""Patient identities and the shape of their records (proportions, dates, coverage)."""

from collections.abc import Iterator
from datetime import date, datetime

from rempart.seed import DEFAULT_AS_OF, Hospital, is_valid_nir
from rempart.seed.codes import (
    EXT_BIRTH_PLACE,
    EXT_IDENTITY_RELIABILITY,
    INS_NIR_TEST,
    IPP,
)

# The generator's "now": midnight (Paris time) at the start of the reference date.
AS_OF = datetime.fromisoformat(f"{DEFAULT_AS_OF.isoformat()}T00:00:00+01:00")
PATIENTS = 3000  # conftest's hospital


def by_type(resources: list[dict], resource_type: str) -> Iterator[dict]:
    return (r for r in resources if r["resourceType"] == resource_type)


def patient_of(resources: list[dict]) -> dict:
    assert resources[0]["resourceType"] == "Patient"
    return resources[0]


def identifier(patient: dict, system: str) -> str:
    return next(i["value"] for i in patient["identifier"] if i["system"] == system)


def test_nir_is_valid_unique_and_consistent_with_identity(patients: list[list[dict]]) -> None:
    assert len(patients) == PATIENTS
    nirs = set()
    for resources in patients:
        patient = patient_of(resources)
        nir = identifier(patient, INS_NIR_TEST)
        assert is_valid_nir(nir), nir
        born = date.fromisoformat(patient["birthDate"])
        assert nir[0] == ("2" if patient["gender"] == "female" else "1")
        assert nir[1:3] == f"{born.year % 100:02d}"
        assert nir[3:5] == f"{born.month:02d}"
        place = next(e["valueAddress"] for e in patient["extension"] if e["url"] == EXT_BIRTH_PLACE)
        if place["country"] == "FR":
            insee = place["extension"][0]["valueCoding"]["code"]
            if insee.startswith(("2A", "2B")) and born.year < 1976:
                insee = "20" + insee[2:]  # one Corsican department before 1976
            assert nir[5:10] == insee
        else:
            assert nir[5:7] == "99"  # born abroad
        nirs.add(nir)
    assert len(nirs) == PATIENTS


def test_identity_traits(patients: list[list[dict]]) -> None:
    statuses = set()
    ipps = set()
    for resources in patients:
        patient = patient_of(resources)
        reliability = next(e for e in patient["extension"] if e["url"] == EXT_IDENTITY_RELIABILITY)
        status = reliability["extension"][0]
        assert status["url"] == "identityStatus"
        statuses.add(status["valueCoding"]["code"])
        official = next(n for n in patient["name"] if n["use"] == "official")
        assert official["family"].isupper()
        assert 1 <= len(official["given"]) <= 4
        assert official["extension"][0]["valueString"] == " ".join(official["given"])
        assert patient["generalPractitioner"][0]["reference"].startswith("Practitioner/")
        assert any(t["system"] == "phone" for t in patient["telecom"])
        for contact in patient["telecom"]:
            if contact["system"] == "email":
                assert contact["value"].rsplit(".", 1)[0].endswith("@example")
            else:
                assert contact["value"][:8] in {
                    "06 39 98",
                    "01 99 00",
                    "02 61 91",
                    "03 53 73",
                    "04 65 71",
                    "05 36 49",
                }
        ipps.add(identifier(patient, IPP))
    assert statuses == {"PROV", "VALI", "RECUP", "QUAL"}
    assert len(ipps) == PATIENTS
    usual = sum(any(n["use"] == "usual" for n in patient_of(rs)["name"]) for rs in patients)
    assert 0.1 * PATIENTS < usual < 0.4 * PATIENTS


def test_about_one_percent_deceased_each_with_a_death_certificate(
    patients: list[list[dict]],
) -> None:
    deceased = 0
    for resources in patients:
        patient = patient_of(resources)
        certificates = [
            d
            for d in by_type(resources, "DocumentReference")
            if d["type"]["coding"][0]["code"] == "64297-5"
        ]
        if "deceasedDateTime" not in patient:
            assert certificates == []
            continue
        deceased += 1
        assert len(certificates) == 1
        death = patient["deceasedDateTime"]
        assert patient["birthDate"] <= death < DEFAULT_AS_OF.isoformat()
        assert certificates[0]["date"][:10] == death
        for encounter in by_type(resources, "Encounter"):
            assert encounter["status"] == "finished"
            assert encounter["period"]["end"][:10] <= death
        for coverage in by_type(resources, "Coverage"):
            assert coverage["period"]["end"] <= death
    assert 0.005 * PATIENTS <= deceased <= 0.02 * PATIENTS


def test_coverage_history(patients: list[list[dict]]) -> None:
    schemes: dict[str, int] = {}
    for resources in patients:
        patient = patient_of(resources)
        mine = list(by_type(resources, "Coverage"))
        kinds = [c["type"]["coding"][1]["code"] for c in mine]
        assert "AMO" in kinds or "AME" in kinds  # everyone has a mandatory scheme
        assert not ("AME" in kinds and "AMO" in kinds)
        for coverage in mine:
            period = coverage["period"]
            assert patient["birthDate"] <= period["start"]
            assert period["start"] <= period.get("end", "9999")
            assert coverage["beneficiary"]["reference"] == f"Patient/{patient['id']}"
        for scheme in set(kinds):
            schemes[scheme] = schemes.get(scheme, 0) + 1
    assert schemes["AMO"] > 0.95 * PATIENTS
    assert 0.4 * PATIENTS < schemes["AMC"] < 0.9 * PATIENTS
    assert 0.03 * PATIENTS < schemes["C2S"] < 0.15 * PATIENTS
    assert 0.001 * PATIENTS < schemes["AME"] < 0.03 * PATIENTS


def test_record_sizes_and_time_line(patients: list[list[dict]]) -> None:
    total = sum(len(rs) for rs in patients)
    assert 10 <= total / PATIENTS <= 25
    in_progress = recent = 0
    for resources in patients:
        for encounter in by_type(resources, "Encounter"):
            start = datetime.fromisoformat(encounter["period"]["start"])
            assert start < AS_OF
            if encounter["status"] == "in-progress":
                in_progress += 1
                assert "end" not in encounter["period"]
            else:
                assert encounter["status"] == "finished"
                end = datetime.fromisoformat(encounter["period"]["end"])
                assert start < end < AS_OF
            if (AS_OF - start).days < 30:
                recent += 1
            assert encounter["serviceProvider"]["reference"].startswith("Organization/")
            assert encounter["participant"][0]["individual"]["reference"].startswith(
                "Practitioner/"
            )
    assert 0 < in_progress < 0.02 * PATIENTS  # a few patients are in hospital right now
    assert recent > 0.03 * PATIENTS


def test_clinical_content_is_coded(patients: list[list[dict]]) -> None:
    systems = set()
    for resources in patients[:500]:
        for resource in resources:
            if resource["resourceType"] in ("Condition", "Observation", "MedicationRequest"):
                concept = resource.get("code") or resource["medicationCodeableConcept"]
                systems.add(concept["coding"][0]["system"])
                assert concept["text"]
            if resource["resourceType"] == "MedicationRequest":
                assert resource["dosageInstruction"][0]["text"]
                assert resource["requester"]["reference"].startswith("Practitioner/")
    assert systems == {
        "http://hl7.org/fhir/sid/icd-10",
        "http://loinc.org",
        "http://www.whocc.no/atc",
    }


def test_decoys_look_ordinary_but_nobody_has_a_reason_to_open_them(
    hospital: Hospital, patients: list[list[dict]]
) -> None:
    decoys = set(hospital.decoy_patient_ids())
    ids = {patient_of(rs)["id"] for rs in patients}
    assert decoys
    assert decoys <= ids
    for resources in patients:
        if patient_of(resources)["id"] not in decoys:
            continue
        assert not list(by_type(resources, "CareTeam"))
        for encounter in by_type(resources, "Encounter"):
            # Ended before the longest care window a hospital can set (365 days): the doctor
            # who attended has no relationship left, and the first reader is out of pattern.
            end = datetime.fromisoformat(encounter["period"]["end"])
            assert (AS_OF - end).days > 365
            assert encounter["status"] == "finished"  # in no unit's census today
    linked = {a.patient for a in hospital.accounts if a.patient}
    assert not {f"Patient/{d}" for d in decoys} & linked


def test_nothing_happens_after_the_reference_date_or_before_birth(
    patients: list[list[dict]],
) -> None:
    # Coverage periods may end in the future (rights are granted until a date); nothing else.
    def dates(node: object) -> list[str]:
        if isinstance(node, dict):
            return [d for v in node.values() for d in dates(v)]
        if isinstance(node, list):
            return [d for v in node for d in dates(v)]
        if isinstance(node, str) and len(node) >= 10 and node[4] == "-" and node[7] == "-":
            return [node[:10]] if node[:4].isdigit() else []
        return []

    for resources in patients:
        born = resources[0]["birthDate"]
        death = resources[0].get("deceasedDateTime", "9999")
        for resource in resources:
            if resource["resourceType"] == "Coverage":
                continue
            for day in dates(resource):
                assert born <= day < DEFAULT_AS_OF.isoformat(), (resource["resourceType"], day)
                if resource["resourceType"] != "DocumentReference":
                    assert day <= death, (resource["resourceType"], day)
