"""One HTTP request as the handlers see it."""

from __future__ import annotations

import re
import uuid

from api.asgi import Headers, Receive, Scope, header
from api.client_address import client_key
from api.log_fields import field

#: A client's own X-Request-Id is logged (as client_request_id) when it is this plain; otherwise it is dropped.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Request:
    """The ASGI scope and receive channel, the request's ids, its client, and the headers every response carries.

    `id` is always the server's own (two clients may send the same X-Request-Id, and logs must never mix
    their requests up); the client's id, if plain, is `client_request_id`. `client` is the address the
    rate limit and the logs key on, resolved by the application (api/client_address.py).
    """

    def __init__(self, scope: Scope, receive: Receive, client: str) -> None:
        self.scope = scope
        self.receive = receive
        self.client = client
        self.id = uuid.uuid4().hex
        supplied = self.header(b"x-request-id")
        self.client_request_id = supplied if supplied and _CLIENT_REQUEST_ID.match(supplied) else None
        self.response_headers: Headers = [(b"x-request-id", self.id.encode())]  # plus CORS, added by the application
        self.path_params: dict[str, str] = {}
        self.body_read = False

    @property
    def client_key(self) -> str:
        """What the per-client stream cap and the rate limit count: the client's address, an IPv6 /64 as one."""
        return client_key(self.client)

    @property
    def method(self) -> str:
        return self.scope["method"]

    @property
    def path(self) -> str:
        """The path with one trailing slash dropped ("/v1/models/" lists models); "/v1/models//" stays a model id."""
        path: str = self.scope["path"]
        return path[:-1] if len(path) > 1 and path.endswith("/") else path

    def log_identity(self) -> str:
        """The request's log fields naming who sent it, escaped: `client=` and, if sent, `client_request_id=`."""
        identity = f"client={field(self.client)}"
        return identity + (f" client_request_id={field(self.client_request_id)}" if self.client_request_id else "")

    def header(self, name: bytes) -> str | None:
        return header(self.scope, name)

    def declares_body(self) -> bool:
        length = self.header(b"content-length")
        return (length is not None and length.strip() != "0") or self.header(b"transfer-encoding") is not None
