"""The ``tier0`` command group: global options and the command table."""

from __future__ import annotations

from pathlib import Path

import click

import tier0
from tier0.cli._admin import (
    fsck_command,
    gc_command,
    serve_command,
    sql_command,
    stats_command,
    user_group,
)
from tier0.cli._base import Session, Tier0Group
from tier0.cli._engine import (
    fn_group,
    pipeline_group,
    secret_group,
    stream_group,
    trigger_group,
)
from tier0.cli._objects import (
    cp_command,
    get_command,
    ls_command,
    mb_command,
    put_command,
    rb_command,
    rm_command,
    versioning_command,
)
from tier0.cli._semantic import index_command, search_command


@click.group(
    cls=Tier0Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="TIER0_DATA",
    metavar="DIR",
    help="The data directory [env TIER0_DATA; default ~/.local/share/tier0].",
)
@click.option(
    "--meta",
    envvar="TIER0_META",
    metavar="URL",
    help="Metadata backend the first time: 'sqlite' (default) or postgresql://... [env TIER0_META].",
)
@click.option(
    "--chunks",
    envvar="TIER0_CHUNKS",
    metavar="URL",
    help="Where chunks live the first time: DATA/chunks (default), s3://BUCKET[/PREFIX], or an "
    "absolute directory shared by several hosts [env TIER0_CHUNKS]. S3 credentials come from "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or boto3's other sources).",
)
@click.option(
    "--chunks-endpoint",
    envvar="TIER0_CHUNKS_ENDPOINT",
    metavar="URL",
    help="The S3-compatible store holding s3:// chunks, e.g. http://10.0.0.5:9000 "
    "(default: AWS) [env TIER0_CHUNKS_ENDPOINT].",
)
@click.version_option(tier0.__version__, prog_name="tier0")
@click.pass_context
def cli(
    ctx: click.Context,
    data: Path | None,
    meta: str | None,
    chunks: str | None,
    chunks_endpoint: str | None,
) -> None:
    """tier0: object store, live catalog, event log and SQL in one package.

    Paths in tier0 are written tier0://BUCKET/KEY. Every command acts on the
    data directory given by --data as its root principal.

    \b
    Examples:
      tier0 mb tier0://docs
      tier0 put notes.txt tier0://docs/notes.txt
      tier0 ls tier0://docs
      tier0 sql "SELECT key, size FROM objects"
      tier0 serve

    \b
    Several gateways as one S3 service (one PostgreSQL, chunks in one bucket):
      tier0 --data /srv/t0 --meta postgresql://db/t0 --chunks s3://chunks/t0 \\
            --chunks-endpoint http://10.0.0.5:9000 serve --address 0.0.0.0:9000
    """
    ctx.obj = Session(data=data, meta=meta, chunks=chunks, chunks_endpoint=chunks_endpoint)


for _command in (
    serve_command,
    sql_command,
    index_command,
    search_command,
    ls_command,
    mb_command,
    rb_command,
    versioning_command,
    put_command,
    get_command,
    cp_command,
    rm_command,
    fn_group,
    trigger_group,
    secret_group,
    stream_group,
    pipeline_group,
    user_group,
    stats_command,
    gc_command,
    fsck_command,
):
    cli.add_command(_command)


def main() -> None:
    """The console script's entry point."""
    cli(prog_name="tier0")
