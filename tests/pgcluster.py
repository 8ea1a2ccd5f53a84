"""Throwaway PostgreSQL clusters for tests, built from the installed server binaries.

A cluster lives in one temporary directory (data directory, Unix socket and
server log), listens on 127.0.0.1 only, trusts every local connection and is
deleted, directory and all, when it stops. Nothing is shared with a system
PostgreSQL: no system socket directory, no well-known port, no service.

    with PostgresCluster.start() as cluster:
        url = cluster.create_database("orders")
        # postgresql://postgres@127.0.0.1:PORT/orders

Finding the server (`find_server_bindir`), in this order:

1. ``TIER0_PG_BIN``, when set, names the bin directory; it is trusted and not
   second-guessed, so a wrong value is an error rather than a silent fallback.
2. ``pg_config --bindir``, when ``pg_config`` is on ``PATH`` and the directory it
   names holds the server. (Debian's libpq-dev ships a ``pg_config`` that names
   ``/usr/bin``, which holds no server; that case falls through.)
3. The newest ``/usr/lib/postgresql/<version>/bin`` (Debian, Ubuntu).
4. ``initdb`` on ``PATH`` (Fedora, Homebrew).

Running as root: PostgreSQL refuses to run as root (a superuser-owned server
is one SQL injection away from owning the machine). When the effective uid is
0, the temporary directory is handed to the ``postgres`` system user and
``initdb`` and ``postgres`` run as that user through `subprocess.Popen`'s
``user``/``group``/``extra_groups`` arguments. Those switch identity in the
child between fork and exec, without ``preexec_fn`` (unsafe once threads
exist) and without depending on ``runuser``/``sudo`` being installed. The
``postgres`` user must be able to reach the temporary directory: under the
default ``/tmp`` it can; a ``TMPDIR`` inside a private home directory it
cannot, and `ClusterError` says so.

Settings are tuned for tests but keep the durability machinery real: ``fsync``
stays on, so commit latency and crash behaviour are those of production.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

__all__ = [
    "SERVER_SETTINGS",
    "ClusterError",
    "PostgresCluster",
    "ServerNotFound",
    "find_server_bindir",
]

#: Server settings passed on the ``postgres`` command line, where they override
#: postgresql.conf and show up in ``ps``. fsync and synchronous_commit are
#: spelled out although they are the defaults: tests rely on them.
SERVER_SETTINGS: Mapping[str, str] = {
    "fsync": "on",
    "synchronous_commit": "on",
    "max_connections": "200",
    "shared_buffers": "128MB",
    # The host's zone must not leak into timestamptz text output.
    "timezone": "UTC",
}

#: Role that owns the cluster and that every URL connects as.
SUPERUSER = "postgres"

#: The oldest server supported: DROP DATABASE ... WITH (FORCE) arrived in 13.
SERVER_VERSION_NUM_MIN = 130000

_SERVER_PROGRAMS = ("initdb", "postgres")
_DEBIAN_ROOT = Path("/usr/lib/postgresql")

# Lower-case ASCII identifiers only: PostgreSQL would silently truncate a
# longer name to 63 bytes, and anything outside this alphabet would need
# quoting in SQL and percent-encoding in the URL, so a URL built from the name
# could point at a different database than the one created.
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# strerror(EADDRINUSE) in the C locale, which the postmaster logs when it lost
# the race for the port chosen by `_pick_free_port` to some other process.
# Other bind failures (no such address, say) are not worth retrying.
_PORT_TAKEN_MARKER = "Address already in use"


class ClusterError(RuntimeError):
    """A cluster could not be set up, started, used or stopped.

    The message carries the failing command's output or the server log tail.
    """


class ServerNotFound(ClusterError):
    """No PostgreSQL server binaries are installed where we look.

    Separate from `ClusterError` so that a test suite can skip on a machine
    without PostgreSQL yet still fail when an installed server misbehaves.
    """


def find_server_bindir(
    *,
    environ: Mapping[str, str] | None = None,
    debian_root: Path = _DEBIAN_ROOT,
) -> Path:
    """Return the directory holding ``initdb`` and ``postgres``.

    Searches in the order given in the module docstring. ``environ`` (default
    `os.environ`) supplies ``TIER0_PG_BIN`` and ``PATH``; ``debian_root`` is
    where per-version installs live. Both are parameters so tests can point
    them at fakes.

    Raises `ClusterError` when ``TIER0_PG_BIN`` is set but lacks the server,
    and `ServerNotFound` (with installation advice) when nothing is found.
    """
    environ = os.environ if environ is None else environ
    override = environ.get("TIER0_PG_BIN", "")
    if override:
        bindir = Path(override)
        if not _holds_server(bindir):
            raise ClusterError(
                f"TIER0_PG_BIN={override} does not contain executable "
                f"{' and '.join(_SERVER_PROGRAMS)}; fix or unset it."
            )
        return bindir

    search_path = environ.get("PATH", os.defpath)
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config", path=search_path)
    if pg_config is not None:
        try:
            completed = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            pass  # A broken pg_config is no reason to ignore the other places.
        else:
            if completed.returncode == 0 and completed.stdout.strip():
                candidates.append(Path(completed.stdout.strip()))
    candidates.extend(_debian_bindirs_newest_first(debian_root))
    initdb = shutil.which("initdb", path=search_path)
    if initdb is not None:
        candidates.append(Path(initdb).parent)

    for bindir in candidates:
        if _holds_server(bindir):
            return bindir
    raise ServerNotFound(
        "PostgreSQL server binaries (initdb, postgres) not found via TIER0_PG_BIN, "
        f"pg_config, {debian_root}/*/bin or PATH. Install them with "
        "`apt-get install postgresql` (Debian/Ubuntu), or set TIER0_PG_BIN to the "
        "directory that holds initdb."
    )


def _holds_server(bindir: Path) -> bool:
    return all(
        (bindir / program).is_file() and os.access(bindir / program, os.X_OK)
        for program in _SERVER_PROGRAMS
    )


def _debian_bindirs_newest_first(debian_root: Path) -> list[Path]:
    # Compare versions as numbers: "9.6" < "10" < "15", which a string sort gets wrong.
    versioned: list[tuple[tuple[int, ...], Path]] = []
    if debian_root.is_dir():
        for entry in debian_root.iterdir():
            if re.fullmatch(r"\d+(\.\d+)*", entry.name):
                version = tuple(int(part) for part in entry.name.split("."))
                versioned.append((version, entry / "bin"))
    return [bindir for _, bindir in sorted(versioned, reverse=True)]


@dataclass(frozen=True)
class _Identity:
    """Who initdb and postgres run as, in the terms of `subprocess.Popen`'s arguments.

    All None means "as ourselves"; otherwise an empty ``extra_groups`` also
    drops root's supplementary groups.
    """

    user: int | None = None
    group: int | None = None
    extra_groups: tuple[int, ...] | None = None

    def take_ownership(self, path: Path) -> None:
        """Give ``path`` to this identity; nothing to do when running as ourselves."""
        if self.user is not None and self.group is not None:
            os.chown(path, self.user, self.group)


def _server_identity() -> _Identity:
    """Return the identity to run the server as: ourselves, or ``postgres`` if we are root."""
    if os.geteuid() != 0:
        return _Identity()
    try:
        entry = pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise ClusterError(
            "Running as root, and PostgreSQL refuses to run as root, but there is no "
            f"'{SUPERUSER}' user to run it as. Create one (`apt-get install postgresql` "
            f"does; or `useradd --system {SUPERUSER}`), or run the tests as a normal user."
        ) from None
    return _Identity(user=entry.pw_uid, group=entry.pw_gid, extra_groups=())


def _server_environment() -> dict[str, str]:
    # PG* variables (PGDATA, PGPORT, PGOPTIONS, ...) from the caller's shell
    # would otherwise reach initdb and postgres; LC_ALL=C keeps the messages we
    # match in the log in English.
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    environment["LC_ALL"] = "C"
    return environment


def _pick_free_port() -> int:
    # The kernel hands out an unused port; another process may still take it
    # before the postmaster binds, which `PostgresCluster.start` handles by retrying.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _log_tail(log_path: Path, *, line_count_max: int = 30) -> str:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no server log)"
    return "\n".join(lines[-line_count_max:])


def _stop_postmaster(process: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    """Stop the postmaster and all its backends; return once they are gone.

    SIGQUIT is PostgreSQL's immediate shutdown, exactly what
    ``pg_ctl stop -m immediate`` sends: the postmaster tells its children to
    quit and exits without a checkpoint. Signalling it ourselves needs no
    extra process and no trip through postmaster.pid. Should that take longer
    than ``timeout_s``, SIGKILL the whole process group: the postmaster was
    started as a session leader, and its backends share its group.
    """
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGQUIT)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _destroy(
    process: subprocess.Popen[bytes] | None,
    root: Path,
    stop_timeout_s: float,
    *,
    owner_pid: int | None = None,
) -> None:
    """Stop the postmaster, if any, then delete the cluster directory.

    With ``owner_pid`` given, do nothing in any other process: a child that
    os.fork() made from a test inherits the at-exit finalizer, and its exit
    must not take the parent's cluster down.
    """
    if owner_pid is not None and os.getpid() != owner_pid:
        return
    if process is not None:
        _stop_postmaster(process, timeout_s=stop_timeout_s)
    shutil.rmtree(root, ignore_errors=True)


class PostgresCluster:
    """A running throwaway PostgreSQL cluster; create one with `start`.

    The cluster serves one default database (``database`` given to `start`,
    reachable at `url`) and any number made with `create_database`. Every
    connection is trusted, as role ``postgres``, over TCP on 127.0.0.1.

    `stop` (also run on leaving a ``with`` block, and at interpreter exit if
    nobody called it) shuts the server down and deletes its directory. Stopping
    is idempotent. Creating or dropping a database after `stop` raises
    `ClusterError`.

    Methods open a short-lived connection each, so a cluster may be shared
    between threads.
    """

    def __init__(
        self,
        *,
        bindir: Path,
        root: Path,
        port: int,
        process: subprocess.Popen[bytes],
        server_version_num: int,
        database: str,
        stop_timeout_s: float,
    ) -> None:
        """Adopt a running server; use `start` instead of calling this."""
        self.bindir = bindir
        self.root = root
        self.port = port
        self.server_version_num = server_version_num
        self.database = database
        self._process = process
        # A finalizer rather than __del__: it holds no reference to self, runs
        # exactly once, and also runs at interpreter exit.
        self._finalizer = weakref.finalize(
            self, _destroy, process, root, stop_timeout_s, owner_pid=os.getpid()
        )

    @classmethod
    def start(
        cls,
        *,
        bindir: Path | None = None,
        database: str = "tier0_test",
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        port_attempt_count_max: int = 5,
    ) -> PostgresCluster:
        """Create, start and return a new cluster with one empty ``database``.

        ``bindir`` defaults to `find_server_bindir`. ``start_timeout_s`` bounds
        initdb and, separately, the wait until the server accepts connections.
        If another process grabs the chosen port first, the start is retried on
        a fresh port up to ``port_attempt_count_max`` times in all.

        Raises `ServerNotFound` when no binaries are found and `ClusterError`
        for any other failure; nothing is left behind in either case.
        """
        _check_database_name(database)
        bindir = find_server_bindir() if bindir is None else bindir
        identity = _server_identity()
        root = Path(tempfile.mkdtemp(prefix="tier0-pg-"))
        postmaster: _Postmaster | None = None
        try:
            identity.take_ownership(root)
            _run_initdb(bindir, root, identity, timeout_s=start_timeout_s)
            postmaster = _start_postmaster(
                bindir,
                root,
                identity,
                timeout_s=start_timeout_s,
                port_attempt_count_max=port_attempt_count_max,
            )
            if postmaster.server_version_num < SERVER_VERSION_NUM_MIN:
                raise ClusterError(
                    f"PostgreSQL {postmaster.server_version_num} is too old; need "
                    f"{SERVER_VERSION_NUM_MIN} or newer (point TIER0_PG_BIN at a newer one)."
                )
            cluster = cls(
                bindir=bindir,
                root=root,
                port=postmaster.port,
                process=postmaster.process,
                server_version_num=postmaster.server_version_num,
                database=database,
                stop_timeout_s=stop_timeout_s,
            )
        except BaseException:
            # KeyboardInterrupt included: never leave a server or directory behind.
            _destroy(None if postmaster is None else postmaster.process, root, stop_timeout_s)
            raise
        try:
            cluster.create_database(database)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def url(self) -> str:
        """URL of the default database, e.g. ``postgresql://postgres@127.0.0.1:5433/tier0_test``."""
        return self.url_for(self.database)

    @property
    def log_path(self) -> Path:
        """The server log (stdout and stderr of the postmaster); gone after `stop`."""
        return self.root / "postgres.log"

    def url_for(self, name: str) -> str:
        """Return the URL of database ``name`` on this cluster (it need not exist)."""
        _check_database_name(name)
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """Create the empty database ``name`` and return its URL.

        ``name`` must match ``[a-z_][a-z0-9_]{0,62}`` (else `ValueError`). The
        copy is of template0, so objects someone added to template1 never leak
        in. With PostgreSQL 15 or newer it uses the WAL_LOG strategy, which
        copies through the WAL and needs no checkpoint, where FILE_COPY needs
        two (measured: 2-3 times faster with fsync on). Raises `ClusterError`
        if the database exists or the server is unreachable.
        """
        _check_database_name(name)
        statement = sql.SQL(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        ).format(sql.Identifier(name))
        if self.server_version_num >= 150000:
            statement += sql.SQL(" STRATEGY WAL_LOG")
        self._execute_in_maintenance_database(statement)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting any sessions still using it.

        Missing databases are ignored. Raises `ValueError` for a malformed
        name and `ClusterError` if the server is unreachable.
        """
        _check_database_name(name)
        self._execute_in_maintenance_database(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def stop(self) -> None:
        """Shut the server down immediately and delete the cluster directory.

        Committed data is not flushed to the data files (no checkpoint); it
        does not need to be, since everything is deleted. Idempotent.
        """
        self._finalizer()

    @property
    def running(self) -> bool:
        """True while the postmaster process is alive."""
        return self._finalizer.alive and self._process.poll() is None

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PostgresCluster 127.0.0.1:{self.port} {state} at {self.root}>"

    def _execute_in_maintenance_database(self, statement: sql.Composed) -> None:
        # CREATE/DROP DATABASE cannot run inside a transaction, hence autocommit,
        # and cannot target the database they are connected to, hence "postgres".
        try:
            with psycopg.connect(self.url_for("postgres"), autocommit=True) as connection:
                connection.execute(statement)
        except psycopg.Error as error:
            raise ClusterError(f"{statement.as_string()} failed: {error}") from error


def _check_database_name(name: str) -> None:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(
            f"Database name {name!r} must match {_DATABASE_NAME.pattern} "
            "(lower-case ASCII, at most 63 bytes)."
        )


def _run_initdb(bindir: Path, root: Path, identity: _Identity, *, timeout_s: float) -> None:
    command = [
        str(bindir / "initdb"),
        f"--pgdata={root / 'data'}",
        f"--username={SUPERUSER}",
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
    ]
    try:
        subprocess.run(
            command,
            cwd=root,
            env=_server_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
            user=identity.user,
            group=identity.group,
            extra_groups=identity.extra_groups,
        )
    except subprocess.CalledProcessError as error:
        hint = ""
        if identity.user is not None:
            hint = (
                f"\nThe server runs as user '{SUPERUSER}', which must be able to reach "
                f"{root}; if it cannot, point TMPDIR at a world-traversable directory "
                "such as /tmp."
            )
        raise ClusterError(
            f"initdb failed with exit status {error.returncode}:\n"
            f"{error.stdout}{error.stderr}{hint}"
        ) from None
    except subprocess.TimeoutExpired:
        raise ClusterError(f"initdb did not finish within {timeout_s} s.") from None


@dataclass(frozen=True)
class _Postmaster:
    process: subprocess.Popen[bytes]
    port: int
    server_version_num: int


class _PortTaken(Exception):
    """The postmaster exited because its port was taken; retry on another."""


def _start_postmaster(
    bindir: Path,
    root: Path,
    identity: _Identity,
    *,
    timeout_s: float,
    port_attempt_count_max: int,
) -> _Postmaster:
    """Start the server on a free port and wait until it accepts connections.

    Choosing a free port and binding it are two steps, and another process
    (a parallel test run, say) can take the port in between. The postmaster
    then exits at once, and we try again on another port.
    """
    for _ in range(port_attempt_count_max):
        port = _pick_free_port()
        process = _spawn_postmaster(bindir, root, port, identity)
        try:
            version = _wait_accepting_connections(
                process,
                port,
                data_directory=root / "data",
                log_path=root / "postgres.log",
                timeout_s=timeout_s,
            )
        except _PortTaken:
            continue
        except BaseException:
            _stop_postmaster(process, timeout_s=5.0)
            raise
        return _Postmaster(process=process, port=port, server_version_num=version)
    raise ClusterError(
        f"Gave up after {port_attempt_count_max} attempts: each time, another process "
        "took the chosen port before postgres could bind it. Last log:\n"
        f"{_log_tail(root / 'postgres.log')}"
    )


def _spawn_postmaster(
    bindir: Path, root: Path, port: int, identity: _Identity
) -> subprocess.Popen[bytes]:
    settings = {
        **SERVER_SETTINGS,
        "port": str(port),
        "listen_addresses": "127.0.0.1",
        # The socket goes in the cluster's own directory, never the shared
        # /var/run/postgresql, so parallel clusters and a system server coexist.
        "unix_socket_directories": str(root),
    }
    command = [str(bindir / "postgres"), "-D", str(root / "data")]
    for name, value in settings.items():
        command += ["-c", f"{name}={value}"]
    # Truncate the log on each attempt so that port-taken detection reads only
    # this attempt's messages. The child keeps its own copy of the descriptor.
    with (root / "postgres.log").open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=root,
            env=_server_environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C aimed at pytest does not shut the server
            # down under a test's feet; `_destroy` stops it deliberately.
            start_new_session=True,
            user=identity.user,
            group=identity.group,
            extra_groups=identity.extra_groups,
        )


def _wait_accepting_connections(
    process: subprocess.Popen[bytes],
    port: int,
    *,
    data_directory: Path,
    log_path: Path,
    timeout_s: float,
) -> int:
    """Block until the server accepts connections; return its server_version_num.

    Readiness is read from the postmaster's own lock file, as ``pg_ctl -w``
    does, rather than probed by connecting: a probe could reach whatever else
    listens on the port after ours failed to bind, and a listener that never
    answers would stall it for libpq's minimum connect timeout of 2 s.

    Raises `_PortTaken` if the postmaster exited because its port was taken,
    and `ClusterError` if it exited for any other reason or was not ready
    within ``timeout_s``; the caller stops the process.
    """
    deadline = time.monotonic() + timeout_s
    while not _postmaster_ready(data_directory, process.pid):
        exit_status = process.poll()
        if exit_status is not None:
            tail = _log_tail(log_path)
            if _PORT_TAKEN_MARKER in tail:
                raise _PortTaken
            raise ClusterError(
                f"postgres exited with status {exit_status} during startup. Log:\n{tail}"
            )
        if time.monotonic() > deadline:
            raise ClusterError(
                f"postgres was not ready on 127.0.0.1:{port} within {timeout_s} s. "
                f"Log:\n{_log_tail(log_path)}"
            )
        time.sleep(0.01)
    conninfo = f"host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres connect_timeout=10"
    with psycopg.connect(conninfo) as connection:
        row = connection.execute("SHOW data_directory").fetchone()
        version = connection.info.server_version
    # Our postmaster says it is ready, so it holds the port and answered.
    assert row is not None and Path(row[0]) == data_directory, (row, data_directory)
    return version


def _postmaster_ready(data_directory: Path, pid: int) -> bool:
    """Whether postmaster.pid names ``pid`` and says it accepts connections.

    Line 1 is the postmaster's pid and line 8 its status, which it sets to
    "ready" once it accepts connections (PostgreSQL 10 and newer). The file
    is rewritten in place, so a torn read is possible; it only reads as
    "not ready yet".
    """
    try:
        lines = (data_directory / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return False
    return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"
