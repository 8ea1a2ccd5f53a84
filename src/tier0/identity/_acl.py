"""Canned ACLs: the few access-control lists S3 names, for buckets and objects.

tier0 keeps an ACL as the name of a canned ACL, never as a free list of
grants: the free form adds nothing a bucket policy cannot say better, and
canned ACLs are what clients still send (``x-amz-acl: public-read``).

What each one grants, besides the owner's FULL_CONTROL, and what that
permission allows, after AWS's table mapping ACL permissions to actions:

====================  ===============================  =========================================
canned ACL            grant                            allows
====================  ===============================  =========================================
private               nothing                          -
public-read           AllUsers READ                    bucket: list; object: read
public-read-write     AllUsers READ and WRITE          bucket: list, put and delete objects
authenticated-read    AuthenticatedUsers READ          as public-read, for signed requests only
bucket-owner-read     bucket owner READ (objects)      - (the bucket owner may do anything)
bucket-owner-full-    bucket owner FULL_CONTROL        - (likewise)
control               (objects)
====================  ===============================  =========================================

AllUsers includes anonymous requests; AuthenticatedUsers is every principal
but the anonymous one. A bucket's ACL never opens its objects for reading:
as in S3, an object is public only through its own ACL or a bucket policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tier0.errors import InvalidArgument
from tier0.identity._principals import Principal

__all__ = [
    "ALL_USERS",
    "AUTHENTICATED_USERS",
    "BUCKET_CANNED_ACLS",
    "OBJECT_CANNED_ACLS",
    "AclGrant",
    "acl_permits",
    "canned_acl_of",
    "canned_grants",
    "object_owner_permits",
    "validate_canned_acl",
]

ALL_USERS: Final = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS: Final = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
BUCKET_CANNED_ACLS: Final = ("private", "public-read", "public-read-write", "authenticated-read")
OBJECT_CANNED_ACLS: Final = (*BUCKET_CANNED_ACLS, "bucket-owner-read", "bucket-owner-full-control")

#: Group grants of each canned ACL (the owner's FULL_CONTROL is implied).
_GROUP_GRANTS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "private": (),
    "public-read": ((ALL_USERS, "READ"),),
    "public-read-write": ((ALL_USERS, "READ"), (ALL_USERS, "WRITE")),
    "authenticated-read": ((AUTHENTICATED_USERS, "READ"),),
    "bucket-owner-read": (),
    "bucket-owner-full-control": (),
}
#: The actions a permission allows, on a bucket and on an object.
_BUCKET_ACTIONS: Final = {
    "READ": frozenset({"s3:listbucket", "s3:listbucketversions", "s3:listbucketmultipartuploads"}),
    "WRITE": frozenset({"s3:putobject", "s3:deleteobject"}),
}
_OBJECT_ACTIONS: Final = {
    "READ": frozenset({"s3:getobject", "s3:getobjectversion"}),
}
#: What an object's owner may do with it through the FULL_CONTROL every ACL gives
#: them (READ, READ_ACP and WRITE_ACP): who wrote an object into someone else's
#: bucket still reads it and its ACL. Deleting it is the bucket's to allow. The
#: initiator of a multipart upload likewise lists its parts and aborts it.
_OBJECT_OWNER_ACTIONS: Final = frozenset(
    {
        "s3:getobject",
        "s3:getobjectversion",
        "s3:getobjectacl",
        "s3:getobjectversionacl",
        "s3:putobjectacl",
        "s3:putobjectversionacl",
        "s3:abortmultipartupload",
        "s3:listmultipartuploadparts",
    }
)


@dataclass(frozen=True, slots=True)
class AclGrant:
    """One grant of an ACL: to a principal (by id) or a group (by URI)."""

    grantee: str
    group: bool
    permission: str
    #: The principal's name, where the store looked it up (None for groups).
    display_name: str | None = None


def validate_canned_acl(acl: str, *, on_object: bool) -> str:
    """``acl`` if it names a canned ACL tier0 keeps for a bucket (or an object); else
    `InvalidArgument` naming the ones it does."""
    allowed = OBJECT_CANNED_ACLS if on_object else BUCKET_CANNED_ACLS
    if acl not in allowed:
        what = "an object" if on_object else "a bucket"
        raise InvalidArgument(
            f"{acl!r} is not a canned ACL tier0 keeps for {what}; use one of {', '.join(allowed)}"
        )
    return acl


def canned_grants(acl: str, *, owner: str, bucket_owner: str | None = None) -> tuple[AclGrant, ...]:
    """The grants ``acl`` stands for, the owner's FULL_CONTROL first (as S3 lists them).

    ``owner`` is the id of the bucket's (or object's) owner; ``bucket_owner``
    the bucket's owner, for the ``bucket-owner-*`` ACLs of an object.
    """
    grants = [AclGrant(owner, False, "FULL_CONTROL")]
    if acl in ("bucket-owner-read", "bucket-owner-full-control") and bucket_owner is not None:
        permission = "READ" if acl == "bucket-owner-read" else "FULL_CONTROL"
        if bucket_owner != owner:
            grants.append(AclGrant(bucket_owner, False, permission))
    grants.extend(AclGrant(uri, True, permission) for uri, permission in _GROUP_GRANTS[acl])
    return tuple(grants)


def canned_acl_of(
    grants: list[AclGrant], *, owner: str, bucket_owner: str | None = None, on_object: bool
) -> str | None:
    """The canned ACL that ``grants`` restate exactly (in any order), or None.

    This is how an ``AccessControlPolicy`` body is accepted: a client that
    reads an ACL and writes it back, or spells a canned ACL out, sends one of
    these sets.
    """
    wanted = {(g.grantee, g.group, g.permission) for g in grants}
    for acl in OBJECT_CANNED_ACLS if on_object else BUCKET_CANNED_ACLS:
        expanded = canned_grants(acl, owner=owner, bucket_owner=bucket_owner)
        if wanted == {(g.grantee, g.group, g.permission) for g in expanded}:
            return acl
    return None


def object_owner_permits(action: str) -> bool:
    """Whether an object's owner may do ``action`` on it by its ACL's FULL_CONTROL."""
    return action.lower() in _OBJECT_OWNER_ACTIONS


def acl_permits(acl: str, principal: Principal, action: str, *, on_object: bool) -> bool:
    """Whether canned ``acl`` (of a bucket, or of an object) lets ``principal`` do ``action``.

    Only the group grants matter here: the owner's rights are decided before.
    """
    table = _OBJECT_ACTIONS if on_object else _BUCKET_ACTIONS
    lowered = action.lower()
    for uri, permission in _GROUP_GRANTS.get(acl, ()):
        if uri == AUTHENTICATED_USERS and principal.is_anonymous:
            continue
        if lowered in table.get(permission, frozenset()):
            return True
    return False
