"""Browser-form POST uploads (PostObject): ``POST /<bucket>`` with a ``multipart/form-data`` body.

The form's fields come first, then the ``file`` part (fields after it are
ignored, as S3 ignores them)::

    key=user/eric/${filename}  policy=<base64 JSON>  x-amz-algorithm=AWS4-HMAC-SHA256
    x-amz-credential=AKID/20300101/us-east-1/s3/aws4_request  x-amz-date=20300101T000000Z
    x-amz-signature=<hex>  Content-Type=image/png  x-amz-meta-note=...  file=<bytes>

The fields before the file are read whole (at most ``post_fields_bytes_max``
together, S3's 20 KB, and ``post_field_count_max`` of them); the file streams
into the kernel write like a PutObject body, never held whole. Before a byte
of it is written, the form is judged:

1. the signature over the policy (`Authenticator.authenticate_post`: SigV4's
   ``x-amz-signature`` with the credential's signing key, or SigV2's
   ``AWSAccessKeyId`` and ``signature``); a form without one is anonymous and
   runs as the anonymous principal, which only a bucket policy or ACL admits;
2. the policy (`PostPolicy`): its expiration, every condition, and no field
   that no condition names; ``${filename}`` in ``key`` is replaced by the
   file's name first, so the conditions judge the key that will be written;
3. while the file streams, ``content-length-range`` and S3's 5 GiB
   (``400 EntityTooLarge`` at once, ``EntityTooSmall`` at the end).

Any refusal leaves nothing written. The answer follows S3:
``success_action_redirect`` (or the older ``redirect``), when it is an
http(s) URL, is a ``303`` to it with ``bucket``, ``key`` and ``etag`` added to
its query; otherwise ``success_action_status`` 200 (empty), 201 (a
``PostResponse`` document) or, by default and for any other value, 204. Each
carries the object's ``ETag`` and ``Location``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from typing import TYPE_CHECKING, ClassVar, Final
from urllib.parse import quote, urlencode, urlsplit

from tier0.errors import EntityTooLarge, InvalidArgument, PreconditionFailed
from tier0.protocols.s3._chunked import BodyDecoder, IncompleteBody, open_body
from tier0.protocols.s3._formdata import (
    PART_END,
    Event,
    FormParser,
    MalformedPOSTRequest,
    Part,
    form_boundary,
)
from tier0.protocols.s3._http import XML, Handler, Message, Receive, Request, Response, quoted_etag
from tier0.protocols.s3._object_headers import (
    META_PREFIX,
    parse_tagging_header,
    request_checksums,
    requested_algorithm,
    stored_headers,
    tags_of,
    user_metadata,
    version_header,
)
from tier0.protocols.s3._postpolicy import PostPolicy
from tier0.protocols.s3._streaming import write_streamed
from tier0.protocols.s3._xml import parse_tagging, render_post_response
from tier0.store import STANDARD_HEADERS, Expected, ObjectInfo

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = [
    "ROUTES",
    "IncorrectNumberOfFilesInPostRequest",
    "MaxPostPreDataLengthExceededError",
    "post_object",
]

#: The most bytes one part head may take (its Content-Disposition and Content-Type).
_PART_HEAD_BYTES_MAX: Final = 8 * 1024
_FILENAME_VARIABLE: Final = "${filename}"
_SUCCESS_STATUSES: Final = {"200": 200, "201": 201}
#: What no header value may hold (tab is allowed, as HTTP allows it).
_CONTROL: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


class IncorrectNumberOfFilesInPostRequest(InvalidArgument):
    """The form has no ``file`` field, or more than one."""

    s3_code: ClassVar[str] = "IncorrectNumberOfFilesInPostRequest"


class MaxPostPreDataLengthExceededError(InvalidArgument):
    """The fields before the file are over ``post_fields_bytes_max`` (or too many)."""

    s3_code: ClassVar[str] = "MaxPostPreDataLengthExceededError"


@dataclasses.dataclass(frozen=True, slots=True)
class _Head:
    """What came before the file: the fields (lower-case names), the file part's head,
    the events already parsed after it, and whether the body has ended."""

    fields: dict[str, str]
    file: Part
    events: list[Event]
    ended: bool


async def post_object(gateway: S3Gateway, request: Request) -> Response:
    """PostObject; see the module docstring."""
    limits = gateway.limits
    boundary = _boundary(request.headers.get("content-type"))
    raw = open_body(request.auth)
    form = FormParser(boundary, part_head_bytes_max=_PART_HEAD_BYTES_MAX)
    head = await _read_fields(request, raw, form, gateway)
    fields = head.fields
    principal = await gateway.run_blocking(gateway.authenticator.authenticate_post, fields)
    policy: PostPolicy | None = None
    if principal is not None:
        policy = PostPolicy.decode(fields["policy"])
    elif "policy" in fields:
        # A policy nobody signed constrains nothing; S3 wants its signature.
        raise _missing("x-amz-credential")
    key = _key(fields, head.file)
    if policy is not None:
        policy.check_expiration(dt.datetime.now(dt.UTC))
        policy.check_fields({**fields, "key": key}, bucket=request.bucket)
    actor = (
        request.actor
        if principal is None
        else gateway.t0.as_principal(principal, context=request.actor.context)
    )
    checksums: dict[str, Expected | None] = {**request_checksums(fields, request.auth, {})}
    algorithm = requested_algorithm(fields)
    if algorithm is not None and algorithm not in checksums:
        checksums[algorithm] = None
    headers = _as_headers(fields)
    write = functools.partial(
        actor.put,
        request.bucket,
        key,
        content_type=headers.get("content-type") or None,
        metadata=user_metadata(headers),
        tags=_tags(fields),
        headers=stored_headers(headers),
        md5=True,
        checksums=checksums,
        acl=fields.get("acl"),
        event_type="ObjectCreated:Post",
    )
    body = _FileBody(raw, form, head.events, policy=policy, size_max=limits.put_bytes_max)
    replayed = dataclasses.replace(request, receive=_replay(request.receive, ended=head.ended))
    info: ObjectInfo = await write_streamed(gateway, replayed, body, write)
    return _answer(gateway, request, fields, key, info)


# -- the form -------------------------------------------------------------------------------


def _boundary(content_type: str | None) -> str:
    kind = (content_type or "").partition(";")[0].strip().lower()
    if kind != "multipart/form-data":
        error = PreconditionFailed("At least one of the pre-conditions you specified did not hold")
        condition = "Bucket POST must be of the enclosure-type multipart/form-data"
        error.details = {"Condition": condition}  # type: ignore[attr-defined]
        raise error
    assert content_type is not None
    boundary = form_boundary(content_type)
    if boundary is None:
        raise MalformedPOSTRequest(
            "The body of your POST request is not well-formed multipart/form-data:"
            " its Content-Type names no boundary."
        )
    return boundary


async def _read_fields(
    request: Request, raw: BodyDecoder, form: FormParser, gateway: S3Gateway
) -> _Head:
    """Read the body up to the file part's head, keeping the fields before it."""
    bytes_max = gateway.limits.post_fields_bytes_max
    count_max = gateway.limits.post_field_count_max
    fields: dict[str, str] = {}
    size = parts = 0
    current: Part | None = None
    value = bytearray()
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise IncompleteBody("The client went away before it sent the whole body.")
        more = bool(message.get("more_body", False))
        events = form.feed(b"".join(raw.feed(message.get("body", b""))))
        for index, event in enumerate(events):
            if isinstance(event, Part):
                parts += 1
                if parts > count_max:
                    raise _too_many_fields(count_max)
                if event.name.lower() == "file":
                    return _Head(fields, event, events[index + 1 :], ended=not more)
                current = event
                size += event.head_bytes
            elif isinstance(event, bytes):
                size += len(event)
                if size > bytes_max:
                    raise MaxPostPreDataLengthExceededError(
                        "Your POST request fields preceding the upload file were too large"
                        f" (over {bytes_max} bytes)."
                    )
                value += event
            else:
                assert event is PART_END and current is not None
                _add_field(fields, current.name, bytes(value))
                value.clear()
        if not more:
            raise IncorrectNumberOfFilesInPostRequest(
                "POST requires exactly one file upload per request."
            )


