"""Identity: principals, credentials, the authorize seam and the audit log."""

from __future__ import annotations

from tier0.identity._policy import Authorizer, Decision, Grant
from tier0.identity._principals import ROOT, ROOT_ID, Credential, Principal, Principals

__all__ = [
    "ROOT",
    "ROOT_ID",
    "Authorizer",
    "Credential",
    "Decision",
    "Grant",
    "Principal",
    "Principals",
]
