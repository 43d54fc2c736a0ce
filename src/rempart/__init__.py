"""rempart: a FHIR R4 patient-record server built so that a stolen account cannot empty it."""

__version__ = "0.1.0"