def _add_field(fields: dict[str, str], name: str, value: bytes) -> None:
    # Field names are matched without regard to case, as HTML forms and S3 do.
    name = name.lower()
    if name in fields:
        raise InvalidArgument(f"The form field {name!r} is given twice; give each field once.")
    try:
        fields[name] = value.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPOSTRequest(f"The form field {name!r} is not UTF-8 text.") from None


def _too_many_fields(count_max: int) -> MaxPostPreDataLengthExceededError:
    return MaxPostPreDataLengthExceededError(
        f"Your POST request has too many fields preceding the upload file (at most {count_max})."
    )


def _key(fields: dict[str, str], file: Part) -> str:
    key = fields.get("key")
    if not key:
        raise _missing("key")
    return key.replace(_FILENAME_VARIABLE, file.filename or "")


def _missing(name: str) -> InvalidArgument:
    error = InvalidArgument(
        f"Bucket POST must contain a field named '{name}'."
        "  If it is specified, please check the order of the fields."
    )
    error.details = {"ArgumentName": name, "ArgumentValue": ""}  # type: ignore[attr-defined]
    return error


def _as_headers(fields: dict[str, str]) -> dict[str, str]:
    """The fields that become the object's headers (Content-Type, the standard
    headers S3 keeps, ``x-amz-meta-*``) as header text.

    A header arrives as bytes read as latin-1, and GET sends those bytes back;
    a form field arrives as UTF-8, so its bytes are read the same way, and a
    GET answers with the bytes the browser sent. CR, LF and the other control
    characters would end the header early: `InvalidArgument`.
    """
    headers: dict[str, str] = {}
    for name, value in fields.items():
        if name == "content-type" or name in STANDARD_HEADERS or name.startswith(META_PREFIX):
            if _CONTROL.search(value):
                raise InvalidArgument(
                    f"The form field {name!r} holds control characters, which a header cannot carry."
                )
            headers[name] = value.encode("utf-8").decode("latin-1")
    return headers


