"""One HTTP request as the handlers see it."""

from __future__ import annotations

import re
import uuid

from api.asgi import Headers, Receive, Scope, header

#: A client's own X-Request-Id is kept when it is this plain (it ends up in logs and response headers).
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Request:
    """The ASGI scope and receive channel, the request's id, and the headers every response to it carries."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        supplied = self.header(b"x-request-id")
        self.id = supplied if supplied and _CLIENT_REQUEST_ID.match(supplied) else uuid.uuid4().hex
        self.response_headers: Headers = [(b"x-request-id", self.id.encode())]  # plus CORS, added by the application
        self.path_params: dict[str, str] = {}
        self.body_read = False

    @property
    def method(self) -> str:
        return self.scope["method"]

    @property
    def path(self) -> str:
        """The path with one trailing slash dropped ("/v1/models/" lists models); "/v1/models//" stays a model id."""
        path: str = self.scope["path"]
        return path[:-1] if len(path) > 1 and path.endswith("/") else path

    @property
    def client(self) -> str:
        client = self.scope.get("client")
        return client[0] if client else "unknown"

    def header(self, name: bytes) -> str | None:
        return header(self.scope, name)

    def declares_body(self) -> bool:
        length = self.header(b"content-length")
        return (length is not None and length.strip() != "0") or self.header(b"transfer-encoding") is not None
