"""Every setting of the server, read once from the environment (see .env.example), overridable by CLI flags.

The entry point resolves them at start and hands them to the application; nothing reads the environment later.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from engine.envflags import parse_bool
from engine.interface import T2S_PRECISIONS
from wavstream.formats import OPENAI_FORMATS

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gsv-speech"


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 7860
    models_dir: Path = Path("models")
    demo: bool = False
    demo_voices: str = "demo,demo-zh,demo-en,demo-ko"
    genie_data_dir: Path = Path("GenieData")
    genie_download: bool = True
    cache_dir: Path = field(default_factory=_default_cache)
    api_key: str = ""
    allowed_origins: str = ""  # empty: see cors_origins()
    metrics_open: bool = False
    max_input_chars: int = 4096
    max_body_bytes: int = 131072
    workers: int = 2
    ort_threads: int = 2
    queue_size: int = 8  # QUEUE_SIZE: places beyond WORKERS (the scheduler's extra_places), not a length of the line
    t2s_precision: str = "fp32"
    max_streams_per_client: int = 4
    max_queue_wait: int = 30
    max_audio_seconds: int = 1200
    min_read_rate: float = 0.5
    first_segment_chars: int = 24
    segment_chars: int = 120
    first_chunk_tokens: int = 8
    default_response_format: str = "wav"
    voice_aliases: str = ""
    rate_limit_per_minute: int = 0
    trusted_proxies: str = ""
    proxy_hops: int = 1
    max_connections: int = 100
    max_connections_per_client: int = 16
    head_timeout: int = 10
    body_timeout: int = 30
    send_timeout: int = 30
    shutdown_timeout: int = 30
    drain_seconds: int = 5
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
        """From `environ` (default: the process's environment, over the `.env` file of the working directory,
        if there is one, as uvicorn and most servers do: a variable set in the environment wins)."""
        if environ is None:
            environ = {**read_dotenv(Path(".env") if dotenv is None else dotenv), **os.environ}
        elif dotenv is not None:
            environ = {**read_dotenv(dotenv), **environ}
        values: dict[str, object] = {}
        for item in fields(cls):
            raw = environ.get(item.name.upper())
            if raw is None or raw == "":
                continue
            # A value read from a file (a Kubernetes Secret, `$(cat key.txt)`) often ends in a newline; the
            # bearer token it is compared with never does, so API_KEY and every other value are read stripped.
            raw = raw.strip()
            if not raw:
                raise ValueError(f"environment variable {item.name.upper()} is only whitespace: unset it or give it a value")
            values[item.name] = _convert(item.name, item.type, raw)
        if "trusted_proxies" not in values and environ.get("SPACE_ID"):
            # Hugging Face sets SPACE_ID in every Space, whose container only its proxy can reach.
            values["trusted_proxies"] = "*"
        return cls(**values)

    def with_overrides(self, **overrides: object) -> Settings:
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})

    def validate(self) -> None:
        if self.workers < 1 or self.ort_threads < 1:
            raise ValueError("WORKERS and ORT_THREADS must be at least 1")
        if self.queue_size < 0 or self.max_input_chars < 1 or self.max_body_bytes < 1024:
            raise ValueError("QUEUE_SIZE must be >= 0, MAX_INPUT_CHARS >= 1, MAX_BODY_BYTES >= 1024")
        if self.first_segment_chars < 4 or self.segment_chars < self.first_segment_chars:
            raise ValueError("need 4 <= FIRST_SEGMENT_CHARS <= SEGMENT_CHARS")
        if self.first_chunk_tokens != 0 and self.first_chunk_tokens < 8:
            raise ValueError("FIRST_CHUNK_TOKENS must be 0 (no chunking) or at least 8")
        if self.max_streams_per_client < 1 or self.max_audio_seconds < 1 or self.min_read_rate < 0:
            raise ValueError("MAX_STREAMS_PER_CLIENT and MAX_AUDIO_SECONDS must be at least 1, MIN_READ_RATE >= 0 (0: off)")
        if self.rate_limit_per_minute < 0 or self.max_connections < 1:
            raise ValueError("RATE_LIMIT_PER_MINUTE must be >= 0 (0: off) and MAX_CONNECTIONS >= 1")
        if self.max_connections_per_client < 0:
            raise ValueError("MAX_CONNECTIONS_PER_CLIENT must be >= 0 (0: no cap per client)")
        if self.max_queue_wait < 0:
            raise ValueError("MAX_QUEUE_WAIT must be >= 0 (0: no waiting line)")
        timeouts = (self.head_timeout, self.body_timeout, self.send_timeout, self.shutdown_timeout)
        if min(timeouts) < 1:
            raise ValueError("HEAD_TIMEOUT, BODY_TIMEOUT, SEND_TIMEOUT and SHUTDOWN_TIMEOUT must be at least 1 second")
        if self.drain_seconds < 0:
            raise ValueError("DRAIN_SECONDS must be >= 0 (0: no drain, the listener closes at once on SIGTERM)")
        if self.default_response_format not in OPENAI_FORMATS:
            raise ValueError(f"DEFAULT_RESPONSE_FORMAT must be one of {', '.join(OPENAI_FORMATS)}")
        if self.t2s_precision not in T2S_PRECISIONS:
            raise ValueError(f"T2S_PRECISION must be {' or '.join(T2S_PRECISIONS)}")
        if self.proxy_hops < 1:
            raise ValueError("PROXY_HOPS must be at least 1")
        self.trusted_networks()
        self.aliases()

    def cors_origins(self) -> str:
        """The origins whose pages may call the server and read its answers: ALLOWED_ORIGINS when set; else "*"
        with API_KEY (a page still needs the key), and none without (any page could make the server speak for it
        and read the audio: a server on localhost or an intranet is reachable from every page its user opens)."""
        if self.allowed_origins:
            return self.allowed_origins
        return "*" if self.api_key else ""

    @property
    def demo_voice_names(self) -> tuple[str, ...]:
        """DEMO_VOICES "demo,demo-zh" as ("demo", "demo-zh")."""
        return tuple(name.strip() for name in self.demo_voices.split(",") if name.strip())

    def aliases(self) -> dict[str, str]:
        """VOICE_ALIASES "alloy=mika,nova=mika/calm" as {"alloy": "mika", "nova": "mika/calm"} (keys case-folded)."""
        aliases: dict[str, str] = {}
        for item in self.voice_aliases.split(","):
            if not item.strip():
                continue
            name, equals, target = (part.strip() for part in item.partition("="))
            if not equals or not name or not target:
                raise ValueError(f"VOICE_ALIASES: {item.strip()!r} is not name=voice or name=voice/style")
            aliases[name.casefold()] = target
        return aliases

    def trusted_networks(self) -> tuple[IPNetwork, ...] | None:
        """TRUSTED_PROXIES "10.0.0.0/8,::1" as networks; None for "*" (any peer); () when empty (none)."""
        if self.trusted_proxies.strip() == "*":
            return None
        networks: list[IPNetwork] = []
        for item in self.trusted_proxies.split(","):
            if item.strip():
                try:
                    networks.append(ipaddress.ip_network(item.strip(), strict=False))
                except ValueError:
                    raise ValueError(f"TRUSTED_PROXIES: {item.strip()!r} is not an address, a network or *") from None
        return tuple(networks)


def read_dotenv(path: Path) -> dict[str, str]:
    """NAME=value lines of a .env file (blank lines, `# comments` and an `export ` prefix allowed, one pair of
    quotes around a value removed); {} when there is no such file."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not name.replace("_", "").isalnum():
            raise ValueError(f"{path}, line {number}: not NAME=value: {line[:60]!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name] = value
    return values


def _convert(name: str, kind: object, raw: str) -> object:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if kind_name == "bool":
            return parse_bool(raw)
        if kind_name == "int":
            return int(raw)
        if kind_name == "float":
            return float(raw)
        if kind_name == "Path":
            return Path(raw).expanduser()
        return raw
    except ValueError as error:
        raise ValueError(f"environment variable {name.upper()}: {error}") from None
