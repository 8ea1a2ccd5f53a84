"""Built-in functions with no dependencies."""

from __future__ import annotations

from typing import Any


def noop(ctx: Any, event: dict[str, Any]) -> None:
    """Nothing: the invocation's row records that it ran."""
