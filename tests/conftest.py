"""Fixtures shared by the whole test suite.

Each group of fixtures has its own section below; add new groups the same way.

PostgreSQL
    ``postgres_cluster`` (session): one throwaway cluster per test session,
    started the first time a test asks for it; see `tests.pgcluster`.
    ``postgres_url`` (function): the URL of a fresh, empty database, dropped
    after the test. Mark tests that use either with ``@pytest.mark.postgres``.

    Without the server binaries these fixtures skip the test with installation
    advice, except under ``CI=true``, where they fail it: CI must not go green
    by silently skipping the PostgreSQL half of the suite.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import re
from collections.abc import Iterator

import pytest

import tier0
from tests.pgcluster import PostgresCluster, ServerNotFound, find_server_bindir

# --- PostgreSQL -------------------------------------------------------------

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the whole session; stopped and deleted at the end."""
    try:
        bindir = find_server_bindir()
    except ServerNotFound as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true, so not skipping: {error}", pytrace=False)
        pytest.skip(str(error))
    with PostgresCluster.start(bindir=bindir) as cluster:
        yield cluster


@pytest.fixture
def postgres_url(
    postgres_cluster: PostgresCluster, request: pytest.FixtureRequest
) -> Iterator[str]:
    """URL of a new empty database for this test alone, dropped afterwards.

    The name is ``t<number>_<test name>``, truncated to PostgreSQL's 63 bytes,
    so that a database seen in the server log points back at its test.
    """
    slug = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower())
    name = f"t{next(_database_numbers)}_{slug}"[:63]
    url = postgres_cluster.create_database(name)
    yield url
    # Dropping keeps the disk use of a long session flat (each database is
    # about 7.5 MB); FORCE disconnects sessions a failed test left open.
    postgres_cluster.drop_database(name)


# --- tier0 stores -----------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def meta_url(request: pytest.FixtureRequest) -> str:
    """The metadata backend of a test store: ``sqlite``, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return "sqlite"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def t0(tmp_path: pathlib.Path, meta_url: str) -> Iterator[tier0.Tier0]:
    """An opened tier0 acting as root, once per metadata backend (the conformance kit)."""
    store = tier0.open(tmp_path / "data", meta=meta_url)
    try:
        yield store
    finally:
        store.close()
