"""Clinical documents (consultation letters, discharge summaries, death certificates).

Notes are short French texts assembled from fragments. They name the patient, as real letters
do, so that an exfiltration test measures the exposure of real-looking documents.
"""

from __future__ import annotations

import base64
import random
from datetime import date

from rempart.seed import codes
from rempart.seed.catalog import Diagnosis
from rempart.seed.codes import JSON, concept, ref
from rempart.seed.patients import PatientContext
from rempart.seed.rand import iso_datetime, new_id

# LOINC document types: (code, display, French title)
CONSULT_NOTE = ("11488-4", "Consult note", "Compte rendu de consultation")
DISCHARGE_SUMMARY = ("18842-5", "Discharge summary", "Compte rendu d'hospitalisation")
EMERGENCY_NOTE = ("34111-5", "Emergency department Note", "Compte rendu de passage aux urgences")
DEATH_CERTIFICATE = ("64297-5", "Death certificate", "Certificat de décès")

_EXAM = (
    "examen clinique sans particularité",
    "auscultation cardio-pulmonaire normale, abdomen souple et indolore",
    "asthénie, pas de signe de gravité",
    "état général conservé, apyrexie",
    "discrets œdèmes des membres inférieurs, pas de signe de décompensation",
)
_FOLLOW_UP = (
    "Revoir en consultation dans trois mois.",
    "Suivi par le médecin traitant, à revoir si besoin.",
    "Bilan biologique de contrôle à prévoir dans un mois.",
    "Contrôle clinique dans six semaines avec les résultats d'imagerie.",
    "Pas de suivi spécialisé nécessaire à ce stade.",
)
_CIRCUMSTANCES = (
    "des suites d'une longue maladie",
    "de mort naturelle",
    "des suites de sa pathologie chronique",
)


def _civility(ctx: PatientContext) -> str:
    return "Mme" if ctx.gender == "female" else "M."


def _fr_date(ordinal: int) -> str:
    return date.fromordinal(ordinal).strftime("%d/%m/%Y")


def note_text(
    rng: random.Random,
    ctx: PatientContext,
    *,
    kind: tuple[str, str, str],
    unit_label: str,
    day: int,
    doctor: str,
    diagnosis: Diagnosis | None,
    history: list[Diagnosis],
    drugs: list[str],
    died: bool = False,
) -> str:
    e = "e" if ctx.gender == "female" else ""  # French past participles agree with the patient
    age = (day - ctx.birth) // 365
    who = f"{_civility(ctx)} {ctx.given} {ctx.family.upper()}, {age} ans,"
    if diagnosis is not None:
        reason = diagnosis.label.lower()
    else:
        reason = "un avis spécialisé" if kind is CONSULT_NOTE else "un bilan diagnostique"
    past = ", ".join(d.label for d in history) or "aucun antécédent notable"
    if died:
        outcome = f"Évolution : décès survenu dans le service le {_fr_date(ctx.death or day)}."
    else:
        treatment = "; ".join(drugs) or "pas de modification du traitement"
        outcome = f"Traitement de sortie : {treatment}.\n{rng.choice(_FOLLOW_UP)}"
    if kind is CONSULT_NOTE:
        opening = f"Cher confrère,\nJ'ai revu en consultation {who} pour {reason}."
    elif kind is EMERGENCY_NOTE:
        opening = f"{who} s'est présenté{e} aux urgences le {_fr_date(day)} pour {reason}."
    else:
        opening = f"{who} a été hospitalisé{e} dans le service le {_fr_date(day)} pour {reason}."
    return (
        f"{kind[2]} — {unit_label}\nDate : {_fr_date(day)}\n\n{opening}\n"
        f"Antécédents : {past}.\nExamen : {rng.choice(_EXAM)}.\n{outcome}\n\nDr {doctor}\n"
    )


def document(
    rng: random.Random,
    ctx: PatientContext,
    kind: tuple[str, str, str],
    *,
    text: str,
    when: str,
    author_id: str,
    custodian_id: str,
    encounter_id: str | None,
) -> JSON:
    resource: JSON = {
        "resourceType": "DocumentReference",
        "id": new_id(rng),
        "status": "current",
        "docStatus": "final",
        "type": concept(codes.LOINC, kind[0], kind[1], kind[2]),
        "subject": ref("Patient", ctx.id),
        "date": when,
        "author": [ref("Practitioner", author_id)],
        "custodian": ref("Organization", custodian_id),
        "description": kind[2],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "language": "fr-FR",
                    "data": base64.b64encode(text.encode()).decode("ascii"),
                    "title": kind[2],
                    "creation": when,
                }
            }
        ],
    }
    if encounter_id is not None:
        resource["context"] = {"encounter": [ref("Encounter", encounter_id)]}
    return resource


def death_certificate(
    rng: random.Random,
    ctx: PatientContext,
    *,
    author: tuple[str, str],  # (Practitioner id, display name)
    custodian_id: str,
    place: str,
    cause: Diagnosis | None,
    encounter_id: str | None,
) -> JSON:
    assert ctx.death is not None
    minutes = rng.randrange(1440)
    born = date.fromordinal(ctx.birth).strftime("%d/%m/%Y")
    cause_text = cause.label if cause else "arrêt cardio-respiratoire"
    e = "e" if ctx.gender == "female" else ""
    text = (
        f"Certificat de décès\n\nJe soussigné(e), Dr {author[1]}, certifie que "
        f"{_civility(ctx)} {ctx.given} {ctx.family.upper()}, né{e} le {born}, "
        f"domicilié{e} à {ctx.commune.name}, est décédé{e} le {_fr_date(ctx.death)} "
        f"à {minutes // 60:02d}h{minutes % 60:02d}, "
        f"{place}, {rng.choice(_CIRCUMSTANCES)}.\n"
        f"Obstacle médico-légal : non.\nCause (volet médical confidentiel) : {cause_text}.\n"
    )
    when = iso_datetime(ctx.death, minutes + 30)
    return document(
        rng,
        ctx,
        DEATH_CERTIFICATE,
        text=text,
        when=when,
        author_id=author[0],
        custodian_id=custodian_id,
        encounter_id=encounter_id,
    )
