"""The capability that patient data reads and writes require.

Only the policy decision point (`rempart.access.pdp`) can construct a `Decision`: the constructor
demands a private token, and `dataclasses.replace` cannot copy it into a widened one. The
store's read and write paths take a `Decision` argument, so code that has not been through the
policy cannot reach patient data: passing anything else is a type error (mypy --strict), and
`issued(decision)` turns a look-alike object into a runtime TypeError at a store entry point.

A decision names the permitted resource types, the patients (a `PatientScope`, answered in SQL
on plaintext metadata before any decryption) and the reason; `explain(patient)` gives the care
relationship that let a given patient's record through, for the audit trail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection

from rempart.access import views
from rempart.access.permissions import PATIENT_DATA_TYPES
from rempart.access.scope import PatientScope, ReadLink, compartment_is_empty
from rempart.errors import Forbidden

_ISSUER: Final = object()
_NOTHING_HIDDEN: Mapping[str, frozenset[str]] = {}


@dataclass(frozen=True, slots=True)
class Decision:
    account_id: str
    role: str
    read_types: frozenset[str]
    write_types: frozenset[str]
    patients: PatientScope
    reason: str
    # An init-only argument, not a field: `dataclasses.replace(decision, patients=...)` would
    # otherwise copy the token and widen a decision outside the PDP; now it must be named.
    _issuer: InitVar[object]
    # Patients this decision may write to, when it differs from what it may read (integration
    # clients write results for any patient and read none).
    write_patients: PatientScope | None = None
    # Elements withheld per resource type (secretaries do not see an Encounter's diagnoses).
    hidden: Mapping[str, frozenset[str]] = field(default_factory=lambda: _NOTHING_HIDDEN)
    # May find a Patient outside its scope by exact identity traits (front desks).
    identity_lookup: bool = False
    # "Account/<id>" written as the registrant of a Patient record this decision creates.
    registrant: str | None = None
    _reasons: dict[str, str] = field(default_factory=dict)

    def __post_init__(self, _issuer: object) -> None:
        if _issuer is not _ISSUER:
            raise TypeError("a Decision is issued by the policy decision point only")

    # ---- the store's questions -----------------------------------------------------------

    def may_read(
        self,
        res_type: str,
        compartment: str | None,
        *,
        conn: Connection,
        link: tuple[ReadLink, object] | None = None,
    ) -> bool:
        """`link`: this decision's `read_link()` and the value its column took in the row's
        SELECT, which then answers for the care-link query."""
        return res_type in self.read_types and self._covers(
            self.patients, conn, res_type, compartment, link
        )

    def read_link(self) -> ReadLink | None:
        """The patient check as a column of the read's SELECT (`scope.ReadLink`), or None."""
        return None if self.patients.everyone else self.patients.read_link()

    def may_write(
        self,
        res_type: str,
        compartment: str | None,
        *,
        conn: Connection,
        body: dict[str, Any] | None = None,
        register: bool = True,
    ) -> bool:
        if res_type not in self.write_types:
            return False
        scope = self.write_patients or self.patients
        if self._covers(scope, conn, res_type, compartment):
            return True
        if compartment is None or scope.everyone:
            return False
        # A new Patient starts a compartment nobody is related to yet: whoever may write
        # Patients may create one (and becomes its registrant). Checked against the table, so
        # a client-chosen id cannot claim an existing compartment.
        if (
            register
            and res_type == "Patient"
            and self.registrant
            and compartment_is_empty(conn, compartment)
        ):
            self._reasons[compartment] = "registering a new patient record"
            return True
        # A front desk's admission in its own unit (never a clinician's: `Relationships`).
        # Checked before references are resolved (`check_write`), so a refused write to an
        # unknown patient answers exactly as one to someone else's.
        if body is not None and (reason := scope.admits(conn, body)):
            self._reasons[compartment] = reason
            return True
        return False

    def _covers(
        self,
        scope: PatientScope,
        conn: Connection,
        res_type: str,
        compartment: str | None,
        link: tuple[ReadLink, object] | None = None,
    ) -> bool:
        if scope.everyone:
            return True
        if compartment is None:
            # Directory resources belong to no patient. A patient-data resource outside any one
            # compartment (a Provenance naming several patients, an Observation of a device)
            # is for unrestricted decisions only: it may still name patients.
            return res_type not in PATIENT_DATA_TYPES
        if compartment in self._reasons:
            return True
        # The column's value answers only the question this scope would ask (a value read for
        # another account's scope must not open this one's door).
        if link is not None and link[0].same_question(scope.read_link()):
            reason = link[0].reason(link[1])
        else:
            reason = scope.covers(conn, compartment)
        if reason is None:
            return False
        self._reasons[compartment] = reason
        return True

    @property
    def restricted(self) -> bool:
        """True when the decision names patients: then absence must look like refusal."""
        return not self.patients.everyone

    def explain(self, patient: str | None = None) -> str:
        """Why this decision let `patient`'s data through: the care relationship found when the
        store checked it. Without `patient`, the relationship of the one patient checked so far
        (a read, a history), else the general reason (a search, a directory read)."""
        if patient is None and len(self._reasons) == 1:
            patient = next(iter(self._reasons))
        if patient is not None and patient in self._reasons:
            return f"{self.reason}: {self._reasons[patient]}"
        return self.reason

    # ---- searches --------------------------------------------------------------------------

    def search_filter(
        self, res_type: str, echo: list[tuple[str, str]], compartment: ColumnElement[Any]
    ) -> ColumnElement[bool] | None:
        """The SQL condition a search of `res_type` must add; None: no patient restriction."""
        scope = self.search_scope(res_type, echo)
        return None if scope is None else scope.where(compartment)

    def search_scope(self, res_type: str, echo: list[tuple[str, str]]) -> PatientScope | None:
        """The patient scope a search of `res_type` is held to; None: no patient restriction.

        Refuses searches on withheld elements. An exact identity lookup by a front desk sees
        every Patient that matches it exactly, and only Patients.
        """
        blocked = views.CLINICAL_SEARCH_PARAMS.get(res_type, frozenset())
        if res_type in self.hidden and blocked & set(views.param_names(echo)):
            raise Forbidden(f"searching {res_type} by clinical elements is not permitted")
        if self.identity_lookup and views.is_identity_lookup(res_type, echo):
            return None
        return self.patients

    # ---- what the caller sees and may send ---------------------------------------------------

    def view(self, res_type: str, body: bytes) -> bytes:
        hidden = self.hidden.get(res_type)
        return body if not hidden else views.redact(hidden, body)

    def check_body(self, res_type: str, body: dict[str, Any]) -> None:
        hidden = self.hidden.get(res_type)
        if hidden and (sent := views.written_hidden(hidden, body)):
            raise Forbidden(
                f"{res_type}.{', '.join(sent)}: clinical elements are not yours to write"
            )

    def carry_over(self, res_type: str, new: dict[str, Any], old: dict[str, Any]) -> None:
        hidden = self.hidden.get(res_type)
        if hidden:
            views.carry_over(hidden, new, old)


def issued(decision: object) -> Decision:
    """`decision` itself if the PDP issued it, else TypeError.

    For the store's entry points: a duck-typed object with `may_read` and `restricted` would
    otherwise pass where a Decision is expected. An exact type check (not isinstance): a
    subclass could override `may_read`. Costs one comparison.
    """
    if type(decision) is not Decision:
        raise TypeError("patient data is reached with a Decision issued by the policy only")
    return decision
