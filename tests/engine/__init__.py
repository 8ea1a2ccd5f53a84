"""Tests of the DataEngine (``tier0.engine``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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


def wait_for(condition: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    """``condition()``'s first true answer, asked every 50 ms; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting"
        time.sleep(0.05)
    return result
