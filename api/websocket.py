"""The answer to a WebSocket handshake: this server speaks plain HTTP only.

`python server.py` runs uvicorn without WebSocket support, so a handshake reaches the application as an
ordinary HTTP request. Under `uvicorn server:app` uvicorn accepts handshakes itself and hands the application
a `websocket` scope; an application that returns without answering one makes uvicorn send a plain-text 500.
So it is refused here, with an OpenAI-shaped 400 where the server can send a response body.
"""

from __future__ import annotations

import logging

from api.asgi import Message, Receive, Scope, Send
from api.errors import ApiError
from api.responses import ErrorResponse

request_log = logging.getLogger("gsv.request")

not_supported = ApiError(
    400,
    'this server does not speak WebSocket; use HTTP, e.g. POST /v1/audio/speech with stream_format "sse" for events',
    code="websocket_not_supported",
)


async def refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Deny the handshake: the 400 through ASGI's denial response extension, else a bare close (uvicorn: 403)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client left before the handshake finished
    path = scope.get("path", "")
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        request_log.info("path=%s status=403 code=%s outcome=rejected", path, not_supported.code)
        return

    async def as_denial(response: Message) -> None:  # http.response.start/body -> websocket.http.response.start/body
        await send({**response, "type": "websocket." + response["type"]})

    await ErrorResponse(not_supported)(scope, receive, as_denial)
    request_log.info("path=%s status=%d code=%s outcome=rejected", path, not_supported.status, not_supported.code)
