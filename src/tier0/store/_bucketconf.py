"""Bucket configuration (tags, CORS rules, policy, canned ACL) and object ACLs.

`BucketConfigMethods` is the part of `Store` that reads and changes them
(``store.set_bucket_policy(...)``, ``store.get_bucket_tags(...)``, ...); it
lives here to keep ``_store.py`` to the data path. A bucket's configuration
is one ``t0_bucket_config`` row per kind, written through the committer
with its event (``BucketPolicy:Put``, ``BucketTagging:Delete``, ...) and its
audit row in the same transaction, and deleted with the bucket. An object's
canned ACL is a ``t0_object_acls`` row per version (none for ``private``),
written with the version (``put(acl=...)``) or later (`set_object_acl`,
event ``ObjectAcl:Put``), and dropped with the version.

The authorizer reads policies and ACLs through its per-process cache
(`tier0.identity.BucketRulesCache`); every change here forgets the bucket's
entry once committed, so this process never decides on old rules. CORS
matching for browsers (`match_cors`) reads the same cache. The getters read
the database, so they see every committed change at once.

Actions, as in S3: ``s3:PutBucketTagging`` (also to delete tags),
``s3:GetBucketTagging``, ``s3:PutBucketCORS`` (also to delete),
``s3:GetBucketCORS``, ``s3:PutBucketPolicy``, ``s3:GetBucketPolicy``,
``s3:DeleteBucketPolicy``, ``s3:GetBucketPolicyStatus``, ``s3:PutBucketAcl``,
``s3:GetBucketAcl``, ``s3:PutObjectAcl``/``s3:PutObjectVersionAcl`` and
``s3:GetObjectAcl``/``s3:GetObjectVersionAcl``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from tier0.errors import (
    InvalidCORSConfiguration,
    InvalidTag,
    NoSuchBucketPolicy,
    NoSuchCORSConfiguration,
    NoSuchKey,
    NoSuchTagSet,
    NoSuchVersion,
    UnsupportedACL,
)
from tier0.identity import (
    AclGrant,
    Authorizer,
    Decision,
    ObjectFacts,
    Principal,
    canned_acl_of,
    canned_grants,
    parse_policy,
    validate_canned_acl,
)
from tier0.identity._bucketrules import decode_config, encode_config
from tier0.meta import WriteTx, load_json
from tier0.store import _ops
from tier0.store._names import TAG_KEY_CHARS_MAX, TAG_VALUE_CHARS_MAX

if TYPE_CHECKING:
    from tier0.store._store import Kernel

__all__ = [
    "BUCKET_TAG_COUNT_MAX",
    "CORS_METHODS",
    "CORS_RULES_MAX",
    "AccessControl",
    "BucketConfigMethods",
    "CORSRule",
    "match_cors_rule",
]

#: S3's limits: 50 tags on a bucket, 100 CORS rules.
BUCKET_TAG_COUNT_MAX: Final = 50
CORS_RULES_MAX: Final = 100
CORS_ID_CHARS_MAX: Final = 255
CORS_METHODS: Final = ("GET", "PUT", "POST", "DELETE", "HEAD")

_TAGS: Final = "tags"
_CORS: Final = "cors"
_POLICY: Final = "policy"
_ACL: Final = "acl"


@dataclass(frozen=True, slots=True)
class CORSRule:
    """One rule of a bucket's CORS configuration (S3's ``CORSRule``).

    Origins and headers may hold one ``*`` wildcard each; methods are
    among `CORS_METHODS`; ``max_age_s`` is how long a browser may cache a
    preflight answer.
    """

    allowed_methods: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_s: int | None = None
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "methods": list(self.allowed_methods),
            "origins": list(self.allowed_origins),
            "headers": list(self.allowed_headers),
            "expose": list(self.expose_headers),
            "max_age_s": self.max_age_s,
            "id": self.id,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> CORSRule:
        return cls(
            tuple(value["methods"]),
            tuple(value["origins"]),
            tuple(value["headers"]),
            tuple(value["expose"]),
            value["max_age_s"],
            value["id"],
        )

    def allows(self, origin: str, method: str, request_headers: Sequence[str]) -> bool:
        """Whether this rule admits a request from ``origin`` with ``method``
        that asks to send ``request_headers`` (a preflight's, any case)."""
        if method not in self.allowed_methods:
            return False
        if not any(_wildcard(pattern, False).fullmatch(origin) for pattern in self.allowed_origins):
            return False
        allowed = [_wildcard(pattern, True) for pattern in self.allowed_headers]
        return all(
            any(p.fullmatch(h.strip()) for p in allowed) for h in request_headers if h.strip()
        )


def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.compile(regex, re.IGNORECASE if ignore_case else 0)


def match_cors_rule(
    rules: Sequence[CORSRule], *, origin: str, method: str, request_headers: Sequence[str] = ()
) -> CORSRule | None:
    """The first rule that admits the request (S3 applies the first match), or None."""
    return next((r for r in rules if r.allows(origin, method, request_headers)), None)


def validate_cors(rules: Sequence[CORSRule]) -> tuple[CORSRule, ...]:
    """``rules`` as a tuple if S3 would take them; `InvalidCORSConfiguration` otherwise."""
    if not rules:
        raise InvalidCORSConfiguration("a CORS configuration holds at least one rule")
    if len(rules) > CORS_RULES_MAX:
        raise InvalidCORSConfiguration(
            f"{len(rules)} CORS rules given; a bucket holds at most {CORS_RULES_MAX}"
        )
    for rule in rules:
        if not rule.allowed_methods or not rule.allowed_origins:
            raise InvalidCORSConfiguration(
                "every CORS rule names at least one AllowedMethod and one AllowedOrigin"
            )
        for method in rule.allowed_methods:
            if method not in CORS_METHODS:
                raise InvalidCORSConfiguration(
                    f"Found unsupported HTTP method in CORS config. Unsupported method is {method}"
                )
        for origin in rule.allowed_origins:
            if origin.count("*") > 1:
                raise InvalidCORSConfiguration(
                    f'AllowedOrigin "{origin}" can not have more than one wildcard.'
                )
        for header in rule.allowed_headers:
            if header.count("*") > 1:
                raise InvalidCORSConfiguration(
                    f'AllowedHeader "{header}" can not have more than one wildcard.'
                )
        if any("*" in header for header in rule.expose_headers):
            raise InvalidCORSConfiguration("an ExposeHeader cannot hold a wildcard")
        if rule.max_age_s is not None and rule.max_age_s < 0:
            raise InvalidCORSConfiguration("MaxAgeSeconds must not be negative")
        if rule.id is not None and len(rule.id) > CORS_ID_CHARS_MAX:
            raise InvalidCORSConfiguration(
                f"a CORS rule ID holds at most {CORS_ID_CHARS_MAX} characters"
            )
    return tuple(rules)


def validate_bucket_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """S3's rules for a bucket's tag set; `InvalidTag` otherwise."""
    if len(tags) > BUCKET_TAG_COUNT_MAX:
        raise InvalidTag(f"{len(tags)} tags given; a bucket holds at most {BUCKET_TAG_COUNT_MAX}")
    for name, value in tags.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidTag("tags map str names to str values")
        if not 1 <= len(name) <= TAG_KEY_CHARS_MAX or len(value) > TAG_VALUE_CHARS_MAX:
            raise InvalidTag(
                f"tag {name!r}: keys are 1..{TAG_KEY_CHARS_MAX} characters,"
                f" values at most {TAG_VALUE_CHARS_MAX}"
            )
        if name.lower().startswith("aws:"):
            raise InvalidTag(f"tag {name!r}: keys starting aws: are reserved for the system")
    return dict(tags)


@dataclass(frozen=True, slots=True)
class AccessControl:
    """An ACL as S3's GetBucketAcl and GetObjectAcl show it: the owner, the canned
    ACL it was set as, and the grants that stand for it (owner first)."""

    owner: str
    owner_name: str
    acl: str
    grants: tuple[AclGrant, ...]


def _canned(
    grants: list[AclGrant], *, owner: str, bucket_owner: str | None, on_object: bool
) -> str:
    acl = canned_acl_of(grants, owner=owner, bucket_owner=bucket_owner, on_object=on_object)
    if acl is None:
        shown = ", ".join(f"{g.permission} to {g.grantee}" for g in grants) or "no grants"
        raise UnsupportedACL(
            f"tier0 keeps canned ACLs only, and these grants ({shown}) restate none;"
            " use x-amz-acl (private, public-read, ...) or a bucket policy"
        )
    return acl


# -- transactions ---------------------------------------------------------------------------


def write_config(tx: WriteTx, bucket: str, name: str, value: Any) -> None:
    """Set configuration ``name`` of ``bucket`` (no event, no audit: the caller's)."""
    tx.execute(
        "INSERT INTO t0_bucket_config (bucket, name, value, modified_us) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (bucket, name) DO UPDATE SET value = excluded.value,"
        " modified_us = excluded.modified_us",
        (bucket, name, encode_config(value), tx.now_us),
    )


def _put_config(
    tx: WriteTx,
    bucket: str,
    name: str,
    value: Any,
    decision: Decision,
    event: str,
    detail: dict[str, Any],
) -> None:
    _ops.owned_bucket_row(tx, bucket, decision)
    write_config(tx, bucket, name, value)
    _ops.emit_event(tx, tx.next_seq(), event, bucket, "", None, None, None, decision, detail)
    Authorizer.record_in(tx, decision)


def _delete_config(tx: WriteTx, bucket: str, name: str, decision: Decision, event: str) -> None:
    _ops.owned_bucket_row(tx, bucket, decision)
    cursor = tx.execute(
        "DELETE FROM t0_bucket_config WHERE bucket = ? AND name = ?", (bucket, name)
    )
    if cursor.rowcount:
        _ops.emit_event(tx, tx.next_seq(), event, bucket, "", None, None, None, decision, {})
    Authorizer.record_in(tx, decision)


def write_object_acl(tx: WriteTx, seq: int, bucket: str, acl: str | None) -> None:
    """Set version ``seq``'s canned ACL (no row for ``private``)."""
    if acl is None or acl == "private":
        tx.execute("DELETE FROM t0_object_acls WHERE seq = ?", (seq,))
        return
    tx.execute(
        "INSERT INTO t0_object_acls (seq, bucket, acl) VALUES (?, ?, ?)"
        " ON CONFLICT (seq) DO UPDATE SET acl = excluded.acl",
        (seq, bucket, acl),
    )


# -- the Store methods ------------------------------------------------------------------------


class BucketConfigMethods:
    """Bucket tags, CORS rules, policy and ACL, and object ACLs: part of `Store`."""

    if TYPE_CHECKING:
        _kernel: Kernel
        principal: Principal

        def _authorize(
            self,
            action: str,
            resource: str,
            *,
            owner: str | None,
            deferred: bool = False,
            params: Mapping[str, str | None] | None = None,
            facts: ObjectFacts | None = None,
        ) -> Decision: ...

        def _owner(self, bucket: str) -> str: ...

    # -- tags ------------------------------------------------------------------------------

    def set_bucket_tags(self, bucket: str, tags: Mapping[str, str]) -> None:
        """Replace the bucket's tags (at most 50; keys 1..128 characters, values up to
        256, none starting ``aws:``; `InvalidTag` otherwise). An empty mapping
        deletes them."""
        if not tags:
            self.delete_bucket_tags(bucket)
            return
        self._change(
            bucket,
            "s3:PutBucketTagging",
            _TAGS,
            lambda: validate_bucket_tags(tags),
            "BucketTagging:Put",
            lambda value: {"tags": value},
        )

    def get_bucket_tags(self, bucket: str) -> dict[str, str]:
        """The bucket's tags; `NoSuchTagSet` when it has none."""
        value = self._read(bucket, "s3:GetBucketTagging", _TAGS)
        if value is None:
            raise NoSuchTagSet(f"bucket {bucket!r} has no tags")
        return dict(value)

    def delete_bucket_tags(self, bucket: str) -> None:
        """Remove the bucket's tags (nothing happens when it has none)."""
        self._remove(bucket, "s3:PutBucketTagging", _TAGS, "BucketTagging:Delete")

    # -- CORS ------------------------------------------------------------------------------

    def set_bucket_cors(self, bucket: str, rules: Sequence[CORSRule]) -> None:
        """Replace the bucket's CORS rules (1..100; `InvalidCORSConfiguration` otherwise)."""
        self._change(
            bucket,
            "s3:PutBucketCORS",
            _CORS,
            lambda: [rule.to_json() for rule in validate_cors(rules)],
            "BucketCors:Put",
            lambda value: {"rules": len(value)},
        )

    def get_bucket_cors(self, bucket: str) -> tuple[CORSRule, ...]:
        """The bucket's CORS rules; `NoSuchCORSConfiguration` when it has none."""
        value = self._read(bucket, "s3:GetBucketCORS", _CORS)
        if value is None:
            raise NoSuchCORSConfiguration(f"bucket {bucket!r} has no CORS configuration")
        return tuple(CORSRule.from_json(rule) for rule in value)

    def delete_bucket_cors(self, bucket: str) -> None:
        """Remove the bucket's CORS rules (nothing happens when it has none)."""
        self._remove(bucket, "s3:PutBucketCORS", _CORS, "BucketCors:Delete")

    def match_cors(
        self, bucket: str, *, origin: str, method: str, request_headers: Sequence[str] = ()
    ) -> CORSRule | None:
        """The bucket's first CORS rule that admits a browser request from ``origin``
        with ``method`` and ``request_headers``; None when no rule does, and
        `NoSuchCORSConfiguration` when the bucket has no rules (or does not exist).

        Not authorized, and not audited: S3 answers preflight requests to
        anyone, and a match reveals no more than the preflight answer does.
        Reads the authorizer's cache (up to `tier0.identity.RULES_TTL_S` old for
        a change made by another process).
        """
        rules = self._kernel.authorizer.rules.get(bucket)
        parsed = rules.derived.get(_CORS)
        if parsed is None:
            raw = rules.values.get(_CORS)
            parsed = () if raw is None else tuple(CORSRule.from_json(rule) for rule in raw)
            rules.derived[_CORS] = parsed
        if not parsed:
            raise NoSuchCORSConfiguration(f"bucket {bucket!r} has no CORS configuration")
        return match_cors_rule(
            parsed, origin=origin, method=method, request_headers=request_headers
        )

    # -- policy ----------------------------------------------------------------------------

    def set_bucket_policy(self, bucket: str, policy: str) -> None:
        """Replace the bucket's policy with the JSON document ``policy`` (at most 20 KiB),
        checked whole first: `MalformedPolicy` names what is wrong, and the
        old policy stays. See `tier0.identity.parse_policy` for the language."""

        def checked() -> str:
            parse_policy(policy, bucket=bucket)
            return policy

        self._change(
            bucket, "s3:PutBucketPolicy", _POLICY, checked, "BucketPolicy:Put", lambda _: {}
        )

    def get_bucket_policy(self, bucket: str) -> str:
        """The bucket's policy, as it was put; `NoSuchBucketPolicy` when it has none."""
        value = self._read(bucket, "s3:GetBucketPolicy", _POLICY)
        if value is None:
            raise NoSuchBucketPolicy(f"bucket {bucket!r} has no policy")
        return str(value)

    def delete_bucket_policy(self, bucket: str) -> None:
        """Remove the bucket's policy (nothing happens when it has none)."""
        self._remove(bucket, "s3:DeleteBucketPolicy", _POLICY, "BucketPolicy:Delete")

    def bucket_policy_is_public(self, bucket: str) -> bool:
        """Whether the bucket's policy grants everyone access (`tier0.identity.Policy.is_public`);
        `NoSuchBucketPolicy` when it has none."""
        value = self._read(bucket, "s3:GetBucketPolicyStatus", _POLICY)
        if value is None:
            raise NoSuchBucketPolicy(f"bucket {bucket!r} has no policy")
        return parse_policy(str(value), bucket=bucket).is_public()

    # -- ACLs ------------------------------------------------------------------------------

    def set_bucket_acl(self, bucket: str, acl: str | Sequence[AclGrant]) -> str:
        """Set the bucket's canned ACL: ``private``, ``public-read``,
        ``public-read-write`` or ``authenticated-read`` (`InvalidArgument` otherwise).

        ``acl`` may also be the grants of an ACL written out (as S3's
        AccessControlPolicy does): accepted when they restate a canned ACL
        exactly, `UnsupportedACL` otherwise. Returns the canned ACL set.
        """
        if isinstance(acl, str):
            validate_canned_acl(acl, on_object=False)
        else:
            acl = _canned(list(acl), owner=self._owner(bucket), bucket_owner=None, on_object=False)
        canned = acl
        self._change(
            bucket,
            "s3:PutBucketAcl",
            _ACL,
            lambda: canned,
            "BucketAcl:Put",
            lambda value: {"acl": value},
            params={"s3:x-amz-acl": canned},
        )
        return canned

    def get_bucket_acl(self, bucket: str) -> AccessControl:
        """The bucket's ACL: its owner, its canned ACL (``private`` unless set) and grants."""
        owner = self._owner(bucket)
        self._authorize("s3:GetBucketAcl", f"/{bucket}", owner=owner)
        with self._kernel.meta.reader() as db:
            row = db.query_one(
                "SELECT value FROM t0_bucket_config WHERE bucket = ? AND name = ?", (bucket, _ACL)
            )
        acl = "private" if row is None else str(decode_config(row[0]))
        return self._access_control(acl, owner=owner, bucket_owner=None)

    def set_object_acl(
        self, bucket: str, key: str, acl: str | Sequence[AclGrant], *, version_id: str | None = None
    ) -> str:
        """Set the canned ACL of a version (the current one by default); returns its id.

        ``private``, ``public-read``, ``public-read-write``,
        ``authenticated-read``, ``bucket-owner-read`` or
        ``bucket-owner-full-control``; or grants that restate one exactly (as
        for `set_bucket_acl`). The version's data and ETag are untouched.
        """
        if isinstance(acl, str):
            validate_canned_acl(acl, on_object=True)
        else:
            grants = list(acl)
            bucket_owner = self._owner(bucket)
            with self._kernel.meta.reader() as db:
                where = "is_latest = 1" if version_id is None else "version_id = ?"
                row = db.query_one(
                    f"SELECT owner FROM t0_versions WHERE bucket = ? AND key = ? AND {where}",
                    (bucket, key) if version_id is None else (bucket, key, version_id),
                )
            owner = bucket_owner if row is None else str(row[0])
            acl = _canned(grants, owner=owner, bucket_owner=bucket_owner, on_object=True)
        action = "s3:PutObjectAcl" if version_id is None else "s3:PutObjectVersionAcl"
        resource = f"/{bucket}/{key}"
        params = {"s3:x-amz-acl": acl, "s3:VersionId": version_id}
        decision = self._authorize(
            action, resource, owner=self._owner(bucket), deferred=True, params=params
        )

        def op(tx: WriteTx) -> str:
            _ops.owned_bucket_row(tx, bucket, decision)
            row = _ops._find(tx, bucket, key, version_id)
            if row[5]:
                raise NoSuchKey(f"{bucket}/{key} is a delete marker, which holds no ACL")
            write_object_acl(tx, row[0], bucket, acl)
            _ops.emit_event(
                tx, tx.next_seq(), "ObjectAcl:Put", bucket, key, row[3], row[6], row[8],
                decision, {"acl": acl},
            )  # fmt: skip
            Authorizer.record_in(tx, decision)
            return str(row[3])

        return self._kernel.committer.run(op)

    def get_object_acl(
        self, bucket: str, key: str, *, version_id: str | None = None
    ) -> AccessControl:
        """A version's ACL (the current one by default): its writer as the owner, its
        canned ACL (``private`` unless set) and grants. `NoSuchKey` (`NoSuchVersion`)
        when there is no such version, or it is a delete marker."""
        action = "s3:GetObjectAcl" if version_id is None else "s3:GetObjectVersionAcl"
        bucket_owner = self._owner(bucket)
        self._authorize(
            action, f"/{bucket}/{key}", owner=bucket_owner, params={"s3:VersionId": version_id}
        )
        where = "v.is_latest = 1" if version_id is None else "v.version_id = ?"
        params: tuple[str, ...] = (bucket, key) if version_id is None else (bucket, key, version_id)
        with self._kernel.meta.reader() as db:
            row = db.query_one(
                "SELECT v.owner, v.is_delete_marker, a.acl FROM t0_versions v"
                " LEFT JOIN t0_object_acls a ON a.seq = v.seq"
                f" WHERE v.bucket = ? AND v.key = ? AND {where}",
                params,
            )
        if row is None and version_id is not None:
            raise NoSuchVersion(f"{bucket}/{key} has no version {version_id!r}")
        if row is None or row[1]:
            raise NoSuchKey(f"{bucket}/{key} does not exist (or is a delete marker, without ACL)")
        acl = str(row[2] or "private")
        return self._access_control(acl, owner=str(row[0]), bucket_owner=bucket_owner)

    # -- internals -------------------------------------------------------------------------

    def _object_facts(
        self, bucket: str, key: str, *, version_id: str | None = None, seq: int | None = None
    ) -> ObjectFacts:
        """The ACL, tags and owner of version ``seq`` (or ``version_id``, or the current
        one), loaded only if a decision asks."""

        def load() -> tuple[str | None, Mapping[str, str], str] | None:
            columns = (
                "SELECT v.tags, a.acl, v.owner FROM t0_versions v"
                " LEFT JOIN t0_object_acls a ON a.seq = v.seq"
            )
            with self._kernel.meta.reader() as db:
                if seq is not None:
                    row = db.query_one(f"{columns} WHERE v.seq = ?", (seq,))
                elif version_id is not None:
                    row = db.query_one(
                        f"{columns} WHERE v.bucket = ? AND v.key = ? AND v.version_id = ?",
                        (bucket, key, version_id),
                    )
                else:
                    row = db.query_one(
                        f"{columns} WHERE v.bucket = ? AND v.key = ? AND v.is_latest = 1",
                        (bucket, key),
                    )
            if row is None:
                return None
            return (None if row[1] is None else str(row[1])), load_json(row[0]), str(row[2])

        return ObjectFacts(load)

    def _change(
        self,
        bucket: str,
        action: str,
        name: str,
        prepare: Callable[[], Any],
        event: str,
        detail: Callable[[Any], dict[str, Any]],
        *,
        params: Mapping[str, str | None] | None = None,
    ) -> None:
        """Set configuration ``name`` to ``prepare()``, which checks it: only once the
        request is authorized, so that a refusal says no more than AccessDenied."""
        decision = self._authorize(
            action, f"/{bucket}", owner=self._owner(bucket), deferred=True, params=params
        )
        value = prepare()
        try:
            self._kernel.committer.run(
                lambda tx: _put_config(tx, bucket, name, value, decision, event, detail(value))
            )
        finally:
            self._kernel.authorizer.rules.forget(bucket)

    def _remove(self, bucket: str, action: str, name: str, event: str) -> None:
        decision = self._authorize(action, f"/{bucket}", owner=self._owner(bucket), deferred=True)
        try:
            self._kernel.committer.run(lambda tx: _delete_config(tx, bucket, name, decision, event))
        finally:
            self._kernel.authorizer.rules.forget(bucket)

    def _read(self, bucket: str, action: str, name: str) -> Any:
        """The stored value of configuration ``name`` (None without), after authorizing."""
        self._authorize(action, f"/{bucket}", owner=self._owner(bucket))
        with self._kernel.meta.reader() as db:
            row = db.query_one(
                "SELECT value FROM t0_bucket_config WHERE bucket = ? AND name = ?", (bucket, name)
            )
        return None if row is None else decode_config(row[0])

    def _access_control(self, acl: str, *, owner: str, bucket_owner: str | None) -> AccessControl:
        grants = canned_grants(acl, owner=owner, bucket_owner=bucket_owner)
        ids = sorted({g.grantee for g in grants if not g.group} | {owner})
        with self._kernel.meta.reader() as db:
            rows = db.query_all(
                f"SELECT id, name FROM t0_principals WHERE id IN ({', '.join('?' * len(ids))})",
                tuple(ids),
            )
        names = {str(row[0]): str(row[1]) for row in rows}
        named = tuple(
            g
            if g.group
            else AclGrant(g.grantee, False, g.permission, names.get(g.grantee, g.grantee))
            for g in grants
        )
        return AccessControl(owner, names.get(owner, owner), acl, named)
