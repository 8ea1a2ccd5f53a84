"""A 5 GiB object is written and read with bounded memory."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from tests.processes import ROOT, python_env

SIZE_BYTES = 5 * 1024**3
# Interpreter and libraries ~40 MiB, the test's own 16 MiB of blocks, the I/O threads'
# aligned buffers (4 x 4 MiB), and chunk windows in flight: about 110 MiB, whatever the size.
RSS_BYTES_MAX = 160 * 1024**2


@pytest.mark.slow
def test_five_gib_object_round_trips_in_bounded_memory(tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.store.stream_worker",
            str(tmp_path / "data"),
            str(SIZE_BYTES),
        ],
        cwd=ROOT,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=280,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["size"] == SIZE_BYTES
    assert report["received"] == report["sent"]
    assert report["checksum"] == "blake3:" + report["sent"]
    assert report["peak_rss_bytes"] < RSS_BYTES_MAX, (
        f"peak RSS {report['peak_rss_bytes'] / 2**20:.0f} MiB"
    )
