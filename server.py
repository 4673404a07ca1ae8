"""OpenAI-compatible, streaming text-to-speech for GPT-SoVITS voices: the entry point.

`python server.py` reads the settings, finds the voices (engine/startup.py) and runs the ASGI application
(api/app.py) under uvicorn; `uvicorn server:app` serves the same application, configured from the
environment. The request path is in docs/architecture.md.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path

import uvicorn

from api.app import Application
from api.protocol import guarded_protocol
from engine.interface import GenieDataMissing, check_voices, find_voices
from settings import Settings

logger = logging.getLogger("gsv.server")


class StoppingServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process dies "killed by signal".

    For us SIGTERM is the normal way a Space or an orchestrator stops the server: once shutdown has
    finished (streams completed or aborted within SHUTDOWN_TIMEOUT), exit 0.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if isinstance(self.config.app, Application):
            self.config.app.scheduler.close_line()  # requests waiting for a place get 503 now, not at the timeout
        await super().shutdown(sockets)
        self._captured_signals.clear()


def configure_logging(level: str) -> None:
    """Configure before genie_tts is imported: its own basicConfig then does nothing."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)


def create_app(settings: Settings) -> Application:
    """The application with its voices found (GenieData resolved, the demo voice built if asked); not loaded yet."""
    genie_data_dir, folders = find_voices(
        settings.models_dir,
        settings.genie_data_dir,
        settings.genie_download,
        settings.demo,
        settings.cache_dir,
        settings.t2s_precision,
        demo_voices=settings.demo_voice_names,
    )
    return Application(settings, genie_data_dir, folders)


def __getattr__(name: str) -> Application:
    """`uvicorn server:app`: the application configured from the environment, made on first access.

    Importing this module stays free of side effects; uvicorn's own protocol then serves it, without the
    request-head deadline and connection limit `python server.py` adds (api/protocol.py).
    """
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    settings = Settings.from_env()
    settings.validate()
    configure_logging(settings.log_level)
    application = create_app(settings)
    globals()["app"] = application
    return application


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="OpenAI-compatible streaming TTS server for GPT-SoVITS voices (Genie-TTS).")
    parser.add_argument("--host", help="bind address (HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (PORT, default 7860)")
    parser.add_argument("--models", type=Path, help="voice folders (MODELS_DIR, default ./models)")
    parser.add_argument("--demo", action="store_true", default=None, help="also serve the generated demo voice (DEMO=1)")
    parser.add_argument("--check", action="store_true", help="validate the models folder and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env().with_overrides(host=args.host, port=args.port, models_dir=args.models, demo=args.demo)
        settings.validate()
    except ValueError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if args.check:
        lines, servable = check_voices(settings.models_dir, settings.genie_data_dir, settings.genie_download)
        print("\n".join(lines))
        return 0 if servable else 1
    configure_logging(settings.log_level)
    try:
        app = create_app(settings)
    except GenieDataMissing as error:
        logger.error("%s", error)
        return 1
    protocol = guarded_protocol(
        settings.head_timeout,
        settings.max_connections,
        settings.max_connections_per_client,
        app.client_addresses.is_proxy,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=protocol,
        ws="none",  # an Upgrade: websocket request is answered as plain HTTP by the application
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,  # uvicorn would take X-Forwarded-For's leftmost entry, the client's own: api/client_address.py
        timeout_keep_alive=5,
        timeout_graceful_shutdown=settings.shutdown_timeout,
    )
    StoppingServer(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
