"""The ``tier0`` command: ``tier0 --help`` lists its commands.

``cli`` is the click group (for ``CliRunner`` and for embedding); ``main`` is
the console script's entry point.
"""

from __future__ import annotations

from tier0.cli._main import cli, main

__all__ = ["cli", "main"]
