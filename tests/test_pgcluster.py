"""Tests for the throwaway PostgreSQL cluster (`tests.pgcluster`) and its fixtures."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests import pgcluster
from tests.pgcluster import ClusterError, PostgresCluster, ServerNotFound, find_server_bindir

# --- finding the binaries (no server needed) --------------------------------


def _make_executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(stat.S_IRWXU)


def _make_server_bindir(bindir: Path) -> Path:
    for program in ("initdb", "postgres"):
        _make_executable(bindir / program)
    return bindir


def test_find_server_bindir_uses_override_when_set(tmp_path: Path) -> None:
    bindir = _make_server_bindir(tmp_path / "custom" / "bin")
    _make_server_bindir(tmp_path / "debian" / "16" / "bin")

    found = find_server_bindir(
        environ={"TIER0_PG_BIN": str(bindir), "PATH": ""}, debian_root=tmp_path / "debian"
    )

    assert found == bindir


def test_find_server_bindir_rejects_override_without_server(tmp_path: Path) -> None:
    _make_server_bindir(tmp_path / "debian" / "16" / "bin")
    (tmp_path / "empty").mkdir()

    # A wrong override is a configuration error, not "PostgreSQL is not
    # installed": it must fail even where a missing server only skips.
    with pytest.raises(ClusterError, match="TIER0_PG_BIN") as raised:
        find_server_bindir(
            environ={"TIER0_PG_BIN": str(tmp_path / "empty"), "PATH": ""},
            debian_root=tmp_path / "debian",
        )
    assert not isinstance(raised.value, ServerNotFound)


def test_find_server_bindir_prefers_pg_config(tmp_path: Path) -> None:
    server = _make_server_bindir(tmp_path / "opt" / "bin")
    _make_executable(tmp_path / "path" / "pg_config", f"#!/bin/sh\necho {server}\n")
    _make_server_bindir(tmp_path / "debian" / "16" / "bin")

    found = find_server_bindir(
        environ={"PATH": str(tmp_path / "path")}, debian_root=tmp_path / "debian"
    )

    assert found == server


def test_find_server_bindir_skips_pg_config_of_client_only_install(tmp_path: Path) -> None:
    # Debian's libpq-dev pg_config names /usr/bin, which holds no server; a
    # version directory with only client programs (postgresql-client-16) must
    # not win either, however new.
    client_only = tmp_path / "usr" / "bin"
    _make_executable(client_only / "psql")
    _make_executable(tmp_path / "path" / "pg_config", f"#!/bin/sh\necho {client_only}\n")
    debian = tmp_path / "debian"
    _make_executable(debian / "16" / "bin" / "psql")
    for version in ("9.6", "10", "15"):
        _make_server_bindir(debian / version / "bin")
    (debian / "not-a-version").mkdir()

    found = find_server_bindir(environ={"PATH": str(tmp_path / "path")}, debian_root=debian)

    # 15, not 9.6: versions compare as numbers, not strings.
    assert found == debian / "15" / "bin"


def test_find_server_bindir_falls_back_to_initdb_on_path(tmp_path: Path) -> None:
    server = _make_server_bindir(tmp_path / "bin")

    found = find_server_bindir(
        environ={"PATH": str(server)}, debian_root=tmp_path / "no-such-directory"
    )

    assert found == server


def test_find_server_bindir_raises_server_not_found_with_advice(tmp_path: Path) -> None:
    with pytest.raises(ServerNotFound, match="apt-get install postgresql"):
        find_server_bindir(environ={"PATH": str(tmp_path)}, debian_root=tmp_path)


# --- the fixtures -----------------------------------------------------------


def _show(url: str, setting: str) -> str:
    with psycopg.connect(url) as connection:
        row = connection.execute(f"SHOW {setting}").fetchone()
    assert row is not None
    value: str = row[0]
    return value


@pytest.mark.postgres
def test_postgres_url_connects_to_its_own_empty_database(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as connection:
        row = connection.execute(
            "SELECT current_database(), current_user,"
            " (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace)"
        ).fetchone()

    assert row is not None
    database, user, relation_count = row
    assert postgres_url.endswith(f"/{database}")
    assert database.startswith("t") and "postgres_url_connects" in database
    assert user == "postgres"
    assert relation_count == 0


@pytest.mark.postgres
def test_server_keeps_fsync_on(postgres_url: str) -> None:
    assert _show(postgres_url, "fsync") == "on"
    assert _show(postgres_url, "synchronous_commit") == "on"


@pytest.mark.postgres
def test_server_uses_test_tuning(postgres_url: str) -> None:
    assert _show(postgres_url, "max_connections") == "200"
    assert _show(postgres_url, "shared_buffers") == "128MB"
    assert _show(postgres_url, "TimeZone") == "UTC"
    assert _show(postgres_url, "server_encoding") == "UTF8"
    with psycopg.connect(postgres_url) as connection:
        # pg_database rather than SHOW lc_collate, which PostgreSQL 16 removed.
        row = connection.execute(
            "SELECT datcollate, datctype FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert row == ("C", "C")


@pytest.mark.postgres
def test_server_listens_on_loopback_only(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    assert _show(postgres_url, "listen_addresses") == "127.0.0.1"
    # The Unix socket lives in the cluster's private directory, not in a shared one.
    assert _show(postgres_url, "unix_socket_directories") == str(postgres_cluster.root)
    assert (postgres_cluster.root / f".s.PGSQL.{postgres_cluster.port}").is_socket()


@pytest.mark.postgres
def test_table_round_trips_across_connections(postgres_url: str) -> None:
    rows = [(1, "plain"), (2, "ünïcødé ✓"), (3, "")]
    with psycopg.connect(postgres_url) as connection:
        connection.execute("CREATE TABLE item (id integer PRIMARY KEY, label text NOT NULL)")
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO item (id, label) VALUES (%s, %s)", rows)
    # Leaving the `with` block committed; a new connection must see the rows.
    with psycopg.connect(postgres_url) as connection:
        read = connection.execute("SELECT id, label FROM item ORDER BY id").fetchall()

    assert read == rows


@pytest.mark.postgres
def test_fresh_databases_are_independent(
    postgres_cluster: PostgresCluster, postgres_url: str
) -> None:
    other_url = postgres_cluster.create_database("independence_other")
    try:
        with psycopg.connect(postgres_url) as connection:
            connection.execute("CREATE TABLE only_here (x integer)")
        with psycopg.connect(other_url) as connection:
            row = connection.execute(
                "SELECT current_database(), to_regclass('only_here')"
            ).fetchone()
    finally:
        postgres_cluster.drop_database("independence_other")

    assert row == ("independence_other", None)


@pytest.mark.postgres
def test_default_database_exists(postgres_cluster: PostgresCluster) -> None:
    assert postgres_cluster.url.endswith(f":{postgres_cluster.port}/tier0_test")
    with psycopg.connect(postgres_cluster.url) as connection:
        row = connection.execute("SELECT current_database()").fetchone()

    assert row == ("tier0_test",)


@pytest.mark.postgres
@pytest.mark.parametrize("name", ["", "Upper", "has-dash", "1leading_digit", "x" * 64])
def test_create_database_rejects_malformed_name(
    postgres_cluster: PostgresCluster, name: str
) -> None:
    with pytest.raises(ValueError, match="must match"):
        postgres_cluster.create_database(name)


@pytest.mark.postgres
def test_create_database_raises_cluster_error_when_it_exists(
    postgres_cluster: PostgresCluster,
) -> None:
    with pytest.raises(ClusterError, match="already exists"):
        postgres_cluster.create_database("tier0_test")


@pytest.mark.postgres
def test_drop_database_disconnects_leftover_sessions(postgres_cluster: PostgresCluster) -> None:
    url = postgres_cluster.create_database("dropped_while_connected")
    with psycopg.connect(url) as leftover:
        postgres_cluster.drop_database("dropped_while_connected")

        with pytest.raises(psycopg.OperationalError):
            leftover.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(url).close()


# --- starting and stopping clusters of our own ------------------------------


@pytest.fixture
def own_cluster(postgres_cluster: PostgresCluster) -> Iterator[PostgresCluster]:
    """A second, private cluster; asking for the shared one first gives the skip-or-fail rule."""
    with PostgresCluster.start(bindir=postgres_cluster.bindir, database="own") as cluster:
        yield cluster


@pytest.mark.postgres
def test_stop_shuts_down_server_and_deletes_directory(own_cluster: PostgresCluster) -> None:
    root, url = own_cluster.root, own_cluster.url
    assert own_cluster.running
    if os.geteuid() == 0:
        # PostgreSQL refuses root; the data must belong to the account it runs as.
        assert (root / "data").stat().st_uid != 0

    own_cluster.stop()
    own_cluster.stop()  # idempotent

    assert not own_cluster.running
    assert not root.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()


@pytest.mark.postgres
def test_exit_of_forked_child_leaves_cluster_running(own_cluster: PostgresCluster) -> None:
    child = os.fork()
    if child == 0:
        # What the child's interpreter would run at exit. os._exit in every
        # case, so the child never returns into pytest.
        try:
            own_cluster.stop()
        finally:
            os._exit(0)
    os.waitpid(child, 0)

    assert own_cluster.running
    assert own_cluster.root.exists()
    assert _show(own_cluster.url, "fsync") == "on"


@pytest.mark.postgres
def test_start_moves_to_another_port_when_chosen_one_is_taken(
    postgres_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both ways to lose the race: a plain listener, and another trust-auth
    # PostgreSQL that would happily answer our readiness probe.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        plain_port = listener.getsockname()[1]
        free_port = pgcluster._pick_free_port()
        ports = iter([plain_port, postgres_cluster.port, free_port])
        monkeypatch.setattr(pgcluster, "_pick_free_port", lambda: next(ports))

        with PostgresCluster.start(bindir=postgres_cluster.bindir) as cluster:
            assert cluster.port == free_port
            assert _show(cluster.url, "data_directory") == str(cluster.root / "data")


@pytest.mark.postgres
def test_start_gives_up_after_port_attempt_count_max(
    postgres_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgcluster, "_pick_free_port", lambda: postgres_cluster.port)
    created: list[str] = []
    mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(**arguments: str) -> str:
        created.append(mkdtemp(**arguments))
        return created[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)

    with pytest.raises(ClusterError, match="Gave up after 2 attempts"):
        PostgresCluster.start(bindir=postgres_cluster.bindir, port_attempt_count_max=2)

    assert len(created) == 1
    assert not Path(created[0]).exists(), "a failed start must leave no directory behind"


@pytest.mark.postgres
@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to another user")
def test_start_as_root_explains_unreachable_temporary_directory(
    postgres_cluster: PostgresCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(private))

    with pytest.raises(ClusterError, match="point TMPDIR at a world-traversable directory"):
        PostgresCluster.start(bindir=postgres_cluster.bindir)

    assert list(private.iterdir()) == []
