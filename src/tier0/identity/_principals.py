"""Principals and their S3-style credentials.

A principal is whoever makes a request: a user, an agent or a service. Each
holds access-key / secret-key pairs; S3 signatures, API tokens and MCP
sessions all resolve to a principal. The secret is kept in the metadata
database because S3's signatures (HMAC) need it on the server side; the SQL
catalog never exposes that table.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Final, Literal

from tier0.errors import InvalidArgument, InvalidCredentials, NoSuchPrincipal, PrincipalExists
from tier0.meta import Committer, MetaBackend, WriteTx

PrincipalKind = Literal["user", "agent", "service"]
KINDS: Final = ("user", "agent", "service")
ROOT_ID: Final = "root"
#: The principal of unsigned requests: not root, owns nothing, holds no
#: credential and no grant; only a bucket policy or an ACL can admit it.
ANONYMOUS_ID: Final = "anonymous"
NAME_BYTES_MAX: Final = 64
#: How long a looked-up secret is reused without asking the database again.
#: Every signed request needs its secret, and the lookup was a tenth of a
#: small GET's cost; the price is that a principal deleted through another
#: process keeps working here for up to this long (in this process, at once).
SECRET_CACHE_S: Final = 2.0
SECRET_CACHE_ENTRIES_MAX: Final = 4096
_ACCESS_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who acts. ``id`` is stable; ``name`` is what people type."""

    id: str
    name: str
    kind: str

    @property
    def is_root(self) -> bool:
        return self.id == ROOT_ID

    @property
    def is_anonymous(self) -> bool:
        return self.id == ANONYMOUS_ID


@dataclass(frozen=True, slots=True)
class Credential:
    """An access-key / secret-key pair. The secret is shown once, at creation."""

    access_key: str
    secret_key: str
    principal_id: str

    def __repr__(self) -> str:
        return f"Credential(access_key={self.access_key!r}, principal_id={self.principal_id!r})"


ROOT: Final = Principal(ROOT_ID, "root", "user")
ANONYMOUS: Final = Principal(ANONYMOUS_ID, ANONYMOUS_ID, "anonymous")


def new_credential(principal_id: str) -> Credential:
    """Fresh random keys in the shape S3 clients expect (20-char key, 40-char secret)."""
    access = "T0" + "".join(secrets.choice(_ACCESS_ALPHABET) for _ in range(18))
    secret = secrets.token_urlsafe(30)[:40]
    return Credential(access, secret, principal_id)


def _validate_name(name: str) -> None:
    if not name or len(name.encode()) > NAME_BYTES_MAX:
        raise InvalidArgument(f"a principal name needs 1 to {NAME_BYTES_MAX} bytes, got {name!r}")
    if not all(c.isalnum() or c in "-_.@" for c in name):
        raise InvalidArgument(f"principal name {name!r} may hold only letters, digits and - _ . @")
    if name == ANONYMOUS_ID:
        raise InvalidArgument(f"{name!r} names the principal of unsigned requests; choose another")


