"""The capability that patient data reads and writes require.

Only the policy decision point (`rempart.access.pdp`) can construct a `Decision`: the constructor
demands a private token. The store's read and write paths take a `Decision` argument, so code
that has not been through the policy cannot reach patient data (a bypass is a type error and a
runtime TypeError, not a review catch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_ISSUER: Final = object()


@dataclass(frozen=True, slots=True)
class Decision:
    account_id: str
    role: str
    read_types: frozenset[str]
    write_types: frozenset[str]
    # None means: every patient compartment (the interim clinician rule); otherwise the set of
    # patient ids this decision covers. Resources outside any compartment (directory) are
    # governed by the type sets alone.
    patients: frozenset[str] | None
    reason: str
    _issuer: object

    def __post_init__(self) -> None:
        if self._issuer is not _ISSUER:
            raise TypeError("a Decision is issued by the policy decision point only")

    def may_read(self, res_type: str, compartment: str | None) -> bool:
        return res_type in self.read_types and self._covers(compartment)

    def may_write(self, res_type: str, compartment: str | None) -> bool:
        return res_type in self.write_types and self._covers(compartment)

    @property
    def restricted(self) -> bool:
        """True when the decision names patients: then absence must look like refusal."""
        return self.patients is not None

    def _covers(self, compartment: str | None) -> bool:
        if compartment is None or self.patients is None:
            return True
        return compartment in self.patients
