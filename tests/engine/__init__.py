"""Tests of the DataEngine (``tier0.engine``)."""

from __future__ import annotations

import tier0
from tier0.engine import FunctionInfo, Functions, FunctionSpec

NOOP = "tier0.engine.builtins.basic:noop"


def deploy(t0: tier0.Tier0, *names: str, handler: str = NOOP) -> list[FunctionInfo]:
    """Functions ``names`` deployed by import path (for triggers that need one to exist)."""
    functions = Functions(t0._kernel.meta, t0._kernel.committer)
    return [
        functions.deploy(FunctionSpec(name, handler), package=None, deployed_by="root")
        for name in names
    ]
