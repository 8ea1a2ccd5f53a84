"""The POST policy of a browser-form upload: decoding it, and judging a form by it.

A policy is base64 JSON (S3 API reference, "Creating a POST Policy")::

    {"expiration": "2030-01-01T12:00:00.000Z",
     "conditions": [{"bucket": "photos"},
                    ["starts-with", "$key", "user/eric/"],
                    ["eq", "$Content-Type", "image/png"],
                    ["content-length-range", 1, 1048576]]}

`PostPolicy.decode` refuses anything else (``400 InvalidPolicyDocument``):
unknown members, a member given twice, a condition of another shape. The
form is then judged (``403 AccessDenied``, "Invalid according to Policy: ...")
in S3's order: the expiration, each condition against the form's field (a
field the form lacks is the empty string; ``bucket`` is the bucket the form
was posted to), and finally every form field must be named by a condition,
except the ones S3 exempts (`EXEMPT_FIELDS`, and names starting with
``x-ignore-``). ``content-length-range`` is judged on the file's size once it
is known: ``400 EntityTooLarge`` or ``EntityTooSmall``.

Field names are compared without regard to case (HTML forms and S3 do);
values exactly. ``starts-with`` on Content-Type holds only if every value of
a comma-separated list starts with the prefix, as S3 documents.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final, Literal

from tier0.errors import AccessDenied, EntityTooLarge, EntityTooSmall, InvalidArgument

__all__ = [
    "EXEMPT_FIELDS",
    "Condition",
    "InvalidPolicyDocument",
    "PostPolicy",
]

#: Form fields no condition needs to name: the policy, its signature, the file.
EXEMPT_FIELDS: Final = frozenset(
    {"policy", "file", "x-amz-signature", "signature", "awsaccesskeyid"}
)
_IGNORED_PREFIX: Final = "x-ignore-"
_DENIED: Final = "Invalid according to Policy: "


class InvalidPolicyDocument(InvalidArgument):
    """The ``policy`` field is not base64 of a POST policy S3 would accept."""

    s3_code: ClassVar[str] = "InvalidPolicyDocument"


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    """``eq`` or ``starts-with`` on one form field (lower case, without the ``$``)."""

    operator: Literal["eq", "starts-with"]
    field: str
    value: str
    #: The field's name as the policy spelled it, for messages.
    spelled: str

    def holds(self, actual: str) -> bool:
        if self.operator == "eq":
            return actual == self.value
        if self.field == "content-type":
            return all(part.strip().startswith(self.value) for part in actual.split(","))
        return actual.startswith(self.value)

    def __str__(self) -> str:
        return json.dumps([self.operator, f"${self.spelled}", self.value])


@dataclasses.dataclass(frozen=True, slots=True)
class PostPolicy:
    """A decoded POST policy; see the module docstring."""

    expiration: dt.datetime
    conditions: tuple[Condition, ...]
    #: ``content-length-range``: the file's least and largest size, in bytes.
    length_min: int = 0
    length_max: int | None = None

    @classmethod
    def decode(cls, text: str) -> PostPolicy:
        """The policy in the ``policy`` field's base64 ``text``; `InvalidPolicyDocument` if none.

        >>> PostPolicy.decode(base64.b64encode(b'{"expiration": "2030-01-01T00:00:00Z",'
        ...     b' "conditions": [["starts-with", "$key", "a/"]]}').decode()).conditions
        (Condition(operator='starts-with', field='key', value='a/', spelled='key'),)
        """
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
            document = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_members)
        except (ValueError, UnicodeError, binascii.Error, _DuplicateMember):
            raise InvalidPolicyDocument("Invalid Policy: Invalid JSON.") from None
        if not isinstance(document, dict):
            raise InvalidPolicyDocument("Invalid Policy: Invalid JSON.")
        unknown = set(document) - {"expiration", "conditions"}
        if unknown:
            raise InvalidPolicyDocument(f"Invalid Policy: Unexpected field: {sorted(unknown)[0]}.")
        if "expiration" not in document:
            raise InvalidPolicyDocument("Invalid Policy: Policy missing expiration.")
        if "conditions" not in document:
            raise InvalidPolicyDocument("Invalid Policy: Policy missing conditions.")
        expiration = _expiration(document["expiration"])
        if not isinstance(document["conditions"], list):
            raise InvalidPolicyDocument("Invalid Policy: Invalid conditions.")
        conditions: list[Condition] = []
        length_min, length_max = 0, None
        for item in document["conditions"]:
            if isinstance(item, list) and item and str(item[0]).lower() == "content-length-range":
                length_min, length_max = _length_range(item)
            else:
                conditions.extend(_conditions(item))
        return cls(expiration, tuple(conditions), length_min, length_max)

    def check_expiration(self, now: dt.datetime) -> None:
        """`AccessDenied` once ``now`` is at or past the expiration."""
        if now >= self.expiration:
            raise AccessDenied(_DENIED + "Policy expired.")

    def check_fields(self, fields: Mapping[str, str], *, bucket: str) -> None:
        """`AccessDenied` unless every condition holds for ``fields`` (lower-case names)
        posted to ``bucket``, and every field but the exempt ones is named by one."""
        for condition in self.conditions:
            actual = bucket if condition.field == "bucket" else fields.get(condition.field, "")
            if not condition.holds(actual):
                raise AccessDenied(_DENIED + f"Policy Condition failed: {condition}")
        named = {condition.field for condition in self.conditions}
        extra = [
            name
            for name in fields
            if name not in named
            and name not in EXEMPT_FIELDS
            and not name.startswith(_IGNORED_PREFIX)
        ]
        if extra:
            raise AccessDenied(_DENIED + f"Extra input fields: {', '.join(sorted(extra))}")

    def check_length(self, size: int, *, final: bool) -> None:
        """``content-length-range`` for a file of ``size`` bytes so far (all of it
        when ``final``): `EntityTooLarge` as soon as it is over, `EntityTooSmall`
        at the end."""
        if self.length_max is not None and size > self.length_max:
            error: InvalidArgument = EntityTooLarge(
                "Your proposed upload exceeds the maximum allowed size"
            )
            error.details = {"ProposedSize": str(size), "MaxSizeAllowed": str(self.length_max)}  # type: ignore[attr-defined]
            raise error
        if final and size < self.length_min:
            error = EntityTooSmall("Your proposed upload is smaller than the minimum allowed size")
            error.details = {"ProposedSize": str(size), "MinSizeAllowed": str(self.length_min)}  # type: ignore[attr-defined]
            raise error


class _DuplicateMember(ValueError):
    pass


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A member given twice would let two readers of one policy disagree on it.
    document: dict[str, Any] = {}
    for name, value in pairs:
        if name in document:
            raise _DuplicateMember(name)
        document[name] = value
    return document


def _expiration(value: object) -> dt.datetime:
    """An ISO 8601 UTC time (``2030-01-01T12:00:00.000Z``)."""
    if not isinstance(value, str) or not value.endswith("Z"):
        raise InvalidPolicyDocument(
            "Invalid Policy: Invalid 'expiration' value: give an ISO 8601 time in UTC,"
            " like 2030-01-01T12:00:00.000Z."
        )
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidPolicyDocument(
            f"Invalid Policy: Invalid 'expiration' value: {value!r}."
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _conditions(item: object) -> Iterable[Condition]:
    if isinstance(item, dict):
        if not item:
            raise _invalid_condition(item)
        for name, value in item.items():
            if not isinstance(value, str):
                raise _invalid_condition(item)
            spelled = name.removeprefix("$")
            yield Condition("eq", spelled.lower(), value, spelled)
        return
    if not isinstance(item, list) or len(item) != 3 or not all(isinstance(x, str) for x in item):
        raise _invalid_condition(item)
    operator, name, value = item
    operator = operator.lower()
    if operator not in ("eq", "starts-with") or not name.startswith("$") or len(name) < 2:
        raise _invalid_condition(item)
    yield Condition("eq" if operator == "eq" else "starts-with", name[1:].lower(), value, name[1:])


def _length_range(item: list[Any]) -> tuple[int, int]:
    if len(item) != 3:
        raise _invalid_condition(item)
    bounds: list[int] = []
    for bound in item[1:]:
        if isinstance(bound, bool):
            raise _invalid_condition(item)
        if isinstance(bound, str) and bound.isdigit():
            bound = int(bound)
        if not isinstance(bound, int) or bound < 0:
            raise _invalid_condition(item)
        bounds.append(bound)
    low, high = bounds
    if low > high:
        raise _invalid_condition(item)
    return low, high


def _invalid_condition(item: object) -> InvalidPolicyDocument:
    return InvalidPolicyDocument(f"Invalid Policy: Invalid Condition: {json.dumps(item)}.")
