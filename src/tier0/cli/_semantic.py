"""``tier0 index`` and ``tier0 search``: semantic search over a bucket's text elements."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Final

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tier0.cli._base import SCHEME, Session, parse_url, pass_session, print_table

if TYPE_CHECKING:  # the DataBase loads Arrow and DuckDB: not for `tier0 --help`
    from tier0.db._semantic import IndexReport

#: Characters of a passage shown in a table row (JSON has all of it).
SNIPPET_CHARS: Final = 200


def _bucket_and_prefix(target: str, prefix: str | None) -> tuple[str, str]:
    """BUCKET or tier0://BUCKET[/PREFIX], and --prefix (not both)."""
    if not target.startswith(SCHEME):
        return target, prefix or ""
    try:
        url = parse_url(target)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="BUCKET") from None
    if url.key and prefix is not None:
        raise click.UsageError("give the prefix in the URL or with --prefix, not both")
    return url.bucket, url.key or prefix or ""


@click.command("index")
@click.argument("bucket", metavar="BUCKET")
@click.option("--prefix", metavar="P", help="Index only the keys that begin with P.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="How to print the report.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Draw a progress bar on stderr [default: when stderr is a terminal].",
)
@pass_session
def index_command(
    session: Session, bucket: str, prefix: str | None, output_format: str, progress: bool | None
) -> None:
    """Embed a bucket's text elements for `tier0 search`.

    BUCKET is a name or tier0://BUCKET[/PREFIX]. Plain text, Markdown, JSON,
    CSV, HTML and PDF elements are cut into passages of about 120 words,
    embedded by all-MiniLM-L6-v2 (offline, on the CPU) and kept in the table
    BUCKET._passages. The first run reads every element under the prefix;
    later runs read only the elements created, changed or deleted since, from
    the event log. Needs pip install 'tier0[embeddings]'.

    \b
    Examples:
      tier0 index docs
      tier0 index docs --prefix reports/2026/
      tier0 index --format json tier0://docs/notes/
    """
    bucket, prefix = _bucket_and_prefix(bucket, prefix)
    console = Console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # By default on a terminal only: a pipe or a log file gets the report alone.
    shown = console.is_terminal if progress is None else progress
    with (
        session.open() as t0,
        Progress(*columns, console=console, transient=True, disable=not shown) as bar,
    ):
        task = bar.add_task(f"indexing {bucket}", total=None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        report = t0.index(bucket, prefix=prefix, progress=advance)
    _print_report(report, output_format)


def _print_report(report: IndexReport, output_format: str) -> None:
    figures = dataclasses.asdict(report)
    if output_format == "json":
        figures["failures"] = [{"key": key, "error": error} for key, error in report.failures]
        click.echo(json.dumps(figures, indent=2, ensure_ascii=False))
        return
    table = Table("", "", show_header=False, box=None)
    for name in (
        "elements_indexed", "passages_written", "elements_unchanged", "elements_skipped",
        "elements_removed", "elements_failed", "passages_embedded",
    ):  # fmt: skip
        table.add_row(name.replace("_", " "), f"{figures[name]:,}")
    table.add_row(
        "read", "every element (first run)" if report.walked else "changes since last run"
    )
    table.add_row("event seq", f"{report.seq:,}")
    table.add_row("seconds", f"{report.seconds:.2f}")
    print_table(table)
    for key, error in report.failures:
        click.echo(f"failed: {key}: {error}", err=True)
    unlisted = report.elements_failed - len(report.failures)
    if unlisted > 0:
        click.echo(f"failed: {unlisted:,} more", err=True)


@click.command("search")
@click.argument("query")
@click.option("--bucket", required=True, metavar="B", help="The bucket to search (indexed first).")
@click.option("--prefix", metavar="P", help="Only elements whose keys begin with P.")
@click.option(
    "-k",
    "k",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many results (at most 1000).",
)
@click.option(
    "--elements", is_flag=True, help="One row per element (its best passage), not per passage."
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json: every column, whole passages.",
)
@pass_session
def search_command(
    session: Session, query: str, bucket: str, prefix: str | None, k: int, elements: bool,
    output_format: str,
) -> None:  # fmt: skip
    """Find the passages (or elements) of a bucket nearest in meaning to QUERY.

    The bucket must have been indexed with `tier0 index`. Distance is cosine
    distance: 0 is the same meaning, 1 unrelated. QUERY "-" reads it from stdin.

    \b
    Examples:
      tier0 search "how do I reset my password" --bucket docs
      tier0 search "quarterly revenue" --bucket docs --prefix reports/ -k 5 --elements
      tier0 search --format json "error budget" --bucket docs
    """
    if query == "-":
        query = click.open_file("-", "r").read()
    with session.open() as t0:
        result = t0.search(query, bucket=bucket, k=k, prefix=prefix, elements=elements)
    rows: list[dict[str, Any]] = result.to_pylist()
    if output_format == "json":
        for row in rows:
            row["distance"] = round(float(row.pop("_distance")), 6)
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    count = len(rows)
    table = Table(
        "#", "key", "passage", "distance", "text",
        caption=f"{count} {'element' if elements else 'passage'}{'s' if count != 1 else ''}",
    )  # fmt: skip
    for rank, row in enumerate(rows, 1):
        table.add_row(
            str(rank), _escape(row["key"]), str(row["passage"]), f"{row['_distance']:.3f}",
            _escape(_snippet(row["text"])),
        )  # fmt: skip
    print_table(table)


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1] + "…"


def _escape(text: str) -> str:
    # Keys and passages are data, not rich markup: "[b]" must print as "[b]".
    return text.replace("[", "\\[")
