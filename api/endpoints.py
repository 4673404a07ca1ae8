"""The small read-only endpoints: health, the model and voice listings, the playground page, the OpenAPI document."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from api.errors import ApiError
from api.request import Request
from api.responses import JSONResponse, Response
from api.voices import ServedVoices, voice_id
from engine.interface import Scheduler

OWNER = "gsv-speech"
ROOT = Path(__file__).resolve().parent.parent
PLAYGROUND = ROOT / "playground" / "index.html"
OPENAPI = ROOT / "api" / "openapi.json"
#: Hosts that may show the page in a frame: the Space page on huggingface.co embeds the app (*.hf.space) in an iframe.
FRAME_ANCESTORS = "'self' https://huggingface.co"
INLINE = re.compile(rb"<(script|style)\b[^>]*>(.*?)</\1>", re.DOTALL)


def playground_csp(page: bytes) -> bytes:
    """The page's Content-Security-Policy: its own inline script and style by hash, nothing from other hosts.

    Hashes rather than 'unsafe-inline': an injected script or style (or an attribute handler) would not match,
    so it does not run. Computed from the served bytes, so editing the page cannot leave a stale hash.
    """
    hashes: dict[bytes, list[str]] = {b"script": [], b"style": []}
    for kind, content in INLINE.findall(page):
        hashes[kind].append("'sha256-" + base64.b64encode(hashlib.sha256(content).digest()).decode() + "'")
    scripts, styles = (" ".join(hashes[kind]) or "'none'" for kind in (b"script", b"style"))
    return (
        f"default-src 'self'; script-src {scripts}; style-src {styles}; img-src 'self' data: blob:; "
        f"media-src 'self' blob: mediastream: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        f"frame-ancestors {FRAME_ANCESTORS}"
    ).encode()


class ReadOnlyEndpoints:
    def __init__(
        self, voices: ServedVoices, scheduler: Scheduler, api_key_required: bool, is_draining: Callable[[], bool]
    ) -> None:
        self.voices = voices
        self.scheduler = scheduler
        self.api_key_required = api_key_required
        self.is_draining = is_draining
        # Read once: both files ship with the code and are served on every visit to the Space.
        self.playground_page = PLAYGROUND.read_bytes()
        self.playground_csp = playground_csp(self.playground_page)
        self.openapi_document = OPENAPI.read_bytes()

    async def health(self, request: Request) -> Response:
        """Readiness: 200 once the voices are loaded (the Space's, Docker's and a balancer's check); 503 before,
        without any, and from SIGTERM on ("draining"), so that balancers stop sending new requests here."""
        ready = self.voices.state == "ready"
        status = "draining" if self.is_draining() else "healthy" if ready else self.voices.state
        payload: dict[str, object] = {
            "status": status,
            "models": self.voices.registry.names,
            "api_key_required": self.api_key_required,
        }
        if self.voices.failure is not None:
            payload["reason"] = self.voices.failure
        if status != "healthy":
            return JSONResponse(payload, 503, request.response_headers)
        admission, slots = self.scheduler.admission, self.scheduler.slots
        payload["synthesis"] = {
            "workers": slots.workers,
            "running": slots.jobs_running,
            "waiting": slots.jobs_waiting,
            "queued": admission.requests_waiting,  # requests waiting in line for a place (MAX_QUEUE_WAIT)
            "active_requests": admission.requests_in_progress,
            "jobs_run": slots.jobs_finished,
        }
        return JSONResponse(payload, 200, request.response_headers)

    async def liveness(self, request: Request) -> Response:
        """Liveness: 200 whenever the event loop answers, also while loading and draining (restarting would not help);
        503 once loading the voices failed, so that an orchestrator restarts a server that can never become ready
        (`python server.py` exits 1 then; this is for `uvicorn server:app`)."""
        if self.voices.state == "failed":
            return JSONResponse({"status": "failed", "reason": self.voices.failure}, 503, request.response_headers)
        return JSONResponse({"status": "alive"}, 200, request.response_headers)

    async def playground(self, request: Request) -> Response:
        """The Space shows `/` in an iframe: a page to try the voices."""
        headers = [(b"cache-control", b"no-cache"), (b"content-security-policy", self.playground_csp), *request.response_headers]
        return Response(self.playground_page, 200, headers, b"text/html; charset=utf-8")

    async def openapi(self, request: Request) -> Response:
        """The hand-written OpenAPI document (tests/test_openapi.py keeps it true)."""
        return Response(
            self.openapi_document, 200, [(b"cache-control", b"no-cache"), *request.response_headers], b"application/json"
        )

    async def list_voices(self, request: Request) -> Response:
        """Open WebUI's and Home Assistant's shape; `id` is what `voice` accepts, `model` what `model` accepts."""
        voices = [
            {
                "id": voice_id(voice.name, style),
                "name": f"{voice.name} ({style})" if style else voice.name,
                "model": voice.name,
                "style": style,
            }
            for voice in self.voices.registry
            for style in [None, *voice.styles]
        ]
        return JSONResponse({"voices": voices}, 200, request.response_headers)

    async def list_audio_models(self, request: Request) -> Response:
        return JSONResponse({"models": [{"id": name} for name in self.voices.registry.names]}, 200, request.response_headers)

    async def list_models(self, request: Request) -> Response:
        payload = {"object": "list", "data": [self.model_object(name) for name in self.voices.registry.names]}
        return JSONResponse(payload, 200, request.response_headers)

    async def get_model(self, request: Request) -> Response:
        name = request.path_params["id"]
        voice = self.voices.registry.get(name)
        if voice is None:
            available = ", ".join(self.voices.registry.names) or "none"
            raise ApiError(404, f"model '{name}' not found; available: {available}", code="model_not_found", param="model")
        return JSONResponse(self.model_object(voice.name), 200, request.response_headers)

    def model_object(self, name: str) -> dict[str, object]:
        return {"id": name, "object": "model", "created": self.voices.created, "owned_by": OWNER}
