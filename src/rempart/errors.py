"""Failures that reach a client, each with the HTTP status and FHIR issue code it maps to.

Every error a request can hit is one of these; the API turns it into an OperationOutcome.
Anything else is a bug and is answered with a bare 500 that reveals nothing.
"""

from __future__ import annotations


class RempartError(Exception):
    """A failure the client is told about, in words, without internals."""

    status: int = 400
    code: str = "invalid"  # FHIR IssueType

    def __init__(self, message: str, *, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression


class InvalidResource(RempartError):
    """The body is not a valid FHIR R4 resource of the expected type."""

    status = 400
    code = "invalid"


class UnprocessableResource(RempartError):
    """Valid FHIR, but breaks a rule of this server (bad reference, wrong id)."""

    status = 422
    code = "processing"


class InvalidSearch(RempartError):
    """Unknown search parameter, modifier or malformed value."""

    status = 400
    code = "invalid"


class UnsupportedResourceType(RempartError):
    status = 404
    code = "not-supported"


class ResourceNotFound(RempartError):
    status = 404
    code = "not-found"


class ResourceGone(RempartError):
    status = 410
    code = "deleted"


class VersionConflict(RempartError):
    """If-Match named a version that is no longer current."""

    status = 412
    code = "conflict"


class PayloadTooLarge(RempartError):
    status = 413
    code = "too-costly"


class NotAuthenticated(RempartError):
    status = 401
    code = "login"


class Forbidden(RempartError):
    status = 403
    code = "forbidden"


class ServiceUnavailable(RempartError):
    """A control we depend on (key provider, audit) failed: the data does not leave."""

    status = 503
    code = "transient"


class StoredDataTampered(RempartError):
    """A ciphertext failed authentication: altered, moved between rows, or the wrong key.

    Nothing of the record is returned; the event is logged for the security officer.
    """

    status = 500
    code = "exception"


class Conflict(RempartError):
    """Two writers raced on one resource; the loser retries."""

    status = 409
    code = "conflict"
