"""Fixtures for the catalog tests: one populated backend per engine, and catalogs over them.

The catalog cannot write, and the tests that try check that nothing changed, so
each backend is populated once for this package and shared by its modules.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.catalog.dataset import populate
from tier0.catalog import Catalog
from tier0.meta import MetaBackend, PostgresBackend, SQLiteBackend


@pytest.fixture(scope="package")
def sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetaBackend]:
    backend = SQLiteBackend(tmp_path_factory.mktemp("catalog") / "meta")
    backend.install_schema()
    populate(backend)
    yield backend
    backend.close()


@pytest.fixture(scope="package")
def postgres_backend(request: pytest.FixtureRequest) -> Iterator[MetaBackend]:
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.create_database("catalog_tests")
    backend = PostgresBackend(url)
    backend.install_schema()
    populate(backend)
    yield backend
    backend.close()
    cluster.drop_database("catalog_tests")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> MetaBackend:
    backend: MetaBackend = request.getfixturevalue(f"{request.param}_backend")
    return backend


@pytest.fixture
def catalog(backend: MetaBackend) -> Iterator[Catalog]:
    catalog = Catalog(backend)
    yield catalog
    catalog.close()


@pytest.fixture
def both(
    sqlite_backend: MetaBackend, postgres_backend: MetaBackend
) -> Iterator[tuple[Catalog, Catalog]]:
    catalogs = (Catalog(sqlite_backend), Catalog(postgres_backend))
    yield catalogs
    for catalog in catalogs:
        catalog.close()
