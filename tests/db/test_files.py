"""What a query may read: `BlobFileSystem` grants, and an engine that keeps none after a query.

The filesystem is tested on its own (fsspec calls, as DuckDB makes them), then
through a real `Engine`, then through a store's SQL on both metadata backends.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tier0
from tier0.db import Engine
from tier0.db._files import PROTOCOL, BlobFileSystem, GrantedFile
from tier0.errors import CatalogError, NoSuchTable, QueryTimeout, SQLSyntaxError, TableSchemaError

DATA = random.Random(1).randbytes(100_000)


def _file(data: bytes, reads: list[tuple[int, int]] | None = None) -> GrantedFile:
    def read(offset: int, length: int) -> bytes:
        if reads is not None:
            reads.append((offset, length))
        return data[offset : offset + length]

    return GrantedFile(len(data), read)


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


# -- BlobFileSystem --------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end"), [(0, 10), (10, 20), (99_990, 100_000), (0, 100_000)])
def test_granted_file_reads_byte_ranges(start: int, end: int) -> None:
    fs = BlobFileSystem()
    grant = fs.grant([("logs/a.bin", _file(DATA))])
    url = grant.url("logs/a.bin")
    assert url.startswith(f"{PROTOCOL}://{grant.prefix}/")
    assert fs.cat_file(url, start=start, end=end) == DATA[start:end]
    with fs.open(url, "rb") as handle:
        handle.seek(start)
        assert handle.read(end - start) == DATA[start:end]


def test_granted_file_reads_past_its_end_as_short() -> None:
    fs = BlobFileSystem()
    url = fs.grant([("a.bin", _file(DATA))]).url("a.bin")
    with fs.open(url, "rb") as handle:
        handle.seek(len(DATA) - 5)
        assert handle.read(100) == DATA[-5:]
        assert handle.read(1) == b""


def test_granted_file_is_read_through_its_reader() -> None:
    fs = BlobFileSystem()
    reads: list[tuple[int, int]] = []
    url = fs.grant([("a.bin", _file(DATA, reads))]).url("a.bin")
    assert fs.cat_file(url, start=50_000, end=50_010) == DATA[50_000:50_010]
    assert reads and all(offset >= 50_000 for offset, _ in reads)


def test_info_and_ls_describe_a_granted_file() -> None:
    fs = BlobFileSystem()
    grant = fs.grant([("dir/a.parquet", _file(DATA)), ("b.csv", _file(b"x,y\n"))])
    name = f"{grant.prefix}/dir/a.parquet"
    expected = {"name": name, "size": len(DATA), "type": "file"}
    assert fs.info(grant.url("dir/a.parquet")) == expected
    assert fs.info(name) == expected  # with or without the protocol
    assert fs.ls(grant.url("dir/a.parquet")) == [expected]
    assert fs.ls(grant.url("dir/a.parquet"), detail=False) == [name]
    assert fs.size(grant.url("b.csv")) == 4
    assert fs.exists(grant.url("b.csv")) and fs.isfile(grant.url("b.csv"))
    assert fs.modified(grant.url("b.csv")).year == 1970  # immutable: no time to report
    assert fs.granted == 2


def test_revoked_paths_are_missing() -> None:
    fs = BlobFileSystem()
    grant = fs.grant([("a.bin", _file(DATA)), ("b.bin", _file(DATA))])
    url = grant.url("a.bin")
    assert fs.cat_file(url, start=0, end=4) == DATA[:4]
    grant.revoke()
    assert fs.granted == 0
    assert not fs.exists(url)
    for call in (
        lambda: fs.info(url),
        lambda: fs.ls(url),
        lambda: fs.open(url, "rb"),
        lambda: fs.cat_file(url),
        lambda: fs.modified(url),
        lambda: fs.info(grant.url("b.bin")),
    ):
        with pytest.raises(FileNotFoundError):
            call()


def test_never_granted_paths_are_missing() -> None:
    fs = BlobFileSystem()
    grant = fs.grant([("a.bin", _file(DATA))])
    for url in (
        grant.url("other.bin"),  # the right prefix, another name
        f"{PROTOCOL}://{'0' * 24}/a.bin",  # the right name, another prefix
        f"{PROTOCOL}://{grant.prefix}",  # the prefix is no directory
        f"{PROTOCOL}://a.bin",
    ):
        assert not fs.exists(url)
        with pytest.raises(FileNotFoundError):
            fs.info(url)
        with pytest.raises(FileNotFoundError):
            fs.open(url, "rb")
    # Nothing can be listed, so a glob cannot discover another query's grant.
    assert fs.glob(f"{PROTOCOL}://*/*") == []
    assert fs.find(f"{PROTOCOL}://") == []


@pytest.mark.parametrize(
    "write",
    [
        lambda fs, url: fs.open(url, "wb"),
        lambda fs, url: fs.open(url, "ab"),
        lambda fs, url: fs.pipe_file(url, b"overwritten"),
        lambda fs, url: fs.touch(url),
        lambda fs, url: fs.open(url + ".new", "wb"),
    ],
    ids=["open-wb", "open-ab", "pipe_file", "touch", "new-file"],
)
def test_writes_are_refused(write: Callable[[BlobFileSystem, str], object]) -> None:
    fs = BlobFileSystem()
    grant = fs.grant([("a.bin", _file(DATA))])
    url = grant.url("a.bin")
    with pytest.raises(PermissionError):
        write(fs, url)
    assert fs.cat_file(url) == DATA
    assert fs.granted == 1


def test_each_grant_has_its_own_prefix() -> None:
    fs = BlobFileSystem()
    first = fs.grant([("same.bin", _file(b"first"))])
    second = fs.grant([("same.bin", _file(b"second"))])
    assert first.prefix != second.prefix
    assert len(first.prefix) >= 24  # 96 random bits: unguessable
    assert fs.cat_file(first.url("same.bin")) == b"first"
    assert fs.cat_file(second.url("same.bin")) == b"second"
    first.revoke()
    assert not fs.exists(first.url("same.bin"))
    assert fs.cat_file(second.url("same.bin")) == b"second"


def test_grant_used_as_context_manager_is_revoked_on_exit() -> None:
    fs = BlobFileSystem()
    with pytest.raises(RuntimeError), fs.grant([("a.bin", _file(DATA))]) as grant:
        assert fs.exists(grant.url("a.bin"))
        raise RuntimeError("the query failed")
    assert fs.granted == 0
    assert not fs.exists(grant.url("a.bin"))


# -- one Engine ------------------------------------------------------------------------------


def test_engine_reads_a_granted_file_and_not_once_revoked() -> None:
    engine = Engine()
    try:
        data = _parquet(pa.table({"n": [1, 2, 3]}))
        reads: list[tuple[int, int]] = []
        grant = engine.files.grant([("t.parquet", _file(data, reads))])
        sql = f"SELECT sum(n) AS total FROM read_parquet('{grant.url('t.parquet')}')"
        assert engine.query(sql).to_pylist() == [{"total": 6}]
        assert reads  # DuckDB read through the grant
        assert engine.statistics().files_granted == 1
        grant.revoke()
        assert engine.statistics().files_granted == 0
        with pytest.raises(CatalogError, match="No files found"):
            engine.query(sql)
    finally:
        engine.close()


def test_engine_configuration_is_locked() -> None:
    engine = Engine()
    try:
        with pytest.raises(CatalogError, match="locked"):
            engine.query("SET enable_external_access = true")
        assert engine.query(
            "SELECT current_setting('lock_configuration') AS locked"
        ).to_pylist() == [{"locked": True}]
    finally:
        engine.close()


# -- a store's SQL leaves no grant behind ----------------------------------------------------


@pytest.fixture
def store(t0: tier0.Tier0) -> tier0.Tier0:
    t0.create_bucket("bkt")
    t0.db.sql(
        "CREATE TABLE bkt.t (id BIGINT, name VARCHAR);"
        " INSERT INTO bkt.t VALUES (1, 'one'), (2, 'two'), (3, 'three')"
    )
    t0.put("bkt", "logs/a.parquet", _parquet(pa.table({"id": [1, 2], "level": ["info", "warn"]})))
    t0.put("bkt", "logs/b.parquet", _parquet(pa.table({"id": [3], "level": ["error"]})))
    return t0


def _granted(t0: tier0.Tier0) -> int:
    return t0._owned.engine().statistics().files_granted


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT count(*) AS n FROM bkt.t", [{"n": 3}]),
        (
            "SELECT count(*) AS n FROM bkt.t t JOIN objects o ON o.key LIKE 'logs/%'",
            [{"n": 6}],
        ),
        (
            "SELECT t.name, l.level FROM bkt.t t"
            " JOIN read_parquet('tier0://bkt/logs/*.parquet') l USING (id) ORDER BY t.id",
            [
                {"name": "one", "level": "info"},
                {"name": "two", "level": "warn"},
                {"name": "three", "level": "error"},
            ],
        ),
        ("UPDATE bkt.t SET name = upper(name) WHERE id = 2", [{"rows": 1}]),
        ("DELETE FROM bkt.t WHERE id = 3", [{"rows": 1}]),
        ("INSERT INTO bkt.t SELECT id + 10, name FROM bkt.t", [{"rows": 3}]),
        ("CREATE TABLE bkt.copy AS SELECT * FROM bkt.t WHERE id < 3", [{"rows": 2}]),
    ],
    ids=["table", "catalog-join", "file-glob", "update", "delete", "insert-select", "ctas"],
)
def test_engine_holds_no_grants_after_a_statement(
    store: tier0.Tier0, sql: str, expected: list[dict[str, object]]
) -> None:
    assert store.db.sql(sql).to_pylist() == expected
    assert _granted(store) == 0


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        # Fails in DuckDB, after every grant was made.
        ("SELECT CAST(name AS INTEGER) FROM bkt.t", TableSchemaError),
        # Fails while binding: the table was granted before the glob matched nothing.
        ("SELECT * FROM bkt.t, read_parquet('tier0://bkt/none/*.parquet')", SQLSyntaxError),
        ("SELECT * FROM bkt.t, bkt.missing", NoSuchTable),
        ("UPDATE bkt.t SET id = 'not a number' WHERE id = 1", TableSchemaError),
    ],
    ids=["engine-error", "glob-matches-nothing", "missing-table", "update-error"],
)
def test_engine_holds_no_grants_after_a_failed_statement(
    store: tier0.Tier0, sql: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        store.db.sql(sql)
    assert _granted(store) == 0
    assert store.db.sql("SELECT count(*) AS n FROM bkt.t").to_pylist() == [{"n": 3}]


def test_engine_holds_no_grants_after_a_timeout(store: tier0.Tier0) -> None:
    with pytest.raises(QueryTimeout):
        store.db.sql(
            "SELECT count(*) FROM bkt.t, range(100000) a, range(100000) b"
            " WHERE a.range + b.range = -1",
            timeout_s=0.2,
        )
    assert _granted(store) == 0
    statistics = store._owned.engine().statistics()
    assert statistics.queries_timed_out == 1 and statistics.running == 0
