"""Functions: deployed code the engine runs, versioned, with limits, secrets and a principal.

A function is ``handler(ctx, event)`` in a Python module, named by its import
path (``package.module:handler``). Its code is either importable where the
engine runs (the import path alone), or deployed with it as a code package: a
zip of the directory that holds the module, stored in the metadata row of
that version (so the code is in tier0 itself, backed up with it, and the
same on every host of a scale-out store). If the module also defines
``init(ctx)``, each worker calls it once before its first invocation (load a
model there). See `tier0.engine._context` for ``ctx``.

Every deploy makes a new version (1, 2, ...); a trigger pins the version that
was the latest when it was made, so deploying never changes what a running
trigger runs until the trigger is moved (`Triggers.repin`). A function acts
as its own principal: ``fn.<name>``, a service principal made at the first
deploy, which holds no grant until one is given (``grants`` in the spec, or
``t0.grant``): a function reads and writes only what it was allowed.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib.util
import io
import os
import re
import shutil
import threading
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tier0.engine._runner import DEAD_COLUMNS, dead_letter
from tier0.errors import InvalidArgument, NoSuchFunction
from tier0.meta import Committer, MetaBackend, WriteTx, dump_json, load_json

#: A function's name becomes its principal's, ``fn.<name>``, of at most 64 bytes.
FUNCTION_NAME_CHARS_MAX: Final = 60
PRINCIPAL_PREFIX: Final = "fn."
#: AWS Lambda's limits for a directly uploaded package, zipped and unzipped.
PACKAGE_BYTES_MAX: Final = 50 * 1024 * 1024
PACKAGE_UNZIPPED_BYTES_MAX: Final = 250 * 1024 * 1024
PACKAGE_FILES_MAX: Final = 10_000
TIMEOUT_S_MAX: Final = 86_400.0
CONCURRENCY_MAX: Final = 1024
MEMORY_MB_MIN: Final = 64
MEMORY_MB_MAX: Final = 1024 * 1024
ATTEMPTS_MAX: Final = 100
SECRETS_MAX: Final = 64
SECRET_BYTES_MAX: Final = 64 * 1024
ENVIRONMENT_BYTES_MAX: Final = 64 * 1024
GRANTS_MAX: Final = 64
VERSIONS_MAX: Final = 10_000
#: Deployed versions one process keeps in memory (they never change).
VERSIONS_CACHED_MAX: Final = 4096
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HANDLER: Final = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class FunctionSpec:
    """What a function runs and within which limits."""

    name: str
    #: ``module.path:callable``, called as ``callable(ctx, event)``.
    handler: str
    #: Seconds one invocation may run before its worker is killed (and it retried).
    timeout_s: float = 60.0
    #: Invocations of this function that run at once, at most.
    concurrency: int = 4
    #: Resident memory one worker may use; past it, the worker is killed.
    memory_mb: int = 1024
    #: Tries of one event before it goes to the dead letter.
    attempts: int = 3
    #: Names of stored secrets the function may read (``ctx.secrets``).
    secrets: tuple[str, ...] = ()
    #: Variables set in the worker's environment before the module is imported.
    environment: Mapping[str, str] = field(default_factory=dict)
    #: (action, resource) pairs granted to the function's principal at deploy.
    grants: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if (
            not isinstance(self.name, str)
            or not _NAME.fullmatch(self.name)
            or (len(self.name) > FUNCTION_NAME_CHARS_MAX)
        ):
            raise InvalidArgument(
                f"a function name is 1..{FUNCTION_NAME_CHARS_MAX} letters, digits, '.', '_'"
                f" and '-', starting with a letter or digit, not {self.name!r}"
            )
        if not isinstance(self.handler, str) or not _HANDLER.fullmatch(self.handler):
            raise InvalidArgument(
                f"the handler is 'module.path:function' (e.g. 'thumbs.main:handler'),"
                f" not {self.handler!r}"
            )
        _check_range("timeout_s", self.timeout_s, 0.001, TIMEOUT_S_MAX)
        _check_range("concurrency", self.concurrency, 1, CONCURRENCY_MAX, integer=True)
        _check_range("memory_mb", self.memory_mb, MEMORY_MB_MIN, MEMORY_MB_MAX, integer=True)
        _check_range("attempts", self.attempts, 1, ATTEMPTS_MAX, integer=True)
        secrets = (self.secrets,) if isinstance(self.secrets, str) else tuple(self.secrets)
        if len(secrets) > SECRETS_MAX:
            raise InvalidArgument(f"a function reads at most {SECRETS_MAX} secrets")
        for name in secrets:
            check_secret_name(name)
        object.__setattr__(self, "secrets", secrets)
        environment = dict(self.environment)
        for key, value in environment.items():
            if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
                raise InvalidArgument(
                    f"an environment variable name is [A-Za-z_][A-Za-z0-9_]*, not {key!r}"
                )
            if not isinstance(value, str):
                raise InvalidArgument(f"environment variable {key} is a string, not {value!r}")
        if len(dump_json(environment)) > ENVIRONMENT_BYTES_MAX:
            raise InvalidArgument(f"the environment is at most {ENVIRONMENT_BYTES_MAX} bytes")
        object.__setattr__(self, "environment", environment)
        grants = tuple(tuple(grant) for grant in self.grants)
        if len(grants) > GRANTS_MAX or any(
            len(g) != 2 or not all(isinstance(part, str) and part for part in g) for g in grants
        ):
            raise InvalidArgument(
                f"grants are at most {GRANTS_MAX} (action, resource) pairs,"
                " e.g. ('s3:GetObject', '/photos/*')"
            )
        object.__setattr__(self, "grants", grants)

    @property
    def module(self) -> str:
        return self.handler.partition(":")[0]

    @property
    def principal(self) -> str:
        """The name of the principal the function acts as."""
        return PRINCIPAL_PREFIX + self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "handler": self.handler, "timeout_s": self.timeout_s,
            "concurrency": self.concurrency, "memory_mb": self.memory_mb,
            "attempts": self.attempts, "secrets": list(self.secrets),
            "environment": dict(self.environment), "grants": [list(g) for g in self.grants],
        }  # fmt: skip

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> FunctionSpec:
        return cls(
            name=document["name"], handler=document["handler"],
            timeout_s=document["timeout_s"], concurrency=document["concurrency"],
            memory_mb=document["memory_mb"], attempts=document["attempts"],
            secrets=tuple(document["secrets"]), environment=document["environment"],
            grants=tuple(tuple(g) for g in document["grants"]),
        )  # fmt: skip


@dataclass(frozen=True)
class FunctionInfo:
    """One deployed version of a function."""

    spec: FunctionSpec
    version: int
    #: SHA-256 of the code package (hex), None for a function named by import path.
    package_sha256: str | None

    @property
    def name(self) -> str:
        return self.spec.name


def check_secret_name(name: object) -> None:
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name) or len(name) > 128:
        raise InvalidArgument(
            f"a secret name is 1..128 letters, digits and '_', not starting with a digit,"
            f" not {name!r}"
        )


def check_package(package: bytes, module: str) -> None:
    """Refuse a code package that is not a safe zip holding ``module``."""
    if len(package) > PACKAGE_BYTES_MAX:
        raise InvalidArgument(
            f"the code package is {len(package)} bytes; at most {PACKAGE_BYTES_MAX} are stored"
            " (ship large models as elements and load them in init)"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(package))
    except zipfile.BadZipFile:
        raise InvalidArgument("the code package is not a zip file") from None
    with archive:
        members = archive.infolist()
        if len(members) > PACKAGE_FILES_MAX:
            raise InvalidArgument(f"the code package holds at most {PACKAGE_FILES_MAX} files")
        total = 0
        names = set()
        for member in members:
            name = member.filename
            if name.startswith("/") or ".." in name.split("/") or "\\" in name:
                raise InvalidArgument(f"the code package has an unsafe path: {name!r}")
            total += member.file_size
            names.add(name)
        if total > PACKAGE_UNZIPPED_BYTES_MAX:
            raise InvalidArgument(
                f"the code package unzips to {total} bytes; at most {PACKAGE_UNZIPPED_BYTES_MAX}"
            )
    path = module.replace(".", "/")
    if f"{path}.py" not in names and f"{path}/__init__.py" not in names:
        raise InvalidArgument(
            f"the code package has no module {module!r} ({path}.py or {path}/__init__.py"
            " at its top level)"
        )


def zip_directory(directory: str) -> bytes:
    """The files under ``directory`` as a code package (``__pycache__`` and dot files left out)."""
    root = Path(directory)
    if not root.is_dir():
        raise InvalidArgument(f"{directory} is not a directory")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not any(
                part.startswith(".") or part == "__pycache__" for part in relative.parts
            ):
                archive.write(path, relative.as_posix())
    return buffer.getvalue()


def unpack(package: bytes, target: Path) -> Path:
    """``package`` unpacked at ``target`` (once: unpacked beside it and renamed into
    place, so concurrent workers never see half a package). Its paths were checked
    when it was deployed (`check_package`)."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        archive.extractall(staging)
    try:
        staging.rename(target)
    except OSError:  # another process unpacked it first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_range(
    label: str, value: object, low: float, high: float, *, integer: bool = False
) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        raise InvalidArgument(
            f"{label} is {'an integer' if integer else 'a number'} in {low}..{high}, not {value!r}"
        )


