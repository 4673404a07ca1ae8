"""OpenAI-compatible, streaming text-to-speech for GPT-SoVITS voices: the entry point.

`python server.py` reads the settings, finds the voices (engine/voices/startup.py) and runs the ASGI application
(api/app.py) under uvicorn; `uvicorn server:app` serves the same application, configured from the
environment. The request path is in docs/architecture.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

import uvicorn

from api.app import Application
from api.protocol import guarded_protocol
from engine.interface import GenieDataMissing, check_voices, find_voices
from settings import Settings

logger = logging.getLogger("gsv.server")
#: The exit status when nothing can be served (GenieData missing or unloadable, a bug at start-up): a Space or
#: Kubernetes then shows the failure and restarts the process, where a server stuck at 503 would wait forever.
STARTUP_FAILED = 1


class StoppingServer(uvicorn.Server):
    """uvicorn's server, with a drain before its graceful shutdown and exit 0 after it.

    On SIGTERM uvicorn closes its listening socket at once. Behind a balancer that is too early: until the
    balancer's health check has seen the replica go (Kubernetes: the readiness probe, then kube-proxy's rules),
    new connections still come here and would be refused, which kube-proxy does not retry elsewhere. So the first
    SIGTERM/SIGINT only marks the application draining (/health: 503 "draining"), and the server keeps accepting
    and serving for `drain_seconds`; then uvicorn's shutdown runs (listener closed, streams in flight get
    SHUTDOWN_TIMEOUT). A second signal ends the drain at once; after that, uvicorn's own handling (SIGINT: force).

    uvicorn re-raises the signal after its shutdown, so the process would die "killed by signal"; for us SIGTERM
    is the normal way a Space or an orchestrator stops the server: once shutdown has finished, exit 0.
    """

    def __init__(self, config: uvicorn.Config, application: Application, drain_seconds: float) -> None:
        super().__init__(config)
        self.application = application
        self.drain_seconds = drain_seconds
        self.drain_ends: float | None = None  # monotonic time; set by the first signal when draining
        self.drain_logged = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """A signal handler: it only sets flags (logging here could interrupt a log write in progress).

        No drain before the voices are ready: /health is 503 already, so no balancer sends anything here.
        """
        ready = self.application.voices.state == "ready"
        if ready and self.drain_seconds > 0 and self.drain_ends is None and not self.should_exit:
            self._captured_signals.append(sig)
            self.application.draining = True
            self.drain_ends = time.monotonic() + self.drain_seconds
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        """uvicorn's main loop calls this every 0.1 s; it stops serving once `should_exit` is set."""
        if self.application.voices.state == "failed" and not self.should_exit:
            logger.error("exiting with status %d: the start-up failed (see the 'start-up failed' line)", STARTUP_FAILED)
            self.should_exit = True
        if self.drain_ends is not None and not self.should_exit:
            if not self.drain_logged:
                self.drain_logged = True
                logger.info("draining: /health answers 503, requests are still served for %g s", self.drain_seconds)
            if time.monotonic() >= self.drain_ends:
                self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.application.scheduler.close_line()  # requests waiting for a place get 503 now, not at the timeout
        await super().shutdown(sockets)
        self._captured_signals.clear()


def stop_during_startup(sig: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGINT before uvicorn runs (GenieData downloading, the demo voice building): exit at once.

    Without a handler of its own, a process that is PID 1 (as in the image) ignores SIGTERM, and the orchestrator
    waits its whole grace period before it kills it. Nothing is lost by exiting here: a download resumes from its
    staging folder, and every build writes a scratch folder renamed into place (engine/models/scratch.py). `os._exit`,
    because a normal exit would wait for the download's threads.
    """
    logger.warning("stopped by %s during start-up: exiting now", signal.Signals(sig).name)
    logging.shutdown()
    os._exit(0)


def exit_while_loading(app: Application) -> None:
    """After uvicorn stopped: if the voices were still loading, exit now rather than wait for the worker thread
    (it cannot be interrupted inside onnxruntime, and a normal exit joins it, for up to minutes on a cold cache)."""
    if app.voices.state == "loading":
        logger.info("stopped while the voices were loading: exiting without waiting for the load to finish")
        logging.shutdown()
        os._exit(0)


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
        demo_names=settings.demo_voice_names,
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
        try:
            lines, servable = check_voices(settings.models_dir, settings.genie_data_dir, settings.genie_download)
        except GenieDataMissing as error:  # GenieData the server may not read
            print(f"ERROR {error}")
            return 1
        print("\n".join(lines))
        return 0 if servable else 1
    configure_logging(settings.log_level)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_during_startup)  # uvicorn puts its own in place while it runs
    try:
        app = create_app(settings)
    except GenieDataMissing as error:
        logger.error("start-up failed: %s", error)
        return STARTUP_FAILED
    except Exception as error:  # the demo voice's build, Genie's import: nothing can be served
        logger.exception("start-up failed: %s: %s", type(error).__name__, error)
        return STARTUP_FAILED
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
    StoppingServer(config, app, settings.drain_seconds).run()
    exit_while_loading(app)
    return STARTUP_FAILED if app.voices.state == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
