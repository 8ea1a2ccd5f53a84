"""Bucket and object commands, shaped like ``aws s3``: ls, mb, rb, versioning, put, get, cp, rm."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator

import click

from tier0 import NoSuchVersion, ObjectInfo, Tier0
from tier0.cli._base import (
    TIER0_URL,
    ObjectUrl,
    Session,
    bucket_only,
    human_bytes,
    is_url,
    local_time,
    parse_url,
    pass_session,
)
from tier0.cli._transfer import download, progress_option, upload

# -- buckets ----------------------------------------------------------------------------------


@click.command("ls")
@click.argument("url", type=TIER0_URL, required=False)
@click.option(
    "--recursive", "-r", is_flag=True, help="List every key under the prefix, not one level."
)
@pass_session
def ls_command(session: Session, url: ObjectUrl | None, recursive: bool) -> None:
    """List buckets, or objects under a prefix.

    Without an argument, lists the buckets. With one, lists one level below
    the prefix, rolling deeper keys up into "PRE name/" lines (keys are split
    at '/'), like aws s3 ls; --recursive lists every key in full.

    \b
    Examples:
      tier0 ls
      tier0 ls tier0://photos
      tier0 ls tier0://photos/2024/
      tier0 ls --recursive tier0://photos/2024
    """
    with session.open() as t0:
        if url is None:
            for bucket in t0.list_buckets():
                click.echo(f"{local_time(bucket.created)}  {bucket.name}")
            return
        # Non-recursive names are shown relative to the prefix's last '/', as aws does.
        shown_from = 0 if recursive else url.key.rfind("/") + 1
        for entry in _walk(t0, url.bucket, url.key, None if recursive else "/"):
            if isinstance(entry, str):
                click.echo(f"{'PRE':>30} {entry[shown_from:]}")
            else:
                size = human_bytes(entry.size)
                click.echo(f"{local_time(entry.modified)} {size:>10} {entry.key[shown_from:]}")


def _walk(t0: Tier0, bucket: str, prefix: str, delimiter: str | None) -> Iterator[ObjectInfo | str]:
    """Objects and common prefixes in key order, page after page."""
    start_after: str | None = None
    while True:
        page = t0.list(bucket, prefix=prefix, delimiter=delimiter, start_after=start_after)
        entries: list[ObjectInfo | str] = [*page.objects, *page.prefixes]
        # Python orders str by code point, which is UTF-8 byte order: the store's key order.
        entries.sort(key=lambda entry: entry if isinstance(entry, str) else entry.key)
        yield from entries
        if not page.truncated:
            return
        start_after = page.next_start_after


@click.command("mb")
@click.argument("url", type=TIER0_URL)
@pass_session
def mb_command(session: Session, url: ObjectUrl) -> None:
    """Make a bucket.

    Bucket names follow S3's rules: 3 to 63 characters of a-z, 0-9, '.' and
    '-', starting and ending with a letter or digit.

    \b
    Example:
      tier0 mb tier0://photos
    """
    bucket = bucket_only(url, "mb")
    with session.open() as t0:
        t0.create_bucket(bucket)
    click.echo(f"make_bucket: {bucket}")


@click.command("rb")
@click.argument("url", type=TIER0_URL)
@pass_session
def rb_command(session: Session, url: ObjectUrl) -> None:
    """Remove an empty bucket.

    "tier0 rm --recursive tier0://BUCKET" empties one (in a bucket that keeps
    versions, old versions stay until deleted with rm --version-id).

    \b
    Example:
      tier0 rb tier0://photos
    """
    bucket = bucket_only(url, "rb")
    with session.open() as t0:
        t0.delete_bucket(bucket)
    click.echo(f"remove_bucket: {bucket}")


_VERSIONING = {"enable": "Enabled", "suspend": "Suspended"}


@click.command("versioning")
@click.argument("url", type=TIER0_URL)
@click.argument("state", type=click.Choice(sorted(_VERSIONING)), required=False)
@pass_session
def versioning_command(session: Session, url: ObjectUrl, state: str | None) -> None:
    """Show, enable or suspend a bucket's versioning.

    A bucket starts Unversioned: an overwrite or delete drops the old bytes.
    Enabled keeps every version (a delete leaves a delete marker); Suspended
    stops keeping new ones but keeps those already kept.

    \b
    Examples:
      tier0 versioning tier0://photos
      tier0 versioning tier0://photos enable
    """
    bucket = bucket_only(url, "versioning")
    with session.open() as t0:
        if state is not None:
            t0.set_versioning(bucket, _VERSIONING[state])  # type: ignore[arg-type]
        click.echo(f"{bucket}: {t0.get_versioning(bucket)}")


# -- objects ----------------------------------------------------------------------------------


def _metadata(pairs: tuple[str, ...]) -> dict[str, str] | None:
    result = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="'--metadata'")
        result[name] = value
    return result or None


@click.command("put")
@click.argument("local", metavar="LOCAL")
@click.argument("url", type=TIER0_URL)
@click.option("--content-type", help="Content type (default: guessed from the key).")
@click.option(
    "--metadata", "-m", multiple=True, metavar="NAME=VALUE", help="User metadata; repeatable."
)
@progress_option
@pass_session
def put_command(
    session: Session,
    local: str,
    url: ObjectUrl,
    content_type: str | None,
    metadata: tuple[str, ...],
    progress: bool | None,
) -> None:
    """Upload a local file (or stdin) to tier0.

    LOCAL "-" reads stdin. A URL that names only a bucket, or ends in '/', takes the file's name as
    the last part of the key. The file is streamed, whatever its size.

    \b
    Examples:
      tier0 put report.pdf tier0://docs/2024/report.pdf
      tier0 put report.pdf tier0://docs/2024/
      tar c src | tier0 put - tier0://backups/src.tar
    """
    target = _upload_target(local, url)
    with session.open() as t0:
        info = upload(
            t0,
            local,
            target,
            progress=progress,
            content_type=content_type,
            metadata=_metadata(metadata),
        )
    click.echo(f"upload: {local} to {target} ({human_bytes(info.size)})")


def _upload_target(local: str, url: ObjectUrl) -> ObjectUrl:
    if local == "-" and (not url.key or url.key.endswith("/")):
        raise click.UsageError("reading stdin, so name the key: tier0://BUCKET/KEY")
    return url.child(os.path.basename(local.rstrip(os.sep)))


@click.command("get")
@click.argument("url", type=TIER0_URL)
@click.argument("local", metavar="[LOCAL|-]", required=False)
@click.option("--version-id", help="Get this version instead of the current one.")
@progress_option
@pass_session
def get_command(
    session: Session,
    url: ObjectUrl,
    local: str | None,
    version_id: str | None,
    progress: bool | None,
) -> None:
    """Download an object to a local file (or stdout).

    LOCAL defaults to the key's last part in the current directory; a
    directory receives that name; "-" writes to stdout. The file appears only once it is complete: a failed download leaves no
    partial file, and an existing file is replaced whole or not at all.

    \b
    Examples:
      tier0 get tier0://docs/2024/report.pdf
      tier0 get tier0://docs/2024/report.pdf ~/Downloads/
      tier0 get tier0://docs/notes.txt - | less
    """
    target = _download_target(url, local)
    with session.open() as t0:
        info = download(t0, url, target, progress=progress, version_id=version_id)
    if target != "-":
        click.echo(f"download: {url} to {target} ({human_bytes(info.size)})")


def _download_target(url: ObjectUrl, local: str | None) -> str:
    if not url.key:
        raise click.UsageError(f"name a key to download: {url}/KEY")
    if local == "-":
        return local
    name = posixpath.basename(url.key)
    if local is None or os.path.isdir(local) or local.endswith(os.sep):
        if not name:
            raise click.UsageError(f"{url} ends in '/': name the local file to write")
        return os.path.join(local or ".", name)
    return local


@click.command("cp")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@click.option("--content-type", help="Content type of an upload (default: guessed from the key).")
@click.option(
    "--metadata", "-m", multiple=True, metavar="NAME=VALUE", help="User metadata; repeatable."
)
@click.option("--version-id", help="Copy this version of SRC instead of the current one.")
@progress_option
@pass_session
def cp_command(
    session: Session,
    source: str,
    destination: str,
    content_type: str | None,
    metadata: tuple[str, ...],
    version_id: str | None,
    progress: bool | None,
) -> None:
    """Copy between local files and tier0, or within tier0.

    Either side may be local ("-" for stdin or stdout) or tier0://. tier0 to tier0 copies in metadata alone: the new object shares the old
    one's chunks, so it costs no bytes and no time whatever the size.

    \b
    Examples:
      tier0 cp data.csv tier0://raw/data.csv
      tier0 cp tier0://raw/data.csv ./data.csv
      tier0 cp tier0://raw/data.csv tier0://archive/2024/
    """
    source_url = _url_argument(source, "SRC")
    target_url = _url_argument(destination, "DST")
    if source_url is None and target_url is None:
        raise click.UsageError(
            "one of SRC and DST must be a tier0:// URL (use cp(1) for local copies)"
        )
    if source_url is None:
        assert target_url is not None
        put_target = _upload_target(source, target_url)
        with session.open() as t0:
            info = upload(
                t0, source, put_target, progress=progress,
                content_type=content_type, metadata=_metadata(metadata),
            )  # fmt: skip
        click.echo(f"upload: {source} to {put_target} ({human_bytes(info.size)})")
        return
    if target_url is None:
        local = _download_target(source_url, destination)
        with session.open() as t0:
            info = download(t0, source_url, local, progress=progress, version_id=version_id)
        if local != "-":
            click.echo(f"download: {source_url} to {local} ({human_bytes(info.size)})")
        return
    if not source_url.key:
        raise click.UsageError(f"name a key to copy: {source_url}/KEY")
    copy_target = target_url.child(posixpath.basename(source_url.key))
    with session.open() as t0:
        t0.copy(
            source_url.bucket, source_url.key, copy_target.bucket, copy_target.key,
            version_id=version_id, content_type=content_type, metadata=_metadata(metadata),
        )  # fmt: skip
    click.echo(f"copy: {source_url} to {copy_target}")


def _url_argument(text: str, name: str) -> ObjectUrl | None:
    """The URL in a SRC/DST argument, or None for a local path."""
    if not is_url(text):
        return None
    try:
        return parse_url(text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=f"'{name}'") from None


@click.command("rm")
@click.argument("url", type=TIER0_URL)
@click.option("--recursive", "-r", is_flag=True, help="Delete every object under the prefix.")
@click.option("--version-id", help="Delete this version for good (not with --recursive).")
@pass_session
def rm_command(session: Session, url: ObjectUrl, recursive: bool, version_id: str | None) -> None:
    """Delete an object, or every object under a prefix.

    In a bucket that keeps versions, a delete leaves a delete marker and the
    old versions stay (--version-id deletes one version for good).

    \b
    Examples:
      tier0 rm tier0://docs/old.txt
      tier0 rm --recursive tier0://docs/tmp/
      tier0 rm tier0://docs/a.txt --version-id 0190f5e2c4f87d3a
    """
    if recursive and version_id is not None:
        raise click.UsageError(
            "--version-id deletes one version; it does not combine with --recursive"
        )
    if not recursive and not url.key:
        raise click.UsageError(f"name a key ({url}/KEY), or pass --recursive to empty the bucket")
    with session.open() as t0:
        if recursive:
            for info in t0.iter_objects(url.bucket, prefix=url.key):
                t0.delete(url.bucket, info.key)
                click.echo(f"delete: {ObjectUrl(url.bucket, info.key)}")
            return
        if version_id is not None:
            if not t0.delete(url.bucket, url.key, version_id=version_id).deleted:
                raise NoSuchVersion(f"{url.bucket}/{url.key} has no version {version_id!r}")
        else:
            # Deleting a missing key is no error in S3, but here someone mistyped a name.
            t0.head(url.bucket, url.key)
            t0.delete(url.bucket, url.key)
    click.echo(f"delete: {url}")
