"""Fixtures for tests against a live ``tier0 serve``: one server per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.protocols.s3.live import ACCESS, SECRET, bucket_numbers, make_client
from tests.server.test_serve import ServeProcess, clean_environment


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data: Path = tmp_path_factory.mktemp("gateway")
    environment = clean_environment(TIER0_ROOT_ACCESS_KEY=ACCESS, TIER0_ROOT_SECRET_KEY=SECRET)
    with ServeProcess(data / "store", environment) as process:
        yield process


@pytest.fixture(scope="module")
def s3(server: ServeProcess) -> Any:
    return make_client(server.url)


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh bucket, so that tests do not depend on each other's order."""
    name = f"test-bucket-{next(bucket_numbers)}"
    s3.create_bucket(Bucket=name)
    return name
