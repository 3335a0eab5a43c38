"""JSON request bodies read strictly: a value of the wrong JSON type is a field error, never
coerced. DRF's fields read loosely — a ``CharField`` takes ``5`` as ``"5"``, a
``BooleanField`` takes ``"yes"``, ``"true"`` and ``1``, an ``IntegerField`` or ``FloatField``
takes ``"10"``, a ``UUIDField`` takes ``5`` as ``00000000-…-000000000005``, a ``FloatField``
takes ``true`` as ``1.0`` — so a client with a bug in its types was answered as if it had sent
something else (``"stream": "false"`` streamed). Every request serializer derives from
:class:`StrictInput`, which checks each value's JSON type against its field (the schema's
``type``) before DRF reads it, list items and nested objects included, and answers the wrong
ones ``400 validation_error`` naming the field (``details["messages.0.content"]``).

A form's fields are text by nature (a multipart upload's ``title`` and ``tags``, API.md), so
a form's values are not checked as JSON; but a file where a field takes text, or several files
where it takes one, is refused the same way: the view read the last file of several (the others
dropped without a word) and no file where it read text. ``null`` is left to the field
(``allow_null``), as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.utils import html

# The JSON type a field reads, by the field's class: the first entry the field is an instance of
# (so a URLField or a TagField is a CharField's "string"). A field of no class here (a FileField
# of a form, a DictField's or JSONField's free values) is read as DRF reads it.
BOOLEAN, INTEGER, NUMBER, STRING = "a boolean", "an integer", "a number", "a string"
EXPECTED: tuple[tuple[type[serializers.Field], str], ...] = (
    (serializers.BooleanField, BOOLEAN),
    (serializers.IntegerField, INTEGER),
    (serializers.FloatField, NUMBER),
    (serializers.DecimalField, NUMBER),
    (serializers.CharField, STRING),
    (serializers.UUIDField, STRING),
    (serializers.DateTimeField, STRING),
    (serializers.DateField, STRING),
    (serializers.TimeField, STRING),
    (serializers.DurationField, STRING),
)
# Fields whose values are any JSON (or a form's file): nothing to check.
UNCHECKED: tuple[type[serializers.Field], ...] = (
    serializers.JSONField,
    serializers.FileField,
    serializers.HiddenField,
    serializers.ReadOnlyField,
)


def json_type(value: Any) -> str:
    """What a parsed JSON value is, as a message names it."""
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int | float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def expected_type(field: serializers.Field) -> str | None:
    """The JSON type ``field`` reads, or None when it reads any (or is not a leaf: a list,
    an object, a nested serializer). A choice of strings reads a string."""
    if isinstance(field, serializers.ChoiceField):
        # MultipleChoiceField reads a list; choices of other types are compared as DRF does.
        if isinstance(field, serializers.MultipleChoiceField):
            return None
        return STRING if all(isinstance(key, str) for key in field.choices) else None
    for kind, name in EXPECTED:
        if isinstance(field, kind):
            return name
    return None


def fits(expected: str, value: Any) -> bool:
    if expected == BOOLEAN:
        return isinstance(value, bool)
    if isinstance(value, bool):  # a bool is an int in Python, not a number in JSON
        return False
    if expected in (INTEGER, NUMBER):
        # JSON has one number type: 10.0 is the integer 10 (as JSON Schema reads it); a
        # fraction is the IntegerField's own error ("A valid integer is required.").
        return isinstance(value, int | float)
    return isinstance(value, str)


def type_errors(field: serializers.Field, value: Any) -> Any:
    """DRF-shaped errors of ``value`` for ``field`` when some part of it has the wrong JSON
    type: ``[message]`` for a leaf, ``{index: ...}`` for a list's items, ``{key: ...}`` for a
    dict's values; None when the types are right (or are the field's own business: null, a
    list where an object is expected, a nested serializer, which checks itself)."""
    if value is None or value is empty or isinstance(field, serializers.BaseSerializer):
        return None
    if isinstance(field, serializers.ListField):
        if not isinstance(value, list):
            return None  # "Expected a list of items but got type ..."
        items = {i: e for i, item in enumerate(value) if (e := type_errors(field.child, item))}
        return items or None
    if isinstance(field, serializers.DictField):
        if not isinstance(value, dict):
            return None  # 'Expected a dictionary of items but got type ...'
        values = {k: e for k, item in value.items() if (e := type_errors(field.child, item))}
        return values or None
    expected = expected_type(field)
    if expected is None or fits(expected, value):
        return None
    return [f"Expected {expected}, got {json_type(value)}."]


def form_errors(field: serializers.Field, values: list[Any]) -> list[str] | None:
    """Errors of a form field's ``values`` (every part of that name): a file field takes one
    file, any other field text."""
    files = sum(isinstance(value, UploadedFile) for value in values)
    if isinstance(field, serializers.FileField):
        return [f"Expected one file, got {files}."] if files > 1 else None
    return ["Expected text, got a file."] if files else None


class StrictInput(serializers.Serializer):
    # A request body's serializer that takes each value as the JSON type its field reads (see
    # the module). Errors of types and the field's other errors are answered together; a field
    # of the wrong type is named with its type error only. (No docstring: drf-spectacular gives
    # a serializer without its own its base's, and every request body of the schema read this.)

    # A body names the fields it means: with ``refuse_unknown`` (every /v1 body but the token
    # exchange's), one its serializer does not have is a field error — a misspelling: PATCH
    # {"is_actve": false} answered 200 and changed nothing, {"strem": true} answered JSON —
    # except a resource's read-only fields (``echoed``), so that a client may send back what
    # it read. A nested object (a message, a record) refuses its unknown keys the same way
    # when its own serializer sets ``refuse_unknown`` (``details["records.0.titel"]``): a
    # record's misspelt ``"titel"`` was dropped and the document stored untitled.
    refuse_unknown = False
    echoed: frozenset[str] = frozenset()

    def unknown_errors(self, data: Mapping[str, Any]) -> dict[str, list[str]]:
        if not self.refuse_unknown:
            return {}
        unknown = sorted(set(data) - set(self.fields) - self.echoed)
        if not unknown:  # every request body: the list of fields is only for the error
            return {}
        known = ", ".join(self.fields)
        return {str(name): [f"Unknown field; the fields are: {known}."] for name in unknown}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return super().to_internal_value(data)  # not an object: DRF says so
        form = html.is_html_input(data)  # a QueryDict, with every part of a name
        wrong: dict[str, Any] = {} if form else self.unknown_errors(data)
        for field in self._writable_fields:
            name = str(field.field_name)
            if form:
                errors = form_errors(field, data.getlist(name))  # type: ignore[attr-defined]
            else:
                errors = type_errors(field, data.get(name, empty))
            if errors:
                wrong[name] = errors
        if not wrong:
            return super().to_internal_value(data)
        others: dict[str, Any] = {}
        try:  # the other fields' errors, to answer all at once (a wrong type's own is replaced)
            super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if isinstance(exc.detail, dict):
                others = dict(exc.detail)
        raise serializers.ValidationError({**others, **wrong})
