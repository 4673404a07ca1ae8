"""One client key for every per-client limit: an IPv6 /64 is one client for the connection cap, the stream cap
and the rate limit alike (a host holds a whole /64, so keying on the address would give it 2^64 budgets)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from api.app import Application
from settings import Settings


def post_speech(app: Application, peer: str) -> int:
    """An empty-bodied speech request from `peer`, in process: its status (400 once past the rate limit)."""
    scope = {"type": "http", "method": "POST", "path": "/v1/audio/speech", "headers": [], "client": (peer, 1)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"]


def test_two_addresses_of_one_ipv6_64_share_the_rate_limit() -> None:
    app = Application(Settings(rate_limit_per_minute=1), Path("/nonexistent"), [])
    assert post_speech(app, "2001:db8:1:2::a") == 400  # past the limit, refused for its empty body
    assert post_speech(app, "2001:db8:1:2::b") == 429  # the same /64: the same bucket
    assert post_speech(app, "2001:db8:1:3::a") == 400  # another /64: a bucket of its own
