"""S3 bucket policies: the JSON policy language, checked when put, evaluated per request.

`parse_policy` reads a policy document once (when it is put, and when the
authorizer loads it) into a `Policy`; `Policy.denying` and `Policy.allowing`
find the first statement that denies or allows one request (a
`PolicyRequest`). Everything a request is matched against was compiled at
parse time, so evaluating costs a few regular-expression matches.

The language, as AWS defines it for bucket policies:

- ``Version`` ``2012-10-17`` (policy variables such as ``${aws:username}``
  are substituted in ``Resource`` and in string and ARN condition values) or
  ``2008-10-17`` (the default: ``${...}`` is literal text); ``Id``;
  ``Statement``, one object or a list of them.
- A statement: ``Sid`` (unique in the policy), ``Effect`` (``Allow`` or
  ``Deny``), exactly one of ``Principal``/``NotPrincipal``, of
  ``Action``/``NotAction`` and of ``Resource``/``NotResource``, and an
  optional ``Condition``.
- ``Principal``: ``"*"`` (everyone, anonymous requests included) or
  ``{"AWS": ...}`` with ``"*"``, tier0 principal names or ids, or
  ``arn:aws:iam::<account>:user/<name>`` (the name counts; the account is
  ignored) and ``arn:aws:iam::<account>:root`` (tier0's root). A
  ``CanonicalUser`` is a name or id too; ``Service`` and ``Federated``
  principals are accepted and match no tier0 request.
- ``Action``: ``s3:<name>`` with ``*`` and ``?`` wildcards, case-insensitive;
  a name without wildcards must be an S3 action (`S3_ACTIONS`), so a typo in
  a Deny does not silently deny nothing.
- ``Resource``: ``arn:aws:s3:::<bucket>`` and ``arn:aws:s3:::<bucket>/<key
  pattern>`` with ``*`` and ``?``, or ``*``; every resource must lie in the
  policy's own bucket.
- ``Condition``: the operators in `CONDITION_OPERATORS`, each with an
  ``IfExists`` form (but ``Null``) and the ``ForAnyValue:``/``ForAllValues:``
  qualifiers, over the keys in `CONDITION_KEYS`, ``s3:ExistingObjectTag/<tag>``
  and ``s3:RequestObjectTag/<tag>``. Operators within a block, and keys within
  an operator, must all hold; the values of one key are alternatives.
  A key missing from the request fails a positive operator and satisfies a
  negated one (``StringNotEquals``, ``NotIpAddress``, ...), as in AWS.

Anything else (an unknown operator, key, field or action, a resource in
another bucket, a document over `POLICY_BYTES_MAX`) raises `MalformedPolicy`
with a message that names the statement and what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from tier0.errors import MalformedPolicy
from tier0.identity._context import REQUEST_OBJECT_TAG, ObjectFacts, RequestContext
from tier0.identity._principals import ROOT_ID, Principal

__all__ = [
    "CONDITION_KEYS",
    "CONDITION_OPERATORS",
    "POLICY_BYTES_MAX",
    "S3_ACTIONS",
    "Policy",
    "PolicyRequest",
    "Statement",
    "parse_policy",
]

#: S3's limit on the size of a bucket policy (20 KiB of UTF-8).
POLICY_BYTES_MAX: Final = 20 * 1024
VERSIONS: Final = ("2012-10-17", "2008-10-17")
_RESOURCE_PREFIX: Final = "arn:aws:s3:::"
_PUBLIC_KEYS: Final = frozenset({"aws:sourceip", "aws:userid", "aws:username", "aws:principaltype"})

#: Condition keys a request can carry (lower case; matched case-insensitively).
CONDITION_KEYS: Final = frozenset(
    {
        "aws:sourceip",
        "aws:securetransport",
        "aws:currenttime",
        "aws:epochtime",
        "aws:username",
        "aws:userid",
        "aws:principaltype",
        "aws:referer",
        "aws:useragent",
        "s3:prefix",
        "s3:delimiter",
        "s3:max-keys",
        "s3:x-amz-acl",
        "s3:versionid",
        "s3:x-amz-copy-source",
        "s3:x-amz-metadata-directive",
        # Grants are refused (tier0 keeps canned ACLs), so a request never has these;
        # a policy may still name them, as policies written for S3 do.
        "s3:x-amz-grant-read",
        "s3:x-amz-grant-write",
        "s3:x-amz-grant-read-acp",
        "s3:x-amz-grant-write-acp",
        "s3:x-amz-grant-full-control",
    }
)
_EXISTING_OBJECT_TAG: Final = "s3:existingobjecttag/"

#: Operator (lower case) -> (family, test, negated, ignore case).
CONDITION_OPERATORS: Final[Mapping[str, tuple[str, str, bool, bool]]] = {
    "stringequals": ("string", "eq", False, False),
    "stringnotequals": ("string", "eq", True, False),
    "stringequalsignorecase": ("string", "eq", False, True),
    "stringnotequalsignorecase": ("string", "eq", True, True),
    "stringlike": ("string", "like", False, False),
    "stringnotlike": ("string", "like", True, False),
    "numericequals": ("numeric", "eq", False, False),
    "numericnotequals": ("numeric", "eq", True, False),
    "numericlessthan": ("numeric", "lt", False, False),
    "numericlessthanequals": ("numeric", "le", False, False),
    "numericgreaterthan": ("numeric", "gt", False, False),
    "numericgreaterthanequals": ("numeric", "ge", False, False),
    "dateequals": ("date", "eq", False, False),
    "datenotequals": ("date", "eq", True, False),
    "datelessthan": ("date", "lt", False, False),
    "datelessthanequals": ("date", "le", False, False),
    "dategreaterthan": ("date", "gt", False, False),
    "dategreaterthanequals": ("date", "ge", False, False),
    "bool": ("bool", "eq", False, False),
    "binaryequals": ("binary", "eq", False, False),
    "ipaddress": ("ip", "in", False, False),
    "notipaddress": ("ip", "in", True, False),
    # AWS matches ARNs with wildcards under both names.
    "arnequals": ("arn", "like", False, False),
    "arnlike": ("arn", "like", False, False),
    "arnnotequals": ("arn", "like", True, False),
    "arnnotlike": ("arn", "like", True, False),
    "null": ("null", "null", False, False),
}

_S3_ACTION_NAMES: Final = """
AbortMultipartUpload BypassGovernanceRetention CreateBucket DeleteBucket
DeleteBucketOwnershipControls DeleteBucketPolicy DeleteBucketWebsite DeleteObject
DeleteObjectTagging DeleteObjectVersion DeleteObjectVersionTagging
GetAccelerateConfiguration GetAnalyticsConfiguration GetBucketAcl GetBucketCORS
GetBucketLocation GetBucketLogging GetBucketNotification
GetBucketObjectLockConfiguration GetBucketOwnershipControls GetBucketPolicy
GetBucketPolicyStatus GetBucketPublicAccessBlock GetBucketRequestPayment
GetBucketTagging GetBucketVersioning GetBucketWebsite GetEncryptionConfiguration
GetIntelligentTieringConfiguration GetInventoryConfiguration GetLifecycleConfiguration
GetMetricsConfiguration GetObject GetObjectAcl GetObjectAttributes GetObjectLegalHold
GetObjectRetention GetObjectTagging GetObjectTorrent GetObjectVersion
GetObjectVersionAcl GetObjectVersionAttributes GetObjectVersionForReplication
GetObjectVersionTagging GetObjectVersionTorrent GetReplicationConfiguration
ListAllMyBuckets ListBucket ListBucketMultipartUploads ListBucketVersions
ListMultipartUploadParts PutAccelerateConfiguration PutAnalyticsConfiguration
PutBucketAcl PutBucketCORS PutBucketLogging PutBucketNotification
PutBucketObjectLockConfiguration PutBucketOwnershipControls PutBucketPolicy
PutBucketPublicAccessBlock PutBucketRequestPayment PutBucketTagging PutBucketVersioning
PutBucketWebsite PutEncryptionConfiguration PutIntelligentTieringConfiguration
PutInventoryConfiguration PutLifecycleConfiguration PutMetricsConfiguration PutObject
PutObjectAcl PutObjectLegalHold PutObjectRetention PutObjectTagging PutObjectVersionAcl
PutObjectVersionTagging PutReplicationConfiguration ReplicateDelete ReplicateObject
ReplicateTags RestoreObject
"""
#: S3 action names (lower case), for checking actions written without wildcards.
S3_ACTIONS: Final = frozenset("s3:" + name.lower() for name in _S3_ACTION_NAMES.split())

_ACTION_PATTERN: Final = re.compile(r"[A-Za-z0-9*?]+")
_IAM_USER: Final = re.compile(r"arn:aws:iam::[^:]*:user/(?:.*/)?([^/]+)")
_IAM_ROOT: Final = re.compile(r"arn:aws:iam::[^:]*:root")
_STATEMENT_FIELDS: Final = frozenset(
    {
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
)
_COMPILED_MAX: Final = 4096


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """One request as a policy sees it. ``resource`` is tier0's (``/bucket/key``)."""

    principal: Principal
    action: str
    resource: str
    context: RequestContext
    facts: ObjectFacts | None
    now_us: int

    def values(self, key: str) -> list[str] | None:
        """The request's values of condition key ``key`` (any case); None when absent."""
        lowered = key.lower()
        principal, context = self.principal, self.context
        value: str | None
        if lowered.startswith(_EXISTING_OBJECT_TAG):
            tags = None if self.facts is None else self.facts.tags()
            value = None if tags is None else tags.get(key[len(_EXISTING_OBJECT_TAG) :])
        elif lowered.startswith(REQUEST_OBJECT_TAG):
            value = context.params.get(REQUEST_OBJECT_TAG + key[len(REQUEST_OBJECT_TAG) :])
        elif lowered == "aws:sourceip":
            value = context.source_ip
        elif lowered == "aws:securetransport":
            secure = context.secure_transport
            value = None if secure is None else "true" if secure else "false"
        elif lowered == "aws:currenttime":
            when = dt.datetime.fromtimestamp(self.now_us / 1_000_000, tz=dt.UTC)
            value = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif lowered == "aws:epochtime":
            value = str(self.now_us // 1_000_000)
        elif lowered == "aws:username":
            value = None if principal.is_anonymous else principal.name
        elif lowered == "aws:userid":
            value = principal.id
        elif lowered == "aws:principaltype":
            value = (
                "Anonymous"
                if principal.is_anonymous
                else "Account"
                if principal.is_root
                else "User"
            )
        elif lowered == "aws:referer":
            value = context.referer
        elif lowered == "aws:useragent":
            value = context.user_agent
        else:
            value = context.params.get(lowered)
        return None if value is None else [value]


Resolve = Callable[[str], list[str] | None]


class _Pattern:
    """A policy string: literal text, ``*``/``?`` wildcards where they apply, and
    ``${key}`` policy variables (``${key, 'default'}``, ``${*}``, ``${?}``, ``${$}``)."""

    __slots__ = ("_flags", "_parts", "_regex", "_wildcards", "source")

    def __init__(self, source: str, *, wildcards: bool, ignore_case: bool, variables: bool) -> None:
        self.source = source
        self._wildcards = wildcards
        self._flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
        self._parts = _split_variables(source) if variables else [source]
        self._regex: re.Pattern[str] | None = None
        if all(isinstance(part, str) for part in self._parts):
            self._regex = re.compile(self._build(lambda _: None), self._flags)

    def _build(self, resolve: Callable[[tuple[str, str | None]], str | None]) -> str:
        pieces: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                for char in part:
                    if self._wildcards and char == "*":
                        pieces.append(".*")
                    elif self._wildcards and char == "?":
                        pieces.append(".")
                    else:
                        pieces.append(re.escape(char))
            else:
                text = resolve(part)
                if text is None:
                    raise LookupError(part[0])
                pieces.append(re.escape(text))
        return "".join(pieces)

    def matches(self, value: str, resolve: Resolve) -> bool:
        if self._regex is not None:
            return self._regex.fullmatch(value) is not None

        def variable(part: tuple[str, str | None]) -> str | None:
            key, default = part
            if key in ("*", "?", "$"):
                return key
            found = resolve(key)
            return found[0] if found else default

        try:
            source = self._build(variable)
        except LookupError:
            return False  # a variable with no value matches nothing, as in AWS
        return _compiled(source, self._flags).fullmatch(value) is not None

    def bucket_part(self) -> str | None:
        """For a resource ARN: the bucket pattern, when it holds no variable."""
        if len(self._parts) != 1 or not isinstance(self._parts[0], str):
            return None
        return self._parts[0].removeprefix(_RESOURCE_PREFIX).partition("/")[0]


@functools.lru_cache(maxsize=_COMPILED_MAX)
def _compiled(source: str, flags: int) -> re.Pattern[str]:
    return re.compile(source, flags)


_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")
_DEFAULT: Final = re.compile(r"\s*([^,\s]+)\s*,\s*'([^']*)'\s*")


def _split_variables(text: str) -> list[str | tuple[str, str | None]]:
    parts: list[str | tuple[str, str | None]] = []
    position = 0
    for match in _VARIABLE.finditer(text):
        parts.append(text[position : match.start()])
        inner = match[1]
        default = None
        with_default = _DEFAULT.fullmatch(inner)
        if with_default:
            inner, default = with_default[1], with_default[2]
        inner = inner.strip()
        if inner not in ("*", "?", "$") and not _known_key(inner):
            raise MalformedPolicy(f"the policy variable ${{{match[1]}}} names no known key")
        parts.append((inner, default))
        position = match.end()
    parts.append(text[position:])
    return [part for part in parts if part != ""]


def _known_key(key: str) -> bool:
    lowered = key.lower()
    for prefix in (_EXISTING_OBJECT_TAG, REQUEST_OBJECT_TAG):
        if lowered.startswith(prefix):
            return len(lowered) > len(prefix)
    return lowered in CONDITION_KEYS


@dataclass(frozen=True, slots=True)
class _Principals:
    everyone: bool
    names: frozenset[str]

    def matches(self, principal: Principal) -> bool:
        if self.everyone:
            return True
        return principal.id in self.names or principal.name in self.names


@dataclass(frozen=True, slots=True)
class _Condition:
    operator: str
    family: str
    test: str
    negated: bool
    if_exists: bool
    qualifier: str | None
    key: str
    values: tuple[Any, ...]

    def holds(self, request: PolicyRequest, resolve: Resolve) -> bool:
        got = request.values(self.key)
        if self.family == "null":
            absent = not got
            return any(absent == (value == "true") for value in self.values)
        if not got:
            if self.if_exists or self.qualifier == "forallvalues":
                return True
            if self.qualifier == "foranyvalue":
                return False
            return self.negated

        def matches(value: str) -> bool:
            positive = any(self._compare(value, want, resolve) for want in self.values)
            return positive != self.negated if self.qualifier else positive

        if self.qualifier == "forallvalues":
            return all(matches(value) for value in got)
        if self.qualifier == "foranyvalue":
            return any(matches(value) for value in got)
        found = any(matches(value) for value in got)
        return not found if self.negated else found

    def _compare(self, value: str, want: Any, resolve: Resolve) -> bool:
        family, test = self.family, self.test
        if family in ("string", "arn"):
            return bool(want.matches(value, resolve))
        if family == "bool":
            return value.lower() == str(want)
        if family == "binary":
            return value == str(want)
        if family == "ip":
            try:
                return ipaddress.ip_address(value) in want
            except ValueError:
                return False
        number = _number(value) if family == "numeric" else _date(value)
        if number is None:
            return False
        return _ORDER[test](number, want)


_ORDER: Final[Mapping[str, Callable[[float, float], bool]]] = {
    "eq": lambda a, b: a == b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def _date(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 date/time (UTC when it names no zone) or of epoch seconds."""
    text = text.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement, compiled. ``label`` is its Sid, or ``#<n>`` (1-based) without one."""

    label: str
    effect: str
    principals: _Principals
    not_principal: bool
    actions: tuple[_Pattern, ...]
    not_action: bool
    resources: tuple[_Pattern, ...]
    not_resource: bool
    conditions: tuple[_Condition, ...]

    def applies(self, request: PolicyRequest) -> bool:
        """Whether this statement speaks of ``request`` (its effect aside)."""
        resolve = request.values
        action = request.action
        if any(p.matches(action, resolve) for p in self.actions) == self.not_action:
            return False
        if self.principals.matches(request.principal) == self.not_principal:
            return False
        arn = _RESOURCE_PREFIX + request.resource[1:]
        if any(p.matches(arn, resolve) for p in self.resources) == self.not_resource:
            return False
        return all(condition.holds(request, resolve) for condition in self.conditions)


class Policy:
    """A parsed bucket policy: ``text`` as it was put, and its statements."""

    __slots__ = ("_allows", "_denies", "bucket", "statements", "text", "version")

    def __init__(self, text: str, bucket: str, version: str, statements: tuple[Statement, ...]):
        self.text = text
        self.bucket = bucket
        self.version = version
        self.statements = statements
        self._denies = tuple(s for s in statements if s.effect == "Deny")
        self._allows = tuple(s for s in statements if s.effect == "Allow")

    def denying(self, request: PolicyRequest) -> Statement | None:
        """The first Deny statement that applies to ``request``, or None."""
        return next((s for s in self._denies if s.applies(request)), None)

    def allowing(self, request: PolicyRequest) -> Statement | None:
        """The first Allow statement that applies to ``request``, or None."""
        return next((s for s in self._allows if s.applies(request)), None)

    def is_public(self) -> bool:
        """Whether the policy allows everyone something without pinning who or where.

        S3's test for GetBucketPolicyStatus, simplified: an Allow statement for
        every principal (``*``, or any NotPrincipal) counts as public unless a
        condition narrows it by source address or principal.
        """
        for statement in self._allows:
            if not (statement.principals.everyone or statement.not_principal):
                continue
            narrowed = any(
                c.key.lower() in _PUBLIC_KEYS and not c.negated and not c.if_exists
                for c in statement.conditions
            )
            if not narrowed:
                return True
        return False


def parse_policy(text: str | bytes, *, bucket: str) -> Policy:
    """The policy in ``text`` for ``bucket``, checked whole; `MalformedPolicy` otherwise.

    >>> policy = parse_policy('{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",'
    ...     ' "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]}',
    ...     bucket="b")
    >>> policy.statements[0].label
    '#1'
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPolicy("the policy is not valid UTF-8") from None
    size = len(text.encode("utf-8"))
    if size > POLICY_BYTES_MAX:
        raise MalformedPolicy(
            f"the policy is {size} bytes; a bucket policy holds at most {POLICY_BYTES_MAX}"
        )
    document = _load_json(text)
    if not isinstance(document, dict):
        raise MalformedPolicy("Policies must be valid JSON and the first byte must be '{'")
    unknown = set(document) - {"Version", "Id", "Statement"}
    if unknown:
        raise MalformedPolicy(f"Unknown field {min(unknown)} in the policy")
    version = document.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise MalformedPolicy(f"the policy's Version must be one of {', '.join(VERSIONS)}")
    if "Id" in document and not isinstance(document["Id"], str):
        raise MalformedPolicy("the policy's Id must be a string")
    raw = document.get("Statement")
    if raw is None:
        raise MalformedPolicy("Missing required field Statement")
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise MalformedPolicy("the policy has no statements")
    statements: list[Statement] = []
    sids: set[str] = set()
    for number, item in enumerate(items, 1):
        where = f"statement {number}"
        if isinstance(item, dict) and isinstance(item.get("Sid"), str):
            where += f" (Sid {item['Sid']!r})"
        try:
            statement = _statement(item, number, bucket=bucket, variables=version == VERSIONS[0])
        except MalformedPolicy as error:
            raise MalformedPolicy(f"{where}: {error}") from None
        if not statement.label.startswith("#"):
            if statement.label in sids:
                raise MalformedPolicy(
                    f"{where}: Statement IDs (SID) in a single policy must be unique"
                )
            sids.add(statement.label)
        statements.append(statement)
    return Policy(text, bucket, version, tuple(statements))


def _load_json(text: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for name, value in items:
            if name in result:
                raise MalformedPolicy(f"the policy repeats the field {name!r} in one object")
            result[name] = value
        return result

    def constant(name: str) -> Any:
        raise MalformedPolicy(f"{name} is not a JSON value")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except MalformedPolicy:
        raise
    except (ValueError, RecursionError) as error:
        raise MalformedPolicy(
            f"Policies must be valid JSON and the first byte must be '{{': {error}"
        ) from None


def _strings(value: Any, field: str) -> list[str]:
    """A field that holds one string or a non-empty list of them."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) for item in items):
        raise MalformedPolicy(f"{field} must be a string or a non-empty list of strings")
    return items


def _one_of(item: dict[str, Any], name: str) -> tuple[Any, bool]:
    """The value of ``name`` or ``Not<name>`` (exactly one must be there), and whether negated."""
    plain, negated = item.get(name), item.get("Not" + name)
    if plain is None and negated is None:
        raise MalformedPolicy(f"Missing required field {name}")
    if plain is not None and negated is not None:
        raise MalformedPolicy(f"a statement takes {name} or Not{name}, not both")
    return (plain, False) if plain is not None else (negated, True)


def _statement(item: Any, number: int, *, bucket: str, variables: bool) -> Statement:
    if not isinstance(item, dict):
        raise MalformedPolicy("a statement must be a JSON object")
    unknown = set(item) - _STATEMENT_FIELDS
    if unknown:
        raise MalformedPolicy(f"Unknown field {min(unknown)}")
    sid = item.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise MalformedPolicy("Sid must be a string")
    effect = item.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise MalformedPolicy(f"Effect must be Allow or Deny, not {effect!r}")
    principal, not_principal = _one_of(item, "Principal")
    action, not_action = _one_of(item, "Action")
    resource, not_resource = _one_of(item, "Resource")
    return Statement(
        label=sid if sid else f"#{number}",
        effect=effect,
        principals=_principals(principal),
        not_principal=not_principal,
        actions=tuple(_action(a) for a in _strings(action, "Action")),
        not_action=not_action,
        resources=tuple(
            _resource(r, bucket, variables=variables) for r in _strings(resource, "Resource")
        ),
        not_resource=not_resource,
        conditions=_conditions(item.get("Condition"), variables=variables),
    )


def _principals(value: Any) -> _Principals:
    if value == "*":
        return _Principals(True, frozenset())
    if not isinstance(value, dict) or not value:
        raise MalformedPolicy('Invalid principal in policy: use "*" or {"AWS": ...}')
    everyone = False
    names: set[str] = set()
    for kind, entries in value.items():
        if kind not in ("AWS", "CanonicalUser", "Service", "Federated"):
            raise MalformedPolicy(f"Invalid principal in policy: unknown principal type {kind!r}")
        for entry in _strings(entries, f"Principal {kind}"):
            if kind in ("Service", "Federated"):
                continue  # tier0 has none: such a principal matches no request
            if entry == "*":
                everyone = True
            elif user := _IAM_USER.fullmatch(entry):
                names.add(user[1])
            elif _IAM_ROOT.fullmatch(entry):
                names.add(ROOT_ID)
            elif entry.startswith("arn:") or not entry:
                raise MalformedPolicy(f"Invalid principal in policy: {entry!r}")
            else:
                names.add(entry)
    return _Principals(everyone, frozenset(names))


def _action(text: str) -> _Pattern:
    if text != "*":
        service, colon, name = text.partition(":")
        if service.lower() != "s3" or not colon or not _ACTION_PATTERN.fullmatch(name):
            raise MalformedPolicy(f"Policy has invalid action: {text!r} (use s3:<action>)")
        if "*" not in name and "?" not in name and text.lower() not in S3_ACTIONS:
            raise MalformedPolicy(f"Policy has invalid action: {text!r} is not an S3 action")
    return _Pattern(text, wildcards=True, ignore_case=True, variables=False)


def _resource(text: str, bucket: str, *, variables: bool) -> _Pattern:
    if text == "*":
        return _Pattern(text, wildcards=True, ignore_case=False, variables=False)
    if not text.startswith(_RESOURCE_PREFIX) or len(text) == len(_RESOURCE_PREFIX):
        raise MalformedPolicy(
            f"Policy has invalid resource: {text!r} (use arn:aws:s3:::{bucket}/...)"
        )
    pattern = _Pattern(text, wildcards=True, ignore_case=False, variables=variables)
    bucket_part = pattern.bucket_part()
    if bucket_part is not None:
        own = _Pattern(bucket_part, wildcards=True, ignore_case=False, variables=False)
        if not own.matches(bucket, lambda _: None):
            raise MalformedPolicy(
                f"Policy has invalid resource: {text!r} is not in bucket {bucket!r}"
            )
    return pattern


def _conditions(value: Any, *, variables: bool) -> tuple[_Condition, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise MalformedPolicy("Condition must be a JSON object of operators")
    conditions: list[_Condition] = []
    for name, block in value.items():
        qualifier, operator, if_exists = _operator(name)
        family, test, negated, ignore_case = CONDITION_OPERATORS[operator]
        if not isinstance(block, dict) or not block:
            raise MalformedPolicy(f"Condition {name} must map condition keys to values")
        for key, raw in block.items():
            if not _known_key(key):
                raise MalformedPolicy(f"Policy has an invalid condition key: {key!r}")
            values = raw if isinstance(raw, list) else [raw]
            if not values:
                raise MalformedPolicy(f"Condition {name} gives {key} no values")
            parsed = tuple(
                _condition_value(_scalar(v, name, key), family, test, ignore_case, variables)
                for v in values
            )
            conditions.append(
                _Condition(name, family, test, negated, if_exists, qualifier, key, parsed)
            )
    return tuple(conditions)


def _operator(name: str) -> tuple[str | None, str, bool]:
    """(set qualifier, base operator, IfExists) of an operator name; any case."""
    lowered = name.lower()
    qualifier = None
    for prefix in ("forallvalues:", "foranyvalue:"):
        if lowered.startswith(prefix):
            qualifier, lowered = prefix[:-1], lowered[len(prefix) :]
    if_exists = lowered.endswith("ifexists") and lowered != "ifexists"
    base = lowered.removesuffix("ifexists") if if_exists else lowered
    if base not in CONDITION_OPERATORS or (if_exists and base == "null"):
        raise MalformedPolicy(f"Invalid Condition type : {name}")
    return qualifier, base, if_exists


def _scalar(value: Any, operator: str, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, str):
        return value
    raise MalformedPolicy(f"Condition {operator} gives {key} a value that is not a string")


def _condition_value(text: str, family: str, test: str, ignore_case: bool, variables: bool) -> Any:
    if family in ("string", "arn"):
        return _Pattern(
            text, wildcards=test == "like", ignore_case=ignore_case, variables=variables
        )
    if family == "numeric":
        number = _number(text)
        if number is None:
            raise MalformedPolicy(f"{text!r} is not a number")
        return number
    if family == "date":
        when = _date(text)
        if when is None:
            raise MalformedPolicy(f"{text!r} is not a date (ISO 8601, or epoch seconds)")
        return when
    if family in ("bool", "null"):
        if text.lower() not in ("true", "false"):
            raise MalformedPolicy(f"{text!r} is neither true nor false")
        return text.lower()
    if family == "binary":
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedPolicy(f"{text!r} is not base64") from None
        return text
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise MalformedPolicy(f"Invalid IP address: {text!r}") from None
