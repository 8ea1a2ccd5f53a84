"""The DataEngine over HTTP: functions, triggers, secrets, invocations and their logs,
and streams (their routes are listed above their handlers, below).

Routes (HTTP Basic as every ``/_tier0/`` route; the caller's rights are
checked by ``t0.engine``, see `tier0.engine._api`)::

    GET    /_tier0/functions                     {"functions": [function, ...]} (latest versions)
    POST   /_tier0/functions                     deploy: {"name", "handler", limits...,
                                                 "package"?: base64 zip} -> function (201)
    GET    /_tier0/functions/{name}              function (?version=N)
    DELETE /_tier0/functions/{name}              {"removed_versions": n}
    GET    /_tier0/functions/{name}/logs         {"lines": [...]} (?limit=invocations)
    GET    /_tier0/triggers                      {"triggers": [trigger, ...]}
    POST   /_tier0/triggers                      {"name", "function", "bucket"?, "prefix"?,
                                                 "suffix"?, "events"?, "filter"?, "ordered"?,
                                                 "function_version"?} -> trigger (201)
    GET    /_tier0/triggers/{name}               trigger
    DELETE /_tier0/triggers/{name}               204
    POST   /_tier0/triggers/{name}/pause|resume  trigger
    POST   /_tier0/triggers/{name}/repin         {"version"?: n} -> trigger
    GET    /_tier0/invocations                   {"invocations": [...]}
                                                 (?function=&trigger=&status=&limit=)
    GET    /_tier0/invocations/{id}/logs         {"lines": [...]}
    GET    /_tier0/secrets                       {"secrets": [name, ...]}
    PUT    /_tier0/secrets/{name}                {"value": "..."} -> 204
    DELETE /_tier0/secrets/{name}                204
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Final

from tier0.engine import FunctionInfo, FunctionSpec, TriggerSpec
from tier0.engine._api import InvocationRecord, LogLine
from tier0.engine._dispatch import TriggerInfo
from tier0.engine._streams import Message, StreamInfo
from tier0.server._app import (
    PATTERN_ROUTES,
    PREFIX,
    App,
    HTTPError,
    Request,
    Response,
    json_response,
)

#: A deploy's body: a code package of at most 50 MiB, in base64, and its spec.
DEPLOY_BODY_BYTES_MAX: Final = 72 * 1024 * 1024
BODY_BYTES_MAX: Final = 64 * 1024
_NAME: Final = r"(?P<name>[^/]+)"
_SPEC_FIELDS: Final = frozenset(
    {"name", "handler", "timeout_s", "concurrency", "memory_mb", "attempts", "secrets",
     "environment", "grants"}
)  # fmt: skip
_TRIGGER_FIELDS: Final = frozenset(
    {"name", "function", "function_version", "bucket", "prefix", "suffix", "events", "filter",
     "ordered", "stream", "schedule"}
)  # fmt: skip


async def _document(app: App, request: Request, *, limit: int = BODY_BYTES_MAX) -> dict[str, Any]:
    body = await app.read_body(request, limit=limit)
    try:
        document = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as error:
        raise HTTPError(400, "InvalidArgument", f"the body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise HTTPError(400, "InvalidArgument", "the body is a JSON object")
    return document


def _fields(document: dict[str, Any], allowed: frozenset[str], *extra: str) -> dict[str, Any]:
    unknown = set(document) - allowed - set(extra)
    if unknown:
        raise HTTPError(
            400, "InvalidArgument",
            f"unknown field(s) {', '.join(sorted(unknown))}; the fields are"
            f" {', '.join(sorted(allowed | set(extra)))}",
        )  # fmt: skip
    return {k: v for k, v in document.items() if k in allowed}


def _function(info: FunctionInfo) -> dict[str, Any]:
    return {**info.spec.to_json(), "version": info.version, "package_sha256": info.package_sha256,
            "principal": info.spec.principal}  # fmt: skip


def _trigger(info: TriggerInfo) -> dict[str, Any]:
    spec = info.spec
    return {
        "name": spec.name, "function": spec.function, "function_version": spec.function_version,
        "bucket": spec.bucket, "prefix": spec.prefix, "suffix": spec.suffix,
        "events": list(spec.events), "filter": spec.filter, "ordered": spec.ordered,
        "stream": spec.stream, "schedule": spec.schedule, "state": info.state,
        "after_seq": info.after_seq,
    }  # fmt: skip


def _invocation(r: InvocationRecord) -> dict[str, Any]:
    return {
        "id": r.id, "trigger": r.trigger, "function": r.function,
        "function_version": r.function_version, "seq": r.seq, "status": r.status,
        "attempts": r.attempts, "created": r.created, "started": r.started, "ended": r.ended,
        "duration_ms": r.duration_ms, "error": r.error, "idempotency_key": r.idempotency_key,
        "event": r.event,
    }  # fmt: skip


def _lines(lines: list[LogLine]) -> dict[str, Any]:
    return {
        "lines": [
            {"invocation": x.invocation, "attempt": x.attempt, "time": x.time, "level": x.level,
             "message": x.message}
            for x in lines
        ]
    }  # fmt: skip


def _int(request: Request, name: str, default: int | None = None) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise HTTPError(400, "InvalidArgument", f"{name} is a whole number, not {text!r}")
    return int(text)


# -- functions ----------------------------------------------------------------------------------


async def _list_functions(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    functions = await app.run_blocking(lambda: actor.engine.functions())
    return json_response(200, {"functions": [_function(f) for f in functions]})


async def _deploy(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    document = await _document(app, request, limit=DEPLOY_BODY_BYTES_MAX)
    fields = _fields(document, _SPEC_FIELDS, "package")
    package = document.get("package")
    code: bytes | None = None
    if package is not None:
        try:
            code = base64.b64decode(package, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise HTTPError(400, "InvalidArgument", "package is a base64 zip") from None
    for name in ("secrets", "grants"):
        if name in fields and isinstance(fields[name], list):
            fields[name] = tuple(tuple(x) if isinstance(x, list) else x for x in fields[name])
    try:
        spec = FunctionSpec(**fields)
    except TypeError as error:  # a required field is missing
        raise HTTPError(
            400, "InvalidArgument", f"a function needs name and handler ({error})"
        ) from None
    info = await app.run_blocking(lambda: actor.engine.deploy(spec, package=code))
    return json_response(201, _function(info))


async def _get_function(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    name, version = request.params["name"], _int(request, "version")
    info = await app.run_blocking(lambda: actor.engine.function(name, version))
    return json_response(200, _function(info))


async def _remove_function(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    name = request.params["name"]
    removed = await app.run_blocking(lambda: actor.engine.remove_function(name))
    return json_response(200, {"removed_versions": removed})


async def _function_logs(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    name, limit = request.params["name"], _int(request, "limit", 20) or 20
    lines = await app.run_blocking(lambda: actor.engine.logs(function=name, limit=limit))
    return json_response(200, _lines(lines))


# -- triggers -----------------------------------------------------------------------------------


async def _list_triggers(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    triggers = await app.run_blocking(lambda: actor.engine.triggers())
    return json_response(200, {"triggers": [_trigger(t) for t in triggers]})


async def _add_trigger(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    fields = _fields(await _document(app, request), _TRIGGER_FIELDS)
    if isinstance(fields.get("events"), list):
        fields["events"] = tuple(fields["events"])
    try:
        spec = TriggerSpec(**fields)
    except TypeError as error:
        raise HTTPError(
            400, "InvalidArgument", f"a trigger needs name and function ({error})"
        ) from None
    info = await app.run_blocking(lambda: actor.engine.add_trigger(spec))
    return json_response(201, _trigger(info))


async def _get_trigger(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    info = await app.run_blocking(lambda: actor.engine.trigger(request.params["name"]))
    return json_response(200, _trigger(info))


async def _remove_trigger(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    await app.run_blocking(lambda: actor.engine.remove_trigger(request.params["name"]))
    return Response(204, b"")


async def _change_trigger(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    name, verb = request.params["name"], request.params["verb"]
    engine = actor.engine
    if verb == "repin":
        version = (await _document(app, request)).get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise HTTPError(400, "InvalidArgument", f"version is a number, not {version!r}")
        info = await app.run_blocking(lambda: engine.repin_trigger(name, version))
    else:
        change = engine.pause_trigger if verb == "pause" else engine.resume_trigger
        await app.run_blocking(lambda: change(name))
        info = await app.run_blocking(lambda: engine.trigger(name))
    return json_response(200, _trigger(info))


# -- invocations and secrets --------------------------------------------------------------------


async def _invocations(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    unknown = set(request.query) - {"function", "trigger", "status", "limit"}
    if unknown:
        raise HTTPError(
            400, "InvalidArgument",
            f"unknown parameter(s) {', '.join(sorted(unknown))}; the parameters are function,"
            " trigger, status, limit",
        )  # fmt: skip
    query = request.query
    records = await app.run_blocking(
        lambda: actor.engine.invocations(
            function=query.get("function"), trigger=query.get("trigger"),
            status=query.get("status"), limit=_int(request, "limit", 100) or 100,
        )
    )  # fmt: skip
    return json_response(200, {"invocations": [_invocation(r) for r in records]})


async def _invocation_logs(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    identifier = request.params["id"]
    lines = await app.run_blocking(lambda: actor.engine.logs(invocation=int(identifier)))
    return json_response(200, _lines(lines))


async def _list_secrets(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    names = await app.run_blocking(lambda: actor.engine.secrets())
    return json_response(200, {"secrets": names})


async def _set_secret(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    value = _fields(await _document(app, request), frozenset({"value"})).get("value")
    if not isinstance(value, str):
        raise HTTPError(400, "InvalidArgument", 'the body is {"value": "..."}')
    await app.run_blocking(lambda: actor.engine.set_secret(request.params["name"], value))
    return Response(204, b"")


async def _remove_secret(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    await app.run_blocking(lambda: actor.engine.remove_secret(request.params["name"]))
    return Response(204, b"")


def _path(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(PREFIX) + pattern)


PATTERN_ROUTES.extend(
    [
        ("GET", _path("functions"), _list_functions),
        ("POST", _path("functions"), _deploy),
        ("GET", _path(f"functions/{_NAME}"), _get_function),
        ("DELETE", _path(f"functions/{_NAME}"), _remove_function),
        ("GET", _path(f"functions/{_NAME}/logs"), _function_logs),
        ("GET", _path("triggers"), _list_triggers),
        ("POST", _path("triggers"), _add_trigger),
        ("GET", _path(f"triggers/{_NAME}"), _get_trigger),
        ("DELETE", _path(f"triggers/{_NAME}"), _remove_trigger),
        ("POST", _path(f"triggers/{_NAME}/(?P<verb>pause|resume|repin)"), _change_trigger),
        ("GET", _path("invocations"), _invocations),
        ("GET", _path(r"invocations/(?P<id>[0-9]{1,18})/logs"), _invocation_logs),
        ("GET", _path("secrets"), _list_secrets),
        ("PUT", _path(f"secrets/{_NAME}"), _set_secret),
        ("DELETE", _path(f"secrets/{_NAME}"), _remove_secret),
    ]
)


# -- streams ------------------------------------------------------------------------------------
#
#     GET    /_tier0/streams                          {"streams": [stream, ...]}
#     POST   /_tier0/streams                          {"name", "retention_s"?, "retention_bytes"?}
#     GET    /_tier0/streams/{name}                   stream, with "groups": {group: offset}
#     DELETE /_tier0/streams/{name}                   204
#     POST   /_tier0/streams/{name}/messages          {"messages": [{"value": text | "value_b64":
#                                                     base64, "key"?, "headers"?}]} -> {"offsets"}
#     GET    /_tier0/streams/{name}/messages          ?group=&after=&since=&limit=&wait_s= (a long
#                                                     poll) -> {"messages": [...], "next_after"}
#     POST   /_tier0/streams/{name}/groups/{group}/commit   {"offset": n}
#     POST   /_tier0/streams/{name}/groups/{group}/seek     {"offset": n} or {"since": ISO time}

#: One append's body: messages of at most 1 MiB, in base64, a few at a time.
APPEND_BODY_BYTES_MAX: Final = 16 * 1024 * 1024
_MESSAGE_FIELDS: Final = frozenset({"value", "value_b64", "key", "headers"})


def _stream(info: StreamInfo, groups: dict[str, int] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": info.name, "first_offset": info.first_offset, "next_offset": info.next_offset,
        "messages": info.messages, "bytes": info.bytes, "retention_s": info.retention_s,
        "retention_bytes": info.retention_bytes,
    }  # fmt: skip
    if groups is not None:
        document["groups"] = groups
    return document


def _message(message: Message) -> dict[str, Any]:
    document: dict[str, Any] = {
        "offset": message.offset, "time": message.time, "key": message.key,
        "headers": message.headers, "producer": message.producer,
    }  # fmt: skip
    try:
        document["value"] = message.value.decode("utf-8")
    except UnicodeDecodeError:
        document["value_b64"] = base64.b64encode(message.value).decode()
    return document


async def _list_streams(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    streams = await app.run_blocking(lambda: actor.streams.all())
    return json_response(200, {"streams": [_stream(s) for s in streams]})


async def _create_stream(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    fields = _fields(await _document(app, request), frozenset({"name", "retention_s",
                                                                "retention_bytes"}))  # fmt: skip
    if not isinstance(fields.get("name"), str):
        raise HTTPError(400, "InvalidArgument", "a stream needs a name")
    info = await app.run_blocking(
        lambda: actor.streams.create(
            fields["name"], retention_s=fields.get("retention_s", 7 * 86_400),
            retention_bytes=fields.get("retention_bytes"),
        )
    )  # fmt: skip
    return json_response(201, _stream(info))


async def _get_stream(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    name = request.params["name"]

    def read() -> dict[str, Any]:
        return _stream(actor.streams.info(name), actor.streams.groups(name))

    return json_response(200, await app.run_blocking(read))


async def _remove_stream(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    await app.run_blocking(lambda: actor.streams.remove(request.params["name"]))
    return Response(204, b"")


async def _append(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    document = _fields(
        await _document(app, request, limit=APPEND_BODY_BYTES_MAX), frozenset({"messages"})
    )
    messages = document.get("messages")
    if not isinstance(messages, list):
        raise HTTPError(400, "InvalidArgument", 'the body is {"messages": [{"value": ...}, ...]}')
    batch: list[tuple[bytes | str, str | None, dict[str, str] | None]] = []
    for item in messages:
        if not isinstance(item, dict):
            raise HTTPError(400, "InvalidArgument", "each message is a JSON object")
        _fields(item, _MESSAGE_FIELDS)
        if ("value" in item) == ("value_b64" in item):
            raise HTTPError(400, "InvalidArgument", "a message has a value or a value_b64")
        if "value" in item:
            if not isinstance(item["value"], str):
                raise HTTPError(400, "InvalidArgument", "value is text (use value_b64 for bytes)")
            value: bytes | str = item["value"]
        else:
            try:
                value = base64.b64decode(item["value_b64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise HTTPError(400, "InvalidArgument", "value_b64 is base64") from None
        batch.append((value, item.get("key"), item.get("headers")))
    name = request.params["name"]
    offsets = await app.run_blocking(lambda: actor.streams.append_many(name, batch))
    return json_response(200, {"offsets": offsets})


async def _read_messages(app: App, request: Request) -> Response:
    import datetime as dt

    actor = await app.authenticate(request)
    unknown = set(request.query) - {"group", "after", "since", "limit", "wait_s"}
    if unknown:
        raise HTTPError(
            400, "InvalidArgument",
            f"unknown parameter(s) {', '.join(sorted(unknown))}; the parameters are group, after,"
            " since, limit, wait_s",
        )  # fmt: skip
    name, group = request.params["name"], request.query.get("group")
    after = _int(request, "after")
    limit = _int(request, "limit", 100) or 100
    since = None
    if "since" in request.query:
        try:
            since = dt.datetime.fromisoformat(request.query["since"])
        except ValueError:
            raise HTTPError(400, "InvalidArgument", "since is an ISO 8601 time") from None
    try:
        wait_s = float(request.query.get("wait_s", "0"))
    except ValueError:
        raise HTTPError(400, "InvalidArgument", "wait_s is a number of seconds") from None
    if not 0 <= wait_s <= app.limits.event_wait_s_max:
        raise HTTPError(400, "InvalidArgument", f"wait_s is 0..{app.limits.event_wait_s_max:g}")
    streams = actor.streams

    def read(slice_s: float) -> list[Message]:
        return streams.read(
            name, group=group, after=after, since=since, limit=limit, wait_s=slice_s
        )

    messages = await app.run_blocking(read, 0.0)
    if not messages and wait_s > 0 and since is None:
        messages = await app.long_poll(request, read, wait_s)
    next_after = messages[-1].offset if messages else after
    return json_response(
        200, {"messages": [_message(m) for m in messages], "next_after": next_after}
    )


async def _group_change(app: App, request: Request) -> Response:
    import datetime as dt

    actor = await app.authenticate(request)
    name, group, verb = request.params["name"], request.params["group"], request.params["verb"]
    document = _fields(await _document(app, request), frozenset({"offset", "since"}))
    offset = document.get("offset")
    if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)):
        raise HTTPError(400, "InvalidArgument", f"offset is a whole number, not {offset!r}")
    if verb == "commit":
        if offset is None:
            raise HTTPError(400, "InvalidArgument", 'commit takes {"offset": n}')
        await app.run_blocking(lambda: actor.streams.commit(name, group, offset))
        return json_response(200, {"group": group, "committed": offset})
    since = None
    if document.get("since") is not None:
        try:
            since = dt.datetime.fromisoformat(str(document["since"]))
        except ValueError:
            raise HTTPError(400, "InvalidArgument", "since is an ISO 8601 time") from None
    at = await app.run_blocking(lambda: actor.streams.seek(name, group, offset=offset, since=since))
    return json_response(200, {"group": group, "committed": at})


PATTERN_ROUTES.extend(
    [
        ("GET", _path("streams"), _list_streams),
        ("POST", _path("streams"), _create_stream),
        ("GET", _path(f"streams/{_NAME}"), _get_stream),
        ("DELETE", _path(f"streams/{_NAME}"), _remove_stream),
        ("POST", _path(f"streams/{_NAME}/messages"), _append),
        ("GET", _path(f"streams/{_NAME}/messages"), _read_messages),
        (
            "POST",
            _path(f"streams/{_NAME}/groups/(?P<group>[^/]+)/(?P<verb>commit|seek)"),
            _group_change,
        ),
    ]
)


# -- pipelines ----------------------------------------------------------------------------------
#
#     GET    /_tier0/pipelines                   {"pipelines": [name, ...]}
#     POST   /_tier0/pipelines                   a definition as JSON (package_b64: the code
#                                                directory zipped) -> {"name", "functions",
#                                                "triggers"} (201)
#     GET    /_tier0/pipelines/{name}            {"name", "steps": [step, ...]}
#     DELETE /_tier0/pipelines/{name}            204


async def _list_pipelines(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    names = await app.run_blocking(lambda: actor.engine.pipelines())
    return json_response(200, {"pipelines": names})


async def _deploy_pipeline(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    document = await _document(app, request, limit=DEPLOY_BODY_BYTES_MAX)
    if document.get("package") is not None:
        raise HTTPError(
            400, "InvalidArgument",
            "over HTTP a pipeline's code comes as package_b64 (its directory zipped), not a path",
        )  # fmt: skip
    pipeline = await app.run_blocking(lambda: actor.engine.deploy_pipeline(document))
    return json_response(201, {
        "name": pipeline.name, "functions": [f.name for f in pipeline.functions],
        "triggers": [t.name for t in pipeline.triggers],
    })  # fmt: skip


async def _pipeline_status(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    name = request.params["name"]
    steps = await app.run_blocking(lambda: actor.engine.pipeline_status(name))
    return json_response(200, {"name": name, "steps": [
        {"trigger": s.trigger, "function": s.function, "function_version": s.function_version,
         "state": s.state, "counts": s.counts, "last_error": s.last_error}
        for s in steps
    ]})  # fmt: skip


async def _remove_pipeline(app: App, request: Request) -> Response:
    actor = await app.authenticate(request)
    await app.run_blocking(lambda: actor.engine.remove_pipeline(request.params["name"]))
    return Response(204, b"")


PATTERN_ROUTES.extend(
    [
        ("GET", _path("pipelines"), _list_pipelines),
        ("POST", _path("pipelines"), _deploy_pipeline),
        ("GET", _path(f"pipelines/{_NAME}"), _pipeline_status),
        ("DELETE", _path(f"pipelines/{_NAME}"), _remove_pipeline),
    ]
)
