"""What a decision may know of a request besides its principal.

`RequestContext` carries what the protocol saw of the request (the client's
address, TLS or not, User-Agent, Referer) and the operation's parameters
(``s3:prefix``, ``s3:max-keys``, ``s3:x-amz-acl``, ``s3:VersionId``). A
protocol builds one per request and hands it to the kernel with the
principal (``Tier0.as_principal(principal, context=...)``); the store adds
each operation's parameters (`RequestContext.with_params`) before it asks
the authorizer. Bucket policy conditions read it; nothing else does.

Calls made in-process through the Python API carry no context: the keys
about the transport (``aws:SourceIp``, ``aws:SecureTransport``, ...) are then
absent from the request, which a policy condition sees as AWS does a key
missing from the request context.

`ObjectFacts` is what a decision may need of the object acted on (its canned
ACL, its tags): fetched once, and only if the decision gets that far, so an
owner's request costs no extra query.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["EMPTY_CONTEXT", "REQUEST_OBJECT_TAG", "ObjectFacts", "RequestContext"]

#: The condition key prefix of a tag the request gives its object
#: (``s3:RequestObjectTag/<tag>``); the tag's own name keeps its case.
REQUEST_OBJECT_TAG: Final = "s3:requestobjecttag/"


# Not frozen: built for every request, where frozen costs ~2 us a construction, 10x.
@dataclass(slots=True)
class RequestContext:
    """The request as policy conditions see it; every field may be unknown (None).

    ``params`` maps lower-case condition keys of the operation (``s3:prefix``,
    ``s3:delimiter``, ``s3:max-keys``, ``s3:x-amz-acl``, ``s3:versionid``) to
    their values.

    >>> RequestContext(source_ip="127.0.0.1").with_params({"s3:prefix": "logs/"}).params
    {'s3:prefix': 'logs/'}
    """

    source_ip: str | None = None
    secure_transport: bool | None = None
    user_agent: str | None = None
    referer: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)

    def with_params(self, params: Mapping[str, str | None]) -> RequestContext:
        """This context with ``params`` added (keys lower-cased, but for the tag name of
        an ``s3:RequestObjectTag/<tag>``; None values left out)."""
        added = {_param_key(name): value for name, value in params.items() if value is not None}
        if not added:
            return self  # the common write: nothing to add, nothing to copy
        return dataclasses.replace(self, params={**self.params, **added})


EMPTY_CONTEXT: Final = RequestContext()


def _param_key(name: str) -> str:
    lowered = name.lower()
    if lowered.startswith(REQUEST_OBJECT_TAG):
        return REQUEST_OBJECT_TAG + name[len(REQUEST_OBJECT_TAG) :]
    return lowered


class ObjectFacts:
    """The ACL, tags and owner of the object (version) a request acts on, loaded on
    first use.

    ``load`` returns ``(canned_acl_or_None, tags)`` or ``(canned_acl_or_None, tags,
    owner_id)``, or None when there is no such object; it is called at most once.
    """

    __slots__ = ("_load", "_loaded", "_value")

    def __init__(self, load: Callable[[], tuple[Any, ...] | None]) -> None:
        self._load = load
        self._loaded = False
        self._value: tuple[Any, ...] | None = None

    def _get(self) -> tuple[Any, ...] | None:
        if not self._loaded:
            self._value = self._load()
            self._loaded = True
        return self._value

    def acl(self) -> str | None:
        """The object's canned ACL; None for none set (private) or no object."""
        value = self._get()
        return None if value is None else value[0]

    def tags(self) -> Mapping[str, str] | None:
        """The object's tags; None when there is no such object."""
        value = self._get()
        return None if value is None else value[1]

    def owner(self) -> str | None:
        """The id of the principal that wrote the object; None if not known."""
        value = self._get()
        return None if value is None or len(value) < 3 else value[2]
