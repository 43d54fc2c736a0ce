"""fastcheck: a quick "valid" for the resources fhir.resources accepts, else "ask it".

fhir.resources validates every nested element through Python hooks (a wrapper, then model
validators before and after pydantic's own work): about 220 µs a resource, 23 of the 60 CPU
seconds of an import of 104,788 resources. This walks the same models' field tables with dict
and list checks, and checks each primitive value with the model's own type for that field (its
verdict memoized by value for codes, systems, references and dates, which repeat across a load;
never for free text).

It only ever answers "accepted" or "not sure". "Not sure" sends the resource to the full model
validation, which gives the verdict and every error message. So it answers "accepted" only for
shapes whose verdict it knows: every key a field alias of the model, no nulls and no empty values,
lists where the model has lists, required elements present, at most one of each choice. Anything
else is "not sure": extensions of primitives (`_birthDate`), contained resources, keys given by a
field's Python name, and any model class carrying a validator this module does not know (a
future fhir.resources release adding a rule makes that class "not sure", not wrongly accepted).
`tests/unit/fhir/test_fastcheck.py` mutates real resources thousands of ways and checks that
each "accepted" is also fhir.resources' verdict.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import Base64Binary, Markdown, String, Xhtml
from pydantic import TypeAdapter, ValidationError

# Primitive values (codes, URIs, ids, dates...) memoized up to this length and this many
# entries per type (then that memo starts over).
MEMO_LENGTH = 80
MEMO_LIMIT = 1 << 16
_FREE_TEXT = (String, Markdown, Xhtml, Base64Binary)

_Check = Callable[[object], bool]


def _hooks(cls: type) -> frozenset[str]:
    """Every validator and serializer pydantic runs for `cls`, by kind and name."""
    found = cls.__pydantic_decorators__  # type: ignore[attr-defined]
    names: set[str] = set()
    for kind in ("validators", "field_validators", "root_validators", "model_validators"):
        names |= {f"{kind}:{name}" for name in getattr(found, kind)}
    return frozenset(names)


# The hooks every FHIR model has, whose rules `_fits` applies itself: no null in a list of
# elements (before), required primitives present and one value per choice (after).
_KNOWN_HOOKS = _hooks(FHIRAbstractModel)


@dataclass(frozen=True, slots=True)
class _Slot:
    many: bool
    primitive: _Check | None = None
    model: type | None = None  # the element's model, when not primitive


@dataclass(frozen=True, slots=True)
class _Plan:
    slots: dict[str, _Slot]  # by JSON key
    required: tuple[str, ...]
    choices: tuple[tuple[tuple[str, ...], bool], ...]  # (keys, one of them required)


def accepts(resource: dict[str, Any], resource_type: str) -> bool:
    """True only when fhir.resources' R4B model for `resource_type` accepts `resource`."""
    if resource.get("resourceType") != resource_type:
        return False
    plan = _plan(get_fhir_model_class(resource_type))
    if plan is None:
        return False
    return _fits(resource, plan, top=True)


def _fits(value: dict[str, Any], plan: _Plan, top: bool = False) -> bool:
    slots = plan.slots
    for key, item in value.items():
        slot = slots.get(key)
        if slot is None:
            if top and key == "resourceType":  # checked by `accepts`
                continue
            return False
        if slot.many:
            if type(item) is not list or not item:
                return False
            for one in item:
                if not _fits_one(one, slot):
                    return False
        elif not _fits_one(item, slot):
            return False
    return _complete(value, plan)


def _complete(value: dict[str, Any], plan: _Plan) -> bool:
    """Required elements present, and one value at most (or exactly) for each choice."""
    if not all(key in value for key in plan.required):
        return False
    for keys, required in plan.choices:
        present = sum(1 for key in keys if key in value)
        if present > 1 or (required and present == 0):
            return False
    return True


def _fits_one(item: object, slot: _Slot) -> bool:
    if slot.primitive is not None:
        return slot.primitive(item)
    if type(item) is not dict or not item or slot.model is None:
        return False
    plan = _plan(slot.model)
    return plan is not None and _fits(item, plan)


@functools.cache
def _plan(cls: type) -> _Plan | None:
    """The field table of a model class, or None when it has a rule this module cannot see."""
    if not issubclass(cls, FHIRAbstractModel) or _hooks(cls) != _KNOWN_HOOKS:
        return None
    slots: dict[str, _Slot] = {}
    for name, info in cls.model_fields.items():
        key = info.alias or name
        if name == "fhir_comments" or name.endswith("__ext"):
            continue  # not in our data; when present, the key is unknown: "not sure"
        slot = _slot(info.annotation)
        if slot is not None:
            slots[key] = slot
    blank = cls.model_construct()
    required = [
        (info.alias or name) for name, info in cls.model_fields.items() if info.is_required()
    ]
    required += [(cls.model_fields[name].alias or name) for name, _ in blank.get_required_fields()]
    choices = []
    for fields in blank.get_one_of_many_fields().values():
        extra = cls.model_fields[fields[0]].json_schema_extra
        needed = isinstance(extra, dict) and extra.get("one_of_many_required") is True
        choices.append((tuple(cls.model_fields[f].alias or f for f in fields), needed))
    if any(key not in slots for key in required):
        return None
    return _Plan(slots, tuple(required), tuple(choices))


def _slot(annotation: Any) -> _Slot | None:
    inner, many = _unwrap(annotation)
    if inner is None:
        return None
    klass = getattr(inner, "get_model_klass", None)
    if klass is not None:  # an element type of fhir_core: validated by its model
        model = klass()
        if not isinstance(model, type) or issubclass(model, Resource):
            return None  # contained resources: "not sure"
        return _Slot(many, model=model)
    return _Slot(many, primitive=_primitive(inner))


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """Optional[X] -> (X, False); Optional[List[X]] -> (X, True); a union of several types
    -> (None, False)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None, False
        annotation = args[0]
    if typing.get_origin(annotation) in (list, typing.List):  # noqa: UP006
        (item,) = typing.get_args(annotation)
        return item, True
    return annotation, False


# Checks by annotation object (identity: fhir.resources declares each type once), so that
# every field of a type shares one adapter and one memo.
_CHECKS: dict[int, tuple[Any, _Check]] = {}


def _primitive(annotation: Any) -> _Check:
    found = _CHECKS.get(id(annotation))
    if found is None:
        found = _CHECKS[id(annotation)] = (annotation, _new_check(annotation))
    return found[1]


def _new_check(annotation: Any) -> _Check:
    """The model's own validator for a primitive type; memoized by value, except free text:
    names, addresses, phone numbers, identifiers' values and notes are not kept in memory
    beyond the request (and rarely repeat)."""
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    if any(isinstance(m, _FREE_TEXT) for m in typing.get_args(annotation)[1:]):

        def check_text(value: object) -> bool:
            return type(value) is str and bool(value) and _passes(adapter, value)

        return check_text
    memo: dict[tuple[type, object], bool] = {}

    def check(value: object) -> bool:
        kind = type(value)
        if kind is str:
            if not value:
                return False
            if len(value) > MEMO_LENGTH:  # type: ignore[arg-type]
                return _passes(adapter, value)
        elif kind not in (bool, int, float):
            return False
        key = (kind, value)
        known = memo.get(key)
        if known is None:
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            known = memo[key] = _passes(adapter, value)
        return known

    return check


def _passes(adapter: TypeAdapter[Any], value: object) -> bool:
    try:
        adapter.validate_python(value)
    except (ValidationError, ValueError, TypeError):
        return False
    return True
