"""validate: is this JSON a valid FHIR R4 resource of a type we serve?

Structure and datatypes are checked by the `fhir.resources.R4B` models (the top-level models of
fhir.resources 8 are R5 and reject R4 data such as Encounter.class). R4B and R4 agree on the
structure of every type we serve. Three gaps of those models are closed here: required value-set
bindings (bindings.py), the 64-character limit of ids, and contained resources of unknown types
(which make the library raise KeyError instead of a validation error).

The model instance is thrown away: we store what the client sent, unchanged. Error messages name
the element path and the rule, never the offending value, which may be PHI headed for a log.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from rempart.errors import InvalidResource, UnsupportedResourceType
from rempart.fhir import fastcheck
from rempart.fhir.bindings import binding_errors
from rempart.fhir.params import SUPPORTED_TYPES

MAX_ERRORS = 5
_ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@functools.cache
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


@functools.cache
def _is_fhir_type(name: str) -> bool:
    try:
        _model(name)
    except (ValueError, KeyError, ImportError, AttributeError):
        return False
    return True


def validate(resource: object, expected_type: str | None = None) -> dict[str, Any]:
    """Return `resource` itself when valid; raise InvalidResource (or UnsupportedResourceType)."""
    if not isinstance(resource, dict):
        raise InvalidResource("The body must be a JSON object holding one FHIR resource")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise InvalidResource("Missing resourceType", expression="resourceType")
    if expected_type is not None:
        if expected_type not in SUPPORTED_TYPES:
            raise UnsupportedResourceType(f"Resource type '{expected_type}' is not supported")
        if rtype != expected_type:
            raise InvalidResource(
                f"resourceType is '{rtype}' but '{expected_type}' was expected",
                expression="resourceType",
            )
    if rtype not in SUPPORTED_TYPES:
        raise UnsupportedResourceType(f"Resource type '{rtype}' is not supported by this server")

    errors = _precheck(resource, rtype)
    if not errors:
        # What fastcheck accepts, the model would (it says so only where it is sure); the
        # rest, and every error message, comes from the model itself.
        if not fastcheck.accepts(resource, rtype):
            try:
                _model(rtype).model_validate(resource)
            except ValidationError as exc:
                errors = [_describe(rtype, e) for e in exc.errors(include_url=False)]
            except (TypeError, ValueError, KeyError, AttributeError):
                # fhir.resources raises these for shapes it does not expect; the client
                # still deserves a 400 rather than a 500.
                errors = [f"{rtype}: not a valid FHIR R4 {rtype}"]
        errors += binding_errors(resource, rtype)
    if errors:
        first = errors[0].split(":", 1)[0]
        shown = errors[:MAX_ERRORS]
        more = f" (and {len(errors) - MAX_ERRORS} more)" if len(errors) > MAX_ERRORS else ""
        raise InvalidResource(f"Invalid {rtype}: " + "; ".join(shown) + more, expression=first)
    return resource


def _precheck(resource: dict[str, Any], rtype: str) -> list[str]:
    errors: list[str] = []
    rid = resource.get("id")
    if isinstance(rid, str) and not _ID_RE.fullmatch(rid):
        errors.append(f"{rtype}.id: an id is 1 to 64 characters among A-Z a-z 0-9 - .")
    contained = resource.get("contained")
    if isinstance(contained, list):
        for i, item in enumerate(contained):
            inner = item.get("resourceType") if isinstance(item, dict) else None
            if not isinstance(inner, str) or not _is_fhir_type(inner):
                errors.append(f"{rtype}.contained[{i}].resourceType: not a FHIR R4 resource type")
    return errors


def _describe(rtype: str, error: Any) -> str:
    """pydantic error -> "Patient.name[0].family: Input should be a valid string"."""
    path = rtype
    for part in error.get("loc", ()):
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "resource_type":
            path += ".resourceType"
        elif part != "root":  # RootModel wrappers of fhir.resources add a "root" step
            path += f".{part}"
    msg = " ".join(str(error.get("msg", "invalid")).removeprefix("Value error, ").split())
    return f"{path}: {msg}"