class Principals:
    """Creates, finds and deletes principals and credentials."""

    def __init__(self, backend: MetaBackend, committer: Committer) -> None:
        self._backend = backend
        self._committer = committer
        #: access key -> (expires at, monotonic; principal; secret)
        self._secrets: dict[str, tuple[float, Principal, str]] = {}

    def ensure_root(
        self, *, access_key: str | None = None, secret_key: str | None = None
    ) -> Credential | None:
        """Create the root principal on first start.

        With ``access_key``/``secret_key`` given (from the environment, the way
        MinIO users set theirs), root holds exactly that pair. Returns a newly
        made credential (to show once), or None when nothing new was made.
        """
        if (access_key is None) != (secret_key is None):
            raise InvalidArgument(
                "set both TIER0_ROOT_ACCESS_KEY and TIER0_ROOT_SECRET_KEY, or neither"
            )
        wanted = Credential(access_key, secret_key, ROOT_ID) if access_key and secret_key else None

        def op(tx: WriteTx) -> Credential | None:
            if tx.query_one("SELECT 1 FROM t0_principals WHERE id = ?", (ROOT_ID,)) is None:
                tx.execute(
                    "INSERT INTO t0_principals (id, name, kind, created_us, created_by)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (ROOT_ID, ROOT.name, ROOT.kind, tx.now_us, ROOT_ID),
                )
            existing = tx.query_all(
                "SELECT access_key, secret_key FROM t0_credentials WHERE principal_id = ?",
                (ROOT_ID,),
            )
            if wanted is not None:
                if any(tuple(row) == (wanted.access_key, wanted.secret_key) for row in existing):
                    return None
                tx.execute("DELETE FROM t0_credentials WHERE principal_id = ?", (ROOT_ID,))
                _insert_credential(tx, wanted)
                return None
            if existing:
                return None
            credential = new_credential(ROOT_ID)
            _insert_credential(tx, credential)
            return credential

        return self._committer.run(op)

    def create(
        self, name: str, kind: str = "user", *, created_by: Principal = ROOT
    ) -> tuple[Principal, Credential]:
        """A new principal with one credential."""
        _validate_name(name)
        if kind not in KINDS:
            raise InvalidArgument(f"principal kind must be one of {', '.join(KINDS)}, got {kind!r}")
        principal = Principal("p-" + secrets.token_hex(8), name, kind)
        credential = new_credential(principal.id)

        def op(tx: WriteTx) -> None:
            if tx.query_one("SELECT 1 FROM t0_principals WHERE name = ?", (name,)) is not None:
                raise PrincipalExists(f"a principal named {name!r} exists already")
            tx.execute(
                "INSERT INTO t0_principals (id, name, kind, created_us, created_by)"
                " VALUES (?, ?, ?, ?, ?)",
                (principal.id, name, kind, tx.now_us, created_by.id),
            )
            _insert_credential(tx, credential)

        self._committer.run(op)
        return principal, credential

    def get(self, name_or_id: str) -> Principal:
        if name_or_id == ANONYMOUS_ID:
            return ANONYMOUS
        with self._backend.reader() as db:
            row = db.query_one(
                "SELECT id, name, kind FROM t0_principals WHERE id = ? OR name = ?",
                (name_or_id, name_or_id),
            )
        if row is None:
            raise NoSuchPrincipal(f"no principal is named {name_or_id!r}")
        return Principal(*row)

    def all(self) -> list[Principal]:
        with self._backend.reader() as db:
            rows = db.query_all("SELECT id, name, kind FROM t0_principals ORDER BY name")
        return [Principal(*row) for row in rows]

    def delete(self, name_or_id: str) -> None:
        """Delete a principal with its credentials and grants (never root)."""
        principal = self.get(name_or_id)
        if principal.is_root:
            raise InvalidArgument("the root principal cannot be deleted")

        def op(tx: WriteTx) -> None:
            for table, column in (
                ("t0_credentials", "principal_id"),
                ("t0_grants", "principal_id"),
                ("t0_principals", "id"),
            ):
                tx.execute(f"DELETE FROM {table} WHERE {column} = ?", (principal.id,))

        self._committer.run(op)
        for key, (_, cached, _) in list(self._secrets.items()):
            if cached.id == principal.id:
                self._secrets.pop(key, None)

    def add_credential(self, principal: Principal) -> Credential:
        credential = new_credential(principal.id)
        self._committer.run(lambda tx: _insert_credential(tx, credential))
        return credential

    def access_keys(self, principal: Principal) -> list[str]:
        with self._backend.reader() as db:
            rows = db.query_all(
                "SELECT access_key FROM t0_credentials WHERE principal_id = ? ORDER BY created_us",
                (principal.id,),
            )
        return [row[0] for row in rows]

    def secret_for(self, access_key: str) -> tuple[Principal, str]:
        """The principal and secret behind an access key (for signature checks).

        Answers from a short-lived cache (`SECRET_CACHE_S`) when it can.
        """
        now = time.monotonic()
        cached = self._secrets.get(access_key)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        with self._backend.reader() as db:
            row = db.query_one(
                "SELECT p.id, p.name, p.kind, c.secret_key FROM t0_credentials c"
                " JOIN t0_principals p ON p.id = c.principal_id WHERE c.access_key = ?",
                (access_key,),
            )
        if row is None:
            raise InvalidCredentials(f"unknown access key {access_key!r}")
        principal, secret = Principal(row[0], row[1], row[2]), row[3]
        if len(self._secrets) >= SECRET_CACHE_ENTRIES_MAX:
            self._secrets.clear()  # rare: thousands of keys in a few seconds
        self._secrets[access_key] = (now + SECRET_CACHE_S, principal, secret)
        return principal, secret

    def authenticate(self, access_key: str, secret_key: str) -> Principal:
        """The principal whose credential this is; InvalidCredentials otherwise."""
        principal, secret = self.secret_for(access_key)
        if not hmac.compare_digest(secret.encode(), secret_key.encode()):
            raise InvalidCredentials(f"wrong secret for access key {access_key!r}")
        return principal


def _insert_credential(tx: WriteTx, credential: Credential) -> None:
    tx.execute(
        "INSERT INTO t0_credentials (access_key, principal_id, secret_key, created_us)"
        " VALUES (?, ?, ?, ?)",
        (credential.access_key, credential.principal_id, credential.secret_key, tx.now_us),
    )
