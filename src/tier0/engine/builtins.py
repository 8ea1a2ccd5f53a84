"""Functions that ship with tier0, deployable by import path (``tier0.engine.builtins:NAME``).

``noop`` does nothing: for measuring the engine itself, and for checking that a
trigger fires (its invocations are rows like any other).
"""

from __future__ import annotations

from typing import Any


def noop(ctx: Any, event: dict[str, Any]) -> None:
    """Nothing: the invocation's row records that it ran."""
