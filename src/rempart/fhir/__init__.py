"""FHIR R4 for rempart: validation, search parameters and blind-index tokens, Bundles,
OperationOutcome and the CapabilityStatement. Depends on nothing of ours but `rempart.errors`.
"""

from rempart.fhir.bundles import (
    HistoryEntry,
    ResponseEntry,
    history_bundle,
    response_bundle,
    searchset_bundle,
)
from rempart.fhir.capability import capability_statement
from rempart.fhir.compartment import patient_compartment
from rempart.fhir.extract import IndexEntry, extract_index
from rempart.fhir.outcome import operation_outcome, outcome_for
from rempart.fhir.params import SUPPORTED_TYPES, SearchParamDef, search_parameters
from rempart.fhir.query import Clause, SearchQuery, parse_search
from rempart.fhir.references import references
from rempart.fhir.validate import validate

__all__ = [
    "SUPPORTED_TYPES",
    "Clause",
    "HistoryEntry",
    "IndexEntry",
    "ResponseEntry",
    "SearchParamDef",
    "SearchQuery",
    "capability_statement",
    "extract_index",
    "history_bundle",
    "operation_outcome",
    "outcome_for",
    "parse_search",
    "patient_compartment",
    "references",
    "response_bundle",
    "search_parameters",
    "searchset_bundle",
    "validate",
]
