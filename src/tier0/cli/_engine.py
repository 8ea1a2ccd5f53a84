"""DataEngine commands: ``tier0 fn``, ``tier0 trigger``, ``tier0 secret``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from tier0.cli._base import Session, local_time, pass_session, print_table
from tier0.engine import FunctionSpec, TriggerSpec

# -- functions --------------------------------------------------------------------------------


@click.group("fn")
def fn_group() -> None:
    """Deploy functions and see what they did.

    A function is handler(ctx, event) in a Python module. Triggers
    (tier0 trigger add) run it when data changes; `tier0 serve` runs them.

    \b
    Examples:
      tier0 fn deploy thumbs thumbs:handler --package ./thumbs --grant 's3:*=/photos/*'
      tier0 fn list
      tier0 fn invocations thumbs --status dead
      tier0 fn logs thumbs
    """


def _pairs(values: tuple[str, ...], what: str, example: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        left, equals, right = value.partition("=")
        if not equals or not left or not right:
            raise click.BadParameter(f"{value!r}: write {what} as {example}")
        pairs.append((left, right))
    return pairs


@fn_group.command("deploy")
@click.argument("name")
@click.argument("handler")
@click.option(
    "--package",
    type=click.Path(exists=True, file_okay=False),
    help="A directory holding the handler's module: zipped and stored in tier0 with this "
    "version. Without it the module must be importable where the engine runs.",
)
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True,
              help="Seconds one invocation may run.")  # fmt: skip
@click.option("--concurrency", type=int, default=4, show_default=True,
              help="Invocations that run at once, at most.")  # fmt: skip
@click.option("--memory", "memory_mb", type=int, default=1024, show_default=True,
              help="MiB of resident memory a worker may use.")  # fmt: skip
@click.option("--attempts", type=int, default=3, show_default=True,
              help="Tries per event before the dead letter.")  # fmt: skip
@click.option("--secret", "secrets", multiple=True, metavar="NAME",
              help="A stored secret the function may read (repeat).")  # fmt: skip
@click.option("--env", "environment", multiple=True, metavar="NAME=VALUE",
              help="An environment variable for its workers (repeat).")  # fmt: skip
@click.option("--grant", "grants", multiple=True, metavar="ACTION=RESOURCE",
              help="Allow its principal fn.NAME an action, e.g. 's3:GetObject=/photos/*'.")  # fmt: skip
@pass_session
def fn_deploy_command(
    session: Session, name: str, handler: str, package: str | None, timeout_s: float,
    concurrency: int, memory_mb: int, attempts: int, secrets: tuple[str, ...],
    environment: tuple[str, ...], grants: tuple[str, ...],
) -> None:  # fmt: skip
    """Deploy HANDLER (module.path:function) as function NAME's next version.

    \b
    Examples:
      tier0 fn deploy upper shout:upper --package ./fns --grant 's3:*=/docs/*'
      tier0 fn deploy noop tier0.engine.builtins.basic:noop --concurrency 8
    """
    spec = FunctionSpec(
        name, handler, timeout_s=timeout_s, concurrency=concurrency, memory_mb=memory_mb,
        attempts=attempts, secrets=secrets,
        environment=dict(_pairs(environment, "a variable", "NAME=VALUE")),
        grants=tuple(_pairs(grants, "a grant", "ACTION=RESOURCE, e.g. s3:GetObject=/photos/*")),
    )  # fmt: skip
    with session.open() as t0:
        info = t0.engine.deploy(spec, package=package)
    where = f"package sha256 {info.package_sha256[:12]}" if info.package_sha256 else "by import"
    click.echo(f"Deployed {name} version {info.version} ({where}); it acts as {spec.principal}.")


@fn_group.command("list")
@pass_session
def fn_list_command(session: Session) -> None:
    """List functions (their latest versions) and their limits.

    \b
    Example:
      tier0 fn list
    """
    with session.open() as t0:
        functions = t0.engine.functions()
    table = Table("name", "version", "handler", "code", "timeout", "concurrency", "memory",
                  "attempts")  # fmt: skip
    for info in functions:
        spec = info.spec
        code = info.package_sha256[:12] if info.package_sha256 else "import"
        table.add_row(
            escape(info.name), str(info.version), escape(spec.handler), code,
            f"{spec.timeout_s:g} s", str(spec.concurrency), f"{spec.memory_mb} MiB",
            str(spec.attempts),
        )  # fmt: skip
    print_table(table)


@fn_group.command("rm")
@click.argument("name")
@pass_session
def fn_rm_command(session: Session, name: str) -> None:
    """Remove every version of function NAME (remove its triggers first).

    \b
    Example:
      tier0 fn rm thumbs
    """
    with session.open() as t0:
        count = t0.engine.remove_function(name)
    click.echo(f"Removed {name} ({count} version{'s' if count != 1 else ''}).")


@fn_group.command("invocations")
@click.argument("name", required=False)
@click.option("--status", type=click.Choice(["queued", "running", "done", "dead"]))
@click.option("--trigger", help="Only this trigger's.")
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_session
def fn_invocations_command(
    session: Session, name: str | None, status: str | None, trigger: str | None, limit: int,
    as_json: bool,
) -> None:  # fmt: skip
    """The newest invocations (of function NAME), newest first.

    \b
    Examples:
      tier0 fn invocations
      tier0 fn invocations thumbs --status dead
    """
    with session.open() as t0:
        records = t0.engine.invocations(function=name, trigger=trigger, status=status, limit=limit)
    if as_json:
        for r in records:
            click.echo(json.dumps({
                "id": r.id, "trigger": r.trigger, "function": r.function,
                "version": r.function_version, "seq": r.seq, "status": r.status,
                "attempts": r.attempts, "created": r.created.isoformat(),
                "duration_ms": r.duration_ms, "error": r.error, "event": r.event,
            }))  # fmt: skip
        return
    table = Table("id", "function", "trigger", "status", "tries", "created", "ms", "event",
                  "error")  # fmt: skip
    for r in records:
        what = f"{r.event.get('type', '')} {r.event.get('bucket', '')}/{r.event.get('key', '')}"
        style = {"dead": "red", "running": "yellow", "queued": "dim"}.get(r.status, "green")
        table.add_row(
            str(r.id), escape(f"{r.function}:{r.function_version}"), escape(r.trigger),
            f"[{style}]{r.status}[/{style}]", str(r.attempts), local_time(r.created),
            "" if r.duration_ms is None else f"{r.duration_ms:.0f}", escape(what),
            escape((r.error or "").splitlines()[0] if r.error else ""),
        )  # fmt: skip
    print_table(table)


@fn_group.command("logs")
@click.argument("name", required=False)
@click.option("--invocation", type=int, help="One invocation's lines (by its id).")
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="Of the newest invocations, this many.")  # fmt: skip
@pass_session
def fn_logs_command(session: Session, name: str | None, invocation: int | None, limit: int) -> None:
    """The lines function NAME logged (ctx.log and print), oldest first.

    \b
    Examples:
      tier0 fn logs thumbs
      tier0 fn logs --invocation 42
    """
    if (name is None) == (invocation is None):
        raise click.UsageError("name a function, or give --invocation ID")
    with session.open() as t0:
        lines = t0.engine.logs(function=name, invocation=invocation, limit=limit)
    for line in lines:
        click.echo(
            f"{local_time(line.time)} #{line.invocation}.{line.attempt} {line.level:<7} "
            f"{line.message}"
        )


# -- triggers ---------------------------------------------------------------------------------


@click.group("trigger")
def trigger_group() -> None:
    """Run functions when data changes.

    \b
    Examples:
      tier0 trigger add pdfs --function extract --bucket docs --prefix raw/ --suffix .pdf
      tier0 trigger add big --function embed --bucket docs --filter "size > 1000000"
      tier0 trigger list
      tier0 trigger pause pdfs
    """


@trigger_group.command("add")
@click.argument("name")
@click.option("--function", "function", required=True, help="The function it runs.")
@click.option("--version", "version", type=int,
              help="The function's version to run [default: its latest, pinned].")  # fmt: skip
@click.option("--bucket", help="Only this bucket's events [default: every bucket].")
@click.option("--prefix", default="", help="Only keys starting with this.")
@click.option("--suffix", default="", help="Only keys ending with this.")
@click.option("--event", "events", multiple=True, metavar="TYPE",
              help="Event types (repeat): created, removed, tagged, rows-inserted, "
              "rows-changed, ObjectCreated:Put, ObjectCreated:*, ... [default: created].")  # fmt: skip
@click.option("--filter", "filter_", metavar="SQL",
              help="A SQL condition on the event and the element: size, content_type, "
              "metadata['x'], tags['x'], key, principal, ...")  # fmt: skip
@click.option("--ordered", is_flag=True, help="Run each key's events one at a time, in order.")
@click.option("--stream", help="Run for every message of this stream instead of events.")
@click.option("--schedule", metavar="CRON",
              help="Run on this cron line (UTC) instead, e.g. '*/5 * * * *' or @daily.")  # fmt: skip
@pass_session
def trigger_add_command(
    session: Session, name: str, function: str, version: int | None, bucket: str | None,
    prefix: str, suffix: str, events: tuple[str, ...], filter_: str | None, ordered: bool,
    stream: str | None, schedule: str | None,
) -> None:  # fmt: skip
    """Add trigger NAME: run --function for every matching event (or message of --stream)
    from now on.

    \b
    Examples:
      tier0 trigger add pdfs --function extract --bucket docs --prefix raw/ --suffix .pdf
      tier0 trigger add gone --function cleanup --event removed --ordered
      tier0 trigger add en --function embed --filter "metadata['lang'] = 'en'"
      tier0 trigger add bill --function invoice --stream orders --ordered
      tier0 trigger add nightly --function compact --schedule "0 3 * * *"
    """
    spec = TriggerSpec(
        name, function, bucket=bucket, prefix=prefix, suffix=suffix,
        events=events or ("created",), filter=filter_, function_version=version, ordered=ordered,
        stream=stream, schedule=schedule,
    )  # fmt: skip
    with session.open() as t0:
        info = t0.engine.add_trigger(spec)
    click.echo(f"Added trigger {name}: runs {function} version {info.spec.function_version}.")


@trigger_group.command("list")
@pass_session
def trigger_list_command(session: Session) -> None:
    """List triggers: what they match and what they run.

    \b
    Example:
      tier0 trigger list
    """
    with session.open() as t0:
        triggers = t0.engine.triggers()
    table = Table("name", "state", "function", "on", "prefix", "suffix", "events", "filter",
                  "ordered")  # fmt: skip
    for info in triggers:
        spec = info.spec
        on = (f"schedule {spec.schedule}" if spec.schedule else f"stream {spec.stream}"
              if spec.stream else f"bucket {spec.bucket or '*'}")  # fmt: skip
        table.add_row(
            escape(spec.name), info.state, escape(f"{spec.function}:{spec.function_version}"),
            escape(on), escape(spec.prefix), escape(spec.suffix),
            escape(", ".join(spec.events)), escape(spec.filter or ""),
            "yes" if spec.ordered else "",
        )  # fmt: skip
    print_table(table)


def _trigger_change(verb: str, help_text: str) -> Any:
    help_text += f"\n\n\b\nExample:\n  tier0 trigger {verb} pdfs"

    @trigger_group.command(verb, help=help_text)
    @click.argument("name")
    @pass_session
    def command(session: Session, name: str) -> None:
        with session.open() as t0:
            engine = t0.engine
            {"pause": engine.pause_trigger, "resume": engine.resume_trigger,
             "rm": engine.remove_trigger}[verb](name)  # fmt: skip
        click.echo({"pause": "Paused", "resume": "Resumed", "rm": "Removed"}[verb] + f" {name}.")

    return command


_trigger_change("pause", "Stop trigger NAME (events meanwhile are skipped).")
_trigger_change("resume", "Start trigger NAME again.")
_trigger_change("rm", "Remove trigger NAME (its invocations stay).")


@trigger_group.command("repin")
@click.argument("name")
@click.option("--version", type=int, help="The version [default: the function's latest].")
@pass_session
def trigger_repin_command(session: Session, name: str, version: int | None) -> None:
    """Make trigger NAME run another version of its function.

    \b
    Examples:
      tier0 trigger repin pdfs
      tier0 trigger repin pdfs --version 3
    """
    with session.open() as t0:
        info = t0.engine.repin_trigger(name, version)
    click.echo(f"{name} now runs {info.spec.function} version {info.spec.function_version}.")


# -- secrets ----------------------------------------------------------------------------------


@click.group("secret")
def secret_group() -> None:
    """Secrets functions read as ctx.secrets (values are never shown again).

    \b
    Examples:
      printf %s "$TOKEN" | tier0 secret set OPENAI_KEY
      tier0 secret list
    """


@secret_group.command("set")
@click.argument("name")
@click.option("--value", help="The value [default: read from stdin, or asked for].")
@pass_session
def secret_set_command(session: Session, name: str, value: str | None) -> None:
    """Store secret NAME (replacing its value).

    \b
    Examples:
      printf %s "$KEY" | tier0 secret set API_KEY
      tier0 secret set API_KEY --value abc123
    """
    if value is None:
        value = (
            sys.stdin.read().rstrip("\n") if not sys.stdin.isatty()
            else click.prompt(f"Value of {name}", hide_input=True)
        )  # fmt: skip
    with session.open() as t0:
        t0.engine.set_secret(name, value)
    click.echo(f"Stored secret {name}.")


@secret_group.command("list")
@pass_session
def secret_list_command(session: Session) -> None:
    """List the secrets' names.

    \b
    Example:
      tier0 secret list
    """
    with session.open() as t0:
        for name in t0.engine.secrets():
            click.echo(name)


@secret_group.command("rm")
@click.argument("name")
@pass_session
def secret_rm_command(session: Session, name: str) -> None:
    """Remove secret NAME.

    \b
    Example:
      tier0 secret rm API_KEY
    """
    with session.open() as t0:
        t0.engine.remove_secret(name)
    click.echo(f"Removed secret {name}.")


# -- streams ----------------------------------------------------------------------------------


@click.group("stream")
def stream_group() -> None:
    """Named, retained logs: append messages, read them with consumer groups.

    Built in: `events` (every element event, read-only) and `dead-letter`
    (invocations that ran out of tries, with their errors).

    \b
    Examples:
      tier0 stream create orders --retention 7d
      echo '{"id": 1}' | tier0 stream append orders --key customer-7
      tier0 stream read orders --group billing --commit
      tier0 stream read events --follow
    """


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _duration_s(text: str) -> int | None:
    if text in ("forever", "none"):
        return None
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS_S else (text, "s")
    if not number.isdigit():
        raise click.BadParameter(f"{text!r}: write a duration like 30s, 15m, 12h, 7d or forever")
    return int(number) * _UNITS_S[unit]


@stream_group.command("create")
@click.argument("name")
@click.option("--retention", default="7d", show_default=True,
              help="How long messages are kept: 30s, 15m, 12h, 7d, or forever.")  # fmt: skip
@click.option("--retention-bytes", type=int, help="At most this many bytes kept (oldest go).")
@pass_session
def stream_create_command(
    session: Session, name: str, retention: str, retention_bytes: int | None
) -> None:
    """Create stream NAME.

    \b
    Example:
      tier0 stream create orders --retention 30d --retention-bytes 10000000000
    """
    with session.open() as t0:
        t0.streams.create(name, retention_s=_duration_s(retention), retention_bytes=retention_bytes)
    click.echo(f"Created stream {name}.")


@stream_group.command("list")
@pass_session
def stream_list_command(session: Session) -> None:
    """List streams: offsets, size, retention.

    \b
    Example:
      tier0 stream list
    """
    with session.open() as t0:
        streams = t0.streams.all()
    table = Table("name", "first offset", "next offset", "messages", "bytes", "retention")
    for info in streams:
        kept = "forever" if info.retention_s is None else f"{info.retention_s} s"
        if info.retention_bytes is not None:
            kept += f", {info.retention_bytes} B"
        table.add_row(
            escape(info.name), str(info.first_offset), str(info.next_offset),
            str(info.messages), str(info.bytes), kept,
        )  # fmt: skip
    print_table(table)


@stream_group.command("append")
@click.argument("name")
@click.argument("value", required=False)
@click.option("--key", help="The message's key.")
@click.option("--lines", is_flag=True, help="Each line of stdin is a message (one transaction).")
@pass_session
def stream_append_command(
    session: Session, name: str, value: str | None, key: str | None, lines: bool
) -> None:
    """Append VALUE (or stdin) to stream NAME; print the offset(s).

    \b
    Examples:
      tier0 stream append orders '{"id": 1}' --key customer-7
      cat events.jsonl | tier0 stream append orders --lines
    """
    data = value.encode() if value is not None else sys.stdin.buffer.read()
    messages = [(line, key, None) for line in data.splitlines() if line] if lines else [
        (data, key, None)
    ]  # fmt: skip
    if not messages:
        raise click.UsageError("nothing to append: stdin was empty")
    with session.open() as t0:
        offsets = t0.streams.append_many(name, messages)  # type: ignore[arg-type]
    click.echo(f"{offsets[0]}" if len(offsets) == 1 else f"{offsets[0]}..{offsets[-1]}")


@stream_group.command("read")
@click.argument("name")
@click.option("--group", help="Read from this consumer group's committed offset.")
@click.option("--commit", is_flag=True, help="With --group: commit what was printed.")
@click.option("--after", type=int, help="Read after this offset.")
@click.option("--since", type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
              help="Read from this UTC time.")  # fmt: skip
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--follow", is_flag=True, help="Keep waiting for new messages (Ctrl-C stops).")
@pass_session
def stream_read_command(
    session: Session, name: str, group: str | None, commit: bool, after: int | None,
    since: Any, limit: int, follow: bool,
) -> None:  # fmt: skip
    """Print messages of stream NAME as JSON lines (offset, time, key, value).

    \b
    Examples:
      tier0 stream read orders --group billing --commit
      tier0 stream read orders --since 2026-11-30T12:00:00
      tier0 stream read events --follow
    """
    import datetime as dt

    if commit and group is None:
        raise click.UsageError("--commit needs --group")
    moment = None if since is None else since.replace(tzinfo=dt.UTC)
    with session.open() as t0:
        streams = t0.streams
        while True:
            messages = streams.read(
                name, group=group, after=after if group is None else None,
                since=moment, limit=limit, wait_s=30.0 if follow else 0.0,
            )  # fmt: skip
            moment = None
            for message in messages:
                text = message.value.decode("utf-8", errors="replace")
                click.echo(json.dumps({
                    "offset": message.offset, "time": message.time.isoformat(),
                    "key": message.key, "value": text, **(
                        {"headers": message.headers} if message.headers else {}),
                }, ensure_ascii=False))  # fmt: skip
            if messages:
                after = messages[-1].offset
                if commit and group is not None:
                    streams.commit(name, group, after + 1)
            if not follow:
                return


@stream_group.command("groups")
@click.argument("name")
@pass_session
def stream_groups_command(session: Session, name: str) -> None:
    """Consumer groups of stream NAME, their committed offsets and lag.

    \b
    Example:
      tier0 stream groups orders
    """
    with session.open() as t0:
        groups = t0.streams.groups(name)
        end = t0.streams.info(name).next_offset
    table = Table("group", "committed", "lag")
    for group, committed in groups.items():
        table.add_row(escape(group), str(committed), str(end - committed))
    print_table(table)


@stream_group.command("seek")
@click.argument("name")
@click.argument("group")
@click.option("--offset", type=int, help="Read next from this offset.")
@click.option("--since", type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
              help="Read next from this UTC time.")  # fmt: skip
@pass_session
def stream_seek_command(
    session: Session, name: str, group: str, offset: int | None, since: Any
) -> None:
    """Replay: make GROUP read stream NAME from an offset or a time.

    \b
    Examples:
      tier0 stream seek orders billing --offset 0
      tier0 stream seek orders billing --since 2026-11-30
    """
    import datetime as dt

    moment = None if since is None else since.replace(tzinfo=dt.UTC)
    with session.open() as t0:
        at = t0.streams.seek(name, group, offset=offset, since=moment)
    click.echo(f"{group} reads {name} from offset {at}.")


@stream_group.command("rm")
@click.argument("name")
@pass_session
def stream_rm_command(session: Session, name: str) -> None:
    """Remove stream NAME with its messages and groups.

    \b
    Example:
      tier0 stream rm orders
    """
    with session.open() as t0:
        t0.streams.remove(name)
    click.echo(f"Removed stream {name}.")


# -- pipelines --------------------------------------------------------------------------------


@click.group("pipeline")
def pipeline_group() -> None:
    """Functions and triggers declared in one YAML file, deployed as a unit.

    \b
    Examples:
      tier0 pipeline deploy ingest.yaml
      tier0 pipeline status ingest
      tier0 pipeline rm ingest
    """


@pipeline_group.command("deploy")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@pass_session
def pipeline_deploy_command(session: Session, file: str) -> None:
    """Deploy (or replace) the pipeline defined in FILE.

    \b
    Example:
      tier0 pipeline deploy ingest.yaml
    """
    with session.open() as t0:
        pipeline = t0.engine.deploy_pipeline(file)
    click.echo(
        f"Deployed pipeline {pipeline.name}: {len(pipeline.functions)} functions,"
        f" {len(pipeline.triggers)} triggers."
    )


@pipeline_group.command("list")
@pass_session
def pipeline_list_command(session: Session) -> None:
    """List pipelines.

    \b
    Example:
      tier0 pipeline list
    """
    with session.open() as t0:
        for name in t0.engine.pipelines():
            click.echo(name)


@pipeline_group.command("status")
@click.argument("name")
@pass_session
def pipeline_status_command(session: Session, name: str) -> None:
    """Each step of pipeline NAME: trigger, function, invocations by status, last error.

    \b
    Example:
      tier0 pipeline status ingest
    """
    with session.open() as t0:
        steps = t0.engine.pipeline_status(name)
    table = Table("trigger", "function", "state", "queued", "running", "done", "dead",
                  "last error")  # fmt: skip
    for step in steps:
        counts = step.counts
        table.add_row(
            escape(step.trigger), escape(f"{step.function}:{step.function_version}"), step.state,
            *(str(counts.get(k, 0)) for k in ("queued", "running", "done", "dead")),
            escape((step.last_error or "").splitlines()[0] if step.last_error else ""),
        )  # fmt: skip
    print_table(table)


@pipeline_group.command("rm")
@click.argument("name")
@pass_session
def pipeline_rm_command(session: Session, name: str) -> None:
    """Tear pipeline NAME down: its triggers and functions.

    \b
    Example:
      tier0 pipeline rm ingest
    """
    with session.open() as t0:
        t0.engine.remove_pipeline(name)
    click.echo(f"Removed pipeline {name}.")
