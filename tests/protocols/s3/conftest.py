"""Fixtures for tests against a live ``tier0 serve``: one server per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tier0
from tests.protocols.s3.live import ACCESS, SECRET, bucket_numbers, make_client
from tests.server.test_serve import ServeProcess, clean_environment


@pytest.fixture(scope="module")
def server_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of this module's server."""
    return tmp_path_factory.mktemp("gateway") / "store"


@pytest.fixture(scope="module")
def server(server_data: Path) -> Iterator[ServeProcess]:
    environment = clean_environment(TIER0_ROOT_ACCESS_KEY=ACCESS, TIER0_ROOT_SECRET_KEY=SECRET)
    with ServeProcess(server_data, environment) as process:
        yield process


@pytest.fixture(scope="module")
def store(server: ServeProcess, server_data: Path) -> Iterator[tier0.Tier0]:
    """The server's store, opened beside it as root (several processes may share
    a data directory): for what S3 has no operation for yet, or to look behind it."""
    with tier0.open(server_data) as opened:
        yield opened


@pytest.fixture(scope="module")
def s3(server: ServeProcess) -> Any:
    return make_client(server.url)


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh bucket, so that tests do not depend on each other's order."""
    name = f"test-bucket-{next(bucket_numbers)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def versioned(s3: Any, store: tier0.Tier0) -> str:
    """A fresh bucket with versioning enabled (through the kernel, beside the server)."""
    name = f"versioned-{next(bucket_numbers)}"
    s3.create_bucket(Bucket=name)
    store.set_versioning(name, "Enabled")
    return name
