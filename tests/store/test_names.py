"""Names: bucket and key rules, and the key order listings rely on (hypothesis)."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tier0
from tier0.errors import InvalidKey
from tier0.store import KEY_BYTES_MAX, validate_bucket_name, validate_key
from tier0.store._names import prefix_successor

# Any character UTF-8 can carry except NUL (surrogates cannot be encoded).
key_chars = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
valid_keys = st.text(key_chars, min_size=1, max_size=200).filter(
    lambda k: len(k.encode()) <= KEY_BYTES_MAX
)


@given(valid_keys)
def test_valid_keys_are_accepted(key: str) -> None:
    validate_key(key)


@given(st.text(key_chars, max_size=50), st.text(key_chars, max_size=50))
def test_keys_with_nul_are_rejected(before: str, after: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(before + "\x00" + after)


@given(
    st.text(key_chars, min_size=1, max_size=20),
    st.text(key_chars, max_size=20),
    st.text(key_chars, max_size=20),
)
def test_prefix_successor_bounds_exactly_the_keys_with_the_prefix(
    prefix: str, rest: str, other: str
) -> None:
    upper = prefix_successor(prefix)
    assert upper is not None or set(prefix) == {"\U0010ffff"}
    if upper is None:
        return
    assert prefix + rest < upper
    assert (prefix <= other < upper) == other.startswith(prefix)
    # Code-point order is UTF-8 byte order: the store, SQLite and PostgreSQL agree.
    assert (prefix.encode() < upper.encode()) and ((prefix + rest).encode() < upper.encode())


def test_bucket_names_accept_s3_examples() -> None:
    for name in ["docs", "my-bucket.logs", "a1b", "x" * 63]:
        validate_bucket_name(name)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(keys=st.lists(valid_keys, min_size=1, max_size=8, unique=True))
def test_any_valid_keys_round_trip_and_list_in_byte_order(
    tmp_path: pathlib.Path, keys: list[str]
) -> None:
    with tier0.open(tmp_path / "data") as t0:
        if not t0.list_buckets():
            t0.create_bucket("names")
        for old in t0.iter_objects("names"):
            t0.delete("names", old.key)
        for key in keys:
            t0.put("names", key, key.encode())
        for key in keys:
            assert t0.get_bytes("names", key) == key.encode()
        assert [o.key for o in t0.iter_objects("names")] == sorted(keys, key=lambda k: k.encode())
