"""The request and response every S3 handler sees, and the small HTTP helpers they share.

A handler is ``async def handler(gateway, request) -> Response | None``: it
returns a `Response` to send whole, or None after streaming its own answer
through ``request.send`` (GetObject). Handlers never choose a status for a
failure: they raise, and the gateway answers through the one error table.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from tier0._client import Tier0
from tier0.errors import InvalidArgument
from tier0.protocols.s3._auth import AuthResult
from tier0.protocols.s3._chunked import BodyDecoder, IncompleteBody, open_body

if TYPE_CHECKING:
    from tier0.protocols.s3._gateway import S3Gateway

__all__ = [
    "XML",
    "ZERO_COPY_SEND",
    "Handler",
    "Message",
    "Receive",
    "Request",
    "Response",
    "Scope",
    "Send",
    "http_date",
    "quoted_etag",
    "read_body",
    "receive_whole",
    "send_whole",
    "utc",
    "xml_response",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

XML: Final = b"application/xml"
#: ASGI's extension for sending a response's bytes from a file (``os.sendfile``);
#: `stream_object` uses it where the server offers it in the scope.
ZERO_COPY_SEND: Final = "http.response.zerocopysend"


# Not frozen: built for every request, where frozen costs ~2 us a construction, 10x.
@dataclasses.dataclass(slots=True)
class Request:
    """One authenticated S3 request, split into bucket and key."""

    method: str
    path: str  # decoded, for routing and error Resource
    params: dict[str, str]
    headers: dict[str, str]  # lower-case names
    bucket: str
    key: str
    auth: AuthResult
    actor: Tier0  # the store as the authenticated principal
    receive: Receive
    send: Send
    request_id: str
    #: Whether the server takes ``ZERO_COPY_SEND`` messages on this request.
    zero_copy: bool = False


class Response:
    """A response to send whole: status, headers, body (none for HEAD)."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []


Handler = Callable[["S3Gateway", Request], Awaitable[Response | None]]


def xml_response(body: bytes, status: int = 200) -> Response:
    return Response(status, body, [(b"content-type", XML)])


async def send_whole(send: Send, response: Response, *, head: bool) -> None:
    headers = response.headers
    if not any(name == b"content-length" for name, _ in headers):
        # HeadObject states the object's length itself; everything else, its body's.
        headers = [*headers, (b"content-length", str(len(response.body)).encode())]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    # A HEAD answer (an error included) has no body, but says how long it would be.
    await send({"type": "http.response.body", "body": b"" if head else response.body})


async def read_body(request: Request, *, limit: int, decoder: BodyDecoder | None = None) -> bytes:
    """A small body, whole and verified; `InvalidArgument` once it passes ``limit`` bytes."""
    body, _ = await receive_whole(request, decoder or open_body(request.auth), limit=limit)
    return body


async def receive_whole(
    request: Request, decoder: BodyDecoder, *, limit: int
) -> tuple[bytes, dict[str, str]]:
    """The body, whole and verified, and its trailers; `InvalidArgument` past ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise IncompleteBody("The client went away before it sent the whole body.")
        for payload in decoder.feed(message.get("body", b"")):
            size += len(payload)
            if size > limit:
                raise InvalidArgument(f"The request body is over the limit of {limit} bytes.")
            parts.append(payload)
        if not message.get("more_body", False):
            # Raises unless the body is exactly the one that was signed.
            trailers = decoder.finish()
            return b"".join(parts), trailers


def utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def http_date(when: dt.datetime) -> bytes:
    """``when`` as an HTTP date (RFC 7231 IMF-fixdate), as S3 writes Last-Modified."""
    return email.utils.format_datetime(utc(when), usegmt=True).encode()


def quoted_etag(etag: str) -> str:
    # The store keeps ETags bare; S3 always shows them in double quotes.
    return etag if etag.startswith('"') else f'"{etag}"'