class Functions:
    """The functions of one store: deploy, look up, list, remove; and stored secrets."""

    def __init__(self, meta: MetaBackend, committer: Committer) -> None:
        self._meta = meta
        self._committer = committer
        #: Versions never change once deployed: cached for good.
        self._versions: dict[tuple[str, int], FunctionInfo] = {}

    def deploy(
        self, spec: FunctionSpec, *, package: bytes | None, deployed_by: str
    ) -> FunctionInfo:
        """Store ``spec`` (and its code ``package``) as the function's next version.

        Without a package the handler's module must be importable here, where
        the engine's workers run. The principal ``fn.<name>`` is made at the first
        deploy; secrets the spec names must exist.
        """
        if package is not None:
            check_package(package, spec.module)
            digest: str | None = hashlib.sha256(package).hexdigest()
        else:
            digest = None
            try:
                found = importlib.util.find_spec(spec.module)
            except (ImportError, ValueError):
                found = None
            if found is None:
                raise InvalidArgument(
                    f"module {spec.module!r} cannot be imported here: install it where tier0"
                    " runs, or deploy its code as a package (tier0 fn deploy --package DIR)"
                )

        def op(tx: WriteTx) -> FunctionInfo:
            for name in spec.secrets:
                if tx.query_one("SELECT 1 FROM t0_secrets WHERE name = ?", (name,)) is None:
                    raise InvalidArgument(
                        f"there is no secret named {name!r}: set it first (tier0 secret set {name})"
                    )
            latest = tx.query_one(
                "SELECT max(version) FROM t0_functions WHERE name = ?", (spec.name,)
            )[0]
            version = int(latest or 0) + 1
            if version > VERSIONS_MAX:
                raise InvalidArgument(
                    f"function {spec.name} has {VERSIONS_MAX} versions: remove it and deploy anew"
                )
            tx.execute(
                "INSERT INTO t0_functions (name, version, spec, package, package_sha256,"
                " created_us, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (spec.name, version, dump_json(spec.to_json()), package, digest, tx.now_us,
                 deployed_by),
            )  # fmt: skip
            return FunctionInfo(spec, version, digest)

        info: FunctionInfo = self._committer.run(op)
        return info

    def get(self, name: str, version: int | None = None) -> FunctionInfo:
        """Version ``version`` of function ``name`` (the latest if None)."""
        if version is not None and (name, version) in self._versions:
            return self._versions[(name, version)]
        with self._meta.reader() as db:
            if version is None:
                row = db.query_one(
                    "SELECT spec, version, package_sha256 FROM t0_functions WHERE name = ?"
                    " ORDER BY version DESC LIMIT 1",
                    (name,),
                )
            else:
                row = db.query_one(
                    "SELECT spec, version, package_sha256 FROM t0_functions"
                    " WHERE name = ? AND version = ?",
                    (name, version),
                )
        if row is None:
            which = "" if version is None else f" version {version}"
            raise NoSuchFunction(
                f"there is no function {name!r}{which}: deploy it first (tier0 fn deploy)"
            )
        info = FunctionInfo(FunctionSpec.from_json(load_json(row[0])), int(row[1]), row[2])
        if len(self._versions) >= VERSIONS_CACHED_MAX:
            self._versions.clear()  # rare: read again as they are used
        self._versions[(name, info.version)] = info
        return info

    def package(self, name: str, version: int) -> bytes | None:
        """The code package of a version (None when it is named by import path)."""
        with self._meta.reader() as db:
            row = db.query_one(
                "SELECT package FROM t0_functions WHERE name = ? AND version = ?", (name, version)
            )
        return None if row is None or row[0] is None else bytes(row[0])

    def list(self) -> list[FunctionInfo]:
        """The latest version of every function, by name."""
        with self._meta.reader() as db:
            rows = db.query_all(
                "SELECT f.spec, f.version, f.package_sha256 FROM t0_functions f"
                " WHERE f.version = (SELECT max(version) FROM t0_functions g"
                " WHERE g.name = f.name) ORDER BY f.name"
            )
        return [
            FunctionInfo(FunctionSpec.from_json(load_json(r[0])), int(r[1]), r[2]) for r in rows
        ]

    def remove(self, name: str) -> int:
        """Remove every version of ``name``; refused while a trigger runs it. Returns
        how many versions went. Its principal stays (its grants and audit with it)."""

        def op(tx: WriteTx) -> int:
            users = [
                row[0]
                for row in tx.query_all("SELECT name, spec FROM t0_triggers ORDER BY name")
                if load_json(row[1]).get("function") == name
            ]
            if users:
                raise InvalidArgument(
                    f"function {name!r} runs for trigger(s) {', '.join(users)}: remove them first"
                )
            cursor = tx.execute("DELETE FROM t0_functions WHERE name = ?", (name,))
            if not cursor.rowcount:
                raise NoSuchFunction(f"there is no function named {name!r}")
            # Its invocations still waiting would never run: they end here, saying why.
            dead_letter(tx, tx.query_all(
                "UPDATE t0_invocations SET status = 'dead', ended_us = ?, error = ?"
                f" WHERE function_name = ? AND status = 'queued' RETURNING {DEAD_COLUMNS}",
                (tx.now_us, f"function {name} was removed before it ran", name),
            ))  # fmt: skip
            return int(cursor.rowcount)

        removed: int = self._committer.run(op)
        self._versions = {k: v for k, v in self._versions.items() if k[0] != name}
        return removed

    def store_id(self) -> str:
        """The store's identity (the same from every process and host of it)."""
        return self._meta.store_id()

    # -- secrets -------------------------------------------------------------------------------

    def set_secret(self, name: str, value: str, *, set_by: str) -> None:
        check_secret_name(name)
        if not isinstance(value, str) or len(value.encode()) > SECRET_BYTES_MAX:
            raise InvalidArgument(
                f"a secret's value is a string of at most {SECRET_BYTES_MAX} bytes"
            )
        self._committer.run(
            lambda tx: tx.execute(
                "INSERT INTO t0_secrets (name, value, created_us, created_by) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " created_us = excluded.created_us, created_by = excluded.created_by",
                (name, value, tx.now_us, set_by),
            )
        )

    def secret_names(self) -> builtins.list[str]:
        with self._meta.reader() as db:
            return [row[0] for row in db.query_all("SELECT name FROM t0_secrets ORDER BY name")]

    def remove_secret(self, name: str) -> None:
        def op(tx: WriteTx) -> None:
            if not tx.execute("DELETE FROM t0_secrets WHERE name = ?", (name,)).rowcount:
                raise InvalidArgument(f"there is no secret named {name!r}")

        self._committer.run(op)

    def secrets_for(self, spec: FunctionSpec) -> dict[str, str]:
        """The values of the secrets ``spec`` names (one gone since the deploy is left out)."""
        if not spec.secrets:
            return {}
        marks = ", ".join("?" for _ in spec.secrets)
        with self._meta.reader() as db:
            rows = db.query_all(
                f"SELECT name, value FROM t0_secrets WHERE name IN ({marks})", spec.secrets
            )
        return {row[0]: row[1] for row in rows}
