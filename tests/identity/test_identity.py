"""Principals, credentials, the deny-by-default authorize seam, and the audit log."""

from __future__ import annotations

import pathlib
import stat

import pytest

import tier0
from tier0.errors import (
    AccessDenied,
    InvalidArgument,
    InvalidCredentials,
    NoSuchPrincipal,
    PrincipalExists,
)


def test_root_credentials_are_made_once_and_saved_owner_only(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    with tier0.open(data) as t0:
        credential = t0.root_credential
        assert credential is not None
        assert t0.principals.authenticate(credential.access_key, credential.secret_key).is_root
    saved = data / "root-credentials"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert credential.secret_key in saved.read_text()
    with tier0.open(data) as t0:
        assert t0.root_credential is None  # shown once, never again


def test_root_credentials_from_environment(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIER0_ROOT_ACCESS_KEY", "MYROOTKEY")
    monkeypatch.setenv("TIER0_ROOT_SECRET_KEY", "my-root-secret-1234")
    with tier0.open(tmp_path / "data") as t0:
        assert t0.root_credential is None
        assert t0.principals.authenticate("MYROOTKEY", "my-root-secret-1234").is_root
        with pytest.raises(InvalidCredentials):
            t0.principals.authenticate("MYROOTKEY", "wrong")
    assert not (tmp_path / "data" / "root-credentials").exists()


def test_principals_lifecycle(t0: tier0.Tier0) -> None:
    agent, credential = t0.create_user("crawler", "agent")
    assert agent.kind == "agent"
    assert t0.principals.authenticate(credential.access_key, credential.secret_key) == agent
    with pytest.raises(PrincipalExists):
        t0.create_user("crawler")
    with pytest.raises(InvalidArgument):
        t0.create_user("bad name!")
    with pytest.raises(InvalidArgument):
        t0.create_user("x", "robot")
    assert [p.name for p in t0.list_users()] == ["crawler", "root"]
    t0.delete_user("crawler")
    with pytest.raises(NoSuchPrincipal):
        t0.principals.get("crawler")
    with pytest.raises(InvalidCredentials):
        t0.principals.authenticate(credential.access_key, credential.secret_key)
    with pytest.raises(InvalidArgument):
        t0.delete_user("root")


def test_deny_by_default_owner_and_grants(t0: tier0.Tier0) -> None:
    t0.create_bucket("roots")
    t0.put("roots", "secret.txt", b"s3cr3t")
    alice, _ = t0.create_user("alice")
    as_alice = t0.as_principal(alice)
    # Deny by default: alice owns nothing and holds no grant.
    with pytest.raises(AccessDenied):
        as_alice.get_bytes("roots", "secret.txt")
    with pytest.raises(AccessDenied):
        as_alice.create_bucket("alices")
    with pytest.raises(PermissionError):  # AccessDenied is a PermissionError
        as_alice.put("roots", "x", b"x")
    with pytest.raises(AccessDenied):
        as_alice.create_user("mallory")
    # A grant opens exactly what it names.
    t0.grant(alice, "s3:CreateBucket", "/alice-*")
    bucket = as_alice.create_bucket("alice-data")
    assert bucket.owner == alice.id
    with pytest.raises(AccessDenied):
        as_alice.create_bucket("other-data")
    # The owner may do anything in its bucket.
    as_alice.put("alice-data", "mine", b"mine")
    assert as_alice.get_bytes("alice-data", "mine") == b"mine"
    assert [b.name for b in as_alice.list_buckets()] == ["alice-data"]
    t0.grant(alice, "s3:GetObject", "/roots/*.txt")
    assert as_alice.get_bytes("roots", "secret.txt") == b"s3cr3t"
    with pytest.raises(AccessDenied):
        as_alice.delete("roots", "secret.txt")
    # Root may act on alice's bucket too.
    assert t0.get_bytes("alice-data", "mine") == b"mine"


def test_the_writer_of_an_object_keeps_it_in_anothers_bucket(t0: tier0.Tier0) -> None:
    # The object's owner is who wrote it: its ACL's FULL_CONTROL lets them read it and
    # its ACL, not delete it (that is the bucket's WRITE), and nobody else gains by it.
    t0.create_bucket("shared")
    alice, _ = t0.create_user("alice")
    bob, _ = t0.create_user("bob")
    as_alice, as_bob = t0.as_principal(alice), t0.as_principal(bob)
    t0.grant(alice, "s3:PutObject", "/shared/*")
    as_alice.put("shared", "hers", b"h")
    assert as_alice.get_bytes("shared", "hers") == b"h"
    assert as_alice.get_object_acl("shared", "hers").owner == alice.id
    with pytest.raises(AccessDenied):
        as_alice.delete("shared", "hers")
    with pytest.raises(AccessDenied):
        as_bob.get_bytes("shared", "hers")
    t0.put("shared", "hers", b"root's now")  # a new version, written by root
    with pytest.raises(AccessDenied):
        as_alice.get_bytes("shared", "hers")


def test_every_decision_is_audited(t0: tier0.Tier0) -> None:
    t0.create_bucket("audited")
    bob, _ = t0.create_user("bob")
    t0.put("audited", "k", b"x")
    with pytest.raises(AccessDenied):
        t0.as_principal(bob).get("audited", "k")
    t0.get_bytes("audited", "k")
    t0._kernel.authorizer.flush()
    rows = t0.sql(
        "SELECT principal, action, resource, allowed FROM audit WHERE resource LIKE '/audited%' ORDER BY id"
    ).rows
    assert ("root", "s3:CreateBucket", "/audited", 1) in rows
    assert ("root", "s3:PutObject", "/audited/k", 1) in rows
    assert (bob.id, "s3:GetObject", "/audited/k", 0) in rows
    assert ("root", "s3:GetObject", "/audited/k", 1) in rows


def test_mutation_audit_row_commits_with_the_mutation(t0: tier0.Tier0) -> None:
    t0.create_bucket("audited")
    t0.put("audited", "k", b"x")
    # No flush: a write's decision is part of the write's own transaction.
    with t0._kernel.meta.reader() as db:
        rows = db.query_all("SELECT action FROM t0_audit WHERE resource = '/audited/k'")
    assert [r[0] for r in rows] == ["s3:PutObject"]


def test_sql_of_other_principals_is_scoped_to_their_buckets(t0: tier0.Tier0) -> None:
    t0.create_bucket("private")
    t0.put("private", "hidden", b"x")
    carol, _ = t0.create_user("carol")
    t0.grant(carol, "s3:CreateBucket", "/*")
    as_carol = t0.as_principal(carol)
    as_carol.create_bucket("carols")
    as_carol.put("carols", "visible", b"y")
    assert as_carol.sql("SELECT bucket, key FROM objects").rows == [("carols", "visible")]
    assert {r[0] for r in t0.sql("SELECT bucket FROM objects").rows} == {"private", "carols"}
    with pytest.raises(tier0.SQLNotAllowed):
        as_carol.sql("SELECT * FROM principals")


def test_secret_is_not_in_repr(t0: tier0.Tier0) -> None:
    _, credential = t0.create_user("dave")
    assert credential.secret_key not in repr(credential)


def test_a_bucket_recreated_by_another_owner_is_not_written_on_a_stale_grant(
    tmp_path: pathlib.Path,
) -> None:
    data = tmp_path / "data"
    with tier0.open(data) as first, tier0.open(data) as second:
        alice, _ = first.create_user("alice")
        bob = first.create_user("bob")[0]
        first.grant(alice, "s3:CreateBucket", "/*")
        first.grant(bob, "s3:CreateBucket", "/*")
        as_alice = first.as_principal(alice)
        as_alice.create_bucket("shared-name")
        as_alice.put("shared-name", "k", b"mine")  # `first` now remembers alice owns it
        # Meanwhile, through another process's store, the bucket changes hands.
        second.delete("shared-name", "k")
        second.delete_bucket("shared-name")
        second.as_principal(bob).create_bucket("shared-name")
        with pytest.raises(AccessDenied):
            as_alice.put("shared-name", "k", b"not yours")
        assert second.list("shared-name").objects == []
        # Bob, the new owner, writes through the process that held the stale owner.
        first.as_principal(bob).put("shared-name", "k", b"bob's")
        assert second.get_bytes("shared-name", "k") == b"bob's"


def test_the_principals_registry_is_for_root_only(t0: tier0.Tier0) -> None:
    erin, _ = t0.create_user("erin")
    with pytest.raises(AccessDenied):
        t0.as_principal(erin).principals.secret_for("anything")
    with pytest.raises(AccessDenied):
        t0.as_principal(erin).as_principal("root")
