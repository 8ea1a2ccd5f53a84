"""Transactions over tables (``tier0.db._transaction``): several statements, from SQL
(BEGIN ... COMMIT) or Python (``t0.db.transaction()``), committed at once or not at all.

Every test runs on both metadata backends (the ``t0`` fixture), with real
tables in the store; a second opened store plays a concurrent process.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import tier0
from tier0.db import Table, _search
from tier0.db._sql import ROWID_COLUMN, TARGET
from tier0.errors import SQLNotAllowed, SQLSyntaxError, TableConflict, TableSchemaError


@pytest.fixture
def bank(t0: tier0.Tier0) -> Table:
    t0.create_bucket("bank")
    t0.sql(
        "CREATE TABLE bank.accounts (id BIGINT NOT NULL, owner VARCHAR, balance BIGINT);"
        " INSERT INTO bank.accounts VALUES (1, 'ann', 100), (2, 'bob', 50)"
    )
    return t0.table("bank/accounts")


def _balances(t0: tier0.Tier0) -> list[tuple[int, int]]:
    return [tuple(r) for r in t0.sql("SELECT id, balance FROM bank.accounts ORDER BY id").rows]


def _events(t0: tier0.Tier0) -> list[str]:
    return [event.type for event in t0.events.read(0, limit=1000) if event.bucket == "bank"]


def test_sql_transaction_commits_every_statement_together(t0: tier0.Tier0, bank: Table) -> None:
    events_before = _events(t0)
    result = t0.sql(
        "BEGIN;"
        " UPDATE bank.accounts SET balance = balance - 30 WHERE id = 1;"
        " UPDATE bank.accounts SET balance = balance + 30 WHERE id = 2;"
        " INSERT INTO bank.accounts VALUES (3, 'cy', 0);"
        " SELECT sum(balance) AS total, count(*) AS n FROM bank.accounts;"  # sees its own writes
        " COMMIT"
    )
    assert result.rows == [(150, 3)]
    assert _balances(t0) == [(1, 70), (2, 80), (3, 0)]
    # One commit: one event for the table, with what the transaction did.
    new = [event for event in t0.events.read(0, limit=1000) if event.bucket == "bank"][
        len(events_before) :
    ]
    assert [event.type for event in new] == ["TableRowsChanged"]
    assert new[0].detail["transaction"] == {"TableRowsUpdated": 2, "TableRowsInserted": 1}
    assert new[0].detail["rows"] == 3


def test_a_failing_statement_rolls_the_whole_transaction_back(t0: tier0.Tier0, bank: Table) -> None:
    snapshot = bank.info().snapshot
    with pytest.raises(TableSchemaError):
        t0.sql(
            "BEGIN;"
            " UPDATE bank.accounts SET balance = balance - 30 WHERE id = 1;"
            " INSERT INTO bank.accounts VALUES ('not a number', 'x', 'y');"
            " COMMIT"
        )
    assert _balances(t0) == [(1, 100), (2, 50)]
    assert bank.info().snapshot == snapshot  # nothing was committed


def test_rollback_discards_and_later_statements_still_run(t0: tier0.Tier0, bank: Table) -> None:
    result = t0.sql(
        "BEGIN; DELETE FROM bank.accounts; ROLLBACK; SELECT count(*) AS n FROM bank.accounts"
    )
    assert result.rows == [(2,)]
    assert _balances(t0) == [(1, 100), (2, 50)]


def test_python_transaction_spans_tables_and_apis(t0: tier0.Tier0, bank: Table) -> None:
    t0.sql("CREATE TABLE bank.log (account BIGINT, amount BIGINT)")
    with t0.db.transaction() as db:
        accounts = db.table("bank/accounts")
        accounts.update({"balance": 0}, where="id = 2")
        db.table("bank/log").insert({"account": [2], "amount": [-50]})
        db.sql("INSERT INTO bank.log SELECT id, balance FROM bank.accounts WHERE id = 1")
        # Inside: its own writes; outside: nothing yet.
        assert db.sql("SELECT count(*) AS n FROM bank.log").column("n").to_pylist() == [2]
        assert t0.sql("SELECT count(*) FROM bank.log").rows == [(0,)]
        assert _balances(t0) == [(1, 100), (2, 50)]
    assert _balances(t0) == [(1, 100), (2, 0)]
    assert sorted(t0.sql("SELECT account, amount FROM bank.log").rows) == [(1, 100), (2, -50)]


def test_an_exception_in_the_block_commits_nothing(t0: tier0.Tier0, bank: Table) -> None:
    with pytest.raises(RuntimeError, match="changed my mind"), t0.db.transaction() as db:
        db.table("bank/accounts").delete("true")
        raise RuntimeError("changed my mind")
    assert _balances(t0) == [(1, 100), (2, 50)]


def test_rows_written_in_a_transaction_keep_their_rowids_when_rewritten(
    t0: tier0.Tier0, bank: Table
) -> None:
    # Insert, then update and delete the new rows before commit: the commit must
    # number them as the transaction did, and later inserts must not reuse them.
    with t0.db.transaction() as db:
        table = db.table("bank/accounts")
        table.insert({"id": [3, 4, 5], "owner": ["c", "d", "e"], "balance": [1, 2, 3]})
        table.update({"balance": 40}, where="id = 4")
        table.delete("id = 3")
    bank.insert({"id": [6], "owner": ["f"], "balance": [6]})
    rows = t0.sql("SELECT id, balance FROM bank.accounts ORDER BY id").rows
    assert rows == [(1, 100), (2, 50), (4, 40), (5, 3), (6, 6)]
    info, files = t0.db._readable("bank", "accounts")
    rowids = _search._query(
        bank, info, files, f"SELECT {ROWID_COLUMN} FROM {TARGET}", trusted=True
    ).column(0)
    assert len(set(rowids.to_pylist())) == 5  # no rowid given twice


def test_a_concurrent_commit_to_a_written_table_conflicts(
    t0: tier0.Tier0, bank: Table, tmp_path: Path, meta_url: str
) -> None:
    with tier0.open(tmp_path / "data", meta=meta_url) as other:
        conflict = pytest.raises(TableConflict, match="changed while this transaction ran")
        with conflict, t0.db.transaction() as db:
            db.table("bank/accounts").update({"balance": 1}, where="id = 1")
            # Another process commits to the same table first.
            other.table("bank/accounts").insert({"id": [9], "owner": ["z"], "balance": [9]})
        assert _balances(t0) == [(1, 100), (2, 50), (9, 9)]  # theirs, not ours


def test_a_transaction_reads_each_table_as_of_its_first_look(
    t0: tier0.Tier0, bank: Table, tmp_path: Path, meta_url: str
) -> None:
    with tier0.open(tmp_path / "data", meta=meta_url) as other, t0.db.transaction() as db:
        before = db.sql("SELECT count(*) AS n FROM bank.accounts").column("n").to_pylist()
        other.table("bank/accounts").insert({"id": [9], "owner": ["z"], "balance": [9]})
        after = db.sql("SELECT count(*) AS n FROM bank.accounts").column("n").to_pylist()
        assert before == after == [2]  # repeatable: a read-only transaction commits fine
    assert t0.sql("SELECT count(*) FROM bank.accounts").rows == [(3,)]


def test_ddl_and_nesting_are_refused_inside_a_transaction(t0: tier0.Tier0, bank: Table) -> None:
    for statement in (
        "CREATE TABLE bank.other (x INT)",
        "ALTER TABLE bank.accounts ADD COLUMN note VARCHAR",
        "DROP TABLE bank.accounts",
    ):
        with pytest.raises(SQLNotAllowed, match="not transactional"):
            t0.sql(f"BEGIN; {statement}; COMMIT")
    with pytest.raises(SQLNotAllowed, match="do not nest"), t0.db.transaction() as db:
        db.sql("BEGIN; SELECT 1; COMMIT")
    assert [info.name for info in t0.db.tables("bank")] == ["accounts"]
    assert "note" not in bank.schema.names


@pytest.mark.parametrize(
    "sql", ["BEGIN; SELECT 1", "COMMIT", "SELECT 1; ROLLBACK", "BEGIN; BEGIN; COMMIT"]
)
def test_unbalanced_transactions_are_syntax_errors(t0: tier0.Tier0, bank: Table, sql: str) -> None:
    with pytest.raises((SQLSyntaxError, SQLNotAllowed)):
        t0.sql(sql)


def test_a_transaction_past_its_age_limit_is_refused(
    t0: tier0.Tier0, bank: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("tier0.db._transaction.time.monotonic", lambda: clock[0])
    with pytest.raises(TableConflict, match="longer than"), t0.db.transaction() as db:
        db.table("bank/accounts").delete("id = 1")
        clock[0] += t0._kernel.config.gc_grace_s  # its files could be collected by now
    assert _balances(t0) == [(1, 100), (2, 50)]


def test_transactional_writes_are_authorized_and_audited(t0: tier0.Tier0, bank: Table) -> None:
    t0.create_user("reader")
    t0.grant("reader", "tier0:ReadTable", "/bank/accounts")
    reader = t0.as_principal("reader")
    with pytest.raises(PermissionError):
        reader.sql("BEGIN; DELETE FROM bank.accounts WHERE id = 1; COMMIT")
    assert _balances(t0) == [(1, 100), (2, 50)]
    data = pa.table({"id": [7], "owner": ["g"], "balance": [7]})
    with pytest.raises(PermissionError), reader.db.transaction() as db:
        db.table("bank/accounts").insert(data)
    assert _balances(t0) == [(1, 100), (2, 50)]
