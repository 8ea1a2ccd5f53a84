"""Identity: principals, credentials, the authorize seam (bucket policies, canned ACLs) and the audit log."""

from __future__ import annotations

from tier0.identity._acl import (
    ALL_USERS,
    AUTHENTICATED_USERS,
    BUCKET_CANNED_ACLS,
    OBJECT_CANNED_ACLS,
    AclGrant,
    acl_permits,
    canned_acl_of,
    canned_grants,
    validate_canned_acl,
)
from tier0.identity._bucketrules import RULES_TTL_S, BucketRules, BucketRulesCache
from tier0.identity._context import EMPTY_CONTEXT, REQUEST_OBJECT_TAG, ObjectFacts, RequestContext
from tier0.identity._policy import OWNER_KEEPS, Authorizer, Decision, Grant
from tier0.identity._principals import (
    ANONYMOUS,
    ANONYMOUS_ID,
    ROOT,
    ROOT_ID,
    Credential,
    Principal,
    Principals,
)
from tier0.identity._s3policy import (
    CONDITION_KEYS,
    CONDITION_OPERATORS,
    POLICY_BYTES_MAX,
    Policy,
    PolicyRequest,
    Statement,
    parse_policy,
)

__all__ = [
    "ALL_USERS",
    "ANONYMOUS",
    "ANONYMOUS_ID",
    "AUTHENTICATED_USERS",
    "BUCKET_CANNED_ACLS",
    "CONDITION_KEYS",
    "CONDITION_OPERATORS",
    "EMPTY_CONTEXT",
    "OBJECT_CANNED_ACLS",
    "OWNER_KEEPS",
    "POLICY_BYTES_MAX",
    "REQUEST_OBJECT_TAG",
    "ROOT",
    "ROOT_ID",
    "RULES_TTL_S",
    "AclGrant",
    "Authorizer",
    "BucketRules",
    "BucketRulesCache",
    "Credential",
    "Decision",
    "Grant",
    "ObjectFacts",
    "Policy",
    "PolicyRequest",
    "Principal",
    "Principals",
    "RequestContext",
    "Statement",
    "acl_permits",
    "canned_acl_of",
    "canned_grants",
    "parse_policy",
    "validate_canned_acl",
]
