"""Server, query and administration commands: serve, sql, user, stats, gc, fsck."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import ipaddress
import json
import socket
from collections.abc import Iterator
from typing import Any

import click
from rich.table import Table

import tier0
from tier0._client import CREDENTIALS_NAME
from tier0.cli._base import Session, cell_text, human_bytes, json_default, pass_session, print_table

# -- serve ------------------------------------------------------------------------------------


@click.command("serve")
@click.option(
    "--address",
    default="127.0.0.1:9000",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to listen ([::1]:9000 for IPv6; port 0 picks a free port).",
)
@click.option(
    "--certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM)."
)
@click.option(
    "--keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM)."
)
@click.option(
    "--s3-domain",
    "s3_domains",
    multiple=True,
    metavar="DOMAIN",
    envvar="TIER0_S3_DOMAIN",
    help="Serve virtual-hosted-style S3 requests (Host: BUCKET.DOMAIN); repeat for several. "
    "Path-style requests keep working.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    envvar="TIER0_WORKERS",
    help="Server processes sharing the address (about one core each); a worker that dies is "
    "replaced.",
)
@click.option(
    "--cpu-affinity/--no-cpu-affinity",
    default=False,
    show_default=True,
    envvar="TIER0_CPU_AFFINITY",
    help="With --workers N, keep each worker's request threads on a CPU of its own "
    "(round-robin), as nginx's worker_cpu_affinity does: small requests ~25 % faster, a "
    "single large download slower. The DataEngine and bulk data I/O keep every CPU.",
)
@click.option(
    "--engine/--no-engine",
    default=True,
    show_default=True,
    help="Run the DataEngine here: triggers start functions as events arrive.",
)
@click.option(
    "--function-workers",
    type=click.IntRange(1, 256),
    default=None,
    envvar="TIER0_FUNCTION_WORKERS",
    help="Worker processes that run functions [default: two per core].",
)
@click.option(
    "--runtime",
    type=click.Choice(["process", "ray"]),
    default="process",
    show_default=True,
    envvar="TIER0_RUNTIME",
    help="Where functions run: worker processes here, or a Ray cluster (pip install 'tier0[ray]').",
)
@click.option(
    "--ray-address",
    metavar="ADDRESS",
    envvar="RAY_ADDRESS",
    help="The Ray cluster for --runtime ray (e.g. ray://head:10001, or auto for one running "
    "here) [default: a new local Ray].",
)
@pass_session
def serve_command(
    session: Session,
    address: str,
    certfile: str | None,
    keyfile: str | None,
    s3_domains: tuple[str, ...],
    workers: int,
    cpu_affinity: bool,
    engine: bool,
    function_workers: int | None,
    runtime: str,
    ray_address: str | None,
) -> None:
    """Serve the store over HTTP until SIGTERM or Ctrl-C.

    Root's credentials come from TIER0_ROOT_ACCESS_KEY and TIER0_ROOT_SECRET_KEY
    when they are set; otherwise they are made on the first start, printed
    once, and kept in DATA/root-credentials (owner-only). Clients send them as
    HTTP Basic credentials. On SIGTERM the server stops accepting, finishes
    the requests in flight, then closes the store.

    The DataEngine runs in the server (--no-engine to leave it out): each
    trigger's function runs on a pool of worker processes, or on Ray with
    --runtime ray. With --workers N it runs in the first server process.

    Several servers are one S3 service when they share a PostgreSQL --meta
    and one chunk location (--chunks s3://BUCKET/PREFIX with
    --chunks-endpoint, or a shared directory; env TIER0_META, TIER0_CHUNKS,
    TIER0_CHUNKS_ENDPOINT): a write through one is read through the others
    at once.

    \b
    Examples:
      tier0 serve
      tier0 --data /srv/tier0 serve --address 0.0.0.0:9000 --certfile cert.pem --keyfile key.pem
      tier0 serve --s3-domain s3.localhost     # http://BUCKET.s3.localhost:9000/KEY
      tier0 serve --workers 4                  # four processes, one port
      tier0 serve --workers 2 --cpu-affinity   # each on a CPU of its own
      tier0 serve --runtime ray --ray-address ray://head:10001
      curl -u "$ACCESS:$SECRET" -d '{"sql": "SELECT count(*) FROM objects"}' \\
           http://127.0.0.1:9000/_tier0/sql
    """
    # Imported here: uvicorn and uvloop cost the other commands start-up time for nothing.
    from tier0.server import (
        LISTEN_BACKLOG,
        bind_reuseport,
        check_tls,
        format_url,
        parse_address,
        pin_to_cpu,
        run_workers,
        serve,
        worker_cpus,
    )

    if (certfile is None) != (keyfile is None):
        raise click.UsageError("TLS needs both --certfile and --keyfile")
    host, port = parse_address(address)
    with session.open(announce_root=False) as t0:
        credential = t0.root_credential
        if credential is not None:
            saved = t0.data_dir / CREDENTIALS_NAME
            click.echo(f"Root credentials (shown once; also kept owner-only in {saved}):")
            click.echo(f"  access key: {credential.access_key}")
            click.echo(f"  secret key: {credential.secret_key}")
        if certfile is None and not _is_loopback(host):
            click.echo(
                f"tier0: warning: plain HTTP on {host}: credentials cross the network in the clear; "
                "use --certfile and --keyfile",
                err=True,
            )

        data_dir = t0.data_dir

        def listening(url: str) -> None:
            click.echo(f"tier0 {tier0.__version__} listening on {url} (data: {data_dir})")

        running = _EngineOptions(engine, function_workers, runtime, ray_address)
        if workers == 1:
            with running.start(t0):
                serve(
                    t0,
                    host,
                    port,
                    certfile=certfile,
                    keyfile=keyfile,
                    on_listening=listening,
                    s3_domains=s3_domains,
                )
    if workers > 1:
        # The open above made root's credentials and the schema, and is closed
        # again: the workers fork from a process that holds no store.
        check_tls(certfile, keyfile)
        sockets = bind_reuseport(host, port, workers, LISTEN_BACKLOG)
        listening(format_url(host, sockets[0].getsockname()[1], tls=certfile is not None))
        cpus = worker_cpus(workers) if cpu_affinity else None

        def work(sock: socket.socket) -> None:
            first = sock is sockets[0]
            with session.open(announce_root=False) as worker, running.start(worker, here=first):
                if cpus is not None:
                    # After the engine started its threads: they keep every CPU.
                    pin_to_cpu(cpus[sockets.index(sock)])
                serve(
                    worker,
                    host,
                    port,
                    certfile=certfile,
                    keyfile=keyfile,
                    s3_domains=s3_domains,
                    sock=sock,
                )

        try:
            status = run_workers(sockets, work)
        finally:
            for sock in sockets:
                sock.close()
        if status:
            raise SystemExit(status)
    click.echo("tier0: stopped", err=True)


@dataclasses.dataclass(frozen=True)
class _EngineOptions:
    enabled: bool
    workers: int | None
    runtime: str
    ray_address: str | None

    @contextlib.contextmanager
    def start(self, t0: tier0.Tier0, *, here: bool = True) -> Iterator[None]:
        """The DataEngine running on ``t0`` for the block (if enabled and ``here``)."""
        if not (self.enabled and here):
            yield
            return
        loop = t0.engine.start(
            workers=self.workers, runtime=self.runtime, ray_address=self.ray_address
        )
        try:
            yield
        finally:
            loop.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- sql --------------------------------------------------------------------------------------


@click.command("sql")
@click.argument("query")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv", "parquet"]),
    default="table",
    show_default=True,
    help="parquet: every row, written to stdout as a Parquet file (redirect it).",
)
@click.option(
    "--timeout-s",
    type=click.FloatRange(min=0, min_open=True),
    help="Cancel the query after this long.",
)
@pass_session
def sql_command(session: Session, query: str, output_format: str, timeout_s: float | None) -> None:
    """Run SQL over tables, files and the live catalog.

    QUERY "-" reads the query from stdin. Catalog views: objects, versions,
    prefixes, buckets, tables, events, uploads, principals, audit, triggers,
    invocations. Tables are bucket.table; files tier0://bucket/key URLs (globs
    too) in read_parquet, read_csv and read_json. Also CREATE TABLE, INSERT,
    UPDATE, DELETE, ALTER TABLE and DROP TABLE, and BEGIN ... COMMIT around
    several; nearest('bucket/table', vector, k), text_search('bucket/table',
    'words', k) and hybrid_search(...) search. The dialect is DuckDB's
    (PostgreSQL-flavoured) whatever the metadata backend; a query sees every
    write that returned before it started.

    \b
    Examples:
      tier0 sql "SELECT bucket, count(*), sum(size) FROM objects GROUP BY bucket"
      tier0 sql --format csv "SELECT key, size FROM objects WHERE size > 1e6" > big.csv
      tier0 sql "CREATE TABLE docs.notes (id BIGINT, body VARCHAR)"
      tier0 sql "SELECT count(*) FROM read_csv('tier0://logs/2026/*.csv')"
      tier0 sql --format parquet "SELECT * FROM docs.notes" > notes.parquet
    """
    if query == "-":
        query = click.open_file("-", "r").read()
    if output_format == "parquet":
        _write_parquet(session, query, timeout_s)
        return
    with session.open() as t0:
        result = t0.sql(query, timeout_s=timeout_s)
    columns = list(result.columns)
    truncated = result.truncated
    if output_format == "json":
        records = result.to_dicts()
        click.echo(json.dumps(records, indent=2, ensure_ascii=False, default=json_default))
    elif output_format == "csv":
        writer = csv.writer(click.open_file("-", "w"), lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([cell_text(value) for value in row] for row in result.rows)
    else:
        count = len(result.rows)
        caption = f"{count} row{'s' if count != 1 else ''}" + (" (truncated)" if truncated else "")
        table = Table(*columns, caption=caption)
        for row in result.rows:
            table.add_row(*(_cell(value) for value in row))
        print_table(table)
    if truncated and output_format != "table":
        click.echo(f"tier0: the result was truncated at {len(result.rows)} rows", err=True)


def _write_parquet(session: Session, query: str, timeout_s: float | None) -> None:
    import pyarrow.parquet as pq

    stdout = click.open_file("-", "wb")
    if stdout.isatty():
        raise click.UsageError("--format parquet writes binary: redirect stdout to a file")
    with session.open() as t0:
        table = t0.sql_arrow(query, timeout_s=timeout_s)
    pq.write_table(table, stdout)
    stdout.flush()


def _cell(value: Any) -> str:
    return "[dim]NULL[/dim]" if value is None else _escape(cell_text(value))


def _escape(text: str) -> str:
    # Values are data, not rich markup: "[b]" in a key must print as "[b]".
    return text.replace("[", "\\[")


# -- users ------------------------------------------------------------------------------------


@click.group("user")
def user_group() -> None:
    """Manage principals (users, agents, services) and their keys.

    \b
    Examples:
      tier0 user create alice
      tier0 user create indexer --kind agent
      tier0 user list
      tier0 user delete alice
    """


@user_group.command("create")
@click.argument("name")
@click.option(
    "--kind", type=click.Choice(["user", "agent", "service"]), default="user", show_default=True
)
@pass_session
def user_create_command(session: Session, name: str, kind: str) -> None:
    """Create a principal and print its keys (shown only now).

    A new principal may act only on what it owns or is granted (deny by default).

    \b
    Example:
      tier0 user create alice
    """
    with session.open() as t0:
        principal, credential = t0.create_user(name, kind)
    click.echo(f"Created {principal.kind} {principal.name} ({principal.id}).")
    click.echo(f"  access key: {credential.access_key}")
    click.echo(f"  secret key: {credential.secret_key}")
    click.echo("The secret key is shown only now; keep it somewhere safe.", err=True)


@user_group.command("list")
@pass_session
def user_list_command(session: Session) -> None:
    """List principals, their kinds and access keys.

    \b
    Example:
      tier0 user list
    """
    with session.open() as t0:
        principals = t0.list_users()
        keys = {p.id: t0.principals.access_keys(p) for p in principals}
    table = Table("name", "kind", "id", "access keys")
    for principal in principals:
        table.add_row(principal.name, principal.kind, principal.id, ", ".join(keys[principal.id]))
    print_table(table)


@user_group.command("delete")
@click.argument("name")
@pass_session
def user_delete_command(session: Session, name: str) -> None:
    """Delete a principal, its credentials and grants (never root).

    \b
    Example:
      tier0 user delete alice
    """
    with session.open() as t0:
        t0.delete_user(name)
    click.echo(f"Deleted {name}.")


# -- maintenance ------------------------------------------------------------------------------


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@pass_session
def stats_command(session: Session, as_json: bool) -> None:
    """Show objects, versions, logical vs stored bytes, ratios.

    The dedup ratio is chunk bytes referenced per unique chunk byte; the
    compression ratio is unique chunk bytes per byte stored on disk.

    \b
    Example:
      tier0 stats
    """
    with session.open() as t0:
        stats = t0.stats()
    figures: dict[str, Any] = {
        "buckets": stats.buckets,
        "objects": stats.objects,
        "versions": stats.versions,
        "logical_bytes": stats.logical_bytes,
        "stored_bytes": stats.stored_bytes,
        "inline_bytes": stats.inline_bytes,
        "chunks": stats.chunk_count,
        "unreferenced_chunks": stats.unreferenced_chunks,
        "dedup_ratio": round(stats.dedup_ratio, 3),
        "compression_ratio": round(stats.compression_ratio, 3),
    }
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    table = Table("", "", show_header=False, box=None)
    for name, value in figures.items():
        if name.endswith("_bytes"):
            shown = f"{human_bytes(value)} ({value:,} bytes)"
        elif name.endswith("_ratio"):
            shown = f"{value:.2f}x"
        else:
            shown = f"{value:,}"
        table.add_row(name.replace("_", " "), shown)
    print_table(table)


@click.command("gc")
@click.option(
    "--grace-s",
    type=click.FloatRange(min=0),
    help="Keep chunks unreferenced for less than this (default: the store's grace, 1 hour).",
)
@pass_session
def gc_command(session: Session, grace_s: float | None) -> None:
    """Reclaim chunks no version references any more.

    Only chunks unreferenced for longer than the grace period go. A chunk a concurrent write is about to reference is never reclaimed, so
    gc is safe while the server runs.

    \b
    Examples:
      tier0 gc
      tier0 gc --grace-s 0
    """
    with session.open() as t0:
        report = t0.gc(grace_s=grace_s)
    click.echo(
        f"gc: deleted {report.chunks_deleted} chunks ({human_bytes(report.bytes_freed)} freed), "
        f"{report.orphans_deleted} orphan files, {report.uploads_expired} expired multipart"
        f" uploads; kept {report.chunks_kept_busy} chunks in use"
    )


@click.command("fsck")
@click.option(
    "--deep", is_flag=True, help="Re-read and re-hash every chunk (slow: reads all data)."
)
@pass_session
def fsck_command(session: Session, deep: bool) -> None:
    """Check metadata against chunks (exit code 1 on problems).

    Finds missing chunks, reference-count drift and orphan chunk files;
    --deep also finds chunks whose bytes no longer match their hash. Checks
    the DataEngine's invocations, triggers and streams against each other.

    \b
    Examples:
      tier0 fsck
      tier0 fsck --deep
    """
    with session.open() as t0:
        report = t0.check(deep=deep)
        engine = t0.engine.check()
    problems = [*report.problems, *engine.problems]
    for problem in problems:
        click.echo(f"problem: {problem}")
    verdict = "ok" if not problems else f"{len(problems)} problem(s)"
    click.echo(
        f"fsck: {verdict}; checked {report.versions_checked} versions, {report.chunks_checked} chunks"
        f" ({report.orphans} orphan files), {engine.invocations_checked} invocations,"
        f" {engine.triggers_checked} triggers, {engine.streams_checked} streams"
    )
    if problems:
        raise SystemExit(1)
