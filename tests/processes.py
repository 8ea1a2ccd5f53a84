"""Running tier0 code in other processes, as the multi-process tests do."""

from __future__ import annotations

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_env() -> dict[str, str]:
    """The environment for ``python -m tests....`` children: this checkout first on the path."""
    paths = [str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
