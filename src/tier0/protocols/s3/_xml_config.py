"""S3's XML for bucket configuration: CORS rules, access control policies, policy status.

Apart from `tier0.protocols.s3._xml` (which it builds on: the same hardened
reader, the same escaping writer) only to keep each module to one screenful
of concerns. Parsers raise `MalformedXML` for a document that is not the
shape S3 defines; what the values may be (methods, wildcards, limits) is the
kernel's to judge.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tier0.identity import AclGrant
from tier0.protocols.s3._xml import (
    XML_BYTES_MAX,
    MalformedXML,
    _children,
    _Document,
    _one,
    _optional_text,
    _root,
)
from tier0.store import AccessControl, CORSRule

__all__ = [
    "ACL_PERMISSIONS",
    "AccessControlPolicyBody",
    "parse_access_control_policy",
    "parse_cors_configuration",
    "render_access_control_policy",
    "render_cors_configuration",
    "render_policy_status",
]

ACL_PERMISSIONS: Final = ("FULL_CONTROL", "READ", "WRITE", "READ_ACP", "WRITE_ACP")
_XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
_DIGITS: Final = re.compile(r"\s*\d{1,10}\s*")


def _texts(element: ET.Element, name: str) -> list[str]:
    """The text of every ``<name>`` child, stripped; elements inside one are refused."""
    found = []
    for child in _children(element, name):
        if len(child):
            raise MalformedXML(f"<{name}> holds elements where text belongs")
        found.append((child.text or "").strip())
    return found


def parse_cors_configuration(body: bytes, *, xml_bytes_max: int = XML_BYTES_MAX) -> list[CORSRule]:
    """The rules of a CORSConfiguration body, in order.

    `MalformedXML` when there is no ``<CORSRule>``, a rule lacks
    ``<AllowedMethod>`` or ``<AllowedOrigin>``, or ``<MaxAgeSeconds>`` is not
    a whole number.
    """
    root = _root(body, "CORSConfiguration", xml_bytes_max)
    rules: list[CORSRule] = []
    for element in _children(root, "CORSRule"):
        methods = _texts(element, "AllowedMethod")
        origins = _texts(element, "AllowedOrigin")
        if not methods or not origins:
            raise MalformedXML("every <CORSRule> needs an <AllowedMethod> and an <AllowedOrigin>")
        max_age = _optional_text(element, "MaxAgeSeconds")
        if max_age is not None and not _DIGITS.fullmatch(max_age):
            raise MalformedXML(f"<MaxAgeSeconds> is {max_age!r}, not a whole number of seconds")
        rules.append(
            CORSRule(
                allowed_methods=tuple(methods),
                allowed_origins=tuple(origins),
                allowed_headers=tuple(_texts(element, "AllowedHeader")),
                expose_headers=tuple(_texts(element, "ExposeHeader")),
                max_age_s=None if max_age is None else int(max_age),
                id=_optional_text(element, "ID"),
            )
        )
    if not rules:
        raise MalformedXML("<CORSConfiguration> holds no <CORSRule>")
    return rules


def render_cors_configuration(rules: Sequence[CORSRule]) -> bytes:
    """CORSConfiguration with the rules in order."""
    doc = _Document("CORSConfiguration")
    for rule in rules:
        doc.open("CORSRule")
        doc.leaf("ID", rule.id)
        for header in rule.allowed_headers:
            doc.leaf("AllowedHeader", header)
        for method in rule.allowed_methods:
            doc.leaf("AllowedMethod", method)
        for origin in rule.allowed_origins:
            doc.leaf("AllowedOrigin", origin)
        for header in rule.expose_headers:
            doc.leaf("ExposeHeader", header)
        doc.leaf("MaxAgeSeconds", rule.max_age_s)
        doc.close("CORSRule")
    return doc.finish()


@dataclass(frozen=True, slots=True)
class AccessControlPolicyBody:
    """A PutBucketAcl/PutObjectAcl body: the owner it names (if any) and its grants.

    ``unsupported`` names a grantee form tier0 cannot keep (an e-mail address),
    for the caller to refuse.
    """

    owner: str | None
    grants: list[AclGrant]
    unsupported: str | None = None


def parse_access_control_policy(
    body: bytes, *, xml_bytes_max: int = XML_BYTES_MAX
) -> AccessControlPolicyBody:
    """Read an AccessControlPolicy body.

    A grantee is a user by ``<ID>`` or a group by ``<URI>`` (the reader drops
    the ``xsi:type`` attribute, so the child element says which).
    `MalformedXML` for a grant without a grantee or with a permission S3 does
    not have.
    """
    root = _root(body, "AccessControlPolicy", xml_bytes_max)
    owner = None
    owner_element = _one(root, "Owner", required=False)
    if owner_element is not None:
        owner = _optional_text(owner_element, "ID")
    grants: list[AclGrant] = []
    unsupported = None
    acl = _one(root, "AccessControlList", required=False)
    for grant in [] if acl is None else list(_children(acl, "Grant")):
        grantee = _one(grant, "Grantee", required=True)
        assert grantee is not None
        permission = (_optional_text(grant, "Permission") or "").strip()
        if permission not in ACL_PERMISSIONS:
            raise MalformedXML(
                f"<Permission> {permission!r} is not one of {', '.join(ACL_PERMISSIONS)}"
            )
        user = _optional_text(grantee, "ID")
        group = _optional_text(grantee, "URI")
        email = _optional_text(grantee, "EmailAddress")
        if user is not None:
            grants.append(AclGrant(user.strip(), False, permission))
        elif group is not None:
            grants.append(AclGrant(group.strip(), True, permission))
        elif email is not None:
            unsupported = "a grantee by e-mail address"
        else:
            raise MalformedXML("a <Grantee> names no <ID>, <URI> or <EmailAddress>")
    return AccessControlPolicyBody(owner, grants, unsupported)


def render_access_control_policy(control: AccessControl) -> bytes:
    """AccessControlPolicy: the owner, then one Grant per grant (users by ID, groups by URI)."""
    doc = _Document("AccessControlPolicy")
    doc.open("Owner")
    doc.leaf("ID", control.owner)
    doc.leaf("DisplayName", control.owner_name)
    doc.close("Owner")
    doc.open("AccessControlList")
    for grant in control.grants:
        doc.open("Grant")
        kind = "Group" if grant.group else "CanonicalUser"
        # _Document writes element names as given: the attributes ride along.
        doc.open(f'Grantee xmlns:xsi="{_XSI}" xsi:type="{kind}"')
        if grant.group:
            doc.leaf("URI", grant.grantee)
        else:
            doc.leaf("ID", grant.grantee)
            doc.leaf("DisplayName", grant.display_name or grant.grantee)
        doc.close("Grantee")
        doc.leaf("Permission", grant.permission)
        doc.close("Grant")
    doc.close("AccessControlList")
    return doc.finish()


def render_policy_status(*, public: bool) -> bytes:
    """PolicyStatus, S3's answer to GetBucketPolicyStatus."""
    doc = _Document("PolicyStatus")
    doc.leaf("IsPublic", public)
    return doc.finish()
