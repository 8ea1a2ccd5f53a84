"""What every command shares: the session, ``tier0://`` URLs, error mapping, formatting.

Errors are turned into one ``Error: ...`` line in exactly one place,
``Tier0Group.invoke``: a kernel error or a local I/O error becomes exit code
1, a bad command line exit code 2 (click's usage errors), never a traceback.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click
from rich.console import Console
from rich.table import Table

import tier0
from tier0 import Tier0, Tier0Error
from tier0._client import CREDENTIALS_NAME

SCHEME: Final = "tier0://"


# -- the session ------------------------------------------------------------------------------


@dataclass
class Session:
    """The group's options, and the store they name (opened by the command that needs it)."""

    data: Path | None
    meta: str | None
    chunks: str | None = None
    chunks_endpoint: str | None = None

    @property
    def data_dir(self) -> Path:
        return self.data if self.data is not None else tier0.default_data_dir()

    def open(self, *, announce_root: bool = True) -> Tier0:
        """Open the store as root (whoever can read the data directory is its admin).

        When this open made root's first credentials, say where they are, on
        stderr, so that a script's stdout stays clean. ``tier0 serve`` shows
        the keys themselves and passes ``announce_root=False``.
        """
        chunks = self.chunks
        if chunks and "://" not in chunks:
            chunks = os.path.abspath(chunks)  # remembered: relative to nothing later
        t0 = tier0.open(
            self.data_dir,
            meta=self.meta,
            chunks_url=chunks,
            chunks_endpoint=self.chunks_endpoint,
        )
        if announce_root and t0.root_credential is not None:
            click.echo(
                f"tier0: made root credentials for {t0.data_dir}; they are in "
                f"{t0.data_dir / CREDENTIALS_NAME} (owner-only)",
                err=True,
            )
        return t0


pass_session = click.make_pass_decorator(Session)


# -- errors -----------------------------------------------------------------------------------


class Tier0Group(click.Group):
    """A click group that reports kernel and I/O errors as one clean line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        # In the order they were added (serve and sql first), not alphabetically.
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Tier0Error as error:  # before OSError: StorageFull and StoreFailed are both
            raise click.ClickException(str(error)) from None
        except BrokenPipeError:
            # The reader of our stdout went away (`tier0 get ... - | head`). Point stdout at
            # /dev/null so the interpreter's final flush does not fail a second time.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise SystemExit(1) from None
        except OSError as error:
            raise click.ClickException(describe_os_error(error)) from None


def describe_os_error(error: OSError) -> str:
    """``path: reason`` for a local file error, the message otherwise."""
    if error.filename is not None and error.strerror:
        return f"{os.fsdecode(error.filename)}: {error.strerror}"
    return error.strerror or str(error)


# -- tier0:// URLs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectUrl:
    """``tier0://BUCKET[/KEY]``. ``key`` is "" for a bucket, and may be a prefix."""

    bucket: str
    key: str = ""

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}" if self.key else f"{SCHEME}{self.bucket}"

    def child(self, name: str) -> ObjectUrl:
        """This URL, or, when it names a bucket or ends in '/', ``name`` inside it."""
        if self.key and not self.key.endswith("/"):
            return self
        return ObjectUrl(self.bucket, self.key + name)


def parse_url(text: str) -> ObjectUrl:
    """``tier0://BUCKET[/KEY]`` as an ObjectUrl; ValueError with a readable reason otherwise.

    The key is taken verbatim after the first '/' (keys are opaque: ``a//b``
    and ``../x`` are legal); the bucket name is checked by the store.
    """
    if not text.startswith(SCHEME):
        scheme, sep, _ = text.partition("://")
        if sep:
            raise ValueError(f"{text!r} uses {scheme}://; tier0 paths look like tier0://BUCKET/KEY")
        raise ValueError(f"{text!r} is not a tier0:// URL (tier0://BUCKET/KEY)")
    bucket, _, key = text[len(SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"{text!r} names no bucket (tier0://BUCKET/KEY)")
    return ObjectUrl(bucket, key)


def is_url(text: str) -> bool:
    """Whether a command argument means a tier0 path rather than a local one."""
    return "://" in text


if TYPE_CHECKING:
    _UrlParamType = click.ParamType[ObjectUrl]  # generic in click >= 8.2 only
else:
    _UrlParamType = click.ParamType


class UrlType(_UrlParamType):
    """A click parameter holding a ``tier0://`` URL (a usage error otherwise)."""

    name = "tier0://BUCKET[/KEY]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> ObjectUrl:
        if isinstance(value, ObjectUrl):
            return value
        try:
            return parse_url(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


TIER0_URL: Final = UrlType()


def bucket_only(url: ObjectUrl, what: str) -> str:
    """The bucket of a URL that must name nothing else."""
    if url.key:
        raise click.UsageError(f"{what} takes a bucket (tier0://{url.bucket}), not a key")
    return url.bucket


# -- formatting -------------------------------------------------------------------------------

_UNITS: Final = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_bytes(size: int) -> str:
    """``1023 B``, ``1.0 KiB``, ``4.5 MiB``: binary units, one decimal.

    >>> human_bytes(5 * 1024 * 1024 + 1)
    '5.0 MiB'
    """
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def local_time(moment: dt.datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def cell_text(value: Any) -> str:
    """A SQL value as text for a table or CSV cell (NULL is empty)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=json_default)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


def json_default(value: Any) -> Any:
    """JSON for the values SQL rows may hold beyond JSON's own."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


def stdout_console() -> Console:
    """A console for tables on stdout (made per command, so tests' captured stdout is used)."""
    return Console(highlight=False, soft_wrap=False)


def print_table(table: Table) -> None:
    """Print ``table`` whole: on a terminal fitted to it, through a pipe at its natural width.

    Piped output is read by people with `less -S` and by `grep`; squeezing it
    into 80 columns would cut the values they are looking for.
    """
    console = stdout_console()
    if not console.is_terminal:
        # Measured against a wide page: measured against the console's own width, the
        # table's natural width is cut to it.
        natural = console.measure(table, options=console.options.update_width(100_000))
        console.width = max(80, natural.maximum)
    console.print(table)