def _tags(fields: dict[str, str]) -> dict[str, str]:
    """The ``tagging`` field: a Tagging document, as S3 takes it (or a query string)."""
    text = fields.get("tagging")
    if not text:
        return {}
    if text.lstrip().startswith("<"):
        return tags_of(parse_tagging(text.encode("utf-8")))
    return parse_tagging_header(text)


# -- the file -------------------------------------------------------------------------------


class _FileBody:
    """The file part's bytes out of the raw body, for `write_streamed` (a `BodyDecoder`).

    ``pending`` are the events parsed already, in the read that brought the
    file's head; they go out with the first ``feed``. Sizes are checked as the
    bytes pass, so an upload over its limit fails before its end; ``finish``
    succeeds only on a whole, well-formed form.
    """

    def __init__(
        self,
        raw: BodyDecoder,
        form: FormParser,
        pending: list[Event],
        *,
        policy: PostPolicy | None,
        size_max: int,
    ) -> None:
        self._raw = raw
        self._form = form
        self._pending = pending
        self._policy = policy
        self._size_max = size_max
        self._size = 0
        self._in_file = True

    def feed(self, data: bytes) -> list[bytes]:
        events, self._pending = self._pending, []
        if data:
            events = events + self._form.feed(b"".join(self._raw.feed(data)))
        out: list[bytes] = []
        for event in events:
            if self._in_file:
                if isinstance(event, bytes):
                    self._size += len(event)
                    self._check(final=False)
                    out.append(event)
                else:
                    self._in_file = False  # its PART_END: what follows is ignored
            elif isinstance(event, Part) and event.name.lower() == "file":
                raise IncorrectNumberOfFilesInPostRequest(
                    "POST requires exactly one file upload per request."
                )
        return out

    def finish(self) -> dict[str, str]:
        self._raw.finish()
        self._form.finish()
        assert not self._in_file, "a finished form ended its last part"
        self._check(final=True)
        return {}

    def _check(self, *, final: bool) -> None:
        if self._size > self._size_max:
            error = EntityTooLarge("Your proposed upload exceeds the maximum allowed size")
            error.details = {"ProposedSize": str(self._size), "MaxSizeAllowed": str(self._size_max)}  # type: ignore[attr-defined]
            raise error
        if self._policy is not None:
            self._policy.check_length(self._size, final=final)


def _replay(receive: Receive, *, ended: bool) -> Receive:
    """``receive``, after one empty message that starts the file's stream (and ends
    it, when the whole body came already)."""
    first = True

    async def replayed() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": not ended}
        return await receive()

    return replayed


# -- the answer -----------------------------------------------------------------------------


def _answer(
    gateway: S3Gateway, request: Request, fields: dict[str, str], key: str, info: ObjectInfo
) -> Response:
    etag = quoted_etag(info.etag)
    location = _location(gateway, request, key)
    headers = [
        (b"etag", etag.encode()),
        (b"location", location.encode()),
        *version_header(info.version_id),
    ]
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and _is_redirect_url(redirect):
        query = urlencode({"bucket": request.bucket, "key": key, "etag": etag})
        target = f"{redirect}{'&' if '?' in redirect else '?'}{query}"
        return Response(
            303,
            headers=[
                (b"location", target.encode()),
                (b"etag", etag.encode()),
                *version_header(info.version_id),
            ],
        )
    status = _SUCCESS_STATUSES.get(fields.get("success_action_status", ""), 204)
    if status == 201:
        body = render_post_response(
            location=location, bucket=request.bucket, key=key, etag=info.etag
        )
        return Response(201, body, [(b"content-type", XML), *headers])
    return Response(status, headers=headers)


def _location(gateway: S3Gateway, request: Request, key: str) -> str:
    """The object's URL as the client addressed the bucket (path-style or virtual-hosted)."""
    host = request.headers.get("host", "")
    path = f"/{request.bucket}/{quote(key)}"
    if not host or not all("!" <= char <= "~" for char in host):
        return path
    name = host.lower().partition(":")[0]
    if any(name == f"{request.bucket}.{domain}" for domain in gateway.domains):
        path = f"/{quote(key)}"
    context = request.actor.context
    scheme = "https" if context is not None and context.secure_transport else "http"
    return f"{scheme}://{host}{path}"


def _is_redirect_url(url: str) -> bool:
    """An absolute http(s) URL of printable ASCII (anything else S3 ignores)."""
    if not all("!" <= char <= "~" for char in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


#: (target, method, subresource) -> handler; see `tier0.protocols.s3._gateway`.
ROUTES: dict[tuple[str, str, str], Handler] = {
    ("bucket", "POST", ""): post_object,
}
